"""A stock task resolved as restocked is checked against the shelf: it opens again when the
lane's count did not rise in time, and stays closed when it did."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app

STORE = "rv-1"
UNIT = 350.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_160_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[StoreAgent]:
    config = StoreConfig.model_validate({
        "store": {"id": STORE},
        "journal": {"path": str(tmp_path / "journal.db")},
        "inventory": {"settle_seconds": 0, "verify_restock_seconds": 120},
        "catalog": [{"sku": "COLA-330", "unit_grams": UNIT}],
        "lanes": [{"id": "A1", "sku": "COLA-330", "capacity": 24, "low_stock": 4}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1"]}],
    })
    agent = StoreAgent(config, clock=Clock())
    agent.restore()
    yield agent
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


async def restocked(agent: StoreAgent, http: httpx.AsyncClient) -> str:
    shelf(agent, 10)
    shelf(agent, 3)
    [task] = (await http.get("/api/alerts")).json()
    assert (task["rule"], task["detail"]["units"]) == ("low_stock", 3)
    assert (await http.post(f"/api/alerts/{task['alert_id']}/claim")).status_code == 200
    done = await http.post(f"/api/alerts/{task['alert_id']}/resolve",
                           json={"outcome": "restocked"})
    assert done.status_code == 200 and done.json()["state"] == "resolved"
    return task["alert_id"]


async def test_a_restock_the_shelf_does_not_show_opens_the_task_again(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    first = await restocked(agent, http)
    agent.clock.now += 60
    agent.tick()
    assert (await http.get("/api/alerts")).json() == []  # still within the time allowed
    agent.clock.now += 61
    agent.tick()
    [again] = (await http.get("/api/alerts")).json()
    assert (again["rule"], again["subject"], again["state"]) == ("low_stock", "A1", "open")
    assert again["alert_id"] != first and again["detail"]["reopened_from"] == first
    assert again["detail"]["restock_unverified"] is True and again["detail"]["units"] == 3
    shelf(agent, 20)  # now it is restocked: the rule clears the task
    cleared = (await http.get(f"/api/alerts/{again['alert_id']}")).json()["alert"]
    assert cleared["state"] == "cleared"


async def test_a_restock_the_shelf_shows_is_trusted(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    await restocked(agent, http)
    shelf(agent, 12)
    agent.clock.now += 600
    agent.tick()
    assert (await http.get("/api/alerts")).json() == []
