"""Online orders picked in the store, over HTTP on a real agent: a pick task on the handheld,
units picked for the order are no loss, the hand-over is one sale for the ERP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app

STORE = "cc-1"
T0 = 1_764_160_000.0
UNIT = 350.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[StoreAgent]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  shrink: {window_seconds: 600}\n  low_stock: {enabled: false}\n")
    config = StoreConfig.model_validate({
        "store": {"id": STORE},
        "journal": {"path": str(tmp_path / "journal.db")},
        "inventory": {"settle_seconds": 0},
        "rules": {"file": str(rules)},
        "erp": {"kind": "tryton", "url": "http://127.0.0.1:9/", "password_env": None},
        "catalog": [{"sku": "COLA-330", "unit_grams": UNIT}, {"sku": "CHIPS-70", "unit_grams": 75}],
        "zones": [{"id": "drinks"}],
        "lanes": [{"id": "A1", "sku": "COLA-330", "capacity": 24, "zone": "drinks"}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1"]}],
    })
    agent = StoreAgent(config, clock=Clock())
    agent.restore()
    yield agent
    assert agent.erp is not None and agent.erp_bridge is not None
    await agent.erp.aclose()
    agent.erp_bridge.close()
    agent.store_db.close()
    agent.journal.close()


@pytest.fixture
async def http(agent: StoreAgent) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://agent") as client:
        yield client


def shelf(agent: StoreAgent, units: int) -> None:
    agent.on_batch([(f"store/{STORE}/dev/shelf-1/weight",
                     json.dumps({"lane": "A1", "grams": units * UNIT}).encode())])


ORDER = {"order_id": "WEB-1001", "customer": "Wang Fang",
         "lines": [{"sku": "COLA-330", "qty": 2, "unit_price": 3.5}]}


async def test_an_online_order_is_picked_without_a_loss_and_sold_once(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    shelf(agent, 10)
    assert (await http.post("/api/pickups", json=ORDER)).status_code == 201
    assert (await http.post("/api/pickups", json=ORDER)).status_code == 200  # a replay
    other = {**ORDER, "lines": [{"sku": "COLA-330", "qty": 3, "unit_price": 3.5}]}
    assert (await http.post("/api/pickups", json=other)).status_code == 409
    [task] = [a for a in (await http.get("/api/alerts")).json() if a["rule"] == "click_collect"]
    assert task["subject"] == "WEB-1001" and task["detail"]["zone"] == "drinks"
    assert task["detail"]["lines"] == [{"sku": "COLA-330", "qty": 2, "unit_price": 3.5,
                                        "lane": "A1"}]

    shelf(agent, 8)  # two taken off lane A1 for the order
    picked = await http.post("/api/pickups/WEB-1001/picked")
    assert picked.status_code == 200 and picked.json()["state"] == "picked"
    done = (await http.get(f"/api/alerts/{task['alert_id']}")).json()["alert"]
    assert (done["state"], done["detail"]["outcome"]) == ("resolved", "fixed")
    agent.clock.now += 1200  # the shrink window has passed: the two were explained
    agent.tick()
    assert [a for a in (await http.get("/api/alerts")).json() if a["rule"] == "shrink"] == []

    for _ in range(2):  # pressed twice: one sale
        handed = await http.post("/api/pickups/WEB-1001/handed_over")
        assert handed.status_code == 200 and handed.json()["state"] == "handed_over"
    assert (await http.post("/api/pickups/WEB-1001/cancelled")).status_code == 409
    assert agent.journal.sale_body("pickup:WEB-1001") is not None
    assert agent.erp_bridge is not None
    agent.clock.now += 60
    assert agent.erp_bridge.close_due() == 1
    (key,) = [row["key"] for row in (await http.get("/api/outbox")).json()]
    shown = (await http.get(f"/api/outbox/{key}")).json()
    assert shown["payload"]["lines"] == [["COLA-330", 2]]
    assert shown["payload"]["receipts"] == ["pickup:WEB-1001"]


async def test_units_taken_with_no_order_picked_are_still_a_loss(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    shelf(agent, 10)
    assert (await http.post("/api/pickups", json=ORDER)).status_code == 201
    shelf(agent, 8)
    agent.clock.now += 1200
    agent.tick()
    [loss] = [a for a in (await http.get("/api/alerts")).json() if a["rule"] == "shrink"]
    assert loss["detail"]["units"] == 2
    cancelled = await http.post("/api/pickups/WEB-1001/cancelled")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert [a for a in (await http.get("/api/alerts")).json()
            if a["rule"] == "click_collect"] == []
    assert (await http.post("/api/pickups/NOPE/picked")).status_code == 404
    unknown = {**ORDER, "order_id": "WEB-2", "lines": [{"sku": "NOPE", "qty": 1,
                                                         "unit_price": 1.0}]}
    refused = await http.post("/api/pickups", json=unknown)
    assert refused.status_code == 422 and "NOPE" in refused.json()["detail"]


async def test_a_pick_task_resolved_on_its_card_picks_the_order(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    shelf(agent, 10)
    assert (await http.post("/api/pickups", json=ORDER)).status_code == 201
    [task] = [a for a in (await http.get("/api/alerts")).json() if a["rule"] == "click_collect"]
    shelf(agent, 8)
    resolved = await http.post(f"/api/alerts/{task['alert_id']}/resolve",
                               json={"outcome": "fixed"})
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    [order] = (await http.get("/api/pickups")).json()
    assert order["state"] == "picked"
    agent.clock.now += 1200  # the two that left the shelf were the order's
    agent.tick()
    assert [a for a in (await http.get("/api/alerts")).json() if a["rule"] == "shrink"] == []
