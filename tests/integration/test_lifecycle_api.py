"""The alert lifecycle over HTTP: sign-in, claim, resolve, history, scan and the manager's
summary, with roles and zones, against a real AlertManager journaling into a real SQLite
journal (the way the agent composes them), through httpx's ASGI transport."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud_bridge import counts, orders
from cloud_bridge.bridge import SCHEMAS as ERP_SCHEMAS
from edge_agent import pickups
from edge_agent.config import HttpSection, HttpToken
from edge_agent.journal import Journal
from edge_agent.web import AlertFeed, create_app
from rules.actions import ClearAlert, OpenAlert
from rules.trackers.alerts import Actor, AlertManager, Outcome
from storeedge.errors import PayloadError
from storeedge.events import Alert, PosTransaction, Severity

STORE = "sh-0042"
T0 = 1_764_160_000.0
ZONES = {"A1-3": "drinks", "A1-4": "drinks", "F2-1": "frozen"}
BARCODES = {"COLA-330": "6901234567892", "CHIPS-70": "6909876543210", "ICE-1": "6900000000017"}
SKU_OF = {"A1-3": "COLA-330", "A1-4": "CHIPS-70", "F2-1": "ICE-1"}
STORE_NAME = "朝阳大悦城店"
ZONE_NAMES = {"drinks": "饮料区", "frozen": "冷冻区"}
PRODUCTS = {"COLA-330": "可口可乐 330ml 罐装", "CHIPS-70": "薯片 70克", "ICE-1": "冰淇淋"}
TOKENS = {"T_ANA": ("ana", "staff", ["drinks"]), "T_BO": ("bo", "staff", ["drinks"]),
          "T_CY": ("cy", "staff", ["frozen"]), "T_MEI": ("mei", "manager", ["*"]),
          "T_HQ": ("hq-dash", "hq", ["*"]), "T_POS": ("till-1", "pos", ["*"])}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now



def low_stock(lane: str, sku: str, units: int) -> OpenAlert:
    """What the low-stock rule asks for at ``lane`` (capacity 8, threshold 2)."""
    return OpenAlert(rule="low_stock", subject=lane, severity=Severity.WARNING, sku=sku,
                     location=lane,
                     message=f"{sku} at lane {lane}: {units} left (threshold 2); bring {8 - units}",
                     detail={"units": units, "threshold": 2, "bring": 8 - units})

class JournaledStore:
    """An AgentApi whose alert half is what the agent does: an AlertManager restored from a
    Journal; each transition journaled in one transaction, then streamed."""

    store_id = STORE


    def staff_person(self, name: str) -> None:  # nobody kept in the journal
        return None

    def session_key(self) -> bytes:
        return b"test-session-key"
    def __init__(self, journal: Journal, feed: AlertFeed, clock: Callable[[], float]) -> None:
        self.journal = journal
        self.feed = feed
        self.clock = clock
        self.manager = AlertManager(STORE, claim_within={"low_stock": 300.0}, zones=ZONES)
        self.manager.restore(journal.active_alerts())
        # The store's work on the tables the agent keeps it in (no ERP here: nothing is booked).
        self.work = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        for schema in (*ERP_SCHEMAS, pickups.SCHEMA):
            self.work.executescript(schema)

    def record(self, transitions: list[Alert]) -> list[Alert]:
        if transitions:
            self.journal.record_alerts(
                [(a, json.dumps(a.to_dict(), separators=(",", ":"))) for a in transitions])
            self.feed.publish(transitions)
        return transitions

    def low(self, lane: str, units: int = 1) -> Alert:
        """What the low-stock rule raises for ``lane`` (capacity 8, threshold 2)."""
        [alert] = self.record(self.manager.apply([low_stock(lane, SKU_OF[lane], units)],
                                                 self.clock()))
        return alert

    def clear(self, lane: str) -> list[Alert]:
        action = ClearAlert(rule="low_stock", subject=lane, reason="restocked to 8")
        return self.record(self.manager.apply([action], self.clock()))

    def tick(self) -> list[Alert]:
        return self.record(self.manager.tick(self.clock()))

    # AgentApi

    def accept_pos(self, txn: PosTransaction) -> bool:
        return True

    def alerts(self, state: str | None = None) -> list[Alert]:
        return self.manager.alerts(state)

    def lanes(self) -> list[dict[str, Any]]:
        return []

    def labels(self) -> dict[str, Any]:
        return {"store": STORE_NAME, "zones": ZONE_NAMES, "products": PRODUCTS}

    def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    def alert(self, alert_id: str) -> Alert:
        return self.manager.get(alert_id)

    def alert_history(self, alert_id: str) -> list[Alert]:
        return self.manager.history(alert_id)

    def claim_alert(self, alert_id: str, actor: Actor) -> Alert:
        self.record(self.manager.claim(alert_id, actor, self.clock()))
        return self.manager.get(alert_id)

    def resolve_alert(self, alert_id: str, actor: Actor, outcome: Outcome,
                      note: str | None = None) -> Alert:
        self.record(self.manager.resolve(alert_id, actor, outcome, self.clock(), note))
        return self.manager.get(alert_id)

    def alert_summary(self) -> dict[str, Any]:
        return self.manager.summary(self.clock())

    def confirm_scan(self, code: str, actor: Actor) -> dict[str, Any]:
        match = self.manager.scan(code, actor, self.clock(), BARCODES)
        self.record(list(match.transitions))
        return match.to_dict()

    def orders(self, state: str | None = None) -> list[dict[str, Any]]:
        return orders.orders(self.work, state)

    def order(self, order_id: int) -> dict[str, Any] | None:
        return orders.receipt(self.work, order_id)

    def receive(self, order_id: int, code: str, by: str) -> dict[str, Any] | None:
        sku = next((sku for sku, barcode in BARCODES.items() if barcode == code), None)
        if sku is None:
            raise PayloadError(f"code {code!r} is no product of the catalog", source="receiving")
        return orders.scan(self.work, order_id, sku, by)

    def count_proposals(self, state: str | None = None) -> list[dict[str, Any]]:
        return counts.proposals(self.work, state)

    def pickups(self, state: str | None = None) -> list[dict[str, Any]]:
        return pickups.pickups(self.work, state)


def http_section(port: int = 8080) -> HttpSection:
    return HttpSection(port=port, tokens=[
        HttpToken(name=name, role=role, token_env=env, zones=zones)
        for env, (name, role, zones) in TOKENS.items()])


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for env, (name, _, _) in TOKENS.items():
        monkeypatch.setenv(env, f"S3cret-Of-Xq7Lw2Zp-{name}")


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer S3cret-Of-Xq7Lw2Zp-{name}"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal.db")
    yield journal
    journal.close()


@pytest.fixture
def store(journal: Journal, clock: Clock) -> JournaledStore:
    return JournaledStore(journal, AlertFeed(), clock)


@pytest.fixture
async def client(store: JournaledStore, tokens: None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, store.feed, http_section(), CollectorRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://agent") as c:
        yield c


def journaled(journal: Journal, alert_id: str) -> list[tuple[str, str]]:
    rows = journal.execute("SELECT state, body FROM alert_transition WHERE alert_id = ? "
                           "ORDER BY seq", (alert_id,))
    return [(state, json.loads(body)["detail"]["transition"]) for state, body in rows]


async def test_sign_in_says_who_you_are(client: httpx.AsyncClient) -> None:
    ana = await client.post("/api/session", json={"token": "S3cret-Of-Xq7Lw2Zp-ana"})
    mei = await client.post("/api/session", json={"token": "S3cret-Of-Xq7Lw2Zp-mei"})
    unknown = await client.post("/api/session", json={"token": "S3cret-Of-Xq7Lw2Zp-nobody"})
    empty = await client.post("/api/session", json={})
    till = await client.post("/api/session", json={"token": "S3cret-Of-Xq7Lw2Zp-till-1"})

    assert ana.json() == {"name": "ana", "role": "staff", "zones": ["drinks"],
                          "store_id": STORE}
    assert (mei.json()["role"], mei.json()["zones"]) == ("manager", ["*"])
    # One answer for every token that signs nobody in: a till's token is not confirmed.
    assert [r.status_code for r in (unknown, empty, till)] == [401, 401, 401]
    assert unknown.json() == till.json()


async def test_open_development_mode_signs_everyone_in_as_a_manager(
    store: JournaledStore,
) -> None:
    app = create_app(store, store.feed, HttpSection(), CollectorRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://agent") as c:
        me = (await c.post("/api/session", json={})).json()
        alert = store.low("F2-1")
        resolved = await c.post(f"/api/alerts/{alert.alert_id}/resolve",
                                json={"outcome": "counted"})

    assert (me["name"], me["role"]) == ("anonymous", "manager")
    assert resolved.json()["state"] == "resolved"


async def test_claim_resolve_and_history_are_journaled(
    client: httpx.AsyncClient, store: JournaledStore, clock: Clock,
) -> None:
    alert = store.low("A1-3")
    clock.now += 45
    claimed = await client.post(f"/api/alerts/{alert.alert_id}/claim", headers=auth("ana"))
    clock.now += 120
    resolved = await client.post(f"/api/alerts/{alert.alert_id}/resolve", headers=auth("ana"),
                                 json={"outcome": "restocked", "note": "two cases"})
    detail = await client.get(f"/api/alerts/{alert.alert_id}", headers=auth("bo"))

    assert claimed.status_code == 200
    assert (claimed.json()["state"], claimed.json()["detail"]["claimed_by"]) == ("claimed", "ana")
    assert resolved.json()["detail"] | {"outcome": "restocked", "note": "two cases",
                                        "resolved_by": "ana", "resolved_at": T0 + 165} == \
        resolved.json()["detail"]
    assert detail.json()["alert"] == resolved.json()
    assert [h["state"] for h in detail.json()["history"]] == ["open", "claimed", "resolved"]
    assert journaled(store.journal, alert.alert_id) == [
        ("open", "opened"), ("claimed", "claimed"), ("resolved", "resolved")]
    assert (await client.get("/api/alerts", headers=auth("ana"))).json() == []


async def test_staff_cannot_see_or_act_on_another_zones_task(
    client: httpx.AsyncClient, store: JournaledStore,
) -> None:
    frozen = store.low("F2-1")
    drinks = store.low("A1-3")

    listed = await client.get("/api/alerts", headers=auth("ana"))
    read = await client.get(f"/api/alerts/{frozen.alert_id}", headers=auth("ana"))
    claim = await client.post(f"/api/alerts/{frozen.alert_id}/claim", headers=auth("ana"))
    await client.post(f"/api/alerts/{frozen.alert_id}/claim", headers=auth("cy"))
    resolve = await client.post(f"/api/alerts/{frozen.alert_id}/resolve", headers=auth("ana"),
                                json={"outcome": "false_alarm"})

    assert [a["alert_id"] for a in listed.json()] == [drinks.alert_id]
    assert [r.status_code for r in (read, claim, resolve)] == [403, 403, 403]
    assert "zone frozen" in claim.json()["detail"]
    assert store.manager.get(frozen.alert_id).detail["claimed_by"] == "cy"
    # Someone else's claim in one's own zone is theirs to resolve (or a manager's).
    await client.post(f"/api/alerts/{drinks.alert_id}/claim", headers=auth("ana"))
    bo = await client.post(f"/api/alerts/{drinks.alert_id}/resolve", headers=auth("bo"),
                           json={"outcome": "restocked"})
    mei = await client.post(f"/api/alerts/{drinks.alert_id}/resolve", headers=auth("mei"),
                            json={"outcome": "restocked"})
    assert (bo.status_code, mei.status_code) == (403, 200)


async def test_illegal_transitions_are_409(
    client: httpx.AsyncClient, store: JournaledStore,
) -> None:
    alert = store.low("A1-3")
    staff_resolves_unclaimed = await client.post(
        f"/api/alerts/{alert.alert_id}/resolve", headers=auth("ana"), json={"outcome": "counted"})
    await client.post(f"/api/alerts/{alert.alert_id}/claim", headers=auth("ana"))
    again_by_ana = await client.post(f"/api/alerts/{alert.alert_id}/claim", headers=auth("ana"))
    by_bo = await client.post(f"/api/alerts/{alert.alert_id}/claim", headers=auth("bo"))
    await client.post(f"/api/alerts/{alert.alert_id}/resolve", headers=auth("ana"),
                      json={"outcome": "counted"})
    claim_resolved = await client.post(f"/api/alerts/{alert.alert_id}/claim",
                                       headers=auth("mei"))
    resolve_resolved = await client.post(f"/api/alerts/{alert.alert_id}/resolve",
                                         headers=auth("mei"), json={"outcome": "counted"})
    missing = await client.post("/api/alerts/nope/claim", headers=auth("mei"))
    bad_outcome = await client.post(f"/api/alerts/{alert.alert_id}/resolve",
                                    headers=auth("mei"), json={"outcome": "done"})

    assert [r.status_code for r in (staff_resolves_unclaimed, by_bo, claim_resolved,
                                    resolve_resolved)] == [409, 409, 409, 409]
    assert "claim it first" in staff_resolves_unclaimed.json()["detail"]
    assert (again_by_ana.status_code, again_by_ana.json()["state"]) == (200, "claimed")
    assert (missing.status_code, bad_outcome.status_code) == (404, 422)
    # The retried claim and the refused requests left nothing in the journal.
    assert [t for _, t in journaled(store.journal, alert.alert_id)] == [
        "opened", "claimed", "resolved"]


@pytest.mark.parametrize(("method", "path", "who", "code"), [
    ("POST", "/api/alerts/{id}/claim", None, 401),
    ("POST", "/api/alerts/{id}/claim", "nobody", 401),
    ("POST", "/api/alerts/{id}/claim", "till-1", 403),
    ("POST", "/api/alerts/{id}/claim", "hq-dash", 403),
    ("GET", "/api/alerts/{id}", "hq-dash", 200),
    ("GET", "/api/manager/summary", "ana", 403),
    ("GET", "/api/manager/summary", None, 401),
    ("GET", "/api/manager/summary", "hq-dash", 200),
    ("GET", "/api/manager/summary", "mei", 200),
    ("POST", "/api/scan", "hq-dash", 403),
])
async def test_roles(client: httpx.AsyncClient, store: JournaledStore, method: str, path: str,
                     who: str | None, code: int) -> None:
    alert = store.low("A1-3")
    body = {"code": "6901234567892"} if path == "/api/scan" else None
    response = await client.request(method, path.format(id=alert.alert_id), json=body,
                                    headers=auth(who) if who else {})
    assert response.status_code == code


async def test_scan_confirms_the_product_and_claims_the_task(
    client: httpx.AsyncClient, store: JournaledStore,
) -> None:
    cola = store.low("A1-3")
    store.low("F2-1")

    hit = await client.post("/api/scan", headers=auth("ana"), json={"code": "6901234567892"})
    other_zone = await client.post("/api/scan", headers=auth("ana"),
                                   json={"code": "6900000000017"})
    unknown = await client.post("/api/scan", headers=auth("ana"), json={"code": "123"})
    empty = await client.post("/api/scan", headers=auth("ana"), json={"code": ""})

    assert hit.json() | {"matched": True, "lane": "A1-3", "sku": "COLA-330", "bring": 7} == \
        hit.json()
    assert hit.json()["alert"]["detail"]["confirmed_by"] == "ana"
    assert store.manager.get(cola.alert_id).detail["claimed_by"] == "ana"
    assert (other_zone.json()["matched"], unknown.json()["reason"]) == (False, "unknown code")
    assert empty.status_code == 422


async def test_summary_shows_times_and_who_did_what(
    client: httpx.AsyncClient, store: JournaledStore, clock: Clock,
) -> None:
    a = store.low("A1-3")
    store.low("F2-1")
    clock.now += 60
    await client.post(f"/api/alerts/{a.alert_id}/claim", headers=auth("bo"))
    clock.now += 240
    await client.post(f"/api/alerts/{a.alert_id}/resolve", headers=auth("bo"),
                      json={"outcome": "restocked"})
    clock.now += 1
    escalated = store.tick()

    s = (await client.get("/api/manager/summary", headers=auth("mei"))).json()

    assert [e.subject for e in escalated] == ["F2-1"]
    assert [(o["subject"], o["state"], o["age_s"]) for o in s["open"]] == [
        ("F2-1", "escalated", 301.0)]
    assert s["rules"]["low_stock"]["to_claim_s"]["median"] == 60.0
    assert s["rules"]["low_stock"]["to_resolve_s"]["median"] == 300.0
    assert s["people"] == {"bo": {"claimed": 1, "confirmed": 0, "resolved": 1,
                                  "outcomes": {"restocked": 1}}}


async def test_a_restarted_store_keeps_open_alerts_and_their_claims(
    client: httpx.AsyncClient, store: JournaledStore, journal: Journal, clock: Clock,
) -> None:
    a = store.low("A1-3")
    b = store.low("A1-4")
    await client.post(f"/api/alerts/{a.alert_id}/claim", headers=auth("ana"))
    store.clear("A1-4")

    again = JournaledStore(journal, AlertFeed(), clock)

    assert [x.alert_id for x in again.alerts()] == [a.alert_id]
    assert again.alert(a.alert_id).detail["claimed_by"] == "ana"
    assert again.manager.apply([low_stock("A1-3", "COLA-330", 1)], clock()) == []
    assert b.alert_id not in {x.alert_id for x in again.alerts()}
