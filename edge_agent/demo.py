"""``storeedge demo``: a whole store in a box, composed like a service manager would.

It starts a broker (Mosquitto with TLS, a user per device and ACLs, as ``storeedge
broker-config`` writes them for a store; else the embedded amqtt, open), a real Tryton with the
scenario's catalog, VictoriaMetrics when installed, then the simulated store and the agent as
separate processes, restarting any child that dies (broker, ERP and time-series server
included).
After N seconds (or Ctrl-C) it stops the shoppers, lets the POS and the ERP outbox drain,
reads the ERP back and prints one JSON line: what happened, and the truth check of the ERP
against the scenario.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import start_tryton
from edge_agent.broker_security import BrokerFiles
from edge_agent.certs import write_store_certs
from edge_agent.config import StoreConfig
from edge_agent.demo_watch import AlertLog, Child, StatusBoard, revive, wait_drained
from edge_agent.services import (
    Service,
    free_port,
    mosquitto_path,
    start_amqtt,
    start_mosquitto,
    start_victoria_metrics,
    victoria_metrics_path,
)
from firmware_sim.camera import CameraSim
from firmware_sim.faults import merge_fault_specs
from firmware_sim.fleet import camera_reference_path
from firmware_sim.judge import false_alerts
from firmware_sim.scenario import Scenario, load_scenario
from firmware_sim.store import stop_seconds
from storeedge.errors import StoreEdgeError

log = logging.getLogger(__name__)

DRAIN_SECONDS = 180.0  # the last sales window (60 s) must end, then the ERP take it


def store_config(scenario: Scenario, workdir: Path, *, broker_port: int, http_port: int,
                 erp_url: str | None, tsdb_url: str | None,
                 camera_ports: dict[str, int] | None = None,
                 broker_ca: Path | None = None, warehouse: str = "WH") -> dict[str, Any]:
    """The agent's store config for a scenario (what a store's IT team would write); with
    ``broker_ca`` the agent signs in as its own user over TLS; ``warehouse`` is the code of the
    store's warehouse in the ERP."""
    dev = workdir / "dev"
    devices: list[dict[str, Any]] = []
    for shelf in scenario.shelves:
        lanes = [lane.id for lane in shelf.lanes]
        if shelf.kind == "modbus":
            devices.append({"type": "shelf_modbus", "id": shelf.id, "slave": shelf.slave,
                            "port": str(workdir / "dev" / f"{shelf.id}.tty"), "poll_hz": 5,
                            "lanes": lanes})
        else:
            devices.append({"type": "shelf_mqtt", "id": shelf.id, "lanes": lanes})
    for reader in scenario.rfid_readers:
        antennas = dict(reader.antennas)
        if reader.kind == "zebra":
            devices.append({"type": "rfid_zebra", "id": reader.id, "antennas": antennas})
        else:
            devices.append({"type": "rfid_serial", "id": reader.id,
                            "port": str(dev / f"{reader.id}.tty"), "antennas": antennas,
                            "location": next(iter(antennas.values()), None)})
    for scanner in scenario.scanners:
        devices.append({"type": "scanner", "id": scanner.id,
                        "port": str(dev / f"{scanner.id}.tty")})
    for kiosk in scenario.kiosks:
        devices.append({"type": "checkout", "id": kiosk.id})
    for camera in scenario.cameras:
        port = (camera_ports or {})[camera.id]
        devices.append({
            "type": "camera", "id": camera.id, "measure_hz": 2.0,
            "source": f"http://127.0.0.1:{port}/stream.mjpg",
            "lanes": [{"lane": lane, "roi": list(roi)} for lane, roi in camera.lanes.items()],
            "calibration": {"reference": str(camera_reference_path(dev, camera))}})
    for fridge in scenario.fridges:
        devices.append({"type": "zigbee2mqtt", "id": fridge.id, "name": fridge.name,
                        "zone": fridge.zone})
    zones = {f.zone: {"id": f.zone, "min_c": f.temp_range[0], "max_c": f.temp_range[1]}
             for f in scenario.fridges}
    rules: dict[str, Any] = {}
    if scenario.rules:
        rules_file = workdir / "rules.yaml"
        rules_file.write_text(yaml.safe_dump(dict(scenario.rules), sort_keys=False))
        rules = {"file": str(rules_file)}
    return {
        "store": {"id": scenario.store_id, "name": f"demo ({scenario.name})"},
        "broker": ({"host": "127.0.0.1", "port": broker_port, "tls": True,
                    "ca_file": str(broker_ca), "username": f"{scenario.store_id}-agent",
                    "password_env": "STOREEDGE_MQTT_PASSWORD"}
                   if broker_ca else {"host": "127.0.0.1", "port": broker_port}),
        "journal": {"path": str(workdir / "agent" / "journal.db"), "snapshot_seconds": 2},
        "http": {"host": "127.0.0.1", "port": http_port},
        "erp": ({"kind": "tryton", "url": erp_url, "database": "storeedge",
                 "username": "admin", "password_env": "STOREEDGE_ERP_PASSWORD",
                 "warehouse": warehouse, "customer": "Walk-in customer"}
                if erp_url else {"kind": "none"}),
        "timeseries": ({"enabled": True, "url": tsdb_url, "sample_seconds": 5}
                       if tsdb_url else {"enabled": False}),
        "catalog": [{"sku": s.sku, "name": s.name, "barcode": s.barcode,
                     "unit_grams": s.unit_grams, "low_stock": s.low_stock}
                    for s in scenario.catalog],
        "lanes": [{"id": lane.id, "sku": lane.sku, "capacity": lane.capacity}
                  for shelf in scenario.shelves for lane in shelf.lanes],
        "zones": list(zones.values()),
        "devices": devices,
        # A demo lasts minutes: a tag unread for 20 s has left (a store uses minutes).
        "rfid": {"departed_after_s": 20},
        **({"rules": rules} if rules else {}),
    }


def run_demo(scenario_name: str, seconds: float, workdir: Path | None = None,
             faults: list[str] | None = None, agent_env: dict[str, str] | None = None) -> int:
    scenario = load_scenario(scenario_name)
    workdir = (workdir or Path("var/demo") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    (workdir / "dev").mkdir(parents=True, exist_ok=True)
    (workdir / "agent").mkdir(parents=True, exist_ok=True)
    tty = sys.stdout.isatty()
    services: dict[str, Any] = {}  # the broker, the ERP and the time-series server, by role
    children: list[Child] = []
    restarts: Counter[str] = Counter()
    interrupted = False

    def on_signal(signum: int, frame: Any) -> None:
        # The first Ctrl-C (or SIGTERM) ends the run and still drains and reports; a second
        # one stops every child now.
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        erp_password = secrets.token_urlsafe(12)
        catalog = [{"sku": s.sku, "name": s.name, "barcode": s.barcode,
                    "unit_grams": s.unit_grams} for s in scenario.catalog]
        tryton = start_tryton(workdir / "tryton", free_port(), catalog,
                              {s.sku: scenario.erp_initial_stock for s in scenario.catalog},
                              erp_password)
        services["erp"] = tryton
        tsdb = None
        if victoria_metrics_path() is not None:
            tsdb = start_victoria_metrics(workdir / "tsdb")
            services["tsdb"] = tsdb
        else:
            log.warning("victoria-metrics not installed: the demo runs without HQ time series")
        http_port = free_port()
        agent_url = f"http://127.0.0.1:{http_port}"
        camera_ports = {camera.id: free_port() for camera in scenario.cameras}
        for camera in scenario.cameras:  # calibration: the empty shelf, taken at install time
            CameraSim(list(camera.lanes.items()), size=(camera.width, camera.height)
                      ).write_reference(camera_reference_path(workdir / "dev", camera))
        broker_port = free_port()
        certs = (write_store_certs(workdir / "broker" / "certs", scenario.store_id)
                 if mosquitto_path() else None)
        config = store_config(
            scenario, workdir, broker_port=broker_port, http_port=http_port,
            erp_url=tryton.url, tsdb_url=f"http://127.0.0.1:{tsdb.port}" if tsdb else None,
            camera_ports=camera_ports, broker_ca=certs.ca_cert if certs else None)
        config_path = workdir / "store.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {"STOREEDGE_ERP_PASSWORD": erp_password, "PYTHONUNBUFFERED": "1"}
        sim_login: list[str] = []
        hq_login: tuple[str, str] | None = None  # the alert log reads as HQ's bridge would
        if certs is not None:
            broker: Service = start_mosquitto(workdir / "broker", broker_port,
                                              stores=[StoreConfig.model_validate(config)],
                                              certs=certs)
            files = broker.extra["broker"]
            assert isinstance(files, BrokerFiles)
            env["STOREEDGE_MQTT_PASSWORD"] = files.passwords[config["broker"]["username"]]
            sim_login = ["--broker-ca", str(certs.ca_cert),
                         "--broker-credentials", str(files.credentials_file)]
            hq_user = files.user(scenario.store_id, "hq")
            hq_login = (hq_user, files.passwords[hq_user])
        else:
            broker = start_amqtt(workdir / "broker", broker_port)
            log.warning("mosquitto not installed; the embedded amqtt broker is open to anyone")
        services["broker"] = broker
        for role, service in services.items():
            (workdir / f"{role}.pid").write_text(str(service.pid))
        cli = [sys.executable, "-m", "edge_agent.cli"]
        truth_path = workdir / "truth.json"
        sim = Child("sim", [*cli, "sim", "--scenario", scenario_name, "--broker-port",
                            str(broker.port), *sim_login, "--agent-url", agent_url, "--dev-dir",
                            str(workdir / "dev"), "--truth-out", str(truth_path),
                            *(f"--fault={f}" for f in faults or ()),
                            *(f"--device-port={d}={p}" for d, p in camera_ports.items())],
                    workdir, env)
        agent = Child("agent", [*cli, "agent", "--config", str(config_path)], workdir,
                      {**env, **(agent_env or {})})
        children += [sim, agent]
        alert_log = AlertLog(broker.port, scenario.store_id, login=hq_login,
                             ca_file=certs.ca_cert if certs else None)
        sim.start()  # first, so the shelves' serial ports exist when the agent opens them
        agent.start()
        handheld = agent_url + "/"
        print(f"storeedge demo: handheld page {handheld}  (logs in {workdir})", flush=True)
        board = StatusBoard(agent_url)
        deadline = time.monotonic() + seconds
        while not interrupted and time.monotonic() < deadline:
            for child in children:
                child.check()
            revive(services, restarts, workdir)
            board.poll()
            if tty:
                screen = board.screen(scenario, deadline - time.monotonic(), agent.restarts,
                                      handheld)
                sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
                sys.stdout.flush()
            time.sleep(1.0)
        board.poll()
        states_while_running = dict(board.health.get("device_states") or {})
        # Stop the shoppers; the POS drains its queue and writes the truth before it exits.
        sim.stop(grace=stop_seconds(scenario) + 10.0)
        drained = wait_drained(board, agent, services, restarts, workdir, DRAIN_SECONDS)
        board.poll()
        truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
        revive(services, restarts, workdir)
        try:
            erp_units = asyncio.run(_erp_sold_units(tryton.url, erp_password))
        except StoreEdgeError as exc:  # still a report, with the ERP's side unknown
            log.error("cannot read the ERP back: %s", exc)
            erp_units = None
        tsdb_points, tsdb_units = (_read_time_series(tsdb.port, scenario.store_id) if tsdb
                                   else (0, 0))
        agent.stop(grace=30.0)
        alert_log.close()
        unjustified = false_alerts(
            scenario, merge_fault_specs(scenario.device_faults(), faults or ()), truth,
            list(alert_log.opened.values()))
        restarts.update({child.name: child.restarts for child in children})
        report = _report(scenario, seconds, board, restarts, truth, erp_units,
                         tsdb_points, drained, states_while_running)
        report["truth"]["tsdb_sold_units"] = tsdb_units if tsdb else None
        report["alerts_heard"] = len(alert_log.opened)  # on MQTT, as HQ and handhelds hear them
        report["duplicate_alerts"] = len(alert_log.duplicates)
        report["duplicate_alert_list"] = alert_log.duplicates
        report["false_alerts"] = None if unjustified is None else len(unjustified)
        report["false_alert_list"] = unjustified
        print(json.dumps(report, sort_keys=True), flush=True)
        return 0
    finally:
        for child in reversed(children):
            child.stop(grace=10.0)
        for service in reversed(services.values()):
            service.stop()
        signal.signal(signal.SIGINT, previous)


async def _erp_sold_units(url: str, password: str) -> dict[str, int]:
    erp = TrytonConnector(url, "storeedge", "admin", password, "WH", "Walk-in customer", 30.0)
    try:
        return await erp.sold_units()
    finally:
        await erp.aclose()


def _read_time_series(port: int, store_id: str) -> tuple[int, int]:
    """Points HQ's time-series server holds for this store, and the units its sale points
    add up to (read back, not our own counters)."""
    base = f"http://127.0.0.1:{port}"
    try:
        httpx.get(base + "/internal/force_flush", timeout=10)
        resp = httpx.post(base + "/api/v1/export", data={"match[]": f'{{store="{store_id}"}}'},
                          timeout=30)
    except httpx.HTTPError as exc:
        log.error("cannot read the time-series server back: %s", exc)
        return 0, 0
    points = sold = 0
    for line in filter(None, resp.text.splitlines()):
        series = json.loads(line)
        points += len(series["values"])
        if series["metric"].get("__name__") == "sale_qty":
            sold += round(sum(series["values"]))
    return points, sold


def _report(scenario: Scenario, seconds: float, board: StatusBoard, restarts: Counter[str],
            truth: dict[str, Any], erp_units: dict[str, int] | None, tsdb_points: int,
            drained: bool, device_states: dict[str, int]) -> dict[str, Any]:
    h = board.health
    scenario_units: dict[str, int] = truth.get("sales_units", {})
    erp_read = erp_units is not None
    erp_units = erp_units or {}
    skus = set(scenario_units) | set(erp_units)
    mismatched = sorted(s for s in skus if scenario_units.get(s, 0) != erp_units.get(s, 0))
    alerts: Counter[str] = Counter()
    for rule, states in (h.get("alerts") or {}).items():
        alerts[rule] = sum(states.values())
    erp = h.get("erp") or {}
    return {
        "scenario": scenario.name,
        "store": scenario.store_id,
        "seconds": seconds,
        "readings": {"total": board.readings, **board.readings_by_kind()},
        "tag_events": (h.get("facts") or {}).get("TagPresence", 0),
        "suspect_items": (h.get("facts") or {}).get("SuspectItem", 0),
        "devices": device_states,  # per state at the end of the run, before devices stop
        "device_history": {d: [c["state"] for c in v.get("history", [])]
                           for d, v in (h.get("devices") or {}).items()},
        "sales": truth.get("transactions", 0),
        "alerts": {"low_stock": 0, **alerts},
        "alerts_by_state": h.get("alerts") or {},
        "erp_moves": erp.get("delivered", 0),
        "erp_documents": erp.get("delivered", 0),  # one per sales window with sales
        "erp_summary_window_s": erp.get("summary_window_s"),
        "erp_backlog": erp.get("pending"),
        "erp_drained": drained,
        "tsdb_points": tsdb_points,
        "dead_tasks": len(h.get("tasks_down") or []),  # down or crash-looping at the end
        "tasks_down": h.get("tasks_down") or [],
        "agent_restarts": restarts["agent"],
        "restarts": {role: n for role, n in sorted(restarts.items()) if n},
        "truth": {
            "scenario_sales_units": sum(scenario_units.values()),
            "erp_sold_units": sum(erp_units.values()) if erp_read else None,
            "mismatches": len(mismatched) if erp_read else None,
            "mismatched_skus": mismatched,
            "pos_unposted": truth.get("unposted"),
        },
    }
