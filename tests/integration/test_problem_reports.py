"""Problem reports from the handheld, over HTTP on a real agent: an alert for the manager with
its category's target, escalated when nobody claims it in time, its photo kept and served."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app

STORE = "pr-1"
PNG = base64.b64decode(  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


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
        "problems": {"targets_minutes": {"wrong_price_or_label": 10}},
        "catalog": [{"sku": "COLA-330", "unit_grams": 350}],
        "zones": [{"id": "drinks"}],
        "lanes": [{"id": "A1", "sku": "COLA-330", "capacity": 24, "zone": "drinks"}],
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


async def test_a_report_is_the_managers_task_and_escalates_when_its_target_is_missed(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    sent = await http.post("/api/problems", json={
        "category": "wrong_price_or_label", "priority": "high", "location": "A1",
        "text": "shelf label says 3.00, till charges 3.50",
        "photo": base64.b64encode(PNG).decode()})
    assert sent.status_code == 201, sent.text
    alert = sent.json()
    assert (alert["rule"], alert["state"], alert["severity"]) == ("problem", "open", "critical")
    d = alert["detail"]
    assert (d["route"], d["zone"], d["category"], d["photo"]) == (
        "manager", "drinks", "wrong_price_or_label", True)
    assert d["claim_within_s"] == 300  # 10 minutes, halved for high priority
    photo = await http.get(f"/api/problems/{alert['subject']}/photo")
    assert photo.status_code == 200 and photo.content == PNG
    assert photo.headers["content-type"] == "image/png"

    agent.clock.now += 299
    agent.tick()
    assert (await http.get(f"/api/alerts/{alert['alert_id']}")).json()["alert"]["state"] == "open"
    agent.clock.now += 2
    agent.tick()
    late = (await http.get(f"/api/alerts/{alert['alert_id']}")).json()["alert"]
    assert late["state"] == "escalated" and late["detail"]["escalated"] is True
    agent.tick()  # escalated once
    history = (await http.get(f"/api/alerts/{alert['alert_id']}")).json()["history"]
    assert [h["detail"]["transition"] for h in history] == ["opened", "escalated"]
    assert (await http.post(f"/api/alerts/{alert['alert_id']}/claim")).status_code == 200
    done = await http.post(f"/api/alerts/{alert['alert_id']}/resolve",
                           json={"outcome": "fixed", "note": "label replaced"})
    assert done.status_code == 200 and done.json()["state"] == "resolved"


async def test_a_bad_report_is_refused_naming_what_is_wrong_and_keeps_nothing(
        agent: StoreAgent, http: httpx.AsyncClient) -> None:
    not_image = await http.post("/api/problems", json={
        "category": "device_broken", "text": "scanner dead",
        "photo": base64.b64encode(b"GIF89a not ours").decode()})
    assert not_image.status_code == 422 and "JPEG, PNG or WebP" in not_image.json()["detail"]
    not_base64 = await http.post("/api/problems", json={
        "category": "device_broken", "text": "scanner dead", "photo": "%%%"})
    assert not_base64.status_code == 422 and "base64" in not_base64.json()["detail"]
    unknown = await http.post("/api/problems", json={"category": "aliens", "text": "x"})
    assert unknown.status_code == 422
    assert (await http.get("/api/alerts")).json() == []
    assert (await http.get("/api/problems/P-nope/photo")).status_code == 404
