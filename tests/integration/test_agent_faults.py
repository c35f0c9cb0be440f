"""The agent under faults it must survive without losing or jamming anything: a background task
that keeps dying, a journal that cannot write, poison POS input, a reused txn_id, a wall clock
that steps. The agent runs in-process on its real journal; the HTTP API is driven through the
real app (over a socket where the broker is involved, else through the ASGI transport)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_bridge import outbox as outbox_mod
from devices.checkout import protocol as checkout
from edge_agent.agent import BATCH_SLICE, StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.mqtt import BatchNotCommitted
from edge_agent.services import free_port
from edge_agent.web import create_app
from storeedge.events import TagRead

UNIT = 100.0
LANES = [f"L{i:02d}" for i in range(40)]


def config(store_id: str, tmp_path: Path, *, broker_port: int = 1, http_port: int = 0,
           erp_url: str | None = None) -> StoreConfig:
    return StoreConfig.model_validate({
        "store": {"id": store_id},
        "broker": {"port": broker_port, "client_id": f"agent-{store_id}"},
        "journal": {"path": str(tmp_path / "journal.db"), "snapshot_seconds": 0.2},
        "http": {"port": http_port or free_port()},
        "inventory": {"settle_seconds": 0},
        "erp": {"kind": "tryton", "url": erp_url} if erp_url else {"kind": "none"},
        "catalog": [{"sku": "COLA", "unit_grams": UNIT, "low_stock": 3}],
        "lanes": [{"id": lane, "sku": "COLA", "capacity": 10} for lane in LANES],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": LANES}],
    })


def weights(store_id: str, units: int) -> list[tuple[str, bytes]]:
    topic = f"store/{store_id}/dev/shelf-1/weight"
    return [(topic, json.dumps({"lane": lane, "grams": units * UNIT}).encode())
            for lane in LANES]


def txn(txn_id: str, qty: Any = 2, unit_price: Any = 3.5, ts: Any = 1_764_160_000_123,
        ) -> dict[str, Any]:
    return {"txn_id": txn_id, "ts": ts,
            "lines": [{"sku": "COLA", "qty": qty, "unit_price": unit_price}]}


@asynccontextmanager
async def api(agent: StoreAgent) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://agent") as client:
        yield client


def journal_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def agent(tmp_path: Path, store_id: str) -> Iterator[StoreAgent]:
    agent = StoreAgent(config(store_id, tmp_path))
    agent.restore()
    yield agent
    agent.journal.close()


@pytest.fixture
def store_id(request: pytest.FixtureRequest) -> str:
    return f"faults-{abs(hash(request.node.name)) % 10**6}"


async def test_a_journal_that_cannot_write_loses_nothing_and_acknowledges_nothing(
    agent: StoreAgent, store_id: str, tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.db"
    agent.on_batch(weights(store_id, 10))
    agent.journal.limit_pages(agent.journal.page_count())  # full: no page more

    # 40 lanes drop to 2 units: 40 low-stock alerts that cannot be written.
    # The link is told not to acknowledge the batch: the broker will send it again.
    with pytest.raises(BatchNotCommitted, match="full"):
        agent.on_batch(weights(store_id, 2))
    health = agent.health()
    assert health["status"] == "degraded"
    assert health["journal"]["writable"] is False and health["journal"]["pending"] == 40
    assert "full" in health["journal"]["last_error"]
    assert journal_rows(journal, "SELECT COUNT(*) FROM alert_transition") == [(0,)]
    async with api(agent) as http:
        refused = await http.post("/api/pos/transactions", json=txn("T-1"))
        assert refused.status_code == 503, refused.text
        assert "journal cannot write" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        # A later batch is not acknowledged either: what it makes queues behind.
        with pytest.raises(BatchNotCommitted):
            agent.on_batch(weights(store_id, 1))
        assert journal_rows(journal, "SELECT COUNT(*) FROM sale") == [(0,)]

        agent.journal.limit_pages(1 << 30)  # space again
        agent.tick(agent.clock())  # the tick retries by itself
        journal_health = agent.health()["journal"]
        assert journal_health["writable"] is True and journal_health["pending"] == 0
        rows = journal_rows(journal, "SELECT alert_id, state, body FROM alert_transition"
                                     " ORDER BY seq")
        opened = [r for r in rows if json.loads(r[2])["detail"].get("transition") == "opened"]
        assert len({r[0] for r in opened}) == len(opened) == 40
        assert len(rows) == 80  # opened at 2 units, worsened at 1, in the order they happened
        assert [json.loads(r[2])["detail"]["transition"] for r in rows] == (
            ["opened"] * 40 + ["worsened"] * 40)
        assert agent.counters["alert_low_stock_open"] == 80

        accepted = await http.post("/api/pos/transactions", json=txn("T-1"))
        assert accepted.status_code == 201, accepted.text
        agent.on_batch(weights(store_id, 1))  # acknowledged again


def test_a_read_longer_than_a_commit_slice_is_journaled_whole_and_in_order(
    agent: StoreAgent, store_id: str, tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.db"
    agent.on_batch(weights(store_id, 10))
    rounds = BATCH_SLICE * 5 // (2 * len(LANES)) + 1  # a read of 2.5 slices and more
    read = [m for r in range(rounds) for m in weights(store_id, 2 if r % 2 == 0 else 10)]
    transitions = ["opened" if r % 2 == 0 else "cleared" for r in range(rounds)
                   for _ in LANES]
    agent.journal.limit_pages(agent.journal.page_count())  # full: no page more

    with pytest.raises(BatchNotCommitted, match="full"):
        agent.on_batch(read)
    assert agent.health()["journal"]["pending"] == len(transitions)
    assert journal_rows(journal, "SELECT COUNT(*) FROM alert_transition") == [(0,)]

    agent.journal.limit_pages(1 << 30)
    agent.tick(agent.clock())  # the tick retries by itself
    rows = journal_rows(journal, "SELECT subject, body FROM alert_transition ORDER BY seq")
    assert [json.loads(body)["detail"]["transition"] for _, body in rows] == transitions
    assert [subject for subject, _ in rows] == LANES * rounds


@pytest.mark.parametrize(("line", "field"), [
    ({"qty": 10**400}, "qty"),
    ({"qty": 10**20}, "qty"),
    ({"qty": 0}, "qty"),
    ({"qty": -(10**20)}, "qty"),
    ({"unit_price": 1e300}, "unit_price"),
    ({"ts": 10**20}, "ts"),
    ({"ts": 17}, "ts"),
])
async def test_poison_pos_input_is_refused_naming_the_field_and_nothing_is_booked(
    agent: StoreAgent, tmp_path: Path, line: dict[str, Any], field: str,
) -> None:
    async with api(agent) as http:
        response = await http.post("/api/pos/transactions", json=txn("T-9", **line))
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(loc[-1] == field for loc in locations), locations
    assert agent.journal.sale_count() == 0
    assert journal_rows(tmp_path / "journal.db", "SELECT COUNT(*) FROM outbox") == [(0,)]


async def test_a_reused_txn_id_with_other_content_is_a_conflict_naming_the_difference(
    agent: StoreAgent,
) -> None:
    async with api(agent) as http:
        assert (await http.post("/api/pos/transactions", json=txn("T-5"))).status_code == 201
        same = await http.post("/api/pos/transactions", json=txn("T-5"))
        assert same.status_code == 200 and same.json()["duplicate"] is True
        other = await http.post("/api/pos/transactions", json=txn("T-5", qty=3))
        assert other.status_code == 409, other.text
        assert "lines.0.qty 2 != 3" in other.json()["detail"]
        later = await http.post("/api/pos/transactions", json=txn("T-5", ts=1_764_160_999_000))
        assert later.status_code == 409 and "ts 1764160000123 != 1764160999000" in later.text
    assert agent.journal.sale_count() == 1
    assert agent.counters["sold_units"] == 2


@asynccontextmanager
async def serving(agent: StoreAgent) -> AsyncIterator[httpx.AsyncClient]:
    task = asyncio.create_task(agent.run())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.config.http.port}") as http:
        try:
            async def up() -> bool:
                try:
                    health = (await http.get("/readyz")).json()
                except httpx.HTTPError:
                    return False
                return bool(health["broker"]["connected"])

            async with asyncio.timeout(10):
                while not await up():
                    await asyncio.sleep(0.05)
            yield http
        finally:
            agent.stop()
            await asyncio.wait_for(task, 20)


async def test_a_dying_task_is_restarted_and_shown_in_readyz_and_metrics(
    mosquitto, store_id: str, tmp_path: Path,
) -> None:
    # An ERP nobody answers: the outbox and the catalog refresh run and wait, as in an outage.
    cfg = config(store_id, tmp_path, broker_port=mosquitto.port,
                 erp_url=f"http://127.0.0.1:{free_port()}/")
    agent = StoreAgent(cfg)
    agent.supervisor.initial_delay, agent.supervisor.max_delay = 0.05, 0.2
    agent.supervisor.stable_after = 1.0
    async with serving(agent) as http:
        assert (await http.get("/readyz")).status_code == 200
        # The outbox's table vanishes under it (a damaged journal): its task dies on every
        # start until the table is back.
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            conn.execute("DROP TABLE outbox")
        agent.outbox.notify()

        async def readyz() -> tuple[int, dict[str, Any]]:
            response = await http.get("/readyz")
            return response.status_code, response.json()

        async with asyncio.timeout(15):
            while True:
                code, health = await readyz()
                task = health["tasks"]["erp-outbox"]
                if code == 503 and task["crash_looping"] and task["restarts"] >= 2:
                    break
                await asyncio.sleep(0.05)
        assert "no such table: outbox" in task["last_error"]
        assert health["tasks_down"] == ["erp-outbox"]
        assert "error" in health["erp"]
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.text
        assert f'storeedge_task_restarts_total{{store="{store_id}",task="erp-outbox"}}' in text
        assert f'storeedge_task_up{{store="{store_id}",task="tick"}} 1.0' in text
        errors = [line for line in text.splitlines()
                  if line.startswith("storeedge_metrics_errors_total")]
        assert errors and float(errors[0].split()[-1]) >= 1  # the backlog could not be read

        with sqlite3.connect(tmp_path / "journal.db") as conn:
            conn.executescript(outbox_mod.SCHEMA)
        async with asyncio.timeout(15):
            while (await readyz())[0] != 200:
                await asyncio.sleep(0.05)
        code, health = await readyz()
        assert health["tasks"]["erp-outbox"]["state"] == "running"
        assert health["tasks_down"] == []


async def test_unknown_devices_by_the_hundred_thousand_log_once_and_hold_no_memory(
    agent: StoreAgent, store_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    batch = [(f"store/{store_id}/dev/ghost-{i}/weight", b'{"lane": "L00", "grams": 1}')
             for i in range(200_000)]
    with caplog.at_level("WARNING"):
        for start in range(0, len(batch), 5_000):
            agent.on_batch(batch[start:start + 5_000])
    lines = [r for r in caplog.records if "no device reads topic" in r.getMessage()]
    assert len(lines) == 1
    assert agent.counters["rejected_unknown_device"] == 200_000
    assert len(agent.pipeline.bad_input) == 1  # one key for them all, not one each


EPC = "3074257BF7194E4000001A85"


class Clocks:
    """A wall clock that can step and a monotonic one that cannot."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_764_160_000.0, 1_000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def clock_config(store_id: str, tmp_path: Path) -> StoreConfig:
    cfg = config(store_id, tmp_path).model_dump()
    cfg["devices"].append({"type": "rfid_zebra", "id": "reader-1", "location": "floor"})
    return StoreConfig.model_validate(cfg)


def read_tag(agent: StoreAgent, clocks: Clocks) -> None:
    agent.on_events([TagRead(store_id=agent.store_id, source="reader-1", received_ts=clocks.wall,
                             epc=EPC, antenna=1, rssi=-50.0)])


@pytest.mark.parametrize("step", [3_600.0, -3_600.0])
async def test_a_wall_clock_step_departs_no_tag_and_silences_no_device(
    store_id: str, tmp_path: Path, step: float,
) -> None:
    clocks = Clocks()
    agent = StoreAgent(clock_config(store_id, tmp_path), clock=lambda: clocks.wall,
                       monotonic=lambda: clocks.mono)
    agent.restore()
    try:
        read_tag(agent, clocks)
        agent.on_batch(weights(store_id, 10))
        clocks.advance(20)
        read_tag(agent, clocks)
        agent.on_batch(weights(store_id, 10))

        clocks.wall += step  # NTP steps the wall clock; no time passed
        agent.tick()
        clocks.advance(5)
        agent.tick()
        assert agent.presence.present() == {EPC: "floor"}
        assert agent.devices()["shelf-1"]["state"] == "online"
        assert agent.counters["device_offline"] == 0

        # Durations still run: silence for longer than the limits departs and silences.
        clocks.advance(601)
        agent.tick()
        assert agent.presence.present() == {}
        assert agent.devices()["shelf-1"]["state"] == "offline"
    finally:
        agent.journal.close()


async def test_a_restored_snapshot_departs_no_tag(store_id: str, tmp_path: Path) -> None:
    clocks = Clocks()
    cfg = clock_config(store_id, tmp_path)
    agent = StoreAgent(cfg, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    agent.restore()
    read_tag(agent, clocks)
    agent.snapshot()
    agent.journal.close()

    clocks.advance(2 * 3_600)  # the agent was down for two hours
    clocks.mono = 5.0  # a new process: its monotonic clock starts over
    again = StoreAgent(cfg, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    again.restore()
    try:
        again.tick()
        assert again.presence.present() == {EPC: "floor"}
        assert again.counters["fact_TagPresence"] == 0
        clocks.advance(601)
        again.tick()
        assert again.presence.present() == {}
        assert again.counters["fact_TagPresence"] == 1  # departed once, after its own wait
    finally:
        again.journal.close()


def kiosk_config(store_id: str, tmp_path: Path) -> StoreConfig:
    cfg = config(store_id, tmp_path).model_dump()
    cfg["catalog"] = [{"sku": "MILK", "unit_grams": 1030.0, "barcode": "7300011000017"},
                      {"sku": "PEN", "unit_grams": 20.0, "barcode": "4006381333931"}]
    cfg["lanes"], cfg["devices"] = [], [{"type": "checkout", "id": "kiosk-1"}]
    return StoreConfig.model_validate(cfg)


async def test_a_crash_after_acknowledged_scans_books_no_short_sale(
    store_id: str, tmp_path: Path,
) -> None:
    cfg = kiosk_config(store_id, tmp_path)
    topic = f"store/{store_id}/dev/kiosk-1/session"
    seq = iter(range(1, 100))

    def kiosk(kind: str, **fields: Any) -> list[tuple[str, bytes]]:
        return [(topic, checkout.encode("K1-7", kind, seq=next(seq), **fields))]

    milk = {"barcode": "7300011000017", "expected_grams": 1030.0, "unit_price": 0.99}
    agent = StoreAgent(cfg)
    agent.restore()
    agent.on_batch(kiosk("started"))
    agent.on_batch(kiosk("item_scanned", **milk))
    agent.snapshot()
    agent.on_batch(kiosk("item_scanned", **milk))  # acknowledged after this returns
    agent.on_batch(kiosk("item_scanned", barcode="4006381333931", expected_grams=20.0,
                         unit_price=1.5))
    agent.journal.close()  # the process dies: no snapshot after the last two scans

    again = StoreAgent(cfg)
    again.restore()
    try:
        again.on_batch(kiosk("paid", amount=3.48))
        body = again.journal.sale_body("kiosk-1:K1-7")
        assert body is not None
        assert sorted((line["sku"], line["qty"]) for line in body["lines"]) == [
            ("MILK", 2), ("PEN", 1)]
        assert again.counters["sold_units"] == 3
    finally:
        again.journal.close()
    # Restarting again replays nothing twice: the sale stays booked once.
    third = StoreAgent(cfg)
    third.restore()
    try:
        assert third.journal.sale_count() == 1
        assert third.counters["sold_units"] == 0
        assert third.pipeline.reconcilers["kiosk-1"].open_sessions == 0
    finally:
        third.journal.close()


async def test_an_agent_on_a_corrupt_journal_starts_fresh_and_says_where_the_old_one_is(
    store_id: str, tmp_path: Path,
) -> None:
    (tmp_path / "journal.db").write_bytes(b"\x00garbage" * 512)
    agent = StoreAgent(config(store_id, tmp_path))
    agent.restore()
    try:
        quarantined = agent.health()["journal"]["quarantined"]
        assert quarantined and Path(quarantined).read_bytes().startswith(b"\x00garbage")
        async with api(agent) as http:
            (alert,) = (await http.get("/api/alerts")).json()
            assert (alert["rule"], alert["severity"]) == ("journal_quarantined", "critical")
            assert alert["detail"]["route"] == "manager" and quarantined in alert["message"]
            assert (await http.post("/api/pos/transactions", json=txn("T-1"))).status_code == 201
        assert agent.journal.sale_count() == 1
    finally:
        agent.journal.close()
