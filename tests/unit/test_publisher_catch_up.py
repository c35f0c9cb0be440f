"""Sales and alert transitions reach the time-series buffer from the journal, each once: a
buffer that cannot be written (its disk full) or an agent killed between the journal and the
buffer delays points, never loses or doubles them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge.tsdb import TimeSeriesSink
from edge_agent.journal import Journal
from edge_agent.publisher import Publisher
from storeedge.errors import StoreEdgeError
from storeedge.events import Alert, AlertState, PosLine, PosTransaction, Severity

STORE = "sh-0042"


class DiskFull(TimeSeriesSink):
    """The real buffer, refusing every write while ``full`` (as SQLite does on a full disk)."""

    full = False

    def add(self, lines: list[str], mark: tuple[str, int] | None = None) -> None:
        if self.full:
            raise StoreEdgeError("time-series buffer: cannot add: database or disk is full")
        super().add(lines, mark)


def sale(txn_id: str, *lines: tuple[str, int, float]) -> PosTransaction:
    return PosTransaction(store_id=STORE, source="pos", received_ts=1_764_000_000.0,
                          txn_id=txn_id,
                          lines=tuple(PosLine(sku=s, qty=q, unit_price=p) for s, q, p in lines))


def transition(alert_id: str, state: AlertState) -> tuple[Alert, str]:
    a = Alert(store_id=STORE, source="rules", received_ts=1_764_000_000.0, alert_id=alert_id,
              rule="low_stock", severity=Severity.WARNING, subject="A1", message="low",
              state=state)
    return a, json.dumps(a.to_dict())


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


def open_sink(tmp_path: Path) -> DiskFull:
    return DiskFull(tmp_path / "journal.tsdb.db", "http://127.0.0.1:9", "org", "bucket", None)


def buffered(sink: TimeSeriesSink) -> list[str]:
    return [line for _, line in sink._read_batch()]


def test_points_wait_in_the_journal_while_the_buffer_cannot_be_written(
        journal: Journal, tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    publisher = Publisher(STORE, None, None, journal, sink)  # type: ignore[arg-type]
    journal.accept_sale(sale("T-1", ("COLA", 2, 3.0)))
    assert publisher.catch_up()

    sink.full = True
    journal.accept_sale(sale("T-2", ("COLA", 1, 3.0), ("CHIPS", 1, 5.5), ("COLA", 2, 3.0)))
    journal.record([], [transition("A-1", AlertState.OPEN)])
    assert not publisher.catch_up()
    assert len(buffered(sink)) == 1

    sink.full = False
    assert publisher.catch_up()
    lines = buffered(sink)
    assert [line.split(" ")[0] for line in lines] == [
        "sale,sku=COLA,store=sh-0042", "sale,sku=COLA,store=sh-0042",
        "sale,sku=CHIPS,store=sh-0042",
        "alert,rule=low_stock,severity=warning,state=open,store=sh-0042"]
    assert " qty=3i,amount=9 " in lines[1]
    assert publisher.catch_up()
    assert len(buffered(sink)) == 4  # nothing buffered twice
    sink.close()


def test_a_new_agent_carries_on_where_the_buffer_left_off(
        journal: Journal, tmp_path: Path) -> None:
    first = open_sink(tmp_path)
    Publisher(STORE, None, None, journal, first).catch_up()  # type: ignore[arg-type]
    journal.accept_sale(sale("T-1", ("COLA", 1, 3.0)))
    Publisher(STORE, None, None, journal, first).catch_up()  # type: ignore[arg-type]
    journal.accept_sale(sale("T-2", ("COLA", 2, 3.0)))  # journaled, then the agent was killed
    first.close()

    again = open_sink(tmp_path)
    assert Publisher(STORE, None, None, journal, again).catch_up()  # type: ignore[arg-type]
    assert [line.split(" ")[1] for line in buffered(again)] == ["qty=1i,amount=3",
                                                                "qty=2i,amount=6"]
    again.close()
