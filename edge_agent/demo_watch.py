"""How the demos keep their processes and watch the store from outside: ``Child`` (a process
restarted when it dies), ``revive`` (the same for broker, ERP and time-series server),
``AlertLog`` (the alerts announced on MQTT, as HQ and handhelds hear them), ``StatusBoard``
(the agent's health, across its restarts) and ``wait_drained``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from firmware_sim.scenario import Scenario

log = logging.getLogger(__name__)


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
            with contextlib.suppress(OSError):
                tail = (self.workdir / f"{self.name}.log").read_bytes()[-2000:]
                log.warning("%s's last words: %s", self.name, tail.decode(errors="replace"))
            log.warning("%s exited with %s; restarting", self.name, self.proc.returncode)
            self.restarts += 1
            self.start()

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM, once), without waiting."""
        if self.stopping:
            return
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float) -> int | None:
        """SIGTERM, and SIGKILL when it has not exited ``grace`` seconds later."""
        self.terminate()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0fs; killing it", self.name, grace)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class AlertLog:
    """Every alert the agent announces on ``store/{sid}/alerts``, read from the broker as any
    consumer would (a persistent QoS 1 session): the opening transition of each alert, by id,
    for the false-alarm check, and the duplicates: an alert opened while another one for the
    same rule and subject was still active."""

    _ACTIVE = frozenset({"open", "claimed", "escalated"})

    def __init__(self, port: int, store_id: str, *, login: tuple[str, str] | None = None,
                 ca_file: Path | None = None) -> None:
        self.opened: dict[str, dict[str, Any]] = {}
        self.duplicates: list[dict[str, Any]] = []
        self._active: dict[tuple[str, str], str] = {}  # (rule, subject) -> alert id
        self._topic = f"store/{store_id}/alerts"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"storeedge-demo-alerts-{store_id}",
                                   clean_session=False)
        self._client.on_connect = self._subscribe
        self._client.on_message = self._message
        if login is not None:
            self._client.username_pw_set(*login)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file))
        self._client.connect_async("127.0.0.1", port)
        self._client.loop_start()

    def _subscribe(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            alert = json.loads(message.payload)
        except ValueError:
            log.error("unreadable alert on %s", message.topic)
            return
        alert_id = alert.get("alert_id")
        self.opened.setdefault(alert_id, alert)
        key = (alert.get("rule"), alert.get("subject"))
        if alert.get("state") in self._ACTIVE:
            other = self._active.setdefault(key, alert_id)
            if other != alert_id:
                self.duplicates.append({"rule": key[0], "subject": key[1],
                                        "alert_ids": [other, alert_id]})
                self._active[key] = alert_id
        elif self._active.get(key) == alert_id:
            del self._active[key]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


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



def revive(services: dict[str, Any], restarts: Counter[str], workdir: Path) -> None:
    """Restart a service that died, on its own port and data; one that will not start is
    tried again on the next turn, while the rest of the store runs on. Each service's pid is
    in ``{role}.pid`` like the children's."""
    for role, service in services.items():
        if service.running:
            continue
        log.warning("%s is down; restarting it", role)
        try:
            service.restart()
        except (RuntimeError, TimeoutError, OSError) as exc:
            log.error("%s did not restart: %s", role, exc)
        else:
            restarts[role] += 1
            (workdir / f"{role}.pid").write_text(str(service.pid))


def wait_drained(board: StatusBoard, agent: Child, services: dict[str, Any],
                  restarts: Counter[str], workdir: Path, timeout: float) -> bool:
    """Wait until every sale is in the ERP (no line in an open window, nothing pending in the
    outbox) and HQ's time series has every point, restarting what died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.check()
        revive(services, restarts, workdir)
        board.poll()
        erp = board.health.get("erp") or {}
        series = board.health.get("timeseries") or {}
        if (erp.get("pending") == 0 and not erp.get("unsummarised_lines")
                and not series.get("buffered")
                and board.health.get("counters") is not None):
            return True
        time.sleep(0.5)
    return False
