"""The HQ service as its own process over HTTP, against a real Mosquitto (as the HQ broker) and a
real VictoriaMetrics holding what two stores' agents wrote."""

from __future__ import annotations

import csv
import io
import json
import os
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openpyxl
import pytest

from cloud_bridge import tsdb
from cloud_bridge.tryton.server import TrytonServer
from edge_agent.certs import write_store_certs
from edge_agent.services import Service
from storeedge.events import Alert, AlertState, Sale, Severity
from tests.fixtures.tryton import ADMIN_PASSWORD, INITIAL_STOCK
from tests.fixtures.victoria import victoria_url
from tests.integration.hq_chain import (
    HQ_TOKEN,
    free_port,
    hq_client,
    hq_service,
    poll,
    publish,
    write_hq_config,
    write_lines,
)

pytestmark = pytest.mark.timeout(120)

SALES = [  # (store suffix, sku, qty, unit price, seconds ago)
    ("a", "COLA-330", 2, 3.5, 300), ("a", "COLA-330", 1, 3.5, 200),
    ("a", "CHIPS-70", 4, 6.0, 100), ("b", "WATER-550", 3, 2.0, 250),
]


def alert(sid: str, state: AlertState, ts: float, severity: Severity = Severity.WARNING,
          by: str | None = None, transition: str | None = None,
          opened_at: float | None = None) -> Alert:
    return Alert(store_id=sid, source="rules", received_ts=ts, alert_id=f"{sid}-al-1",
                 rule="low_stock", severity=severity, subject="A1-1", message="A1-1 low",
                 state=state, sku="COLA-330", location="A1-1",
                 detail={"by": by or "rule", "transition": transition or state.value,
                         "opened_at": ts if opened_at is None else opened_at,
                         **({"claimed_at": ts} if state is AlertState.CLAIMED else {})})


class Chain:
    def __init__(self, prefix: str, now: float) -> None:
        self.a, self.b = f"{prefix}-a", f"{prefix}-b"
        self.now = now


@pytest.fixture
def chain(store_id: str, victoria: Service, mosquitto: Service) -> Chain:
    now = time.time()
    c = Chain(store_id, now)
    lines: list[str] = []
    for suffix, sku, qty, price, ago in SALES:
        sid = c.a if suffix == "a" else c.b
        sale = Sale(store_id=sid, source="pos", received_ts=now - ago, sku=sku, qty=qty,
                    txn_id=f"t{ago}")
        lines += tsdb.Points(sid).sales([(sale, qty * price)], now - ago)
    a, b = tsdb.Points(c.a), tsdb.Points(c.b)
    for ago in (60, 30, 5):
        lines += a.lanes([("A1-1", "COLA-330", 0 if ago < 40 else 2, 0.0),
                          ("A1-2", "CHIPS-70", 5, 375.0)], now - ago)
        lines += b.lanes([("B1-1", "WATER-550", 7, 3920.0)], now - ago)
        lines.append(a.agent(now - ago, {"readings_total": 100, "erp_backlog": 3,
                                         "tsdb_backlog": 0}))
        lines.append(b.agent(now - ago, {"readings_total": 50, "erp_backlog": 0,
                                         "tsdb_backlog": 0}))
    opened = now - 120
    lines += a.alerts([
        alert(c.a, AlertState.OPEN, opened, transition="opened"),
        alert(c.a, AlertState.OPEN, now - 100, transition="worsened", opened_at=opened),
        alert(c.a, AlertState.CLAIMED, now - 90, by="li-wei", opened_at=opened),
        alert(c.a, AlertState.RESOLVED, now - 30, by="li-wei", opened_at=opened)])
    write_lines(victoria_url(victoria), lines)
    claimed = alert(c.a, AlertState.CLAIMED, now - 90, Severity.CRITICAL, by="li-wei")
    publish(mosquitto.port, [
        (f"store/{c.a}/state/agent", b"online", True),
        (f"store/{c.a}/state/bridge", b"1", True),
        (f"store/{c.a}/state/alerts/{claimed.alert_id}", json.dumps(claimed.to_dict()).encode(),
         True),
        (f"store/{c.a}/state/devices/shelf-a1",
         b'{"device": "shelf-a1", "state": "offline", "reason": "last will"}', True),
        (f"store/{c.b}/state/agent", b"offline", True),
    ])
    return c


@pytest.fixture
def hq(tmp_path: Path, chain: Chain, victoria: Service, mosquitto: Service) -> Iterator[int]:
    port = free_port()
    config = write_hq_config(tmp_path / "hq.yaml", [{"id": chain.a, "name": "Store A"},
                                                     {"id": chain.b}],
                             broker_port=mosquitto.port, tsdb_url=victoria_url(victoria),
                             port=port)
    with hq_service(tmp_path, config, port):
        yield port


def test_overview_shows_each_store_with_troubled_stores_first(hq: int, chain: Chain) -> None:
    with hq_client(hq) as client:
        overview = poll(lambda: client.get("/api/overview").json(),
                        lambda o: o["broker"]["connected"] and o["stores"][1]["online"])
    assert overview["timeseries"]["ok"] is True
    b, a = overview["stores"]  # b is offline: trouble first
    assert (b["id"], b["online"], b["agent"]) == (chain.b, False, "offline")
    assert "offline" in b["trouble"]
    assert (a["id"], a["name"], a["online"]) == (chain.a, "Store A", True)
    assert (a["sales_units"], a["sales_amount"]) == (7, 2 * 3.5 + 3.5 + 24.0)
    assert (b["sales_units"], b["sales_amount"]) == (3, 6.0)
    assert a["lanes_out_of_stock"] == 1 and b["lanes_out_of_stock"] == 0
    assert a["alerts"] == {"critical": 1, "warning": 0, "info": 0}
    assert a["oldest_unclaimed"] is None  # claimed by li-wei
    assert a["devices_offline"] == ["shelf-a1"]
    assert (a["erp_backlog"], a["tsdb_backlog"]) == (3, 0)
    assert a["last_seen"] == pytest.approx(chain.now - 5, abs=0.01)


def test_store_page_has_lanes_sales_alerts_and_who_claimed(hq: int, chain: Chain) -> None:
    with hq_client(hq) as client:
        page = poll(lambda: client.get(f"/api/stores/{chain.a}",
                                       params={"start": chain.now - 3600}).json(),
                    lambda p: p["open_alerts"])
        assert client.get("/api/stores/nope").status_code == 404
    assert page["timeseries"]["ok"]
    lanes = {lane["lane"]: lane["points"][-1][1] for lane in page["lanes"]}
    assert lanes == {"A1-1": 0, "A1-2": 5}
    assert sum(v for _, v in page["sales_per_hour"]) == 7
    (claimed,) = page["open_alerts"]
    assert (claimed["state"], claimed["claimed_by"], claimed["severity"]) == (
        "claimed", "li-wei", "critical")
    assert page["devices"][0]["device"] == "shelf-a1"


def test_reports_as_json_csv_and_xlsx(hq: int, chain: Chain) -> None:
    params = {"start": chain.now - 3600, "end": chain.now + 1, "group": "hour"}
    with hq_client(hq) as client:
        sales = client.get("/api/reports/sales", params=params).json()
        as_csv = client.get("/api/reports/sales", params={**params, "format": "csv"})
        as_xlsx = client.get("/api/reports/sales", params={**params, "format": "xlsx"})
        response = client.get("/api/reports/alert-response", params=params).json()
        oos = client.get("/api/reports/out-of-stock", params=params).json()
        charts = client.get("/api/charts", params=params).json()
    by_sku: Counter[tuple[str, str]] = Counter()
    for r in sales["rows"]:  # a SKU's sales may straddle an hour: one row per hour
        by_sku[(r["store"], r["sku"])] += r["units"]
    assert by_sku == {(chain.a, "COLA-330"): 3, (chain.a, "CHIPS-70"): 4,
                      (chain.b, "WATER-550"): 3}
    assert sales["totals"] == {"units": 10, "amount": 40.5}
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert sum(int(r["units"]) for r in rows) == 10
    assert as_xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content)).active
    table = list(sheet.values)
    assert table[0] == ("store", "sku", "period", "units", "amount")
    assert sum(r[3] for r in table[1:]) == 10
    (a_low,) = [r for r in response["rows"] if r["store"] == chain.a]
    assert (a_low["rule"], a_low["opened"], a_low["mean_claim_s"], a_low["mean_resolve_s"]) == (
        "low_stock", 1, 30.0, 90.0)
    (empty,) = [r for r in oos["rows"] if r["store"] == chain.a]
    assert (empty["lane"], empty["minutes"]) == ("A1-1", round(2 * 10 / 60, 1))
    top = {s["sku"]: s["units"] for s in charts["top_skus"]}
    assert top["CHIPS-70"] >= 4  # other tests' stores share the server


def test_bad_time_ranges_are_named(hq: int) -> None:
    with hq_client(hq) as client:
        bad = client.get("/api/charts", params={"start": "yesterday-ish"})
        inverted = client.get("/api/reports/sales", params={"start": 2000, "end": 1000})
        too_long = client.get("/api/charts", params={"start": 0, "end": 400 * 86400})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "start"]
    assert inverted.status_code == 422
    assert inverted.json()["detail"][0]["loc"] == ["query", "end"]
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["query", "start"]


def test_only_hq_users_see_anything(hq: int, chain: Chain) -> None:
    with hq_client(hq, token=None) as anonymous, hq_client(hq, token="staff-token") as staff:
        for path in ("/api/overview", f"/api/stores/{chain.a}", "/api/charts",
                     "/api/reports/sales"):
            assert anonymous.get(path).status_code == 401, path
            assert staff.get(path).status_code == 401, path
        assert anonymous.post("/api/session", json={"token": "staff-token"}).status_code == 401
        signed = anonymous.post("/api/session", json={"token": "hq-token-for-tests-0123456789"})
        assert signed.json() == {"user": "ops"}
        assert anonymous.get("/api/overview").status_code == 200  # the session cookie
        schema = anonymous.get("/openapi.json").json()
    assert {"/api/overview", "/api/stores/{store_id}", "/api/charts",
            "/api/reports/{kind}"} <= set(schema["paths"])


def test_an_unreachable_time_series_server_shows_as_down(tmp_path: Path,
                                                         mosquitto: Service) -> None:
    port = free_port()
    config = write_hq_config(tmp_path / "hq.yaml", [{"id": "down-1"}],
                             broker_port=mosquitto.port,
                             tsdb_url=f"http://127.0.0.1:{free_port()}", port=port)
    with hq_service(tmp_path, config, port), hq_client(port) as client:
        overview = client.get("/api/overview").json()
        health = client.get("/health").json()
        charts = client.get("/api/charts")
    assert overview["timeseries"]["ok"] is False
    assert "ConnectError" in overview["timeseries"]["error"]
    assert overview["stores"][0]["sales_units"] is None
    assert health["timeseries"]["ok"] is False and health["status"] == "degraded"
    assert charts.status_code == 503


def test_a_bad_config_is_named_by_file_line_and_key(tmp_path: Path) -> None:
    from hq.config import load_config
    from storeedge.errors import ConfigError

    path = tmp_path / "hq.yaml"
    path.write_text("chain:\n  timezone: Mars/Olympus\nstores:\n  - id: s-1\n")
    with pytest.raises(ConfigError, match=r"hq.yaml:2: chain.timezone: unknown time zone"):
        load_config(path)
    path.write_text("stores:\n  - id: s-1\n  - id: s-1\n")
    with pytest.raises(ConfigError, match=r"hq.yaml:3: stores.1.id: .* listed twice"):
        load_config(path)


def test_stock_accuracy_sets_shelf_counts_against_the_erp(
        tmp_path: Path, chain: Chain, victoria: Service, mosquitto: Service,
        tryton_factory: Callable[[], TrytonServer]) -> None:
    erp = tryton_factory()  # its own server: no other test's sales in its warehouse
    port = free_port()
    config = write_hq_config(
        tmp_path / "hq.yaml", [{"id": chain.a, "warehouse": "WH"}, {"id": chain.b}],
        broker_port=mosquitto.port, tsdb_url=victoria_url(victoria), port=port,
        erp={"kind": "tryton", "url": erp.url, "database": erp.database,
             "password_env": "STOREEDGE_TEST_ERP_PASSWORD"})
    with hq_service(tmp_path, config, port, env={"STOREEDGE_TEST_ERP_PASSWORD": ADMIN_PASSWORD}
                    ), hq_client(port) as client:
        report = client.get("/api/reports/stock-accuracy").json()
    rows = {(r["store"], r["sku"]): r for r in report["rows"]}
    cola = rows[(chain.a, "COLA-330")]
    assert (cola["shelf_units"], cola["erp_units"], cola["erp"]) == (0, INITIAL_STOCK["COLA-330"],
                                                                    "ok")
    assert cola["difference"] == -INITIAL_STOCK["COLA-330"]
    chips = rows[(chain.a, "CHIPS-70")]
    assert (chips["shelf_units"], chips["erp_units"]) == (5, INITIAL_STOCK["CHIPS-70"])
    water = rows[(chain.b, "WATER-550")]  # store b has no warehouse configured
    assert (water["shelf_units"], water["erp_units"]) == (7, None)


def test_hq_limits_sign_in_guesses_and_refuses_alike(tmp_path: Path, mosquitto: Service,
                                                      victoria: Service) -> None:
    port = free_port()
    config = write_hq_config(tmp_path / "hq.yaml", [{"id": "guessed-1"}],
                             broker_port=mosquitto.port, tsdb_url=victoria_url(victoria),
                             port=port, http={"sign_in_attempts": 3,
                                              "sign_in_backoff_seconds": 60})
    with hq_service(tmp_path, config, port), hq_client(port, token=None) as client:
        unsigned = client.get("/api/overview")  # no credentials: 401, but no strike
        guesses = [client.post("/api/session", json={"token": f"guess-{i}"}) for i in range(2)]
        store_token = client.get("/api/overview",
                                 headers={"Authorization": "Bearer a-store-staff-token"})
        locked = client.post("/api/session", json={"token": HQ_TOKEN})  # right, but too late
        huge = client.post("/api/session", content=b'{"token": "' + b"x" * 100_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert [r.status_code for r in guesses] == [401, 401]
    assert store_token.status_code == 401
    assert {r.text for r in [unsigned, *guesses, store_token]} == {unsigned.text}  # uniform
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert huge.status_code == 413 and len(huge.content) < 100


def test_hq_sessions_headers_and_audit(hq: int) -> None:
    with hq_client(hq, token=None) as client:
        page = client.get("/")
        assert client.post("/api/session", json={"token": "wrong-token"}).status_code == 401
        signed = client.post("/api/session", json={"token": HQ_TOKEN})
        assert client.get("/api/overview").status_code == 200
        audit = client.get("/api/audit")
        client.delete("/api/session")
        session = signed.cookies["storeedge_hq"]
        client.cookies.set("storeedge_hq", session)  # the signed-out session, presented again
        after = client.get("/api/overview")
        docs = httpx.get(f"http://127.0.0.1:{hq}/openapi.json", timeout=15)
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert HQ_TOKEN not in signed.headers["set-cookie"]  # a signed session, not the token
    assert after.status_code == 401
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert docs.status_code == 401  # the schema is for HQ users unless the config opens it
    rows = list(csv.DictReader(io.StringIO(audit.text)))
    actions = [(r["who"], r["action"], r["status"]) for r in rows]
    assert ("-", "POST /api/session", "401") in actions
    assert ("ops", "POST /api/session", "200") in actions


def test_hq_serves_https(tmp_path: Path, mosquitto: Service, victoria: Service) -> None:
    certs = write_store_certs(tmp_path / "certs", "hq", hosts=["127.0.0.1"])
    port = free_port()
    config = write_hq_config(tmp_path / "hq.yaml", [{"id": "tls-1"}],
                             broker_port=mosquitto.port, tsdb_url=victoria_url(victoria),
                             port=port, http={"tls_cert_file": str(certs.server_cert),
                                              "tls_key_file": str(certs.server_key)})
    trust = ssl.create_default_context(cafile=str(certs.ca_cert))
    with hq_service(tmp_path, config, port), httpx.Client(
            base_url=f"https://127.0.0.1:{port}", verify=trust, timeout=15) as client:
        signed = client.post("/api/session", json={"token": HQ_TOKEN})
        overview = client.get("/api/overview")
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets nowhere
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    assert signed.status_code == 200 and "secure" in signed.headers["set-cookie"].lower()
    assert signed.headers["strict-transport-security"].startswith("max-age=")
    assert overview.status_code == 200


def test_a_weak_hq_token_stops_hq_naming_it(tmp_path: Path) -> None:
    config = write_hq_config(tmp_path / "hq.yaml", [{"id": "weak-1"}], broker_port=1,
                             tsdb_url="http://127.0.0.1:1", port=free_port())
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "hq", "--config", str(config)],
                          env={**os.environ, "STOREEDGE_TEST_HQ_TOKEN": "hq-123"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "users.0.token_env" in done.stderr and "STOREEDGE_TEST_HQ_TOKEN" in done.stderr
    assert "hq-123" not in done.stderr + done.stdout  # the secret itself is never shown
