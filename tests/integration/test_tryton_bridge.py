"""The ERP bridge against a real Tryton: catalog, exactly-once sales, outages and crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.outbox import Outbox, enqueue
from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer, start_tryton
from edge_agent.services import free_port
from storeedge.errors import ErpRejected, ErpUnavailable
from tests.fixtures.tryton import ADMIN_PASSWORD, CATALOG, INITIAL_STOCK, connector_for

SKUS = [item["sku"] for item in CATALOG]


async def shipments(erp: TrytonConnector, prefix: str,
                    model: str = "stock.shipment.out") -> list[dict[str, Any]]:
    return await erp.call(model, "search_read",
                          [("reference", "like", f"{prefix}%")], 0, None, [("id", "ASC")],
                          ["reference", "state", "moves", "storeedge_key", "storeedge_receipts"])


def sale_payload(lines: list[tuple[str, int]]) -> dict[str, Any]:
    return {"lines": [[sku, qty] for sku, qty in lines], "receipts": ["pos-1"]}


def make_deliver(erp: TrytonConnector):
    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        assert kind == "sales"
        lines = [(sku, qty) for sku, qty in payload["lines"]]
        return await erp.book_sales(payload["key"], lines, payload["receipts"])
    return deliver


def journal(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(Outbox.SCHEMA)
    return conn


def enqueue_sales(path: Path, sales: dict[str, list[tuple[str, int]]]) -> None:
    conn = journal(path)
    try:
        for key, lines in sales.items():
            with conn:
                enqueue(conn, key, "sales", sale_payload(lines),
                        subject=" ".join(sku for sku, _ in lines))
    finally:
        conn.close()


def totals(sales: dict[str, list[tuple[str, int]]]) -> dict[str, int]:
    counter: Counter[str] = Counter()
    for lines in sales.values():
        for sku, qty in lines:
            counter[sku] += qty
    return dict(counter)


async def test_catalog_comes_from_tryton(erp: TrytonConnector) -> None:
    catalog = {item["sku"]: item for item in await erp.fetch_catalog()}
    assert sorted(catalog) == sorted(SKUS)
    for expected in CATALOG:
        item = catalog[expected["sku"]]
        assert item["name"] == expected["name"]
        assert item["barcode"] == expected["barcode"]
        assert item["unit_grams"] == pytest.approx(expected["unit_grams"])
        assert item["low_stock"] is None


async def test_a_sale_becomes_one_done_shipment(erp: TrytonConnector, erp_prefix: str) -> None:
    key = f"{erp_prefix}sale-1"
    shipment_id = await erp.book_sales(key, [("COLA-330", 2), ("CHIPS-70", 3)],
                                       ["txn-1", "txn-2"])
    assert await erp.sold_units(erp_prefix) == {"COLA-330": 2, "CHIPS-70": 3}
    (shipment,) = await shipments(erp, erp_prefix)
    assert str(shipment["id"]) == shipment_id and shipment["state"] == "done"
    assert shipment["storeedge_key"] == key
    assert shipment["storeedge_receipts"] == "txn-1\ntxn-2"  # the auditor's trail
    moves = await erp.call("stock.move", "read", shipment["moves"],
                           ["product.code", "quantity", "state", "to_location.type"])
    assert sorted((m["product."]["code"], m["quantity"], m["state"], m["to_location."]["type"])
                  for m in moves) == [("CHIPS-70", 3, "done", "customer"),
                                      ("COLA-330", 2, "done", "customer")]


async def test_the_same_key_twice_books_once(erp: TrytonConnector, erp_prefix: str) -> None:
    key = f"{erp_prefix}sale-1"
    first = await erp.book_sales(key, [("WATER-550", 1)], ["txn-1"])
    second = await erp.book_sales(key, [("WATER-550", 1)], ["txn-1"])
    assert first == second
    assert erp.duplicates_refused == 1  # the ERP refused the second create itself
    assert len(await shipments(erp, erp_prefix)) == 1
    assert await erp.sold_units(erp_prefix) == {"WATER-550": 1}


async def test_the_erp_refuses_a_second_document_with_our_key(
        erp: TrytonConnector, erp_prefix: str) -> None:
    key = f"{erp_prefix}direct"
    setup = await erp._store_setup()
    values = {"customer": setup["customer"], "delivery_address": setup["address"],
              "company": setup["company"], "warehouse": setup["warehouse"],
              "warehouse_storage": setup["storage"], "warehouse_output": setup["storage"],
              "storeedge_key": key}
    await erp.call("stock.shipment.out", "create", [values])
    with pytest.raises(ErpRejected, match="already booked"):
        await erp.call("stock.shipment.out", "create", [values])


async def test_returns_come_back_as_a_customer_return(
        erp: TrytonConnector, erp_prefix: str) -> None:
    key = f"{erp_prefix}w1"
    ids = await erp.book_sales(key, [("COLA-330", 3), ("CHIPS-70", -2)], ["r1", "r2"])
    assert len(ids.split(",")) == 2
    assert await erp.sold_units(erp_prefix) == {"COLA-330": 3, "CHIPS-70": -2}
    (back,) = await shipments(erp, erp_prefix, "stock.shipment.out.return")
    assert back["state"] == "done" and back["storeedge_key"] == f"{key}/return"
    assert await erp.book_sales(key, [("COLA-330", 3), ("CHIPS-70", -2)], ["r1", "r2"]) == ids
    assert await erp.sold_units(erp_prefix) == {"COLA-330": 3, "CHIPS-70": -2}


@pytest.mark.parametrize("stop_after", [None, "wait", "assign_force", "pack"])
async def test_a_crash_between_erp_calls_is_finished_not_duplicated(
        erp: TrytonConnector, erp_prefix: str, stop_after: str | None) -> None:
    key = f"{erp_prefix}sale-1"
    # the agent's first attempt stopped after these calls (private: this is the crash)
    values = await erp._document("stock.shipment.out", key, [("NOODLE-BEEF", 4)], ["txn-1"])
    (shipment_id,) = await erp.call("stock.shipment.out", "create", [values])
    for step in ("wait", "assign_force", "pack"):
        if stop_after is None:
            break
        await erp.call("stock.shipment.out", step, [shipment_id])
        if step == stop_after:
            break
    (left,) = await shipments(erp, erp_prefix)
    assert left["state"] == {None: "draft", "wait": "waiting", "assign_force": "assigned",
                             "pack": "packed"}[stop_after]
    assert await erp.book_sales(key, [("NOODLE-BEEF", 4)], ["txn-1"]) == str(shipment_id)
    (shipment,) = await shipments(erp, erp_prefix)
    assert shipment["state"] == "done"
    assert await erp.sold_units(erp_prefix) == {"NOODLE-BEEF": 4}


async def test_a_shipment_left_picked_is_finished(erp: TrytonConnector, erp_prefix: str) -> None:
    # a store's own shipments skip picking; one a clerk moved to two-step shipping and picked
    # must be finished all the same
    key = f"{erp_prefix}picked"
    setup = await erp._store_setup()
    (warehouse,) = await erp.call("stock.location", "read", [setup["warehouse"]],
                                  ["output_location"])
    (product,) = await erp.call("product.product", "search_read", [("code", "=", "COLA-330")],
                                0, 1, None, ["default_uom"])
    (shipment_id,) = await erp.call("stock.shipment.out", "create", [{
        "company": setup["company"], "customer": setup["customer"],
        "delivery_address": setup["address"], "warehouse": setup["warehouse"],
        "warehouse_storage": setup["storage"], "warehouse_output": warehouse["output_location"],
        "reference": key, "storeedge_key": key,
        "outgoing_moves": [["create", [{
            "product": product["id"], "unit": product["default_uom"], "quantity": 2.0,
            "from_location": warehouse["output_location"],
            "to_location": setup["customer_location"], "company": setup["company"],
            "unit_price": {"__class__": "Decimal", "decimal": "0"},
            "currency": setup["currency"]}]]],
    }])
    for step in ("wait", "assign_force", "pick"):
        await erp.call("stock.shipment.out", step, [shipment_id])
    assert [s["state"] for s in await shipments(erp, erp_prefix)] == ["picked"]
    assert await erp.book_sales(key, [("COLA-330", 2)], ["txn-1"]) == str(shipment_id)
    assert [s["state"] for s in await shipments(erp, erp_prefix)] == ["done"]
    assert await erp.sold_units(erp_prefix) == {"COLA-330": 2}


async def test_an_unknown_sku_is_dead_lettered_and_the_rest_flows(
        erp: TrytonConnector, erp_prefix: str, tmp_path: Path) -> None:
    with pytest.raises(ErpRejected, match="NOPE-1"):
        await erp.book_sales(f"{erp_prefix}direct", [("NOPE-1", 1)], [])
    sales = {
        f"{erp_prefix}1": [("COLA-330", 1)],
        f"{erp_prefix}2": [("COLA-330", 1), ("NOPE-1", 2)],
        f"{erp_prefix}3": [("CHIPS-70", 2)],
    }
    enqueue_sales(tmp_path / "journal.db", sales)
    outbox = Outbox(tmp_path / "journal.db")
    task = asyncio.create_task(outbox.run(make_deliver(erp)))
    try:
        assert await outbox.drained(30)
        stats, dead = outbox.stats(), outbox.rejected()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
    assert (stats.delivered, stats.rejected) == (2, 1)
    assert [d["key"] for d in dead] == [f"{erp_prefix}2"] and "NOPE-1" in dead[0]["reason"]
    assert await erp.sold_units(erp_prefix) == {"COLA-330": 1, "CHIPS-70": 2}
    assert [s["reference"] for s in await shipments(erp, erp_prefix)] == [
        f"{erp_prefix}1", f"{erp_prefix}3"]


async def test_an_erp_outage_loses_and_reorders_nothing(
        tryton_factory: Callable[[], TrytonServer], tmp_path: Path) -> None:
    server = tryton_factory()
    erp = connector_for(server, timeout=2.0)
    await erp.login()
    server.stop()
    sales = {f"out-{i:02d}": [(SKUS[i % 4], i + 1)] for i in range(6)}
    enqueue_sales(tmp_path / "journal.db", sales)
    outbox = Outbox(tmp_path / "journal.db", retry_initial_s=0.05, retry_max_s=0.3)
    task = asyncio.create_task(outbox.run(make_deliver(erp)))
    try:
        deadline = time.monotonic() + 10
        while outbox.stats().last_error is None:
            assert time.monotonic() < deadline, "the outbox never tried the stopped ERP"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few more retries against the dead ERP
        assert outbox.stats().pending == len(sales)
        await asyncio.to_thread(server.start)
        assert await outbox.drained(60)
        assert outbox.stats().delivered == len(sales)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
    try:
        assert await erp.sold_units("out-") == totals(sales)
        assert [s["reference"] for s in await shipments(erp, "out-")] == list(sales)
    finally:
        await erp.aclose()


WORKER = """
import asyncio, sys
from cloud_bridge.outbox import Outbox
from cloud_bridge.tryton.connector import TrytonConnector

async def main(db, url, database, password):
    erp = TrytonConnector(url, database, "admin", password)
    async def deliver(kind, payload):
        lines = [(sku, qty) for sku, qty in payload["lines"]]
        return await erp.book_sales(payload["key"], lines, payload["receipts"])
    await Outbox(db, retry_initial_s=0.05, retry_max_s=0.5).run(deliver)

asyncio.run(main(*sys.argv[1:]))
"""


def start_worker(db: Path, server: TrytonServer) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(db), server.url, server.database,
                             ADMIN_PASSWORD], start_new_session=True)


def delivered(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE state='delivered'").fetchone()[0]
    finally:
        conn.close()


def wait_delivered(db: Path, count: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while delivered(db) < count:
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"only {delivered(db)} of {count} delivered"
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


async def test_a_killed_agent_resumes_and_tryton_shows_each_sale_once(
        tryton: TrytonServer, erp: TrytonConnector, erp_prefix: str, tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    sales = {f"{erp_prefix}{i:03d}": [(SKUS[i % 4], 1 + i % 3)] for i in range(16)}
    enqueue_sales(db, sales)
    first = start_worker(db, tryton)
    try:
        await asyncio.to_thread(wait_delivered, db, 5, 60, first)
        first.send_signal(signal.SIGKILL)  # kill -9, wherever it is in its ERP calls
    finally:
        stop(first)
    assert delivered(db) < len(sales)
    second = start_worker(db, tryton)
    try:
        await asyncio.to_thread(wait_delivered, db, len(sales), 60, second)
    finally:
        stop(second)
    assert await erp.sold_units(erp_prefix) == totals(sales)
    refs = [s["reference"] for s in await shipments(erp, erp_prefix)]
    assert refs == list(sales)
    assert all(s["state"] == "done" for s in await shipments(erp, erp_prefix))


async def test_an_expired_session_logs_in_again(erp: TrytonConnector) -> None:
    await erp.login()
    await erp._post("common.db.logout", [])  # the server forgets the session, as on expiry
    assert len(await erp.fetch_catalog()) == len(CATALOG)


class LateAnswers:
    """A TCP proxy in front of Tryton that holds the ERP's answer to the first request carrying
    ``marker`` for ``delay`` seconds: the ERP has committed, our side times out first."""

    def __init__(self, upstream_port: int, marker: bytes, delay: float) -> None:
        self._upstream = upstream_port
        self._marker = marker
        self._delay = delay
        self._armed = True
        self.held = asyncio.Event()  # set once the ERP's answer is in hand and being held
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> LateAnswers:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        hold = asyncio.Event()

        async def to_erp() -> None:
            while data := await reader.read(65536):
                if self._armed and self._marker in data:
                    self._armed = False
                    hold.set()
                up_writer.write(data)
                await up_writer.drain()

        async def to_us() -> None:
            while data := await up_reader.read(65536):
                if hold.is_set():
                    hold.clear()
                    self.held.set()
                    await asyncio.sleep(self._delay)
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(to_erp(), to_us())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            up_writer.close()


async def test_a_create_committed_after_our_timeout_is_one_document_not_two(
        tryton: TrytonServer, erp: TrytonConnector, erp_prefix: str, tmp_path: Path) -> None:
    key = f"{erp_prefix}window-1"
    enqueue_sales(tmp_path / "journal.db", {key: [("CHIPS-70", 2), ("WATER-550", 1)]})
    async with LateAnswers(tryton.port, b'"model.stock.shipment.out.storeedge_book"', 4.0) as proxy:
        slow = TrytonConnector(f"http://127.0.0.1:{proxy.port}/", tryton.database, "admin",
                               ADMIN_PASSWORD, timeout=1.5)
        outbox = Outbox(tmp_path / "journal.db", retry_initial_s=0.05, retry_max_s=0.2)
        task = asyncio.create_task(outbox.run(make_deliver(slow)))
        try:
            async with asyncio.timeout(60):
                await proxy.held.wait()  # the ERP answered: the shipment is committed
            assert [s["storeedge_key"] for s in await shipments(erp, erp_prefix)] == [key]
            assert await outbox.drained(60)
            stats = outbox.stats()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            outbox.close()
            await slow.aclose()
    assert stats.delivered == 1 and stats.retries_since_start >= 1
    assert slow.duplicates_refused == 1  # the retry's booking was refused by the ERP
    (shipment,) = await shipments(erp, erp_prefix)
    assert shipment["state"] == "done"
    assert await erp.sold_units(erp_prefix) == {"CHIPS-70": 2, "WATER-550": 1}


async def test_a_run_with_its_own_password_reuses_the_cached_template(
        tryton: TrytonServer, tmp_path: Path) -> None:
    # the session's Tryton built (or found) the template; another run's password must not
    # rebuild it (18 s), and must be the only one that opens the copy
    server = start_tryton(tmp_path / "tryton", free_port(), CATALOG, INITIAL_STOCK,
                          "another-run-password")
    own = TrytonConnector(server.url, server.database, "admin", "another-run-password")
    try:
        assert "init_s" not in server.timings
        assert len(await own.fetch_catalog()) == len(CATALOG)
        with pytest.raises(ErpUnavailable, match="refused the login"):
            await connector_for(server).login()
    finally:
        await own.aclose()
        server.stop()
