"""``storeedge demo --stores N``: a chain in a box. N simulated stores, each with its own
Mosquitto (TLS, a user per device, ACLs: as ``storeedge broker-config`` writes it) bridged over
TLS with its own password to an HQ broker that lets each bridge write its own store's topics only
(the bridge written by ``storeedge hq bridge-config``), its own agent and simulator; one Tryton
on a private PostgreSQL cluster with a warehouse per store, one VictoriaMetrics, and the HQ
service. At the end it prints one JSON line: per store the usual
truth check (the store's own warehouse in the ERP against the scenario) and the alerts the
scenario does not justify, and an ``hq`` object whose figures are read back from HQ's own API
beside what the scenario says they must be.

The stores play the chain scenarios in turn (``chain-01`` .. ``chain-03``: their own catalog,
traffic and planted incident), the fourth and later ones with their own store id and seed. Each
store books its sales into its own warehouse (``DEMO-01`` ..), stocked with the scenario's
initial stock of its catalog, so a store whose sales reached another's warehouse would miss its
truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.postgres import start_postgres
from cloud_bridge.tryton.server import start_tryton_postgres
from edge_agent.broker_security import (
    HQ_SERVICE_USER,
    BrokerFiles,
    bridge_user,
    current_user,
    write_hq_broker_config,
)
from edge_agent.certs import StoreCerts, write_store_certs
from edge_agent.config import StoreConfig
from edge_agent.demo import store_config
from edge_agent.demo_watch import AlertLog, Child, StatusBoard, wait_drained
from edge_agent.services import (
    Service,
    free_port,
    mosquitto_path,
    spawn,
    start_mosquitto,
    start_victoria_metrics,
)
from firmware_sim.judge import false_alerts
from firmware_sim.scenario import SCENARIO_DIR, Scenario, load_scenario
from firmware_sim.store import stop_seconds

log = logging.getLogger(__name__)

DRAIN_SECONDS = 300.0  # for every store's ERP outbox, together: they share one Tryton
HQ_AGREES_WITHIN = 180.0  # HQ's figures arrive through the bridge and the time series
CHAIN_SCENARIOS = ("chain-01", "chain-02", "chain-03")
# The alert by which HQ sees each kind of planted incident (an unplug's alert clears when the
# device is back, so HQ has nothing left to show of it at the end).
PLANTED_RULE = {"sell_out": "out_of_stock", "tag_walkout": "shrink",
                "scan_avoidance": "checkout_suspect"}


def _store_scenario(index: int, workdir: Path) -> Path:
    """Store ``index``'s scenario: a chain scenario, with the store id and seed of its place."""
    base = CHAIN_SCENARIOS[index % len(CHAIN_SCENARIOS)]
    data = yaml.safe_load((SCENARIO_DIR / f"{base}.yaml").read_text())
    data["store_id"] = f"demo-{index + 1:02d}"
    data["seed"] = int(data["seed"]) + 100 * (index // len(CHAIN_SCENARIOS))
    path = workdir / f"{base}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _warehouse(store_id: str) -> str:
    """The code of a store's warehouse in the ERP."""
    return store_id.upper()


def _hq_broker(workdir: Path, store_ids: list[str]) -> tuple[Service, BrokerFiles, StoreCerts]:
    """The HQ broker: TLS, a user per store's bridge and one for the HQ service."""
    binary = mosquitto_path()
    assert binary is not None
    certs = write_store_certs(workdir / "certs", "hq")
    port = free_port()
    files = write_hq_broker_config(store_ids, workdir, port=port, host="127.0.0.1", certs=certs,
                                   run_as=current_user())
    return spawn("mosquitto", [binary, "-c", str(files.conf)], workdir, port), files, certs


def _store_broker(workdir: Path, store_yaml: Path, config: dict[str, Any], certs: StoreCerts,
                  hq_port: int, hq_ca: Path, bridge_password: str) -> Service:
    """The store's Mosquitto as ``storeedge broker-config`` writes it (TLS, its users and ACLs)
    with the bridge the ``hq bridge-config`` command writes (TLS and a password to HQ)."""
    bridge = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "hq", "bridge-config", "--store",
         str(store_yaml), "--hq-host", "127.0.0.1", "--hq-port", str(hq_port),
         "--hq-password-env", "STOREEDGE_DEMO_BRIDGE_PASSWORD", "--hq-cafile", str(hq_ca)],
        check=True, capture_output=True, text=True,
        env={**os.environ, "STOREEDGE_DEMO_BRIDGE_PASSWORD": bridge_password}).stdout
    return start_mosquitto(workdir, config["broker"]["port"],
                           stores=[StoreConfig.model_validate(config)], certs=certs,
                           extra_conf=bridge)


def run_chain_demo(stores: int, seconds: float, workdir: Path | None = None) -> int:
    if mosquitto_path() is None:
        raise FileNotFoundError("the chain demo bridges Mosquittos: apt-get install mosquitto")
    workdir = (workdir or Path("var/demo") / time.strftime("chain-%Y%m%d-%H%M%S")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    services: list[Any] = []
    children: list[Child] = []
    alert_logs: list[AlertLog] = []
    interrupted = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        scenarios: list[tuple[Path, Scenario]] = []
        for i in range(stores):
            sdir = workdir / f"store-{i + 1:02d}"
            for sub in ("dev", "agent", "broker"):
                (sdir / sub).mkdir(parents=True, exist_ok=True)
            path = _store_scenario(i, sdir)
            scenarios.append((path, load_scenario(str(path))))
        hq_broker, hq_files, hq_certs = _hq_broker(workdir / "hq" / "broker",
                                                   [scen.store_id for _, scen in scenarios])
        services.append(hq_broker)
        tsdb = start_victoria_metrics(workdir / "hq" / "tsdb")
        services.append(tsdb)
        tsdb_url = f"http://127.0.0.1:{tsdb.port}"
        erp_password = secrets.token_urlsafe(12)
        hq_token = secrets.token_urlsafe(24)
        postgres = start_postgres(free_port())
        services.append(postgres)
        catalog = {s.sku: {"sku": s.sku, "name": s.name, "barcode": s.barcode,
                           "unit_grams": s.unit_grams}
                   for _, scen in scenarios for s in scen.catalog}
        initial = {scen.store_id: {s.sku: scen.erp_initial_stock for s in scen.catalog}
                   for _, scen in scenarios}
        tryton = start_tryton_postgres(
            workdir / "hq" / "tryton", free_port(), postgres.uri, list(catalog.values()),
            {_warehouse(sid): stock for sid, stock in initial.items()}, erp_password)
        services.append(tryton)
        env = {"STOREEDGE_ERP_PASSWORD": erp_password, "PYTHONUNBUFFERED": "1",
               "STOREEDGE_DEMO_HQ_TOKEN": hq_token,
               "STOREEDGE_DEMO_HQ_BROKER_PASSWORD": hq_files.passwords[HQ_SERVICE_USER]}
        cli = [sys.executable, "-m", "edge_agent.cli"]
        shops: list[dict[str, Any]] = []
        for i, (scen_path, scen) in enumerate(scenarios):
            sdir = scen_path.parent
            http_port = free_port()
            sid = scen.store_id
            certs = write_store_certs(sdir / "broker" / "certs", sid)
            config = store_config(scen, sdir, broker_port=free_port(), http_port=http_port,
                                  erp_url=tryton.url, tsdb_url=tsdb_url,
                                  warehouse=_warehouse(sid), broker_ca=certs.ca_cert)
            store_yaml = sdir / "store.yaml"
            store_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
            broker = _store_broker(sdir / "broker", store_yaml, config, certs, hq_broker.port,
                                   hq_certs.ca_cert, hq_files.passwords[bridge_user(sid)])
            services.append(broker)
            files = broker.extra["broker"]
            assert isinstance(files, BrokerFiles)
            store_env = {**env, "STOREEDGE_MQTT_PASSWORD":
                         files.passwords[config["broker"]["username"]]}
            agent_url = f"http://127.0.0.1:{http_port}"
            sim = Child(f"sim-{i + 1:02d}", [
                *cli, "sim", "--scenario", str(scen_path), "--broker-port", str(broker.port),
                "--broker-ca", str(certs.ca_cert), "--broker-credentials",
                str(files.credentials_file), "--agent-url", agent_url, "--dev-dir",
                str(sdir / "dev"), "--truth-out", str(sdir / "truth.json")], sdir, store_env)
            agent = Child(f"agent-{i + 1:02d}", [*cli, "agent", "--config", str(store_yaml)],
                          sdir, store_env)
            children += [sim, agent]
            reader = files.user(sid, "hq")  # the alert log reads as HQ's bridge would
            alerts = AlertLog(broker.port, sid, login=(reader, files.passwords[reader]),
                              ca_file=certs.ca_cert)
            alert_logs.append(alerts)
            shops.append({"scenario": scen, "sim": sim, "agent": agent, "dir": sdir,
                          "alerts": alerts, "board": StatusBoard(agent_url)})
        hq_port = free_port()
        hq_yaml = workdir / "hq" / "hq.yaml"
        hq_yaml.write_text(yaml.safe_dump({
            "chain": {"name": "storeedge demo chain"},
            "http": {"host": "127.0.0.1", "port": hq_port},
            "users": [{"name": "demo", "token_env": "STOREEDGE_DEMO_HQ_TOKEN"}],
            "broker": {"port": hq_broker.port, "username": HQ_SERVICE_USER,
                       "password_env": "STOREEDGE_DEMO_HQ_BROKER_PASSWORD",
                       "ca_file": str(hq_certs.ca_cert)},
            "timeseries": {"url": tsdb_url, "refresh_seconds": 2},
            "stores": [{"id": s["scenario"].store_id, "name": f"Demo store {n + 1}"}
                       for n, s in enumerate(shops)]}, sort_keys=False))
        hq = Child("hq", [*cli, "hq", "--config", str(hq_yaml)], workdir / "hq", env)
        children.append(hq)
        started = time.time()
        for shop in shops:
            shop["sim"].start()  # first, so the shelves' serial ports exist for the agent
            shop["agent"].start()
        hq.start()
        print(f"storeedge demo: HQ at http://127.0.0.1:{hq_port}/ (token: {hq_token}; "
              f"logs in {workdir})", flush=True)
        deadline = time.monotonic() + seconds
        while not interrupted and time.monotonic() < deadline:
            for child in children:
                child.check()
            time.sleep(1.0)
        for shop in shops:  # every store closes at once
            shop["sim"].terminate()
        for shop in shops:
            shop["sim"].stop(grace=stop_seconds(shop["scenario"]) + 10.0)
        report_stores: dict[str, Any] = {}
        drain_until = time.monotonic() + DRAIN_SECONDS
        for shop in shops:  # the others drain meanwhile
            scen = shop["scenario"]
            drained = wait_drained(shop["board"], shop["agent"], {}, Counter(), shop["dir"],
                                    max(1.0, drain_until - time.monotonic()))
            truth_file = shop["dir"] / "truth.json"
            truth = json.loads(truth_file.read_text()) if truth_file.exists() else {}
            on_hand = asyncio.run(_erp_on_hand(tryton.url, erp_password,
                                               _warehouse(scen.store_id)))
            report_stores[scen.store_id] = _store_report(
                scen, truth, initial[scen.store_id], on_hand, drained, shop)
        hq_view = _read_hq(f"http://127.0.0.1:{hq_port}", hq_token, started, report_stores,
                           {shop["scenario"].store_id: shop["board"] for shop in shops})
        print(json.dumps({"stores": report_stores, "hq": hq_view, "seconds": seconds},
                         sort_keys=True), flush=True)
        return 0
    finally:
        for alert_log in alert_logs:
            alert_log.close()
        for child in reversed(children):
            child.stop(grace=10.0)
        for service in reversed(services):
            service.stop()
        signal.signal(signal.SIGINT, previous)


async def _erp_on_hand(url: str, password: str, warehouse: str) -> dict[str, int]:
    erp = TrytonConnector(url, "storeedge", "admin", password, warehouse, "Walk-in customer",
                          30.0)
    try:
        return await erp.stock_units()
    finally:
        await erp.aclose()


def _store_report(scen: Scenario, truth: dict[str, Any], initial: dict[str, int],
                  on_hand: dict[str, int], drained: bool, shop: dict[str, Any]) -> dict[str, Any]:
    """One store's part of the report: its sales in its own warehouse against the scenario's,
    the alerts the scenario does not justify, and what HQ must show of it."""
    units: dict[str, int] = truth.get("sales_units", {})
    # What left the store's warehouse is what it sold: only sales move stock in the demo.
    erp_units = {sku: initial.get(sku, 0) - n for sku, n in on_hand.items()
                 if initial.get(sku, 0) != n}
    skus = set(units) | set(erp_units)
    mismatched = sorted(s for s in skus if units.get(s, 0) != erp_units.get(s, 0))
    board: StatusBoard = shop["board"]
    board.poll()
    alerts: AlertLog = shop["alerts"]
    unjustified = false_alerts(scen, scen.device_faults(), truth, list(alerts.opened.values()))
    lanes_empty = sorted(lane for lane, n in (truth.get("lane_units") or {}).items() if n == 0)
    return {
        "scenario": scen.name, "warehouse": _warehouse(scen.store_id),
        "sales": truth.get("transactions", 0), "erp_drained": drained,
        "open_alerts": board.health.get("open_alerts"),
        "agent_restarts": shop["agent"].restarts,
        "alerts_heard": len(alerts.opened),
        "false_alerts": None if unjustified is None else len(unjustified),
        "false_alert_list": unjustified,
        "planted": [{"kind": p["kind"], "at": p.get("at"), "lane": p.get("lane"),
                     "sku": p.get("sku"), "hq_rule": PLANTED_RULE.get(p["kind"])}
                    for p in truth.get("planted", [])],
        "lanes_out_of_stock": lanes_empty,
        "truth": {"scenario_sales_units": sum(units.values()),
                  "erp_sold_units": sum(erp_units.values()),
                  "mismatches": len(mismatched), "mismatched_skus": mismatched}}


def _read_hq(url: str, token: str, since: float, stores: dict[str, Any],
             boards: dict[str, StatusBoard], within: float = HQ_AGREES_WITHIN) -> dict[str, Any]:
    """HQ's figures per store, from its API, beside what the scenario says they must be (and,
    for open alerts, which come and go as the store's rules decide, beside the store's own
    count read at the same turn); read again until every one agrees or ``within`` seconds
    pass (the time series and the bridged state arrive a little after the ERP)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + within
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        while True:
            for board in boards.values():
                board.poll()
            view = _hq_view(client, since, stores, boards)
            if all(not v["mismatches"] for v in view.values()) or time.monotonic() > deadline:
                return view
            time.sleep(2.0)


def _hq_view(client: httpx.Client, since: float, stores: dict[str, Any],
             boards: dict[str, StatusBoard]) -> dict[str, Any]:
    span = {"start": since - 60, "end": time.time() + 1}
    rows = client.get("/api/reports/sales", params=span).json()["rows"]
    overview = {r["id"]: r for r in client.get("/api/overview").json()["stores"]}
    view: dict[str, Any] = {}
    for sid, store in stores.items():
        o = overview.get(sid, {})
        page = client.get(f"/api/stores/{sid}", params=span).json()
        rules_open = sorted({a["rule"] for a in page.get("open_alerts", [])})
        oos = o.get("lanes_out_of_stock")
        v: dict[str, Any] = {
            "online": o.get("online"),
            "sales_units": sum(r["units"] for r in rows if r["store"] == sid),
            "scenario_sales_units": store["truth"]["scenario_sales_units"],
            "lanes_out_of_stock": None if oos is None else round(oos),
            "scenario_lanes_out_of_stock": len(store["lanes_out_of_stock"]),
            "open_alerts": sum((o.get("alerts") or {}).values()),
            "store_open_alerts": boards[sid].health.get("open_alerts"),
            "open_alert_rules": rules_open,
            "planted_rules": sorted({p["hq_rule"] for p in store["planted"] if p["hq_rule"]}),
        }
        v["sales_units_equal_scenario"] = v["sales_units"] == v["scenario_sales_units"]
        v["lanes_out_of_stock_equal_scenario"] = (
            v["lanes_out_of_stock"] == v["scenario_lanes_out_of_stock"])
        v["open_alerts_equal_store"] = v["open_alerts"] == v["store_open_alerts"]
        v["planted_seen"] = set(v["planted_rules"]) <= set(rules_open)
        v["mismatches"] = [name for name, ok in (
            ("online", v["online"] is True),
            ("sales_units", v["sales_units_equal_scenario"]),
            ("lanes_out_of_stock", v["lanes_out_of_stock_equal_scenario"]),
            ("open_alerts", v["open_alerts_equal_store"]),
            ("planted", v["planted_seen"])) if not ok]
        view[sid] = v
    return view
