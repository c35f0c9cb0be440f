"""Staff sign in within a second, by name and PIN or by scanning a QR card, kept in the journal
and managed by a manager over HTTP (no restart): wrong or stale secrets get the one 401, easy
PINs are refused, guessing is cut off with 429."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.web import create_app

STORE = "st-1"
MANAGER = {"Authorization": "Bearer Mgr-Xq7Lw2Zp-9fK3vT8nQ1rB"}


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[StoreAgent]:
    config = StoreConfig.model_validate({
        "store": {"id": STORE},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"tokens": [{"name": "mei", "role": "manager", "token_env": "T_MEI"}],
                 "sign_in_attempts": 5},
        "zones": [{"id": "drinks"}, {"id": "frozen"}],
    })
    agent = StoreAgent(config)
    agent.restore()
    yield agent
    agent.store_db.close()
    agent.journal.close()


@pytest.fixture
async def http(agent: StoreAgent) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(agent, agent.feed, agent.config.http, agent.registry,
                     environ={"T_MEI": MANAGER["Authorization"].removeprefix("Bearer ")})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://agent") as client:
        yield client


async def test_a_manager_adds_a_person_who_signs_in_by_pin_and_by_qr_card(
        http: httpx.AsyncClient) -> None:
    easy = await http.put("/api/staff/li", json={"zones": ["drinks"], "pin": "1234"},
                          headers=MANAGER)
    assert easy.status_code == 422 and "too easy" in easy.json()["detail"]
    added = await http.put("/api/staff/li", json={"zones": ["drinks"], "pin": "2580"},
                           headers=MANAGER)
    assert added.status_code == 200
    assert added.json() | {"updated_at": 0} == {"name": "li", "role": "staff",
                                                 "zones": ["drinks"], "pin": True, "qr": False,
                                                 "updated_at": 0}
    assert (await http.get("/api/staff")).status_code == 401  # managers only

    signed = await http.post("/api/session", json={"name": "li", "pin": "2580"})
    assert signed.status_code == 200
    assert signed.json() == {"name": "li", "role": "staff", "zones": ["drinks"],
                             "store_id": STORE}
    assert (await http.get("/api/session")).json()["name"] == "li"  # the session cookie
    http.cookies.clear()

    card = (await http.post("/api/staff/li/qr", headers=MANAGER)).json()
    assert card["svg"].startswith("<svg") and card["code"].startswith("se1.")
    assert (await http.post("/api/session", json={"qr": card["code"]})).json()["name"] == "li"
    http.cookies.clear()
    newer = (await http.post("/api/staff/li/qr", headers=MANAGER)).json()
    assert (await http.post("/api/session", json={"qr": card["code"]})).status_code == 401
    assert (await http.post("/api/session", json={"qr": newer["code"]})).status_code == 200
    http.cookies.clear()

    assert (await http.delete("/api/staff/li", headers=MANAGER)).status_code == 204
    assert (await http.post("/api/session", json={"name": "li", "pin": "2580"})).status_code \
        == 401
    assert (await http.post("/api/session", json={"qr": newer["code"]})).status_code == 401
    assert (await http.get("/api/staff", headers=MANAGER)).json() == []
    assert (await http.delete("/api/staff/li", headers=MANAGER)).status_code == 404


async def test_guessing_a_pin_is_cut_off(http: httpx.AsyncClient) -> None:
    await http.put("/api/staff/wang", json={"zones": ["frozen"], "pin": "7391"},
                   headers=MANAGER)
    wrong = [await http.post("/api/session", json={"name": "wang", "pin": f"{n:04d}"})
             for n in (1111, 2222, 3333, 4444, 5555)]
    assert [r.status_code for r in wrong] == [401] * 5
    assert len({r.text for r in wrong}) == 1  # one answer, whatever was wrong
    limited = await http.post("/api/session", json={"name": "wang", "pin": "7391"})
    assert limited.status_code == 429 and "retry-after" in limited.headers
