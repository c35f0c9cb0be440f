"""The web app's guards, through httpx's ASGI transport: sign-in limits, the uniform 401, body
limits, error bodies, security headers, what needs a role, weak tokens, the audit log."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from edge_agent.config import HttpSection, HttpToken
from edge_agent.web import AlertFeed, create_app
from edge_agent.web_security import MANAGER_COOKIE, SESSION_COOKIE, session_cookie
from rules.trackers.alerts import AlertNotFound
from storeedge.audit import AuditLog
from storeedge.errors import ConfigError
from storeedge.httpsec import AttemptLimiter, check_token
from tests.unit.test_web import FakeAgent, txn

TOKENS = {"T_POS": ("till-1", "pos", "pos-S3cret-Xq7Lw2Zp9k"),
          "T_ANA": ("ana", "staff", "ana-S3cret-Xq7Lw2Zp9k"),
          "T_MEI": ("mei", "manager", "mei-S3cret-Xq7Lw2Zp9k"),
          "T_HQ": ("hq-dash", "hq", "hq-S3cret-Xq7Lw2Zp9k")}
ENV = {env: token for env, (_, _, token) in TOKENS.items()}


def http_section(**changes: object) -> HttpSection:
    tokens = [HttpToken(name=name, role=role, token_env=env)  # type: ignore[arg-type]
              for env, (name, role, _) in TOKENS.items()]
    return HttpSection.model_validate({"tokens": tokens, **changes})


def bearer(env: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ENV[env]}"}


@pytest.fixture
def audit_log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.db")
    yield log  # type: ignore[misc]
    log.close()


class Agent(FakeAgent):
    def claim_alert(self, alert_id: str, caller: object) -> None:
        raise AlertNotFound(f"no alert {alert_id}")


def app_for(http: HttpSection, audit_log: AuditLog | None = None) -> FastAPI:
    return create_app(Agent(), AlertFeed(), http, CollectorRegistry(), audit_log, ENV)


def client_for(http: HttpSection | FastAPI, audit_log: AuditLog | None = None,
               address: str = "10.1.2.3") -> httpx.AsyncClient:
    """A client of ``http``'s app (or of that app) calling from ``address``."""
    app = http if isinstance(http, FastAPI) else app_for(http, audit_log)
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://agent")


@pytest.fixture
async def client(audit_log: AuditLog) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(http_section(), audit_log) as c:
        yield c


# Sign-in


async def test_brute_force_gets_429_after_the_configured_attempts(
        caplog: pytest.LogCaptureFixture) -> None:
    app = app_for(http_section(sign_in_attempts=3, sign_in_backoff_seconds=30))
    with caplog.at_level(logging.WARNING, logger="edge_agent.web_security"):
        async with client_for(app) as client:
            codes = [(await client.post("/api/session", json={"token": f"guess-{i}"})).status_code
                     for i in range(6)]
            limited = await client.post("/api/session", json={"token": ENV["T_ANA"]})
            by_header = await client.get("/api/alerts", headers=bearer("T_ANA"))
        async with client_for(app, address="10.9.9.9") as elsewhere:
            other_client = await elsewhere.post("/api/session", json={"token": ENV["T_ANA"]})

    assert codes == [401, 401, 401, 429, 429, 429]
    # Locked out with the right token too, on every route: the lockout is the client's.
    assert (limited.status_code, by_header.status_code) == (429, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    assert other_client.status_code == 200
    # The three failures logged once, not once each.
    assert len([r for r in caplog.records if "sign-in failed" in r.getMessage()]) == 1


async def test_asking_without_credentials_is_no_failed_sign_in() -> None:
    app = app_for(http_section(sign_in_attempts=2))
    async with client_for(app) as client:
        # Pages opened before signing in: each asks who is signed in, and is told nobody.
        codes = [(await client.get("/api/session")).status_code for _ in range(10)]
        signed = await client.post("/api/session", json={"token": ENV["T_ANA"]})
    assert codes == [401] * 10 and signed.status_code == 200


async def test_failures_count_per_account_across_clients() -> None:
    app = app_for(http_section(sign_in_attempts=2))
    for i in range(2):
        async with client_for(app, address=f"10.0.0.{i + 1}") as client:
            wrong = await client.post("/api/session", json={"name": "mei", "token": "guess"})
            assert wrong.status_code == 401
    async with client_for(app, address="10.0.0.50") as client:
        mei = await client.post("/api/session", json={"name": "mei", "token": ENV["T_MEI"]})
        ana = await client.post("/api/session", json={"name": "ana", "token": ENV["T_ANA"]})
    assert (mei.status_code, ana.status_code) == (429, 200)


def test_backoff_doubles_and_a_quiet_window_forgives() -> None:
    now = [0.0]
    limiter = AttemptLimiter(attempts=2, window=60, backoff=1, clock=lambda: now[0])
    waits = []
    for _ in range(5):
        limiter.failed(["k"])
        waits.append(limiter.retry_after(["k"]))
    assert waits == [0, 1, 2, 4, 8]
    now[0] += 8 + 61
    limiter.failed(["k"])
    assert limiter.retry_after(["k"]) == 0


async def test_one_401_for_every_token_that_signs_nobody_in(client: httpx.AsyncClient) -> None:
    answers = [await client.post("/api/session", json=body) for body in (
        {"token": "nobody-S3cret-Xq7Lw2Zp9k"},  # unknown
        {"token": ENV["T_POS"]},  # a till's: it must not be confirmed
        {"name": "ana", "token": ENV["T_MEI"]},  # another person's
        {})]
    assert {(r.status_code, r.text, r.headers["www-authenticate"]) for r in answers} == {
        (401, '{"detail":"not signed in"}', "Bearer")}


# Bodies and errors


async def test_oversized_bodies_are_413_before_they_are_read(client: httpx.AsyncClient) -> None:
    big = b'{"token": "' + b"x" * 10_000_000 + b'"}'
    declared = await client.post("/api/session", content=big,
                                 headers={"content-type": "application/json"})

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(100):
            yield b"x" * 2000

    streamed = await client.post("/api/scan", content=chunks(), headers=bearer("T_ANA"))
    pos_ok = await client.post("/api/pos/transactions", json=txn(), headers=bearer("T_POS"))

    assert declared.status_code == streamed.status_code == 413
    assert len(declared.content) < 200 and declared.json()["detail"]
    assert pos_ok.status_code == 201  # a normal sale is well inside its endpoint's limit


async def test_422_names_fields_without_echoing_large_inputs(client: httpx.AsyncClient) -> None:
    big_line = {"sku": "S" * 200_000, "qty": 1, "unit_price": 1.0}
    response = await client.post("/api/pos/transactions", json=txn(lines=[big_line]),
                                 headers=bearer("T_POS"))
    assert response.status_code == 413  # over the POS limit as a whole
    response = await client.post("/api/pos/transactions", headers=bearer("T_POS"),
                                 json=txn(txn_id="T" * 5000, ts="yesterday"))
    assert response.status_code == 422
    assert len(response.content) < 1000
    errors = {tuple(e["loc"]): e for e in response.json()["detail"]}
    assert "input" not in errors[("body", "txn_id")]  # 5,000 characters: named, not repeated
    assert errors[("body", "ts")]["input"] == "yesterday"  # short: repeated to help


# Headers and what needs a role


@pytest.mark.parametrize(("referer", "cookie"), [
    ("http://agent/manager", MANAGER_COOKIE),
    ("https://agent:8443/manager?x=1", MANAGER_COOKIE),
    ("http://agent/", SESSION_COOKIE),
    ("http://agent/managerial", SESSION_COOKIE),
    ("http://agent/manager/../", SESSION_COOKIE),
    (None, SESSION_COOKIE),  # an API client, or a browser that sends no Referer
])
def test_each_page_has_its_own_session_cookie(referer: str | None, cookie: str) -> None:
    from starlette.requests import Request

    headers = [(b"referer", referer.encode())] if referer else []
    assert session_cookie(Request({"type": "http", "headers": headers})) == cookie


async def test_security_headers_on_pages_and_api(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    api = await client.get("/api/alerts", headers=bearer("T_ANA"))
    for response in (page, api):
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp
    assert api.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in api.headers  # plain HTTP


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/metrics"])
async def test_docs_schema_and_metrics_need_a_manager_or_a_switch(path: str) -> None:
    async with client_for(http_section()) as client:
        anonymous = await client.get(path)
        staff = await client.get(path, headers=bearer("T_ANA"))
        hq = await client.get(path, headers=bearer("T_HQ"))
    switch = {"/docs": "public_docs", "/openapi.json": "public_docs", "/metrics": "public_metrics"}
    async with client_for(http_section(**{switch[path]: True})) as client:
        public = await client.get(path)
    assert [r.status_code for r in (anonymous, staff, hq, public)] == [401, 403, 200, 200]


async def test_readyz_detail_only_for_managers(client: httpx.AsyncClient) -> None:
    anonymous = await client.get("/readyz")
    staff = await client.get("/readyz", headers=bearer("T_ANA"))
    manager = await client.get("/readyz", headers=bearer("T_MEI"))
    assert anonymous.json() == staff.json() == {"status": "ok"}
    assert manager.json() == {"status": "ok", "broker": "connected"}


@pytest.mark.parametrize("token", ["short-Xq7", "a" * 40, "abcdefghijabcdefghij",
                                   "0123456789012345678901234"])
def test_a_weak_token_stops_the_start_naming_it(token: str) -> None:
    with pytest.raises(ConfigError, match=r"http\.tokens\.2\.token_env: the token in T_MEI"):
        create_app(FakeAgent(), AlertFeed(), http_section(), CollectorRegistry(), None,
                   {**ENV, "T_MEI": token})


def test_strong_tokens_pass() -> None:
    check_token("mei-S3cret-Xq7Lw2Zp9k", "k", "ENV")
    check_token("Wm9pL3Jk-q_2vX8sT0bN4yC6aE1fH", "k", "ENV")  # secrets.token_urlsafe(21)


def test_tls_needs_both_files() -> None:
    with pytest.raises(ValueError, match="tls_cert_file"):
        HttpSection(tls_cert_file=Path("server.crt"))


# Audit


async def test_actions_and_refusals_are_audited_and_exportable(
        client: httpx.AsyncClient, audit_log: AuditLog) -> None:
    await client.post("/api/session", json={"token": ENV["T_ANA"]})  # sign-in: an action
    await client.get("/api/lanes", headers=bearer("T_ANA"))  # a read: not an action
    await client.post("/api/alerts/nope/claim", headers=bearer("T_ANA"))  # 404, but an action
    await client.post("/api/pos/transactions", json=txn(), headers=bearer("T_ANA"))  # 403
    await client.get("/api/alerts", headers={"Authorization": "Bearer guess"})  # 401
    await client.post("/api/pos/transactions", json=txn(), headers=bearer("T_POS"))  # a sale
    records = await client.get("/api/audit", headers=bearer("T_MEI"))
    export = await client.get("/api/audit/export.csv", headers=bearer("T_HQ"))
    staff_export = await client.get("/api/audit", headers=bearer("T_ANA"))

    rows = [(r["who"], r["role"], r["action"], r["status"], r["client"])
            for r in records.json()]
    assert rows == [
        ("ana", "staff", "POST /api/session", 200, "10.1.2.3"),
        ("ana", "staff", "POST /api/alerts/nope/claim", 404, "10.1.2.3"),
        ("ana", "staff", "POST /api/pos/transactions", 403, "10.1.2.3"),
        ("-", "-", "GET /api/alerts", 401, "10.1.2.3"),
    ]
    assert all(r["ts"] > 1.7e9 for r in records.json())
    lines = export.text.splitlines()
    assert lines[0] == "seq,ts,who,role,action,status,client"
    assert lines[-1].endswith(",mei,manager,GET /api/audit,200,10.1.2.3")  # reading it, too
    assert staff_export.status_code == 403


async def test_the_api_cannot_alter_or_delete_an_audit_record(
        client: httpx.AsyncClient, audit_log: AuditLog) -> None:
    await client.post("/api/session", json={"token": ENV["T_ANA"]})
    before = audit_log.records()
    attempts = []
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        for path in ("/api/audit", f"/api/audit/{before[0].seq}", "/api/audit/export.csv"):
            attempts.append((await client.request(method, path, headers=bearer("T_MEI"),
                                                   json={"who": "nobody"})).status_code)
    assert set(attempts) <= {404, 405}
    assert audit_log.records()[: len(before)] == before
    # Nor can anything with the file's own connection: the table refuses it.
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        audit_log._db.execute("UPDATE audit SET who = 'nobody'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        audit_log._db.execute("DELETE FROM audit")


async def test_a_locked_out_flood_is_audited_once_a_minute(audit_log: AuditLog) -> None:
    async with client_for(http_section(sign_in_attempts=2), audit_log) as client:
        codes = [(await client.post("/api/session", json={"token": "guess"})).status_code
                 for _ in range(50)]
    assert codes.count(429) == 48
    assert [r.status for r in audit_log.records()] == [401, 401, 429]
