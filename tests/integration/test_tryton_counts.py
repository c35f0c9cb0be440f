"""Approved counts against a real Tryton: one confirmed inventory per key, moving the ERP's
quantity by the counted difference, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app
from storeedge.errors import ErpRejected
from tests.fixtures.tryton import ADMIN_PASSWORD, INITIAL_STOCK, connector_for


async def test_a_count_moves_the_erp_by_its_difference_once(
        tryton_factory: Callable[[], TrytonServer]) -> None:
    erp = connector_for(tryton_factory())
    try:
        before = await erp.stock_units()
        assert before["COLA-330"] == INITIAL_STOCK["COLA-330"]
        first = await erp.book_count("s1:count:1", [("COLA-330", -3), ("CHIPS-70", 2)])
        again = await erp.book_count("s1:count:1", [("COLA-330", -3), ("CHIPS-70", 2)])
        assert again == first and erp.duplicates_refused == 1
        after = await erp.stock_units()
        assert after["COLA-330"] == before["COLA-330"] - 3
        assert after["CHIPS-70"] == before["CHIPS-70"] + 2
        assert after["WATER-550"] == before["WATER-550"]
        (doc,) = await erp.call("stock.inventory", "search_read",
                                [("storeedge_key", "=", "s1:count:1")], 0, None, None,
                                ["state", "lines"])
        assert doc["state"] == "done" and len(doc["lines"]) == 2
        with pytest.raises(ErpRejected, match="unknown SKU NOPE"):
            await erp.book_count("s1:count:2", [("NOPE", 1)])
    finally:
        await erp.aclose()


async def test_a_manager_approves_a_count_and_the_erp_moves_once(
        tryton_factory: Callable[[], TrytonServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = tryton_factory()
    monkeypatch.setenv("STOREEDGE_TEST_ERP_PASSWORD", ADMIN_PASSWORD)
    config = StoreConfig.model_validate({
        "store": {"id": "c1"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "inventory": {"settle_seconds": 0},
        "erp": {"kind": "tryton", "url": server.url, "database": server.database,
                "password_env": "STOREEDGE_TEST_ERP_PASSWORD", "count_tolerance_units": 1,
                # the sale's window stays open however slowly the test runs
                "summary_window_seconds": 3600},
        "catalog": [{"sku": "COLA-330", "unit_grams": 350}, {"sku": "CHIPS-70", "unit_grams": 75}],
        "lanes": [{"id": "A1", "sku": "COLA-330", "capacity": 200},
                  {"id": "A2", "sku": "COLA-330", "capacity": 200},
                  {"id": "B1", "sku": "CHIPS-70", "capacity": 200}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1", "A2", "B1"]}],
    })
    agent = StoreAgent(config)
    agent.restore()
    topic = "store/c1/dev/shelf-1/weight"
    # the ERP holds 100 of each; the shelves hold 60 + 35 COLA (5 missing) and 99 CHIPS
    agent.on_batch([(topic, json.dumps({"lane": lane, "grams": grams}).encode())
                    for lane, grams in (("A1", 60 * 350), ("A2", 35 * 350), ("B1", 99 * 75))])
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    deliver = asyncio.create_task(agent.erp_bridge.run())  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://agent") as http:
            # a sale of 2 COLA the ERP has not booked yet (its window is open): not a loss
            sale = {"txn_id": "T-1", "ts": 1_764_160_000_000,
                    "lines": [{"sku": "COLA-330", "qty": 2, "unit_price": 3.5}]}
            assert (await http.post("/api/pos/transactions", json=sale)).status_code == 201
            [cola] = (await http.post("/api/counts/compare")).json()  # CHIPS is within 1
            assert (cola["sku"], cola["counted"], cola["erp"], cola["unbooked"]) == (
                "COLA-330", 95, 100, 2)
            assert cola["difference"] == -3
            approved = await http.post(f"/api/counts/{cola['id']}/approve")
            assert approved.status_code == 200 and approved.json()["state"] == "approved"
            again = await http.post(f"/api/counts/{cola['id']}/approve")
            assert again.status_code == 409 and "approved" in again.json()["detail"]
            assert (await http.post("/api/counts/999/dismiss")).status_code == 404
            erp = connector_for(server)
            try:
                await until_async(lambda: _stock(erp, "COLA-330", 97), within=60)
            finally:
                await erp.aclose()
            # the ERP less the sale it has not booked now equals the shelves: nothing to propose
            assert (await http.post("/api/counts/compare")).json() == []
    finally:
        deliver.cancel()
        await asyncio.gather(deliver, return_exceptions=True)
        assert agent.erp is not None and agent.erp_bridge is not None
        await agent.erp.aclose()
        agent.erp_bridge.close()
        agent.journal.close()


async def _stock(erp: TrytonConnector, sku: str, units: int) -> bool:
    return (await erp.stock_units())[sku] == units


async def until_async(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await condition():
            await asyncio.sleep(0.2)
