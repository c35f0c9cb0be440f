"""HQ benchmark: the chain overview's response time and the HQ service's memory at chain scale.

    .venv/bin/python bench/hq.py [--stores 500] [--lanes 20] [--skus 20] [--minutes 30]
                                 [--requests 200]

It starts its own VictoriaMetrics and Mosquitto (the HQ broker), writes what --stores stores'
agents would have written over the last --minutes (lane stock and agent counters every 10 s,
sales, alert transitions; the schema of docs/timeseries.md) through the InfluxDB write API,
publishes each store's retained state on the HQ broker as its bridge would (agent online, a few
open alerts, device health), then starts the HQ service (``storeedge hq``) as its own process with
all stores in its config. It times:

- the ingest of the stores' history (points per second into VictoriaMetrics), then keeps every
  store's lane and agent samples coming every 10 s while it measures, as live agents do;
- how long HQ takes from start to showing every store online (retained state over the broker);
- ``GET /api/overview`` --requests times, one after another (p50, p90, p99, max), for the whole
  chain and, as the baseline in the same run, for an HQ that knows 3 of the stores;
- how long one refresh of the chain's figures takes (the one query the overview's figures come
  from, ``refresh_chain``), timed by asking the time-series server the same question;
- the HQ service's RSS (VmRSS, VmHWM) and VictoriaMetrics' RSS after the runs.

Figures are printed with the machine and the commit; nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import machine_line, memory_kb
from cloud_bridge import tsdb
from edge_agent.services import (
    Service,
    free_port,
    spawn,
    start_mosquitto,
    start_victoria_metrics,
)

TOKEN = "bench-hq-token-0123456789abcdef"


def write_history(url: str, stores: list[str], lanes: int, skus: int, minutes: int) -> int:
    """The stores' last ``minutes`` of time series; returns the points written."""
    rng = random.Random(7)
    now = time.time()
    ticks = [now - s for s in range(minutes * 60, 0, -10)]
    total = 0
    with httpx.Client(timeout=120) as client:
        for sid in stores:
            lines: list[str] = []
            points = tsdb.Points(sid)
            for t in ticks:
                lines += points.lanes([(f"L{i:02d}", f"SKU-{i % skus:03d}",
                                        rng.choice((0, 3, 8, 12)), 100.0)
                                       for i in range(lanes)], t)
                lines.append(points.agent(t, {"readings_total": int(t), "erp_backlog": 0,
                                              "tsdb_backlog": 0}))
            for _ in range(minutes * 4):  # a sale line every 15 s
                t = now - rng.uniform(1, minutes * 60)
                lines.append(tsdb.encode_line(
                    "sale", {"store": sid, "sku": f"SKU-{rng.randrange(skus):03d}"},
                    {"qty": 1, "amount": 3.5}, tsdb.to_ns(t)))
            resp = client.post(f"{url}/api/v2/write", params={"precision": "ns"},
                               content="\n".join(lines).encode())
            resp.raise_for_status()
            total += len(lines)
        client.get(f"{url}/internal/force_flush").raise_for_status()
    return total


class LiveTicks:
    """What the agents keep writing while HQ is measured: every store's lane and agent samples
    every 10 s, on a thread of its own."""

    def __init__(self, url: str, stores: list[str], lanes: int, skus: int) -> None:
        self.url, self.stores, self.lanes, self.skus = url, stores, lanes, skus
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="live-ticks", daemon=True)

    def _run(self) -> None:
        rng = random.Random(11)
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                t = time.time()
                lines: list[str] = []
                for sid in self.stores:
                    points = tsdb.Points(sid)
                    lines += points.lanes([(f"L{i:02d}", f"SKU-{i % self.skus:03d}",
                                            rng.choice((0, 3, 8, 12)), 100.0)
                                           for i in range(self.lanes)], t)
                    lines.append(points.agent(t, {"readings_total": int(t), "erp_backlog": 0,
                                                  "tsdb_backlog": 0}))
                client.post(f"{self.url}/api/v2/write", params={"precision": "ns"},
                            content="\n".join(lines).encode()).raise_for_status()
                self.stop.wait(max(0.0, 10 - (time.time() - t)))


def publish_state(port: int, stores: list[str]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for i, sid in enumerate(stores):
        infos.append(client.publish(f"store/{sid}/state/agent", b"online", qos=1, retain=True))
        infos.append(client.publish(f"store/{sid}/state/bridge", b"1", qos=1, retain=True))
        for a in range(i % 4):
            body = {"alert_id": f"{sid}-{a}", "rule": "low_stock", "severity": "warning",
                    "state": "open", "subject": f"L{a:02d}", "received_ts": time.time() - 60,
                    "message": "low", "detail": {}}
            infos.append(client.publish(f"store/{sid}/state/alerts/{sid}-{a}",
                                        json.dumps(body).encode(), qos=1, retain=True))
        infos.append(client.publish(f"store/{sid}/state/devices/shelf-1",
                                    b'{"state": "online"}', qos=1, retain=True))
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def start_hq(workdir: Path, stores: list[str], broker: int, tsdb_url: str) -> Service:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "hq.yaml"
    config.write_text(yaml.safe_dump({
        "http": {"host": "127.0.0.1", "port": port},
        "users": [{"name": "bench", "token_env": "BENCH_HQ_TOKEN"}],
        "broker": {"port": broker, "client_id": f"hq-bench-{port}"},
        "timeseries": {"url": tsdb_url},
        "stores": [{"id": s} for s in stores]}))
    return spawn("hq", [sys.executable, "-m", "edge_agent.cli", "--log-format", "text", "hq",
                        "--config", str(config)], workdir, port, env={"BENCH_HQ_TOKEN": TOKEN})


def time_overview(port: int, requests: int, expect: int) -> dict[str, float]:
    times = []
    refreshes: dict[float, float] = {}  # figures_at -> seconds the refresh took
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(max(5, requests // 20)):  # warm up
            client.get("/api/overview").raise_for_status()
        for _ in range(requests):
            t0 = time.perf_counter()
            resp = client.get("/api/overview")
            times.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
            body = resp.json()
            refreshes[body["timeseries"]["figures_at"]] = body["timeseries"]["figures_took_s"]
            if len(body["stores"]) != expect or not body["timeseries"]["ok"]:
                raise SystemExit(f"overview incomplete: {len(body['stores'])} stores, "
                                 f"time series {body['timeseries']}")
    q = statistics.quantiles(times, n=100, method="inclusive")
    took = sorted(refreshes.values())
    return {"p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1), "p99_ms": round(q[98], 1),
            "max_ms": round(max(times), 1), "refreshes": len(took),
            "refresh_p50_ms": round(took[len(took) // 2] * 1000, 1),
            "refresh_max_ms": round(took[-1] * 1000, 1)}


def wait_all_online(port: int, count: int, timeout: float = 120) -> float:
    t0 = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        while time.monotonic() - t0 < timeout:
            rows = client.get("/api/overview").json()["stores"]
            if sum(r["online"] for r in rows) == count:
                return time.monotonic() - t0
            time.sleep(0.05)
    raise SystemExit("HQ never showed every store online")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=500)
    parser.add_argument("--lanes", type=int, default=20)
    parser.add_argument("--skus", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(machine_line())
    stores = [f"s-{i:04d}" for i in range(args.stores)]
    with tempfile.TemporaryDirectory(prefix="bench-hq-") as tmp:
        work = Path(tmp)
        vm = start_victoria_metrics(work / "vm")
        broker = start_mosquitto(work / "broker")
        services = [vm, broker]
        try:
            url = f"http://127.0.0.1:{vm.port}"
            t0 = time.perf_counter()
            points = write_history(url, stores, args.lanes, args.skus, args.minutes)
            took = time.perf_counter() - t0
            series = args.stores * (args.lanes * 2 + 3) + args.stores * min(args.skus, 200) * 3
            print(f"history: {points:,} points for {args.stores} stores in {took:.1f} s "
                  f"({points / took:,.0f} points/s); about {series:,} series")
            publish_state(broker.port, stores)
            ticks = LiveTicks(url, stores, args.lanes, args.skus)
            ticks.thread.start()
            results = {}
            for label, chain in (("baseline, 3 stores", stores[:3]),
                                 (f"{args.stores} stores", stores)):
                hq = start_hq(work / f"hq-{len(chain)}", chain, broker.port, url)
                services.append(hq)
                online_s = wait_all_online(hq.port, len(chain))
                figures = time_overview(hq.port, args.requests, len(chain))
                mem = memory_kb(hq.proc.pid)
                results[label] = figures
                print(f"overview, {label}: {figures}; every store online after "
                      f"{online_s:.2f} s; HQ RSS {mem.get('VmRSS', 0) / 1024:.0f} MiB "
                      f"(peak {mem.get('VmHWM', 0) / 1024:.0f} MiB)")
                hq.stop()
            ticks.stop.set()
            ticks.thread.join(60)
            vm_mem = memory_kb(vm.proc.pid)
            print(f"VictoriaMetrics RSS {vm_mem.get('VmRSS', 0) / 1024:.0f} MiB "
                  f"(peak {vm_mem.get('VmHWM', 0) / 1024:.0f} MiB)")
        finally:
            for service in reversed(services):
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
