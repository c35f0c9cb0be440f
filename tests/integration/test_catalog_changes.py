"""Catalog changes made in the ERP reach a running agent within one refresh: a new price, a
product withdrawn from sale; a till that sells against them is counted, and the sale booked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app
from storeedge.errors import ErpRejected
from tests.fixtures.tryton import ADMIN_PASSWORD, connector_for


async def withdraw(erp: TrytonConnector, template: int) -> None:
    """Deactivate a product in Tryton as its user would: confirming the warning that it still
    has stock (a ``res.user.warning`` for it, then the write again)."""
    try:
        await erp.call("product.template", "write", [template], {"active": False})
    except ErpRejected as exc:
        warning = str(exc).split("write: ", 1)[1].split(" - ", 1)[0]
        [user] = await erp.call("res.user", "search", [("login", "=", "admin")])
        await erp.call("res.user.warning", "create",
                       [{"user": user, "name": warning, "always": False}])
        await erp.call("product.template", "write", [template], {"active": False})


async def test_a_price_and_a_withdrawal_in_the_erp_reach_the_running_agent(
        tryton_factory: Callable[[], TrytonServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = tryton_factory()
    monkeypatch.setenv("STOREEDGE_TEST_ERP_PASSWORD", ADMIN_PASSWORD)
    agent = StoreAgent(StoreConfig.model_validate({
        "store": {"id": "cat-1"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "erp": {"kind": "tryton", "url": server.url, "database": server.database,
                "password_env": "STOREEDGE_TEST_ERP_PASSWORD", "catalog_refresh_seconds": 1},
    }))
    agent.restore()
    erp = connector_for(server)
    refresh = asyncio.create_task(agent._refresh_catalog())
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://agent") as http:
            async def labels() -> dict:
                return (await http.get("/api/labels")).json()

            async with asyncio.timeout(30):
                while "COLA-330" not in (await labels())["products"]:
                    await asyncio.sleep(0.1)
            assert (await labels())["prices"] == {} and (await labels())["stop_sell"] == []

            [cola] = await erp.call("product.product", "search_read",
                                    [("code", "=", "COLA-330")], 0, 1, None, ["template"])
            await erp.call("product.template", "write", [cola["template"]],
                           {"list_price": {"__class__": "Decimal", "decimal": "4.50"}})
            [chips] = await erp.call("product.product", "search_read",
                                     [("code", "=", "CHIPS-70")], 0, 1, None, ["template"])
            await withdraw(erp, chips["template"])
            async with asyncio.timeout(30):
                while (await labels())["stop_sell"] != ["CHIPS-70"]:
                    await asyncio.sleep(0.1)
            assert (await labels())["prices"] == {"COLA-330": 4.5}

            sale = {"txn_id": "T-1", "ts": 1_764_160_000_000,
                    "lines": [{"sku": "COLA-330", "qty": 1, "unit_price": 3.5},
                              {"sku": "CHIPS-70", "qty": 1, "unit_price": 6.0}]}
            assert (await http.post("/api/pos/transactions",
                                    json=sale)).status_code == 201  # booked as made
            assert agent.counters["pos_price_mismatch"] == 1
            assert agent.counters["pos_stop_sell"] == 1
            assert json.loads(agent.journal.execute(
                "SELECT body FROM sale WHERE txn_id = 'T-1'")[0][0])["lines"][0]["qty"] == 1
    finally:
        refresh.cancel()
        await asyncio.gather(refresh, return_exceptions=True)
        await erp.aclose()
        assert agent.erp is not None and agent.erp_bridge is not None
        await agent.erp.aclose()
        agent.erp_bridge.close()
        agent.store_db.close()
        agent.journal.close()
