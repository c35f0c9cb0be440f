"""The web app over a dict-backed AgentApi, through httpx's ASGI transport (no sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from cloud_bridge.outbox import Outbox
from edge_agent.config import HttpSection, HttpToken
from edge_agent.web import RESYNC, AlertFeed, create_app
from storeedge.errors import ConfigError, PayloadError
from storeedge.events import Alert, AlertState, PosTransaction, Severity

STORE = "sh-0042"


class FakeAgent:
    """Accepts each txn id once, knows two SKUs, holds alerts and health in dicts."""

    store_id = STORE


    def staff_person(self, name: str) -> None:  # nobody kept in the journal
        return None

    def session_key(self) -> bytes:
        return b"test-session-key"
    def __init__(self) -> None:
        self.skus = {"COLA-330", "CHIPS-70"}
        self.accepted: dict[str, PosTransaction] = {}
        self.latest: dict[str, Alert] = {}
        self.status: dict[str, Any] = {"status": "ok", "broker": "connected"}
        self._outboxes = threading.local()

    @property
    def outbox(self) -> Outbox:
        """A real, empty ERP outbox for the manager's routes; SQLite wants one per thread, and
        some test clients serve the app from another."""
        if not hasattr(self._outboxes, "outbox"):
            self._outboxes.outbox = Outbox(":memory:")
        return self._outboxes.outbox

    def accept_pos(self, txn: PosTransaction) -> bool:
        for i, line in enumerate(txn.lines):
            if line.sku not in self.skus:
                raise PayloadError(f"lines.{i}.sku: unknown sku {line.sku!r}", source=txn.source)
        if txn.txn_id in self.accepted:
            return False
        self.accepted[txn.txn_id] = txn
        return True

    def alerts(self, state: str | None = None) -> list[Alert]:
        found = sorted(self.latest.values(), key=lambda a: a.received_ts, reverse=True)
        return [a for a in found if state is None or a.state == state]

    def lanes(self) -> list[dict[str, Any]]:
        return [{"id": "A1-3", "sku": "COLA-330", "units": 4, "grams": 1340.0, "stable": True,
                 "capacity": 20, "low_stock": 2}]

    def labels(self) -> dict[str, Any]:
        return {"store": "朝阳大悦城店", "zones": {"drinks": "饮料区"},
                "products": {"COLA-330": "可乐 330ml"}}

    def health(self) -> dict[str, Any]:
        return dict(self.status)

    def record(self, alert: Alert) -> Alert:
        self.latest[alert.alert_id] = alert
        return alert


def make_alert(alert_id: str, state: AlertState = AlertState.OPEN,
               severity: Severity = Severity.WARNING) -> Alert:
    return Alert(store_id=STORE, source="rules", received_ts=time.time(), alert_id=alert_id,
                 rule="low_stock", severity=severity, subject="A1-3",
                 message="可乐 330ml 剩 1 件", state=state, sku="COLA-330", location="A1-3")


def txn(txn_id: str = "T-1", **changes: Any) -> dict[str, Any]:
    body = {"txn_id": txn_id, "ts": 1_764_160_000_123,
            "lines": [{"sku": "COLA-330", "qty": 2, "unit_price": 3.5},
                      {"sku": "CHIPS-70", "qty": 1, "unit_price": 6.0}]}
    body.update(changes)
    return body


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def feed() -> AlertFeed:
    return AlertFeed()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def client_for(agent: FakeAgent, feed: AlertFeed, registry: CollectorRegistry,
               http: HttpSection | None = None) -> httpx.AsyncClient:
    app = create_app(agent, feed, http or HttpSection(), registry)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent")


@pytest.fixture
async def client(agent: FakeAgent, feed: AlertFeed,
                 registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(agent, feed, registry) as c:
        yield c


# POS intake


async def test_pos_transaction_accepted_then_replay_is_duplicate(
    client: httpx.AsyncClient, agent: FakeAgent, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="storeedge.audit"):
        first = await client.post("/api/pos/transactions", json=txn())
        again = await client.post("/api/pos/transactions", json=txn())

    assert first.status_code == 201
    assert first.json() == {"txn_id": "T-1", "accepted": True, "duplicate": False}
    assert again.status_code == 200
    assert again.json() == {"txn_id": "T-1", "accepted": True, "duplicate": True}
    event = agent.accepted["T-1"]
    assert (event.store_id, event.source, event.device_ts) == (STORE, "pos", 1_764_160_000.123)
    assert [(x.sku, x.qty, x.unit_price) for x in event.lines] == [
        ("COLA-330", 2, 3.5), ("CHIPS-70", 1, 6.0)]
    assert abs(event.received_ts - time.time()) < 5
    audit = [r for r in caplog.records if r.name == "storeedge.audit"]
    assert len(audit) == 2
    assert all("T-1" in r.getMessage() and "anonymous" in r.getMessage() for r in audit)


@pytest.mark.parametrize(("changes", "loc"), [
    ({"txn_id": ""}, ["body", "txn_id"]),
    ({"txn_id": "x" * 65}, ["body", "txn_id"]),
    ({"ts": "yesterday"}, ["body", "ts"]),
    ({"ts": 1.5}, ["body", "ts"]),
    ({"lines": []}, ["body", "lines"]),
    ({"lines": [{"sku": "COLA-330", "qty": 1, "unit_price": 1.0}] * 501}, ["body", "lines"]),
    ({"lines": [{"sku": "COLA-330", "qty": 1, "unit_price": 1.0},
                {"sku": "CHIPS-70", "qty": 0, "unit_price": 1.0}]}, ["body", "lines", 1, "qty"]),
    ({"lines": [{"sku": "COLA-330", "qty": True, "unit_price": 1.0}]},
     ["body", "lines", 0, "qty"]),
    ({"lines": [{"sku": "COLA-330", "qty": 1, "unit_price": -0.01}]},
     ["body", "lines", 0, "unit_price"]),
    ({"lines": [{"sku": "COLA-330", "qty": 1}]}, ["body", "lines", 0, "unit_price"]),
])
async def test_pos_schema_errors_name_the_field(
    client: httpx.AsyncClient, agent: FakeAgent, changes: dict[str, Any], loc: list[Any],
) -> None:
    response = await client.post("/api/pos/transactions", json=txn(**changes))

    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert agent.accepted == {}


@pytest.mark.parametrize(("content", "headers"), [
    (b'{"txn_id": "T-1", "ts": ', {"content-type": "application/json"}),
    (b"", {"content-type": "application/json"}),
    (b"\xff\xfe\x00garbage", {"content-type": "application/json"}),
    (b'[1, 2, 3]', {"content-type": "application/json"}),
    # Python's JSON parser lets these through; echoing them back must not fail.
    (b'{"txn_id": "T-1", "ts": NaN, "lines": []}', {"content-type": "application/json"}),
    (b'{"txn_id": "T-1", "ts": 1, "lines": [{"sku": "COLA-330", "qty": 1, '
     b'"unit_price": -Infinity}]}', {"content-type": "application/json"}),
    (b"Infinity", {"content-type": "application/json"}),
    (b"txn_id=T-1", {"content-type": "application/x-www-form-urlencoded"}),
    (b'{"txn_id": "T-1"}', {"content-type": "text/plain"}),
])
async def test_malformed_body_is_a_client_error(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str],
) -> None:
    response = await client.post("/api/pos/transactions", content=content, headers=headers)

    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]


async def test_payload_error_from_agent_is_422_with_its_message(
    client: httpx.AsyncClient, agent: FakeAgent,
) -> None:
    body = txn(lines=[{"sku": "COLA-330", "qty": 1, "unit_price": 3.5},
                      {"sku": "GHOST-1", "qty": 1, "unit_price": 1.0}])

    response = await client.post("/api/pos/transactions", json=body)

    assert response.status_code == 422
    assert response.json() == {"detail": "pos: lines.1.sku: unknown sku 'GHOST-1'"}
    assert agent.accepted == {}


# Tokens and roles


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> HttpSection:
    for env, value in [("T_POS", "pos-S3cret-Xq7Lw2Zp9k"), ("T_STAFF", "staff-S3cret-Xq7Lw2Zp9k"),
                       ("T_HQ", "hq-S3cret-Xq7Lw2Zp9k")]:
        monkeypatch.setenv(env, value)
    return HttpSection(tokens=[
        HttpToken(name="till-1", role="pos", token_env="T_POS"),
        HttpToken(name="handheld-1", role="staff", token_env="T_STAFF"),
        HttpToken(name="hq-dash", role="hq", token_env="T_HQ"),
    ])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("method", "path", "token", "expected"), [
    ("POST", "/api/pos/transactions", None, 401),
    ("POST", "/api/pos/transactions", "wrong", 401),
    ("POST", "/api/pos/transactions", "staff-S3cret-Xq7Lw2Zp9k", 403),
    ("POST", "/api/pos/transactions", "pos-S3cret-Xq7Lw2Zp9k", 201),
    ("GET", "/api/alerts", None, 401),
    ("GET", "/api/alerts", "pos-S3cret-Xq7Lw2Zp9k-but-longer", 401),
    ("GET", "/api/alerts", "pos-S3cret-Xq7Lw2Zp9k", 403),
    ("GET", "/api/alerts", "staff-S3cret-Xq7Lw2Zp9k", 200),
    ("GET", "/api/alerts", "hq-S3cret-Xq7Lw2Zp9k", 200),
    ("GET", "/api/lanes", "pos-S3cret-Xq7Lw2Zp9k", 403),
    ("GET", "/api/lanes", "staff-S3cret-Xq7Lw2Zp9k", 200),
    ("GET", "/healthz", None, 200),
    ("GET", "/", None, 200),
])
async def test_token_roles(
    agent: FakeAgent, feed: AlertFeed, registry: CollectorRegistry, tokens: HttpSection,
    method: str, path: str, token: str | None, expected: int,
) -> None:
    async with client_for(agent, feed, registry, tokens) as client:
        response = await client.request(method, path, headers=bearer(token) if token else {},
                                        json=txn() if method == "POST" else None)

    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_audit_line_names_the_token(
    agent: FakeAgent, feed: AlertFeed, registry: CollectorRegistry, tokens: HttpSection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="storeedge.audit"):
        async with client_for(agent, feed, registry, tokens) as client:
            await client.post("/api/pos/transactions", json=txn(),
                              headers=bearer("pos-S3cret-Xq7Lw2Zp9k"))

    [line] = [r.getMessage() for r in caplog.records if r.name == "storeedge.audit"]
    assert "till-1" in line and "T-1" in line


async def test_stream_takes_the_session_cookie_never_a_query_token(
    agent: FakeAgent, feed: AlertFeed, registry: CollectorRegistry, tokens: HttpSection,
) -> None:
    feed.close()  # the stream sends its snapshot and ends
    async with client_for(agent, feed, registry, tokens) as client:
        by_query = await client.get("/api/alerts/stream?token=staff-S3cret-Xq7Lw2Zp9k")
        signed_in = await client.post("/api/session", json={"token": "staff-S3cret-Xq7Lw2Zp9k"})
        stream = await client.get("/api/alerts/stream")  # the cookie signing in set
        await client.delete("/api/session")
        signed_out = await client.get("/api/alerts/stream")

    assert by_query.status_code == 401
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain HTTP here: a Secure cookie would never come back
    assert "S3cret" not in signed_in.headers["set-cookie"]  # a session id, not the token
    assert stream.status_code == 200
    assert signed_out.status_code == 401


def test_a_token_whose_variable_is_unset_refuses_to_start(
    agent: FakeAgent, feed: AlertFeed, registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("T_MISSING", raising=False)
    http = HttpSection(tokens=[HttpToken(name="till-1", role="pos", token_env="T_MISSING")])

    with pytest.raises(ConfigError, match=r"http\.tokens\.0\.token_env: .*T_MISSING"):
        create_app(agent, feed, http, registry)


# Reads, probes, metrics, page


async def test_alerts_filtered_by_state(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    agent.record(make_alert("a-1"))
    agent.record(make_alert("a-2", AlertState.CLEARED))

    everything = await client.get("/api/alerts")
    open_only = await client.get("/api/alerts", params={"state": "open"})
    bad_state = await client.get("/api/alerts", params={"state": "lost"})

    assert {a["alert_id"] for a in everything.json()} == {"a-1", "a-2"}
    assert [a["alert_id"] for a in open_only.json()] == ["a-1"]
    assert open_only.json()[0]["message"] == "可乐 330ml 剩 1 件"
    assert bad_state.status_code == 422


async def test_lanes(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/lanes")

    assert response.status_code == 200
    assert response.json()[0]["id"] == "A1-3"


async def test_readyz_follows_health(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    ok = await client.get("/readyz")
    agent.status = {"status": "degraded", "broker": "unreachable"}
    degraded = await client.get("/readyz")
    live = await client.get("/healthz")

    assert (ok.status_code, ok.json()["broker"]) == (200, "connected")
    assert (degraded.status_code, degraded.json()["broker"]) == (503, "unreachable")
    assert live.status_code == 200


async def test_metrics_from_the_given_registry(
    client: httpx.AsyncClient, registry: CollectorRegistry,
) -> None:
    Counter("storeedge_test_readings", "Readings seen", registry=registry).inc(3)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "storeedge_test_readings_total 3.0" in response.text


async def test_page_carries_the_store_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html; charset=utf-8")
    assert f'<h1 id="store">{STORE}</h1>' in response.text
    assert "__STORE_ID__" not in response.text


# The live stream


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def wait_for_subscribers(feed: AlertFeed, count: int) -> None:
    for _ in range(400):
        if feed.subscribers == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{feed.subscribers} subscribers, expected {count}")


async def test_stream_sends_snapshot_then_transitions(
    client: httpx.AsyncClient, agent: FakeAgent, feed: AlertFeed,
) -> None:
    agent.record(make_alert("a-1"))
    agent.record(make_alert("a-0", AlertState.RESOLVED))
    request = asyncio.create_task(client.get("/api/alerts/stream"))
    await wait_for_subscribers(feed, 1)

    # One agent turn's transitions arrive as one event, in order.
    feed.publish([agent.record(make_alert("a-2", severity=Severity.CRITICAL)),
                  agent.record(make_alert("a-1", AlertState.CLEARED))])
    await asyncio.sleep(0.05)
    feed.publish([agent.record(make_alert("a-3"))])
    await asyncio.sleep(0.05)
    # httpx's ASGI transport returns a response once the app finishes: end the stream.
    feed.close()
    response = await request

    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [kind for kind, _ in events] == ["snapshot", "alerts", "alerts"]
    snapshot = events[0][1]
    assert snapshot["store_id"] == STORE
    assert [a["alert_id"] for a in snapshot["alerts"]] == ["a-1"]  # resolved ones are history
    assert [[(d["alert_id"], d["state"]) for d in batch] for _, batch in events[1:]] == [
        [("a-2", "open"), ("a-1", "cleared")], [("a-3", "open")]]
    assert "retry: " in response.text
    assert feed.subscribers == 0


async def test_stream_resends_snapshot_when_the_client_fell_behind(
    agent: FakeAgent, registry: CollectorRegistry,
) -> None:
    feed = AlertFeed(max_pending=2)
    async with client_for(agent, feed, registry) as client:
        request = asyncio.create_task(client.get("/api/alerts/stream"))
        await wait_for_subscribers(feed, 1)
        await asyncio.sleep(0.05)  # the first snapshot is out

        # Three transitions in one loop turn: more than the stream's backlog holds.
        feed.publish([agent.record(make_alert(f"b-{i}")) for i in range(3)])
        await asyncio.sleep(0.05)
        feed.close()
        response = await request

    events = parse_sse(response.text)
    assert [kind for kind, _ in events] == ["snapshot", "snapshot"]
    assert {a["alert_id"] for a in events[1][1]["alerts"]} == {"b-0", "b-1", "b-2"}


# AlertFeed on its own


async def test_feed_gives_a_reader_everything_since_its_last_read_in_order() -> None:
    feed = AlertFeed()
    alerts = [make_alert(f"e-{i}") for i in range(5)]
    async with feed.subscribe() as sub:
        feed.publish(alerts[:2])
        feed.publish(alerts[2:3])
        assert await anext(sub) == alerts[:3]
        feed.publish(alerts[3:])
        assert await anext(sub) == alerts[3:]


async def test_feed_slow_subscriber_resyncs_and_others_are_unaffected() -> None:
    feed = AlertFeed(max_pending=3)
    alerts = [make_alert(f"c-{i}") for i in range(6)]
    async with feed.subscribe() as slow, feed.subscribe() as fast:
        got_fast = []
        for alert in alerts[:4]:
            feed.publish([alert])
            got_fast += await anext(fast)
        feed.publish(alerts[4:])
        got_fast += await anext(fast)

        # slow read nothing: c-0..c-2 filled its backlog, c-3 replaced them with RESYNC, and
        # what came after the resync follows it.
        assert await anext(slow) is RESYNC
        assert await anext(slow) == alerts[4:]
        assert got_fast == alerts
        assert feed.subscribers == 2
    assert feed.subscribers == 0


async def test_feed_close_ends_open_and_later_subscriptions() -> None:
    feed = AlertFeed()
    async with feed.subscribe() as subscription:
        feed.publish([make_alert("d-1")])
        feed.close()
        assert [item async for item in subscription] == []
        assert [item async for item in subscription] == []  # stays ended
    async with feed.subscribe() as later:
        assert [item async for item in later] == []
