"""Ingest benchmark: the whole agent, end to end, from MQTT shelves through counts and rules to
published alerts.

    .venv/bin/python bench/ingest.py [--readings 200000] [--lanes 200] [--rate 5000]
        [--rates 1000,5000] [--profile DIR]

It starts its own Mosquitto and a real agent process (the default inventory configuration but
settling 0, since every reading steps its lane; no ERP, no time series), then:
1. flood: publishes --readings readings as fast as one socket can, waits until every expected
   alert arrived; prints readings/s, the rate after the sender stopped and the agent's peak RSS;
2. paced: publishes at --rate readings/s (or each of --rates) for --paced-seconds and prints the
   p50/p99 latency from a reading's publish to its alert on ``store/{sid}/alerts``; with
   --profile, py-spy samples the agent meanwhile (folded stacks in DIR).
Every lane walks 10 -> 0 units a unit at a time, then is restocked to 10, each reading carrying
load-cell noise of up to +/-20% of a unit, through the default rules: the alert transitions
expected are known exactly (see ``Workload.expected``) and each is checked (missing, extra,
duplicate). The agent's CPU time per reading (and the system time in it: the journal's writes
and fsyncs, the sockets) is reported next to the wall-clock figures. Figures
are printed with the machine and the commit; nothing is asserted on speed.

The workload, the load generator and the alert checks are ``bench/load.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import (  # noqa: E402
    CAPACITY,
    LANES_PER_SHELF,
    STORE,
    THRESHOLD,
    UNIT,
    AlertListener,
    RawPublisher,
    Workload,
    flood,
    lane_id,
    paced,
    wait_ready,
)
from bench.report import commit, machine, memory_kb  # noqa: E402
from edge_agent.services import free_port, start_mosquitto  # noqa: E402
from rules.config import DEFAULTS  # noqa: E402


@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy samples ``pid`` into ``out`` (folded stacks, for speedscope or flamegraph.pl)
    while the block runs; nothing when ``out`` is None."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def store_config(workdir: Path, workload: Workload, broker_port: int, http_port: int,
                 all_rules: bool) -> Path:
    """The agent's store: the workload's lanes and its probe, the default inventory settings
    but settling 0 (each reading steps its lane), the low-stock rule alone unless
    ``all_rules``."""
    lanes = workload.lanes + 1
    shelves = (lanes + LANES_PER_SHELF - 1) // LANES_PER_SHELF
    rules_file = workdir / "rules.yaml"
    names = yaml.safe_load(DEFAULTS.read_text())["rules"]
    rules_file.write_text(yaml.safe_dump({"rules": {
        name: {"enabled": all_rules or name == "low_stock"} for name in names}}))
    config = {
        "store": {"id": STORE},
        "broker": {"port": broker_port},
        "journal": {"path": str(workdir / "journal.db"), "snapshot_seconds": 5},
        "http": {"port": http_port},
        "inventory": {"settle_seconds": 0},
        "rules": {"file": str(rules_file)},
        "catalog": [{"sku": "SKU-BENCH", "unit_grams": UNIT, "low_stock": THRESHOLD}],
        "lanes": [{"id": lane_id(i), "sku": "SKU-BENCH", "capacity": CAPACITY}
                  for i in range(lanes)],
        "devices": [{"type": "shelf_mqtt", "id": f"shelf-{s:03d}",
                     "lanes": [lane_id(i) for i in range(s * LANES_PER_SHELF,
                                                         min(lanes, (s + 1) * LANES_PER_SHELF))]}
                    for s in range(shelves)],
    }
    path = workdir / "store.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(workdir: Path, workload: Workload, broker_port: int,
                all_rules: bool = False, extra_args: tuple[str, ...] = ()) -> tuple[
                    subprocess.Popen, str]:
    """A real agent process on ``store_config``; returns it and its HTTP address."""
    http_port = free_port()
    config = store_config(workdir, workload, broker_port, http_port, all_rules)
    agent = subprocess.Popen([sys.executable, *extra_args, "-m", "edge_agent.cli",
                              "--log-level", "WARNING", "agent", "--config", str(config)],
                             cwd=ROOT, stdout=open(workdir / "agent.log", "wb"),
                             stderr=subprocess.STDOUT)
    return agent, f"http://127.0.0.1:{http_port}"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def agent_counter(url: str, name: str) -> int:
    try:
        return int(httpx.get(url + "/readyz", timeout=5).json()["counters"].get(name, 0))
    except (httpx.HTTPError, KeyError, ValueError):
        return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--lanes", type=int, default=200)
    ap.add_argument("--rate", type=int, default=5_000)
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--all-rules", action="store_true",
                    help="run the whole rule library, not only low_stock")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="sample the agent with py-spy during each paced phase, into DIR")
    ap.add_argument("--rates", default="",
                    help="comma-separated paced rates (default: --rate)")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r] or [args.rate]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    workload = Workload(args.lanes)
    cycles = max(1, args.readings // workload.per_cycle)
    workdir = Path(tempfile.mkdtemp(prefix="storeedge-bench-"))
    broker = start_mosquitto(workdir / "broker")
    agent, url = start_agent(workdir, workload, broker.port, args.all_rules)
    listener = AlertListener(broker.port, workload.probe)
    pub = RawPublisher(broker.port)
    failures: list[str] = []
    try:
        failures += wait_ready(pub, listener, workload, args.all_rules)
        rss_idle = memory_kb(agent.pid).get("VmRSS", 0)
        counted = agent_counter(url, "readings")
        result_flood = flood(pub, listener, workload, cycles, agent.pid, args.all_rules)
        result_flood["rss_idle_mb"] = round(rss_idle / 1024, 1)
        processed = agent_counter(url, "readings") - counted
        if processed != result_flood["readings"]:
            failures.append(f"agent counted {processed} readings of {result_flood['readings']}")
        print(json.dumps({"flood": result_flood}), file=sys.stderr, flush=True)
        results_paced = []
        for rate in rates:
            out = args.profile / f"agent-{rate}.folded" if args.profile else None
            with profiled(agent.pid, out):
                results_paced.append(paced(pub, listener, workload, rate, args.paced_seconds,
                                           agent.pid, args.all_rules))
    finally:
        with contextlib.suppress(OSError):
            pub.close()
        listener.close()
        stop(agent)
        broker.stop()
    for phase in (result_flood, *results_paced):
        failures += phase["wrong"]
    report = {"bench": "ingest", "commit": commit(), "machine": machine(), "lanes": args.lanes,
              "noise_of_a_unit": workload.noise, "flood": result_flood,
              "paced": results_paced[0] if len(results_paced) == 1 else results_paced,
              "wrong": failures[:20], "ok": not failures}
    print(json.dumps(report, indent=2))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
