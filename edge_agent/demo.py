"""``storeedge demo``: a whole store in a box, composed like a service manager would.

It starts a broker (Mosquitto, else the embedded amqtt), a real Tryton with the scenario's
catalog, VictoriaMetrics when installed, then the simulated store and the agent as separate
processes, restarting a child that dies. After N seconds (or Ctrl-C) it stops the shoppers,
lets the POS and the ERP outbox drain, reads the ERP back and prints one JSON line: what
happened, and the truth check of the ERP against the scenario.
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
from cloud_bridge.tryton.server import start_tryton
from edge_agent.services import (
    Service,
    free_port,
    start_broker,
    start_victoria_metrics,
    victoria_metrics_path,
)
from firmware_sim.camera import CameraSim
from firmware_sim.scenario import Scenario, load_scenario
from firmware_sim.store import camera_reference_path

log = logging.getLogger(__name__)

DRAIN_SECONDS = 180.0  # the last sales window (60 s) must end, then the ERP take it


def store_config(scenario: Scenario, workdir: Path, *, broker_port: int, http_port: int,
                 erp_url: str | None, tsdb_url: str | None,
                 camera_ports: dict[str, int] | None = None) -> dict[str, Any]:
    """The agent's store config for a scenario (what a store's IT team would write)."""
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
    return {
        "store": {"id": scenario.store_id, "name": f"demo ({scenario.name})"},
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "journal": {"path": str(workdir / "agent" / "journal.db"), "snapshot_seconds": 2},
        "http": {"host": "127.0.0.1", "port": http_port},
        "erp": ({"kind": "tryton", "url": erp_url, "database": "storeedge",
                 "username": "admin", "password_env": "STOREEDGE_ERP_PASSWORD",
                 "warehouse": "WH", "customer": "Walk-in customer"}
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
    }


class Child:
    """A supervised child process; restarted when it dies unexpectedly."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name, self.argv, self.workdir, self.env = name, argv, workdir, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.stopping = False

    def start(self) -> None:
        with open(self.workdir / f"{self.name}.log", "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env}, cwd=self.workdir,
                                         start_new_session=True)
        (self.workdir / f"{self.name}.pid").write_text(str(self.proc.pid))

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and not self.stopping:
            log.warning("%s exited with %s; restarting", self.name, self.proc.returncode)
            self.restarts += 1
            self.start()

    def stop(self, grace: float) -> int | None:
        self.stopping = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0fs; killing it", self.name, grace)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class StatusBoard:
    """Reads the agent's health and keeps what the final report needs across restarts (a
    restarted agent's counters begin again; its journal does not)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.health: dict[str, Any] = {}
        self._before_restarts: Counter[str] = Counter()
        self._last: Counter[str] = Counter()
        self._rate: tuple[float, int] | None = None
        self.readings_per_s = 0.0

    def poll(self) -> None:
        try:
            resp = httpx.get(self.url + "/readyz", timeout=2.0)
            health = resp.json()
        except (httpx.HTTPError, ValueError):
            return
        counters = Counter({k: int(v) for k, v in health.get("counters", {}).items()})
        if counters["readings"] < self._last["readings"]:  # the agent restarted
            self._before_restarts += self._last
        self._last = counters
        now = time.monotonic()
        total = self.readings
        if self._rate is not None and now > self._rate[0]:
            self.readings_per_s = (total - self._rate[1]) / (now - self._rate[0])
        self._rate = (now, total)
        self.health = health

    def counter(self, name: str) -> int:
        return self._before_restarts[name] + self._last[name]

    @property
    def readings(self) -> int:
        return self.counter("readings")

    def readings_by_kind(self) -> dict[str, int]:
        names = set(self._before_restarts) | set(self._last)
        return {n.removeprefix("readings_"): self.counter(n) for n in sorted(names)
                if n.startswith("readings_")}

    def screen(self, scenario: Scenario, remaining: float, restarts: int, handheld: str) -> str:
        h = self.health
        lines = [f"storeedge demo - store {scenario.store_id} ({scenario.name})  "
                 f"{remaining:5.0f}s left   handheld: {handheld}", ""]
        for dev_id, dev in sorted(h.get("devices", {}).items()):
            state = dev.get("state", "unknown")
            lines.append(f"  {dev_id:<12} {dev.get('type', ''):<13} {state:<8} "
                         f"readings {dev.get('readings', 0):>7}  bad {dev.get('bad', 0)}")
        erp = h.get("erp") or {}
        ts = h.get("timeseries") or {}
        lines += ["",
                  f"  readings/s {self.readings_per_s:8.0f}   total {self.readings}",
                  f"  open alerts {h.get('open_alerts', 0):>4}   by rule "
                  f"{json.dumps(h.get('alerts', {}))}",
                  f"  sales {h.get('counters', {}).get('sales', 0):>6}   ERP backlog "
                  f"{erp.get('pending', '?')}  delivered {erp.get('delivered', '?')}",
                  f"  HQ time series: buffered {ts.get('buffered', '-')}  written "
                  f"{ts.get('written', '-')}",
                  f"  agent restarts {restarts}   status {h.get('status', 'starting')}"]
        return "\n".join(lines)


def run_demo(scenario_name: str, seconds: float, workdir: Path | None = None,
             faults: list[str] | None = None) -> int:
    scenario = load_scenario(scenario_name)
    workdir = (workdir or Path("var/demo") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    (workdir / "dev").mkdir(parents=True, exist_ok=True)
    (workdir / "agent").mkdir(parents=True, exist_ok=True)
    tty = sys.stdout.isatty()
    services: list[Any] = []
    children: list[Child] = []
    interrupted = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        broker: Service = start_broker(workdir / "broker")
        services.append(broker)
        erp_password = secrets.token_urlsafe(12)
        catalog = [{"sku": s.sku, "name": s.name, "barcode": s.barcode,
                    "unit_grams": s.unit_grams} for s in scenario.catalog]
        tryton = start_tryton(workdir / "tryton", free_port(), catalog,
                              {s.sku: scenario.erp_initial_stock for s in scenario.catalog},
                              erp_password)
        services.append(tryton)
        tsdb = None
        if victoria_metrics_path() is not None:
            tsdb = start_victoria_metrics(workdir / "tsdb")
            services.append(tsdb)
        else:
            log.warning("victoria-metrics not installed: the demo runs without HQ time series")
        http_port = free_port()
        agent_url = f"http://127.0.0.1:{http_port}"
        camera_ports = {camera.id: free_port() for camera in scenario.cameras}
        for camera in scenario.cameras:  # calibration: the empty shelf, taken at install time
            CameraSim(list(camera.lanes.items()), size=(camera.width, camera.height)
                      ).write_reference(camera_reference_path(workdir / "dev", camera))
        config_path = workdir / "store.yaml"
        config_path.write_text(yaml.safe_dump(store_config(
            scenario, workdir, broker_port=broker.port, http_port=http_port,
            erp_url=tryton.url, tsdb_url=f"http://127.0.0.1:{tsdb.port}" if tsdb else None,
            camera_ports=camera_ports), sort_keys=False))
        env = {"STOREEDGE_ERP_PASSWORD": erp_password, "PYTHONUNBUFFERED": "1"}
        cli = [sys.executable, "-m", "edge_agent.cli"]
        truth_path = workdir / "truth.json"
        sim = Child("sim", [*cli, "sim", "--scenario", scenario_name, "--broker-port",
                            str(broker.port), "--agent-url", agent_url, "--dev-dir",
                            str(workdir / "dev"), "--truth-out", str(truth_path),
                            *(f"--fault={f}" for f in faults or ()),
                            *(f"--device-port={d}={p}" for d, p in camera_ports.items())],
                    workdir, env)
        agent = Child("agent", [*cli, "agent", "--config", str(config_path)], workdir, env)
        children += [sim, agent]
        sim.start()  # first, so the shelves' serial ports exist when the agent opens them
        agent.start()
        handheld = agent_url + "/"
        print(f"storeedge demo: handheld page {handheld}  (logs in {workdir})", flush=True)
        board = StatusBoard(agent_url)
        deadline = time.monotonic() + seconds
        while not interrupted and time.monotonic() < deadline:
            for child in children:
                child.check()
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
        sim.stop(grace=60.0)
        drained = _wait_drained(board, agent, DRAIN_SECONDS)
        board.poll()
        truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
        erp_units = asyncio.run(_erp_sold_units(tryton.url, erp_password))
        tsdb_points = _count_points(tsdb.port, scenario.store_id) if tsdb else 0
        agent.stop(grace=30.0)
        report = _report(scenario, seconds, board, agent.restarts, truth, erp_units,
                         tsdb_points, drained, states_while_running)
        print(json.dumps(report, sort_keys=True), flush=True)
        return 0
    finally:
        for child in reversed(children):
            child.stop(grace=10.0)
        for service in reversed(services):
            service.stop()
        signal.signal(signal.SIGINT, previous)


def _wait_drained(board: StatusBoard, agent: Child, timeout: float) -> bool:
    """Wait until every sale is in the ERP (no line in an open window, nothing pending in the
    outbox), restarting the agent if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.check()
        board.poll()
        erp = board.health.get("erp") or {}
        if (erp.get("pending") == 0 and not erp.get("unsummarised_lines")
                and board.health.get("counters") is not None):
            return True
        time.sleep(0.5)
    return False


async def _erp_sold_units(url: str, password: str) -> dict[str, int]:
    erp = TrytonConnector(url, "storeedge", "admin", password, "WH", "Walk-in customer", 30.0)
    try:
        return await erp.sold_units()
    finally:
        await erp.aclose()


def _count_points(port: int, store_id: str) -> int:
    """Points HQ's time-series server holds for this store (read back, not our own counter)."""
    base = f"http://127.0.0.1:{port}"
    try:
        httpx.get(base + "/internal/force_flush", timeout=10)
        resp = httpx.post(base + "/api/v1/export", data={"match[]": f'{{store="{store_id}"}}'},
                          timeout=30)
    except httpx.HTTPError as exc:
        log.error("cannot read the time-series server back: %s", exc)
        return 0
    return sum(len(json.loads(line)["values"]) for line in resp.text.splitlines() if line)


def _report(scenario: Scenario, seconds: float, board: StatusBoard, restarts: int,
            truth: dict[str, Any], erp_units: dict[str, int], tsdb_points: int,
            drained: bool, device_states: dict[str, int]) -> dict[str, Any]:
    h = board.health
    scenario_units: dict[str, int] = truth.get("sales_units", {})
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
        "agent_restarts": restarts,
        "truth": {
            "scenario_sales_units": sum(scenario_units.values()),
            "erp_sold_units": sum(erp_units.values()),
            "mismatches": len(mismatched),
            "mismatched_skus": mismatched,
            "pos_unposted": truth.get("unposted"),
        },
    }
