"""Chaos: one store-in-a-box demo run while faults are injected from outside, as a hostile
store and a bad day would: the agent SIGKILLed 20 times, the broker hung then killed, the ERP
hung for two minutes then killed, the time-series server down for two minutes, the journal's
disk full and freed, the agent's clock stepped an hour forward and back, a poison POS line and a
poison MQTT message. Afterwards the ERP ledger and HQ's time series equal the truth, no alert
was opened twice, no background task is dead, and the demo still prints its report.

The faults are signals to the demo's own processes (their pids are in the demo's work
directory), a tmpfs of our own under the agent's journal (root only: elsewhere that fault is
skipped and the summary says so), libfaketime for the agent's wall clock (Debian's
``faketime``) and plain HTTP and MQTT.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml

from edge_agent.broker_security import device_user, read_credentials
from tests.demo_process import (
    agent_health,
    agent_url,
    final_report,
    start_demo,
    stop_demo,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

SECONDS = 420  # the demo's trading time: every fault below fits inside it
AGENT_KILLS = 20
OUTAGE_S = 120  # the ERP hung and the time-series server down this long
POISON_MQTT_BYTES = 20 * 1024 * 1024


def libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


class Demo:
    """The demo under test, seen from outside: its processes' pids and the agent's HTTP."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def pid(self, role: str) -> int:
        return int((self.workdir / f"{role}.pid").read_text())

    def config(self) -> dict:
        return yaml.safe_load((self.workdir / "store.yaml").read_text())

    def counter(self, name: str) -> int:
        return int(((agent_health(self.workdir) or {}).get("counters") or {}).get(name, 0))

    def sales(self) -> int:
        return self.counter("sales")

    def readings(self) -> int:
        return self.counter("readings")

    def agent_up(self, not_pid: int | None = None) -> bool:
        try:
            pid = self.pid("agent")
        except (OSError, ValueError):
            return False
        return pid != not_pid and agent_health(self.workdir) is not None

    def signal(self, role: str, sig: signal.Signals) -> int:
        pid = self.pid(role)
        os.kill(pid, sig)
        return pid


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path | None]:
    """A 64 MB tmpfs mounted at ``path`` (root only; yields None elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield None
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file is returned for freeing."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: closing has nothing to flush
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


@contextlib.contextmanager
def stopped(demo: Demo, role: str) -> Iterator[None]:
    """A service hung (SIGSTOP) for the block: it holds its sockets and answers nothing."""
    pid = demo.signal(role, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def publish_poison(demo: Demo) -> None:
    """A 20 MB retained QoS 1 message on a device topic the agent reads."""
    cfg = demo.config()
    store = cfg["store"]["id"]
    device = next(d["id"] for d in cfg["devices"] if d["type"] == "shelf_mqtt")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"chaos-{os.getpid()}")
    if cfg["broker"].get("tls"):  # as the device itself: only its own topics are open to it
        user = device_user(store, device)
        passwords = read_credentials(next((demo.workdir / "broker").rglob("credentials")))
        client.username_pw_set(user, passwords[user])
        client.tls_set(ca_certs=cfg["broker"]["ca_file"])
    client.connect(cfg["broker"]["host"], cfg["broker"]["port"])
    client.loop_start()
    try:
        info = client.publish(f"store/{store}/dev/{device}/weight",
                              b"{" + b" " * POISON_MQTT_BYTES + b"}", qos=1, retain=True)
        info.wait_for_publish(timeout=60)
        assert info.is_published()
        # A retained message outlives the test: clear it as an operator would.
        client.publish(f"store/{store}/dev/{device}/weight", b"", qos=1,
                       retain=True).wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def kill_agent_repeatedly(demo: Demo, times: int, injected: Counter[str]) -> None:
    for _ in range(times):
        wait_for(demo.agent_up, 60, "the agent to answer")
        time.sleep(1.5)  # let it take readings and sales between deaths
        pid = demo.signal("agent", signal.SIGKILL)
        injected["agent_sigkill"] += 1
        wait_for(functools.partial(demo.agent_up, not_pid=pid), 90,
                 "the demo to restart the killed agent")


def test_the_store_survives_a_bad_day(tmp_path: Path) -> None:
    faketime = libfaketime()
    if faketime is None:
        pytest.fail("libfaketime is not installed (scripts/setup.sh installs Debian's faketime)")
    workdir = tmp_path / "demo"
    clock = tmp_path / "agent-clock"
    clock.write_text("+0\n")
    agent_env = {"LD_PRELOAD": faketime, "FAKETIME_TIMESTAMP_FILE": str(clock),
                 "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    injected: Counter[str] = Counter()
    skipped: list[str] = []
    with small_disk(workdir / "agent") as disk:
        proc = start_demo(workdir, SECONDS, *(f"--agent-env={k}={v}"
                                              for k, v in agent_env.items()))
        demo = Demo(workdir)
        try:
            wait_for(lambda: demo.sales() >= 3, 240, "the agent to accept sales")
            kill_agent_repeatedly(demo, AGENT_KILLS, injected)

            # Poison input: refused with a 4xx naming the field; the store trades on.
            wait_for(demo.agent_up, 60, "the agent to answer")
            resp = httpx.post(agent_url(workdir) + "/api/pos/transactions", timeout=10, json={
                "txn_id": "chaos-poison-1", "ts": int(time.time() * 1000),
                "lines": [{"sku": "COLA-330", "qty": 10**400, "unit_price": 3.5}]})
            assert 400 <= resp.status_code < 500, resp.text[:500]
            injected["poison_pos"] += 1
            publish_poison(demo)
            injected["poison_mqtt"] += 1
            readings = demo.readings()
            wait_for(lambda: demo.readings() > readings + 20, 60,
                     "readings to flow after the poison")

            with stopped(demo, "broker"):
                time.sleep(15)
            injected["broker_hung"] += 1
            demo.signal("broker", signal.SIGKILL)
            injected["broker_killed"] += 1

            # Two minutes with the ERP hung and HQ's time series down; meanwhile the agent's
            # clock jumps an hour ahead and back, and its disk fills up and is freed.
            with stopped(demo, "erp"), stopped(demo, "tsdb"):
                injected["erp_hung"] += 1
                injected["tsdb_down"] += 1
                started = time.monotonic()
                clock.write_text("+1h\n")
                time.sleep(20)
                clock.write_text("+0\n")
                injected["clock_step"] += 2
                if disk is not None:
                    filler = fill(disk)
                    injected["disk_full"] += 1
                    time.sleep(15)
                    filler.unlink()
                else:
                    skipped.append("disk_full (needs root for a tmpfs)")
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
            demo.signal("erp", signal.SIGKILL)
            injected["erp_killed"] += 1
            health = wait_for(lambda: agent_health(workdir), 60, "the agent to answer")
            tasks_while_running = health.get("tasks")
            report = final_report(proc, timeout=SECONDS + 600)
        finally:
            stop_demo(proc)

    (tmp_path / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    truth = report["truth"]
    summary = {"faults_injected": dict(injected), "skipped": skipped,
               "sales": report["sales"], "units": truth["scenario_sales_units"],
               "mismatches": truth["mismatches"], "duplicates": report["duplicate_alerts"],
               "dead_tasks": report.get("dead_tasks"), "restarts": report["restarts"]}
    print("chaos summary: " + json.dumps(summary, sort_keys=True))
    assert injected["agent_sigkill"] >= 20
    assert truth["scenario_sales_units"] > 0
    assert truth["mismatches"] == 0, truth
    assert truth["erp_sold_units"] == truth["scenario_sales_units"]
    assert truth["tsdb_sold_units"] == truth["scenario_sales_units"], truth
    assert report["duplicate_alerts"] == 0, report["duplicate_alert_list"]
    assert report["dead_tasks"] == 0, (report.get("tasks"), tasks_while_running)
    assert report["restarts"]["agent"] >= AGENT_KILLS
    assert report["restarts"]["broker"] >= 1 and report["restarts"]["erp"] >= 1
