"""Side by side: the storeedge agent and Node-RED on one workload, one table from one run.

    .venv/bin/python bench/peer/run.py [--runs 1] [--lanes 1000] [--readings 200000]

The workload is ``bench/load.py``'s, as ``bench/ingest.py`` runs it: 1,000 wireless-shelf lanes
walking 10 -> 0 -> 10 units, each reading with load-cell noise of up to +/-20% of a unit,
published at QoS 0, and the low-stock rule. Node-RED runs ``low_stock_flow.json`` beside this
file (count from weight, alert on crossing the threshold, alerts published at QoS 1 as the agent
does); the agent runs its default configuration with settling 0. Node-RED is installed from the
npm registry into ``$STOREEDGE_CACHE/peer`` (default ``~/.cache/storeedge/peer``) on first use.

Each system gets a fresh Mosquitto and the same readings from one load generator that knows
only the MQTT topics and payloads; every expected alert is checked (missing, extra, duplicate).
Per system: the flood (readings/s until the last alert, and the rate at which it worked off what
was still queued when the sender stopped), then paced phases at 1,000 and 5,000 readings/s (CPU
per reading from /proc, p50/p99 from a reading's publish to its alert), and the peak RSS. With
``--runs`` above 1 the systems take turns going first, and the lines under the table compare
the first system with the second run by run (the issue's acceptance: CPU per reading at
5,000/s, p99 at 5,000/s in every run, the median p50, the rate after the sender stopped, RSS).
Nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingest import start_agent, stop  # noqa: E402
from bench.load import (  # noqa: E402
    THRESHOLD,
    UNIT,
    AlertListener,
    RawPublisher,
    Workload,
    flood,
    paced,
    wait_ready,
)
from bench.report import machine_line  # noqa: E402
from edge_agent.config import InventorySection  # noqa: E402
from edge_agent.services import free_port, start_mosquitto  # noqa: E402

HERE = Path(__file__).resolve().parent
NODE_RED_VERSION = "4.1.15"
RATES = (1_000, 5_000)

Starter = Callable[[Path, Workload, int], subprocess.Popen]


def cache_dir() -> Path:
    base = os.environ.get("STOREEDGE_CACHE") or Path.home() / ".cache" / "storeedge"
    return Path(base) / "peer"


def node_red() -> Path:
    """Node-RED's ``red.js``, installed with npm into the cache directory if it is not there in
    ``NODE_RED_VERSION``."""
    cache = cache_dir()
    package = cache / "node_modules" / "node-red" / "package.json"
    if package.exists() and json.loads(package.read_text())["version"] == NODE_RED_VERSION:
        return package.parent / "red.js"
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("Node-RED needs Node.js and npm (apt-get install nodejs npm)")
    cache.mkdir(parents=True, exist_ok=True)
    print(f"installing node-red {NODE_RED_VERSION} into {cache}", file=sys.stderr, flush=True)
    subprocess.run([npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                    "--omit=dev", f"node-red@{NODE_RED_VERSION}"], check=True,
                   stdout=subprocess.DEVNULL)
    return package.parent / "red.js"


def start_node_red(workdir: Path, workload: Workload, broker_port: int) -> subprocess.Popen:
    red = node_red()
    userdir = workdir / "node-red"
    userdir.mkdir()
    env = {**os.environ, "BROKER_PORT": str(broker_port), "NODE_RED_PORT": str(free_port()),
           "UNIT_GRAMS": str(UNIT), "LOW_STOCK": str(THRESHOLD),
           "TOLERANCE": str(InventorySection().tolerance)}
    return subprocess.Popen(["node", str(red), "--settings", str(HERE / "settings.js"),
                             "--userDir", str(userdir), str(HERE / "low_stock_flow.json")],
                            env=env, stdout=open(workdir / "node-red.log", "wb"),
                            stderr=subprocess.STDOUT)


def start_storeedge(workdir: Path, workload: Workload, broker_port: int) -> subprocess.Popen:
    agent, _url = start_agent(workdir, workload, broker_port)
    return agent


SYSTEMS: dict[str, Starter] = {"storeedge": start_storeedge, "node-red": start_node_red}


def measure(name: str, start: Starter, args: argparse.Namespace) -> dict:
    """One system, on a broker of its own, through every phase."""
    workload = Workload(args.lanes)  # the same seed: the same readings for every system
    workdir = Path(tempfile.mkdtemp(prefix=f"storeedge-peer-{name}-"))
    broker = start_mosquitto(workdir / "broker")
    process = start(workdir, workload, broker.port)
    listener = AlertListener(broker.port, workload.probe)
    pub = RawPublisher(broker.port)
    try:
        wrong = wait_ready(pub, listener, workload)
        cycles = max(1, args.readings // workload.per_cycle)
        row = {"system": name, "priming_wrong": wrong,
               "flood": flood(pub, listener, workload, cycles, process.pid)}
        for rate in RATES:
            row[f"paced_{rate}"] = paced(pub, listener, workload, rate, args.paced_seconds,
                                         process.pid)
        row["rss_peak_mb"] = max(row[k]["rss_peak_mb"] for k in row if isinstance(row[k], dict))
    finally:
        with contextlib.suppress(OSError):
            pub.close()
        listener.close()
        stop(process)
        broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return row


def wrong_alerts(row: dict) -> tuple[int, int, int]:
    phases = [row["flood"]] + [row[f"paced_{r}"] for r in RATES]
    return tuple(sum(p[k] for p in phases) for k in ("missing", "extra", "duplicate"))


def table(rows: list[dict]) -> str:
    lines = ["| run | system | flood readings/s | rate after the sender stopped (queued then) | "
             "CPU us/reading at 1,000/s | at 5,000/s | p50 / p99 ms at 1,000/s | "
             "p50 / p99 ms at 5,000/s | peak RSS MB | missing / extra / duplicate |",
             "|" + "---|" * 10]
    for row in rows:
        f, p1, p5 = row["flood"], row["paced_1000"], row["paced_5000"]
        after = f["rate_after_sender_stopped"]
        lines.append(" | ".join([
            f"| {row['run']}", row["system"], f"{f['readings_per_s']:,}",
            f"{after:,}/s ({f['queued_when_sender_stopped']:,})" if after else "-",
            str(p1["cpu_us_per_reading"]), str(p5["cpu_us_per_reading"]),
            f"{p1['latency_ms_p50']} / {p1['latency_ms_p99']}",
            f"{p5['latency_ms_p50']} / {p5['latency_ms_p99']}", str(row["rss_peak_mb"]),
            " / ".join(map(str, wrong_alerts(row))) + " |"]))
    return "\n".join(lines)


def comparison(rows: list[dict], first: str, second: str) -> list[str]:
    """``first`` against ``second``, run by run, on the figures the issue asks about."""
    runs = sorted({r["run"] for r in rows})
    by = {(r["run"], r["system"]): r for r in rows}
    pairs = [(by[(n, first)], by[(n, second)]) for n in runs
             if (n, first) in by and (n, second) in by]
    if not pairs:
        return []
    a5 = [a["paced_5000"] for a, _ in pairs]
    b5 = [b["paced_5000"] for _, b in pairs]
    cpu = [round(a["cpu_us_per_reading"] / b["cpu_us_per_reading"], 2)
           for a, b in zip(a5, b5, strict=True)]
    below = sum(a["latency_ms_p99"] < b["latency_ms_p99"] for a, b in zip(a5, b5, strict=True))
    after = sum((a["flood"]["rate_after_sender_stopped"] or 0)
                >= (b["flood"]["rate_after_sender_stopped"] or 0) for a, b in pairs)
    return [
        f"{first} / {second}, CPU per reading at 5,000/s, run by run: "
        + ", ".join(map(str, cpu)),
        f"{first} p99 at 5,000/s below {second}'s in {below} of {len(pairs)} runs; "
        f"{first} median p50 at 5,000/s {statistics.median(p['latency_ms_p50'] for p in a5)} ms",
        f"{first} rate after the sender stopped at least {second}'s in {after} of "
        f"{len(pairs)} runs; {first} peak RSS at most {max(a['rss_peak_mb'] for a, _ in pairs)} MB",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=1_000)
    ap.add_argument("--readings", type=int, default=200_000, help="readings in the flood")
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help=f"comma-separated, of: {', '.join(SYSTEMS)}")
    args = ap.parse_args()
    names = [n for n in args.systems.split(",") if n]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        ap.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if "node-red" in names:
        node_red()  # install before anything is timed
    rows = []
    for run in range(1, args.runs + 1):
        order = names if run % 2 else names[::-1]
        for name in order:
            row = measure(name, SYSTEMS[name], args)
            row["run"] = run
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r["run"], names.index(r["system"])))
    print(machine_line())
    print(f"{args.lanes} lanes, noise +/-20% of a unit, QoS 0 readings, flood of "
          f"{rows[0]['flood']['readings']:,} readings")
    print(table(rows))
    if len(names) == 2:
        print("\n".join(comparison(rows, *names)))
    bad = [r for r in rows if any(wrong_alerts(r)) or r["priming_wrong"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
