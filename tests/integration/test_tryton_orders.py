"""A store's orders on the distribution centre against a real Tryton: one internal shipment per
order, received to done with the units that arrived, once."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app
from tests.fixtures.tryton import ADMIN_PASSWORD, CATALOG, connector_for


@pytest.fixture
async def erp(chain_erp: TrytonServer) -> AsyncIterator[TrytonConnector]:
    connector = connector_for(chain_erp)
    yield connector
    await connector.aclose()


async def shipment(erp: TrytonConnector, key: str) -> dict:
    (found,) = await erp.call("stock.shipment.internal", "search_read",
                              [("storeedge_key", "=", key)], 0, None, None,
                              ["state", "incoming_moves", "outgoing_moves"])
    return found


async def test_an_order_is_one_waiting_internal_shipment_and_is_received_once(
        erp: TrytonConnector) -> None:
    before = await erp.stock_units()
    first = await erp.book_order("s1:order:1", [("COLA-330", 24), ("CHIPS-70", 10)])
    assert await erp.book_order("s1:order:1", [("COLA-330", 24), ("CHIPS-70", 10)]) == first
    doc = await shipment(erp, "s1:order:1")
    assert doc["state"] == "waiting"
    # the centre ships (its staff, in the ERP); 23 COLA and 12 CHIPS arrive
    for step in ("assign_force", "pack", "ship"):
        await erp.call("stock.shipment.internal", step, [int(first)])
    assert await erp.book_receipt("s1:order:1", [("COLA-330", 23), ("CHIPS-70", 12)]) == first
    assert await erp.book_receipt("s1:order:1", [("COLA-330", 23), ("CHIPS-70", 12)]) == first
    assert (await shipment(erp, "s1:order:1"))["state"] == "done"
    after = await erp.stock_units()
    assert after["COLA-330"] == before["COLA-330"] + 23
    assert after["CHIPS-70"] == before["CHIPS-70"] + 12


async def test_goods_that_arrive_before_the_centre_booked_its_part_are_received(
        erp: TrytonConnector) -> None:
    before = await erp.stock_units()
    await erp.book_order("s1:order:2", [("WATER-550", 6), ("NOODLE-BEEF", 4)])
    await erp.book_receipt("s1:order:2", [("WATER-550", 6)])  # no noodles came
    assert (await shipment(erp, "s1:order:2"))["state"] == "done"
    after = await erp.stock_units()
    assert after["WATER-550"] == before["WATER-550"] + 6
    assert after["NOODLE-BEEF"] == before["NOODLE-BEEF"]


async def test_a_store_orders_what_it_sells_and_receives_what_arrived(
        chain_erp: TrytonServer, erp: TrytonConnector, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREEDGE_TEST_ERP_PASSWORD", ADMIN_PASSWORD)
    config = StoreConfig.model_validate({
        "store": {"id": "o1"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "erp": {"kind": "tryton", "url": chain_erp.url, "database": chain_erp.database,
                "password_env": "STOREEDGE_TEST_ERP_PASSWORD", "supply_warehouse": "DC",
                # the sale's window stays open however slowly the test runs
                "summary_window_seconds": 3600},
        "catalog": [{"sku": i["sku"], "unit_grams": i["unit_grams"], "barcode": i["barcode"]}
                    for i in CATALOG],
        "lanes": [{"id": "A1", "sku": "COLA-330", "capacity": 60, "low_stock": 3},
                  {"id": "B1", "sku": "CHIPS-70", "capacity": 60, "low_stock": 4}],
    })
    agent = StoreAgent(config)
    agent.restore()
    barcode = {i["sku"]: i["barcode"] for i in CATALOG}
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    bridge = agent.erp_bridge
    assert bridge is not None
    deliver = asyncio.create_task(bridge.run())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://agent") as http:
            before = await erp.stock_units()
            sold = before["COLA-330"] - 5
            sale = {"txn_id": "T-1", "ts": int(time.time() * 1000),
                    "lines": [{"sku": "COLA-330", "qty": sold, "unit_price": 3.5}]}
            assert (await http.post("/api/pos/transactions", json=sale)).status_code == 201
            # the store holds 5: the ERP's quantity less the sale it has not booked; demand is
            # the sale over the 7-day window; order up to 4 days of it plus the shelf's 3
            order = (await http.post("/api/orders/propose")).json()
            assert order["lines"] == [["COLA-330", math.ceil(sold / 7 * 4) + 3 - 5]]
            assert order["basis"]["COLA-330"]["held"] == 5
            approved = await http.post(f"/api/orders/{order['id']}/approve",
                                       json={"lines": [{"sku": "COLA-330", "qty": 48}]})
            assert approved.status_code == 200 and approved.json()["lines"] == [["COLA-330", 48]]
            again = await http.post(f"/api/orders/{order['id']}/approve")
            assert again.status_code == 409
            key = f"o1:order:{order['id']}"
            await until_async(lambda: _has(erp, key, "waiting"), within=60)
            # what the order brings counts as held: no second order for it
            assert (await http.post("/api/orders/propose")).json() is None
            (doc,) = await erp.call("stock.shipment.internal", "search_read",
                                    [("storeedge_key", "=", key)], 0, None, None, ["id"])
            for step in ("assign_force", "pack", "ship"):  # the centre's staff
                await erp.call("stock.shipment.internal", step, [doc["id"]])
            for _ in range(47):
                scanned = await http.post(f"/api/orders/{order['id']}/scan",
                                          json={"code": barcode["COLA-330"]})
                assert scanned.status_code == 200
            await http.post(f"/api/orders/{order['id']}/scan",
                            json={"code": barcode["WATER-550"]})
            unknown = await http.post(f"/api/orders/{order['id']}/scan",
                                      json={"code": "4006381333931"})
            assert unknown.status_code == 422 and "no product" in unknown.json()["detail"]
            done = (await http.post(f"/api/orders/{order['id']}/received")).json()
            assert done["state"] == "received"
            assert done["discrepancies"] == [
                {"sku": "COLA-330", "ordered": 48, "received": 47, "kind": "under"},
                {"sku": "WATER-550", "ordered": 0, "received": 1, "kind": "not_ordered"}]
            await until_async(lambda: _has(erp, key, "done"), within=60)
            after = await erp.stock_units()
            assert after["COLA-330"] == before["COLA-330"] + 47  # the sale is not booked yet
            assert after["WATER-550"] == before["WATER-550"]
            assert (await http.post(f"/api/orders/{order['id']}/received")).status_code == 409
    finally:
        deliver.cancel()
        await asyncio.gather(deliver, return_exceptions=True)
        assert agent.erp is not None
        await agent.erp.aclose()
        bridge.close()
        agent.journal.close()


async def _has(erp: TrytonConnector, key: str, state: str) -> bool:
    found = await erp.call("stock.shipment.internal", "search_read",
                           [("storeedge_key", "=", key)], 0, None, None, ["state"])
    return bool(found) and found[0]["state"] == state


async def until_async(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await condition():
            await asyncio.sleep(0.2)
