"""The agent's Prometheus families and its time-series health samples, read from an agent that
runs no network (its journal in a temporary directory), fed MQTT batches directly."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud_bridge.bridge import ErpBridge
from cloud_bridge.summary import KIND as SALES
from cloud_bridge.tsdb import Points
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.metrics import agent_figures, counter_families
from storeedge.errors import ErpUnavailable
from storeedge.events import PosLine, PosTransaction

STORE = "metrics-01"
UNIT = 100.0
NOW = 1_764_160_000.0


def config(tmp_path: Path) -> StoreConfig:
    return StoreConfig.model_validate({
        "store": {"id": STORE, "region": "north", "city": "Beijing"},
        "broker": {"port": 1, "client_id": "agent-metrics"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "inventory": {"settle_seconds": 0},
        "catalog": [{"sku": "COLA", "unit_grams": UNIT, "low_stock": 3}],
        "lanes": [{"id": "A1", "sku": "COLA", "capacity": 10}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1"]},
                    {"type": "zigbee2mqtt", "id": "fridge-1", "zone": "chill",
                     "name": "fridge-1"}],
    })


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[StoreAgent]:
    agent = StoreAgent(config(tmp_path), clock=lambda: NOW)
    agent.restore()
    yield agent
    agent.journal.close()


def weight(units: float, **extra: object) -> tuple[str, bytes]:
    return (f"store/{STORE}/dev/shelf-1/weight",
            json.dumps({"lane": "A1", "grams": units * UNIT, **extra}).encode())


def samples(agent: StoreAgent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the agent's /metrics, by name and labels (the store label left out)."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(agent.registry).decode()):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "store"))
            out[(s.name, labels)] = s.value
    return out


def test_counter_names_become_labelled_families() -> None:
    registry = CollectorRegistry()
    counters = {"readings": 5, "readings_shelf_mqtt": 4, "readings_other": 1,
                "alert_low_stock_open": 2, "alert_checkout_suspect_claimed": 1,
                "rejected_bad_payload": 3, "fact_DeviceHealth": 1, "stock_pick": 6,
                "device_offline": 1, "sold_units": 9, "sales": 2, "something_new": 7}

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return counter_families("s", counters)

    registry.register(Collector())
    text = generate_latest(registry).decode()
    for line in ('storeedge_readings_total{device_type="shelf_mqtt",store="s"} 4.0',
                 'storeedge_readings_total{device_type="other",store="s"} 1.0',
                 'storeedge_alert_transitions_total{rule="low_stock",state="open",store="s"} 2.0',
                 'storeedge_alert_transitions_total{rule="checkout_suspect",state="claimed",'
                 'store="s"} 1.0',
                 'storeedge_rejected_total{reason="bad_payload",store="s"} 3.0',
                 'storeedge_facts_total{store="s",type="DeviceHealth"} 1.0',
                 'storeedge_stock_changes_total{cause="pick",store="s"} 6.0',
                 'storeedge_device_transitions_total{state="offline",store="s"} 1.0',
                 'storeedge_sold_units_total{store="s"} 9.0',
                 'storeedge_sales_total{store="s"} 2.0',
                 'storeedge_agent_events_total{kind="something_new",store="s"} 7.0'):
        assert line in text
    assert "kind=\"readings\"" not in text  # the total is the sum of the family, not a kind


async def test_metrics_per_concept_histograms_and_process(agent: StoreAgent) -> None:
    agent.on_batch([weight(10), weight(2)])  # a low-stock alert opens
    agent.accept_pos(PosTransaction(store_id=STORE, source="pos", received_ts=NOW,
                                    txn_id="T-1", lines=(PosLine(sku="COLA", qty=2,
                                                                 unit_price=3.5),)))
    got = samples(agent)
    assert got[("storeedge_readings_total", (("device_type", "shelf_mqtt"),))] == 2
    assert got[("storeedge_alert_transitions_total",
                (("rule", "low_stock"), ("state", "open")))] == 1
    assert got[("storeedge_open_alerts", (("rule", "low_stock"), ("state", "open")))] == 1
    assert got[("storeedge_sold_units_total", ())] == 2
    assert got[("storeedge_alert_latency_seconds_count", ())] == 1
    assert got[("storeedge_pos_request_seconds_count", ())] == 1
    assert ("storeedge_erp_delivery_seconds_count", ()) in got
    assert got[("storeedge_devices", (("device_type", "zigbee2mqtt"), ("state", "unknown")))] == 1
    assert got[("storeedge_outbox_backlog", ())] == 0
    assert got[("process_cpu_seconds_total", ())] > 0
    assert got[("storeedge_metrics_errors_total", ())] == 0
    names = {name for name, _ in got}
    assert "storeedge_erp_backlog" not in names  # the outbox's backlog is the one
    assert "storeedge_events_total" not in names


async def test_a_family_that_fails_is_left_out_not_the_scrape(agent: StoreAgent,
                                                             tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        conn.execute("DROP TABLE outbox")
    got = samples(agent)
    assert ("storeedge_outbox_backlog", ()) not in got
    assert got[("storeedge_metrics_errors_total", ())] == 1
    assert ("storeedge_journal_writable", ()) in got
    figures = agent_figures(agent)  # the agent point is still written, without the backlog
    assert figures["erp_backlog"] is None and figures["readings_total"] == 0


async def test_a_device_time_in_seconds_is_flagged_and_stamped_with_receive_time(
        agent: StoreAgent, caplog: pytest.LogCaptureFixture) -> None:
    agent.on_batch([weight(10, ts=int(NOW * 1000))])
    assert agent.counters["device_time_wrong_unit"] == 0
    # The shelf's firmware now sends epoch seconds where the protocol says milliseconds.
    agent.on_batch([weight(2, ts=int(NOW)), weight(2, ts=int(NOW) + 1)])
    assert agent.counters["device_time_wrong_unit"] == 2
    assert agent.counters["readings_shelf_mqtt"] == 3  # kept, not rejected
    (alert,) = agent.alerts()
    assert alert.device_ts is None
    (line,) = Points(STORE).alerts([alert])
    assert line.endswith(f" {int(NOW) * 10**9}")  # its receive time, not January 1970
    warned = [r for r in caplog.records if "wrong unit" in r.getMessage()]
    assert len(warned) == 1 and "shelf-1" in warned[0].getMessage()  # rate-limited
    assert samples(agent)[("storeedge_device_time_wrong_unit_total", ())] == 2


async def test_a_pos_time_in_seconds_is_stamped_with_receive_time(agent: StoreAgent) -> None:
    txn = PosTransaction(store_id=STORE, source="pos", received_ts=NOW, device_ts=NOW / 1000,
                         txn_id="T-2", lines=(PosLine(sku="COLA", qty=1, unit_price=3.5),))
    assert agent.accept_pos(txn)
    assert agent.accept_pos(txn) is False  # the POS's retry is the same sale, not a conflict
    assert agent.counters["device_time_wrong_unit"] == 2
    (stored,) = agent.journal.execute("SELECT device_ts FROM sale WHERE txn_id = 'T-2'")
    assert stored == (None,)


async def test_every_erp_delivery_attempt_is_timed(tmp_path: Path) -> None:
    class Erp:
        def __init__(self) -> None:
            self.down = False

        async def book_sales(self, key: str, lines: list[tuple[str, int]],
                             receipts: list[str], at: float | None = None) -> str:
            if self.down:
                raise ErpUnavailable("connection refused")
            return "SO-1"

    took: list[float] = []
    erp = Erp()
    bridge = ErpBridge(tmp_path / "journal.db", STORE, erp, observe_delivery=took.append)
    try:
        payload = {"lines": [["COLA", 2]], "receipts": ["T-1"], "key": "k-1"}
        assert await bridge.deliver(SALES, payload) == "SO-1"
        erp.down = True
        with pytest.raises(ErpUnavailable):
            await bridge.deliver(SALES, payload)
    finally:
        bridge.close()
    assert len(took) == 2 and all(t >= 0 for t in took)
