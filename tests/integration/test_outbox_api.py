"""The ERP outbox seen over HTTP on a real agent: a full backlog refuses POS sales with 503
(and records nothing of them), and a manager operates the dead letter under /api/outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app

STORE = "outbox-1"
T0 = 1_764_160_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def write(agent: StoreAgent, sql: str) -> None:
    """What the ERP side or an operator did to the outbox, on a connection of the test's own."""
    with sqlite3.connect(agent.config.journal.path) as conn:
        conn.execute(sql)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[StoreAgent]:
    config = StoreConfig.model_validate({
        "store": {"id": STORE},
        "journal": {"path": str(tmp_path / "journal.db")},
        # an ERP nobody delivers to in this test: the agent's run loop is not started
        "erp": {"kind": "tryton", "url": "http://127.0.0.1:9/", "password_env": None,
                "outbox_max_items": 100},
        "catalog": [{"sku": "COLA-330", "unit_grams": 350}, {"sku": "CHIPS-70", "unit_grams": 75}],
    })
    agent = StoreAgent(config, clock=Clock())
    agent.restore()
    yield agent
    assert agent.erp is not None and agent.erp_bridge is not None
    await agent.erp.aclose()
    agent.erp_bridge.close()
    agent.journal.close()


@pytest.fixture
async def client(agent: StoreAgent) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://agent") as client:
        yield client


def sale(txn_id: str) -> dict[str, object]:
    return {"txn_id": txn_id, "ts": 1_764_160_000_000,
            "lines": [{"sku": "COLA-330", "qty": 1, "unit_price": 3.5},
                      {"sku": "CHIPS-70", "qty": 2, "unit_price": 6.0}]}


async def test_a_full_outbox_refuses_sales_with_503_and_records_nothing(
        agent: StoreAgent, client: httpx.AsyncClient) -> None:
    for i in range(50):  # two lines each: 100 items, the bound
        assert (await client.post("/api/pos/transactions", json=sale(f"T-{i}"))).status_code == 201
    refused = await client.post("/api/pos/transactions", json=sale("T-full"))
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "60"
    assert "outbox is full (100 of 100 items" in refused.json()["detail"]
    assert "new sales are refused" in refused.json()["detail"]
    assert agent.journal.execute("SELECT COUNT(*) FROM sale WHERE txn_id = 'T-full'") == [(0,)]
    # the POS posts it again once the ERP has taken the backlog (here: the window closed and
    # its command delivered)
    assert agent.erp_bridge is not None
    agent.clock.now += 60
    assert agent.erp_bridge.close_due() == 1
    write(agent, "UPDATE outbox SET state = 'delivered'")
    assert (await client.post("/api/pos/transactions", json=sale("T-full"))).status_code == 201


async def test_a_manager_lists_shows_retries_and_drops_dead_commands(
        agent: StoreAgent, client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/pos/transactions", json=sale("T-1"))).status_code == 201
    assert agent.erp_bridge is not None
    agent.clock.now += 60
    assert agent.erp_bridge.close_due() == 1
    (key,) = [row["key"] for row in (await client.get("/api/outbox")).json()]
    assert key.startswith(f"{STORE}:sales:")
    shown = (await client.get(f"/api/outbox/{key}")).json()
    assert shown["payload"]["receipts"] == ["T-1"]
    assert shown["payload"]["lines"] == [["CHIPS-70", 2], ["COLA-330", 1]]
    assert (await client.post(f"/api/outbox/{key}/retry")).status_code == 409  # pending
    assert (await client.delete(f"/api/outbox/{key}")).status_code == 409  # never dropped
    write(agent, "UPDATE outbox SET state = 'rejected', last_error = 'rejected: x'")
    assert [r["key"] for r in (await client.get("/api/outbox?state=rejected")).json()] == [key]
    assert 'storeedge_outbox_dead{store="outbox-1"} 1.0' in generate_latest(
        agent.registry).decode()
    retried = await client.post(f"/api/outbox/{key}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    write(agent, "UPDATE outbox SET state = 'rejected'")
    dropped = await client.delete(f"/api/outbox/{key}")
    assert dropped.status_code == 200 and dropped.json()["key"] == key
    assert (await client.get(f"/api/outbox/{key}")).status_code == 404


async def test_a_command_in_the_dead_letter_is_a_manager_alert_until_it_is_dealt_with(
        agent: StoreAgent, client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/pos/transactions", json=sale("T-1"))).status_code == 201
    assert agent.erp_bridge is not None
    agent.clock.now += 60
    assert agent.erp_bridge.close_due() == 1
    write(agent, "UPDATE outbox SET state = 'rejected', last_error = 'rejected: no such SKU'")
    agent.watch_dead_letter()

    (alert,) = [a for a in (await client.get("/api/alerts")).json()
                if a["rule"] == "erp_dead_letter"]
    assert alert["state"] == "open" and alert["severity"] == "critical"
    assert alert["detail"]["dead"] == 1 and alert["detail"]["route"] == "manager"
    assert "rejected: no such SKU" in alert["message"]
    agent.watch_dead_letter()  # nothing changed: not told again
    history = (await client.get(f"/api/alerts/{alert['alert_id']}")).json()["history"]
    assert [h["detail"]["transition"] for h in history] == ["opened"]

    (key,) = [row["key"] for row in (await client.get("/api/outbox?state=rejected")).json()]
    assert (await client.post(f"/api/outbox/{key}/retry")).status_code == 200
    agent.watch_dead_letter()
    latest = (await client.get(f"/api/alerts/{alert['alert_id']}")).json()["alert"]
    assert latest["state"] == "cleared"


async def test_a_return_at_the_till_is_a_negative_line_the_erp_window_nets(
        agent: StoreAgent, client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/pos/transactions", json=sale("T-1"))).status_code == 201
    back = {"txn_id": "R-1", "ts": 1_764_160_000_000,
            "lines": [{"sku": "COLA-330", "qty": -1, "unit_price": 3.5},
                      {"sku": "CHIPS-70", "qty": -3, "unit_price": 6.0}]}
    assert (await client.post("/api/pos/transactions", json=back)).status_code == 201
    assert agent.erp_bridge is not None
    agent.clock.now += 60
    assert agent.erp_bridge.close_due() == 1
    (key,) = [row["key"] for row in (await client.get("/api/outbox")).json()]
    shown = (await client.get(f"/api/outbox/{key}")).json()
    assert shown["payload"]["lines"] == [["CHIPS-70", -1]]  # COLA nets to 0: no move
    assert shown["payload"]["receipts"] == ["T-1", "R-1"]
    assert agent.counters["sold_units"] == -1
