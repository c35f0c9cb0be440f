"""``storeedge demo --stores N``: a chain in a box. N simulated stores, each with its own
Mosquitto bridged to an HQ broker (the bridge written by ``storeedge hq bridge-config``), its own
agent and simulator; one Tryton, one VictoriaMetrics, and the HQ service. At the end it prints
one JSON line: per store the usual truth check (the ERP against the scenario), and an ``hq``
object whose figures are read back from HQ's own API and compared with the scenario.

The stores play the same layout (the ``basic`` scenario) with their own store id, seed and
traffic. They share Tryton's one warehouse; each store's sales are told apart by the store id
that starts their idempotency keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
from cloud_bridge.tryton.server import start_tryton
from edge_agent.demo import Child, StatusBoard, _wait_drained, store_config
from edge_agent.services import (
    Service,
    free_port,
    mosquitto_path,
    start_mosquitto,
    start_victoria_metrics,
)
from firmware_sim.scenario import SCENARIO_DIR, load_scenario

log = logging.getLogger(__name__)

DRAIN_SECONDS = 300.0  # for every store's ERP outbox, together: they share one Tryton


def _store_scenario(base: str, index: int, workdir: Path) -> Path:
    data = yaml.safe_load((SCENARIO_DIR / f"{base}.yaml").read_text())
    data["store_id"] = f"demo-{index + 1:02d}"
    data["seed"] = int(data.get("seed", 7)) + index
    # Different traffic per store: a busy, a normal and a quiet one, and so on.
    data["shopper_every_seconds"] = round(
        float(data.get("shopper_every_seconds", 1.2)) * (0.7 + 0.4 * (index % 3)), 2)
    path = workdir / f"scenario-{index + 1:02d}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _store_broker(workdir: Path, store_yaml: Path, hq_port: int) -> Service:
    """The store's Mosquitto with the bridge the ``hq bridge-config`` command writes."""
    bridge = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "hq", "bridge-config", "--store",
         str(store_yaml), "--hq-host", "127.0.0.1", "--hq-port", str(hq_port)],
        check=True, capture_output=True, text=True).stdout
    port = yaml.safe_load(store_yaml.read_text())["broker"]["port"]
    return start_mosquitto(workdir, port, extra_conf=bridge)


def run_chain_demo(stores: int, seconds: float, workdir: Path | None = None,
                   scenario: str = "basic") -> int:
    if mosquitto_path() is None:
        raise FileNotFoundError("the chain demo bridges Mosquittos: apt-get install mosquitto")
    workdir = (workdir or Path("var/demo") / time.strftime("chain-%Y%m%d-%H%M%S")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    services: list[Any] = []
    children: list[Child] = []
    interrupted = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        hq_broker = start_mosquitto(workdir / "hq" / "broker")
        services.append(hq_broker)
        tsdb = start_victoria_metrics(workdir / "hq" / "tsdb")
        services.append(tsdb)
        tsdb_url = f"http://127.0.0.1:{tsdb.port}"
        erp_password = secrets.token_urlsafe(12)
        hq_token = secrets.token_urlsafe(24)
        base = load_scenario(scenario)
        tryton = start_tryton(workdir / "hq" / "tryton", free_port(),
                              [{"sku": s.sku, "name": s.name, "barcode": s.barcode,
                                "unit_grams": s.unit_grams} for s in base.catalog],
                              {s.sku: base.erp_initial_stock * stores for s in base.catalog},
                              erp_password)
        services.append(tryton)
        env = {"STOREEDGE_ERP_PASSWORD": erp_password, "PYTHONUNBUFFERED": "1",
               "STOREEDGE_DEMO_HQ_TOKEN": hq_token}
        cli = [sys.executable, "-m", "edge_agent.cli"]
        shops: list[dict[str, Any]] = []
        for i in range(stores):
            sdir = workdir / f"store-{i + 1:02d}"
            for sub in ("dev", "agent", "broker"):
                (sdir / sub).mkdir(parents=True, exist_ok=True)
            scen_path = _store_scenario(scenario, i, sdir)
            scen = load_scenario(str(scen_path))
            http_port = free_port()
            config = store_config(scen, sdir, broker_port=free_port(), http_port=http_port,
                                  erp_url=tryton.url, tsdb_url=tsdb_url)
            store_yaml = sdir / "store.yaml"
            store_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
            broker = _store_broker(sdir / "broker", store_yaml, hq_broker.port)
            services.append(broker)
            agent_url = f"http://127.0.0.1:{http_port}"
            sim = Child(f"sim-{i + 1:02d}", [
                *cli, "sim", "--scenario", str(scen_path), "--broker-port", str(broker.port),
                "--agent-url", agent_url, "--dev-dir", str(sdir / "dev"),
                "--truth-out", str(sdir / "truth.json")], sdir, env)
            agent = Child(f"agent-{i + 1:02d}", [*cli, "agent", "--config", str(store_yaml)],
                          sdir, env)
            children += [sim, agent]
            shops.append({"id": scen.store_id, "sim": sim, "agent": agent, "dir": sdir,
                          "board": StatusBoard(agent_url)})
        hq_port = free_port()
        hq_yaml = workdir / "hq" / "hq.yaml"
        hq_yaml.write_text(yaml.safe_dump({
            "chain": {"name": "storeedge demo chain"},
            "http": {"host": "127.0.0.1", "port": hq_port},
            "users": [{"name": "demo", "token_env": "STOREEDGE_DEMO_HQ_TOKEN"}],
            "broker": {"port": hq_broker.port},
            "timeseries": {"url": tsdb_url, "refresh_seconds": 2},
            "stores": [{"id": s["id"], "name": f"Demo store {n + 1}"}
                       for n, s in enumerate(shops)]}, sort_keys=False))
        hq = Child("hq", [*cli, "hq", "--config", str(hq_yaml)], workdir / "hq", env)
        children.append(hq)
        started = time.time()
        for shop in shops:
            shop["sim"].start()
            shop["agent"].start()
        hq.start()
        print(f"storeedge demo: HQ at http://127.0.0.1:{hq_port}/ (token: {hq_token}; "
              f"logs in {workdir})", flush=True)
        deadline = time.monotonic() + seconds
        while not interrupted and time.monotonic() < deadline:
            for child in children:
                child.check()
            time.sleep(1.0)
        for shop in shops:
            shop["sim"].stop(grace=60.0)
        report_stores: dict[str, Any] = {}
        drain_until = time.monotonic() + DRAIN_SECONDS
        for shop in shops:  # the others drain meanwhile
            drained = _wait_drained(shop["board"], shop["agent"], {}, Counter(), shop["dir"],
                                    max(1.0, drain_until - time.monotonic()))
            truth_file = shop["dir"] / "truth.json"
            truth = json.loads(truth_file.read_text()) if truth_file.exists() else {}
            units: dict[str, int] = truth.get("sales_units", {})
            erp_units = asyncio.run(_erp_units(tryton.url, erp_password, f"{shop['id']}:"))
            skus = set(units) | set(erp_units)
            mismatched = sorted(s for s in skus if units.get(s, 0) != erp_units.get(s, 0))
            shop["board"].poll()
            report_stores[shop["id"]] = {
                "sales": truth.get("transactions", 0), "erp_drained": drained,
                "open_alerts": shop["board"].health.get("open_alerts"),
                "agent_restarts": shop["agent"].restarts,
                "truth": {"scenario_sales_units": sum(units.values()),
                          "erp_sold_units": sum(erp_units.values()),
                          "mismatches": len(mismatched), "mismatched_skus": mismatched}}
        hq_view = _read_hq(f"http://127.0.0.1:{hq_port}", hq_token, started, report_stores)
        print(json.dumps({"stores": report_stores, "hq": hq_view, "seconds": seconds},
                         sort_keys=True), flush=True)
        return 0
    finally:
        for child in reversed(children):
            child.stop(grace=10.0)
        for service in reversed(services):
            service.stop()
        signal.signal(signal.SIGINT, previous)


async def _erp_units(url: str, password: str, prefix: str) -> dict[str, int]:
    erp = TrytonConnector(url, "storeedge", "admin", password, "WH", "Walk-in customer", 30.0)
    try:
        return await erp.sold_units(prefix)
    finally:
        await erp.aclose()


def _read_hq(url: str, token: str, since: float, stores: dict[str, Any],
             within: float = 60.0) -> dict[str, Any]:
    """HQ's figures per store, from its API, once its sales report agrees with the scenario (or
    ``within`` seconds pass: the time series arrive a little after the ERP)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + within
    view: dict[str, Any] = {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        while True:
            rows = client.get("/api/reports/sales", params={
                "start": since - 60, "end": time.time() + 1}).json()["rows"]
            overview = {r["id"]: r for r in client.get("/api/overview").json()["stores"]}
            view = {}
            for sid, store in stores.items():
                sold = sum(r["units"] for r in rows if r["store"] == sid)
                o = overview.get(sid, {})
                view[sid] = {"sales_units": sold,
                             "sales_units_equal_scenario":
                                 sold == store["truth"]["scenario_sales_units"],
                             "online": o.get("online"),
                             "lanes_out_of_stock": o.get("lanes_out_of_stock"),
                             "open_alerts": sum((o.get("alerts") or {}).values())}
                view[sid]["open_alerts_equal_agent"] = (
                    view[sid]["open_alerts"] == store["open_alerts"])
            if all(v["sales_units_equal_scenario"] and v["open_alerts_equal_agent"]
                   for v in view.values()) or \
                    time.monotonic() > deadline:
                return view
            time.sleep(2.0)
