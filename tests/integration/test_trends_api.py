"""The manager's trends from the store's own journal: sales and alerts per hour in the store's
time zone, time to claim, lane counts sampled over time, exported as CSV and XLSX."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook

from edge_agent import trends
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app

STORE = "tr-1"
T0 = 1_764_316_800.0  # 2025-11-28 16:00 in Beijing (08:00 UTC)
UNIT = 350.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[StoreAgent]:
    config = StoreConfig.model_validate({
        "store": {"id": STORE, "timezone": "Asia/Shanghai"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "inventory": {"settle_seconds": 0},
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


def sale(txn: str, qty: int) -> dict[str, object]:
    return {"txn_id": txn, "ts": 1_764_160_000_000,
            "lines": [{"sku": "COLA-330", "qty": qty, "unit_price": 3.5}]}


async def test_the_trends_of_the_last_hours_come_from_the_journal(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    shelf = f"store/{STORE}/dev/shelf-1/weight"
    agent.on_batch([(shelf, json.dumps({"lane": "A1", "grams": 10 * UNIT}).encode())])
    trends.record(agent.store_db, [("A1", 10)], agent.clock())
    assert (await http.post("/api/pos/transactions", json=sale("T-1", 2))).status_code == 201
    agent.clock.now += 3600  # 17:00 in Beijing
    assert (await http.post("/api/pos/transactions", json=sale("T-2", 5))).status_code == 201
    agent.on_batch([(shelf, json.dumps({"lane": "A1", "grams": 3 * UNIT}).encode())])
    trends.record(agent.store_db, [("A1", 3)], agent.clock())
    [task] = [a for a in (await http.get("/api/alerts")).json() if a["rule"] == "low_stock"]
    agent.clock.now += 90
    assert (await http.post(f"/api/alerts/{task['alert_id']}/claim")).status_code == 200

    got = (await http.get("/api/trends", params={"hours": 3})).json()
    assert got["sales_per_hour"] == [
        {"hour": "2025-11-28T16:00", "units": 2, "amount": 7.0},
        {"hour": "2025-11-28T17:00", "units": 5, "amount": 17.5}]
    assert [{"hour": h["hour"], "low_stock": h["low_stock"]} for h in got["alerts_per_hour"]] == [
        {"hour": "2025-11-28T17:00", "low_stock": 1}]
    assert got["time_to_claim_s"] == {"low_stock": {"claims": 1, "median": 90.0, "max": 90.0}}
    assert got["stock"] == {"A1": [[T0, 10], [T0 + 3600, 3]]}
    assert got["devices_offline"] == [] and got["open_problems"] == []
    assert (await http.get("/api/trends", params={"hours": 0.01})).json()["sales_per_hour"] == []

    text = (await http.get("/api/trends/sales_per_hour.csv", params={"hours": 3})).text
    assert list(csv.DictReader(io.StringIO(text))) == [
        {"hour": "2025-11-28T16:00", "amount": "7.0", "units": "2"},
        {"hour": "2025-11-28T17:00", "amount": "17.5", "units": "5"}]
    book = load_workbook(io.BytesIO(
        (await http.get("/api/trends/alerts_per_hour.xlsx", params={"hours": 3})).content))
    rows = [list(r) for r in book.active.iter_rows(values_only=True)]
    column = rows[0].index("low_stock")
    assert rows[0][0] == "hour" and [(r[0], r[column]) for r in rows[1:]] == [
        ("2025-11-28T17:00", 1)]
    assert (await http.get("/api/trends", params={"hours": -1})).status_code == 422
