"""The journal on a real SQLite file: counts kept without rescanning, retention that keeps what
is owed, a full disk refused cleanly, a corrupt file quarantined at start."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge import outbox as outbox_mod
from cloud_bridge.bridge import SCHEMAS as ERP_SCHEMAS
from edge_agent.journal import Journal, alert_from_json
from storeedge.errors import JournalUnavailable
from storeedge.events import (
    Alert,
    AlertState,
    DeviceHealth,
    HealthState,
    PosLine,
    PosTransaction,
    Severity,
)

STORE = "sh-0042"


def health(i: int, ts: float) -> DeviceHealth:
    return DeviceHealth(store_id=STORE, source=f"dev-{i}", received_ts=ts, device=f"dev-{i}",
                        state=HealthState.ONLINE, reason="ok")


def alert(alert_id: str, state: AlertState, ts: float) -> tuple[Alert, str]:
    a = Alert(store_id=STORE, source="rules", received_ts=ts, alert_id=alert_id,
              rule="low_stock", severity=Severity.WARNING, subject=alert_id, message="low",
              state=state)
    return a, json.dumps(a.to_dict())


def sale(txn_id: str, ts: float) -> PosTransaction:
    return PosTransaction(store_id=STORE, source="pos", received_ts=ts, txn_id=txn_id,
                          lines=(PosLine(sku="COLA", qty=1, unit_price=1.0),))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db", extra_schemas=ERP_SCHEMAS)
    yield j
    j.close()


def count(journal: Journal, table: str) -> int:
    return int(journal.execute(f"SELECT COUNT(*) FROM {table}")[0][0])


def test_fact_counts_follow_the_writes(journal: Journal) -> None:
    journal.record([health(1, 10.0), health(2, 10.0)], [])
    assert journal.fact_counts() == {"DeviceHealth": 2}
    facts = [health(3, 11.0)]
    journal.record(facts, [])
    journal.record(facts, [])  # journaled before: not counted twice
    assert journal.fact_counts() == {"DeviceHealth": 3} == {"DeviceHealth": count(journal,
                                                                                  "fact")}


def test_retention_keeps_active_alerts_and_undelivered_sales(journal: Journal) -> None:
    journal.record([health(1, 100.0), health(2, 5_000.0)],
                   [alert("A-old", AlertState.OPEN, 100.0),
                    alert("A-done", AlertState.OPEN, 100.0),
                    alert("A-done", AlertState.RESOLVED, 200.0),
                    alert("A-new", AlertState.OPEN, 5_000.0)])

    def owed(conn: sqlite3.Connection) -> None:
        outbox_mod.enqueue(conn, "k-owed", "sale", {"lines": []}, subject="T-owed")

    def in_window(conn: sqlite3.Connection) -> None:  # a sales window not closed yet
        conn.execute("INSERT INTO erp_sale_line (window_start, sku, qty, txn_id)"
                     " VALUES (60.0, 'COLA', 1, 'T-open')")

    def in_summary(conn: sqlite3.Connection) -> None:  # a closed window's command, not sent
        outbox_mod.enqueue(conn, "s1:sales:60", "sales",
                           {"lines": [["COLA", 2]], "receipts": ["T-summed", "T-other"]},
                           subject="COLA")

    journal.accept_sale(sale("T-owed", 100.0), owed)
    journal.accept_sale(sale("T-sent", 100.0))
    journal.accept_sale(sale("T-new", 5_000.0))
    journal.accept_sale(sale("T-open", 100.0), in_window)
    journal.accept_sale(sale("T-summed", 100.0), in_summary)

    deleted = journal.prune(1_000.0, keep_alerts=["A-old", "A-new"])

    assert deleted == {"fact": 1, "alert_transition": 2, "sale": 1}
    assert journal.fact_counts() == {"DeviceHealth": 1}
    left = sorted(r[0] for r in journal.execute("SELECT alert_id FROM alert_transition"))
    assert left == ["A-new", "A-old"]
    assert [a.alert_id for a in journal.active_alerts()] == ["A-old", "A-new"]
    assert sorted(r[0] for r in journal.execute("SELECT txn_id FROM sale")) == [
        "T-new", "T-open", "T-owed", "T-summed"]


def test_latest_transitions_go_by_journal_order_not_by_a_clock_that_stepped(
        journal: Journal) -> None:
    # A-1 ended just before the clock stepped an hour ahead; A-2 opened after the step and
    # ended once the clock stepped back: its end carries an earlier time than its opening.
    journal.record([], [alert("A-1", AlertState.OPEN, 1_000.0),
                        alert("A-1", AlertState.CLEARED, 1_010.0)])
    journal.record([], [alert("A-2", AlertState.OPEN, 4_700.0),
                        alert("A-2", AlertState.CLEARED, 1_100.0)])
    journal.record([], [alert("A-3", AlertState.OPEN, 1_200.0)])

    latest = journal.latest_transitions(last=10)
    assert [(a.alert_id, a.state) for a in latest] == [
        ("A-1", AlertState.CLEARED), ("A-2", AlertState.CLEARED), ("A-3", AlertState.OPEN)]
    assert [(a.alert_id, a.state) for a in journal.latest_transitions(last=2)] == [
        ("A-2", AlertState.CLEARED), ("A-3", AlertState.OPEN)]


def test_a_full_journal_refuses_a_write_and_keeps_nothing_of_it(journal: Journal) -> None:
    journal.limit_pages(journal.page_count())
    with pytest.raises(JournalUnavailable, match="full"):
        journal.record([health(i, 1.0) for i in range(200)], [])
    assert count(journal, "fact") == 0
    journal.limit_pages(1 << 30)
    journal.record([health(i, 1.0) for i in range(200)], [])
    assert count(journal, "fact") == 200


def test_a_corrupt_journal_is_quarantined_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    j.record([health(i, 1.0) for i in range(500)], [alert("A-1", AlertState.OPEN, 1.0)])
    j.close()
    size = path.stat().st_size
    with path.open("r+b") as f:  # scribble over the middle of the file's b-tree pages
        f.seek(size // 2)
        f.write(b"\xff" * 4096)

    again = Journal(path)
    try:
        assert again.quarantined is not None and again.quarantined.exists()
        assert again.quarantined.name.startswith("journal.db.corrupt-")
        assert again.quarantined.stat().st_size == size
        assert count(again, "fact") == 0  # fresh
        again.record([health(1, 2.0)], [])
        assert again.fact_counts() == {"DeviceHealth": 1}
    finally:
        again.close()


def test_a_file_that_is_no_database_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"not a database at all" * 100)
    j = Journal(path)
    try:
        assert j.quarantined is not None
        assert j.quarantined.read_bytes().startswith(b"not a database")
        assert j.active_alerts() == []
    finally:
        j.close()


def test_a_sound_journal_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    j.record([], [alert("A-1", AlertState.OPEN, 1.0)])
    j.close()
    again = Journal(path)
    try:
        assert again.quarantined is None
        assert [a.alert_id for a in again.active_alerts()] == ["A-1"]
        assert alert_from_json(again.execute("SELECT body FROM alert_transition")[0][0]).state \
            is AlertState.OPEN
    finally:
        again.close()


def test_a_transition_an_older_agent_wrote_with_a_nan_is_read(journal: Journal) -> None:
    a, _ = alert("A-1", AlertState.OPEN, 1.0)
    body = json.dumps({**a.to_dict(), "detail": {"temperature": float("nan")}})
    assert "NaN" in body  # what json writes, and orjson refuses to read
    journal.record([], [(a, body)])
    [read] = journal.active_alerts()
    assert read.alert_id == "A-1" and read.detail["temperature"] != read.detail["temperature"]


def test_retention_never_gives_a_seq_out_twice(journal: Journal) -> None:
    journal.record([health(1, 100.0), health(2, 100.0)],
                   [alert("A-1", AlertState.OPEN, 100.0), alert("A-1", AlertState.CLEARED, 100.0)])
    last = {t: journal.execute(f"SELECT MAX(seq) FROM {t}")[0][0]
            for t in ("fact", "alert_transition")}
    assert journal.prune(1_000.0) == {"fact": 1, "alert_transition": 1, "sale": 0}
    journal.record([health(3, 2_000.0)], [alert("A-2", AlertState.OPEN, 2_000.0)])
    for table, seq in last.items():
        seqs = [r[0] for r in journal.execute(f"SELECT seq FROM {table} ORDER BY seq")]
        assert seqs == [seq, seq + 1], table


def test_a_retried_write_of_transitions_that_landed_is_harmless(journal: Journal) -> None:
    batch = [alert("A-1", AlertState.OPEN, 1.0), alert("A-2", AlertState.OPEN, 1.0)]
    assert journal.alert_counts() == {}
    journal.record([], batch)
    journal.record([], batch)  # the outcome of the first commit was unknown: written again
    assert count(journal, "alert_transition") == 2
    assert journal.alert_counts() == {"low_stock": {"open": 2}}


def wal_salt(journal: Journal) -> bytes:
    """The WAL header's salts (bytes 16-23): SQLite draws new ones each time it starts the WAL
    over from its beginning."""
    with open(journal.path.with_name(journal.path.name + "-wal"), "rb") as wal:
        return wal.read(24)[16:]


def test_the_wal_starts_over_while_commits_follow_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A store's agent commits every millisecond: a checkpoint that runs beside the commits never
    # copies all of the WAL, and only a WAL copied all through is started over (it had grown to
    # 280 MB in a minute). Here commits follow each other with no pause at all; the WAL is to
    # start over at 256 KB (64 MB in production).
    monkeypatch.setattr("edge_agent.checkpoint.CHECKPOINT_SECONDS", 0.01)
    monkeypatch.setattr("edge_agent.checkpoint.WAL_RESTART_BYTES", 256 * 1024)
    journal = Journal(tmp_path / "journal.db")
    wal = journal.path.with_name(journal.path.name + "-wal")
    try:
        journal.record_alerts([alert("A-0", AlertState.OPEN, 1.0)])
        first = wal_salt(journal)
        for i in range(1, 5_000):
            journal.record_alerts([alert(f"A-{i}", AlertState.OPEN, 1.0)])
            if wal_salt(journal) != first:
                break
        assert wal_salt(journal) != first, "the WAL was never started over"
        assert count(journal, "alert_transition") == i + 1
        assert 256 * 1024 <= wal.stat().st_size < 4 * 1024 * 1024
    finally:
        journal.close()
