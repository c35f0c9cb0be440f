"""Ingest benchmark: the whole agent, end to end, from MQTT shelves through counts and rules to
published alerts.

    .venv/bin/python bench/ingest.py [--readings 200000] [--lanes 200] [--rate 5000]

It starts its own Mosquitto and a real agent process (settling 0, no ERP, no time series), then:
1. flood: publishes --readings readings as fast as one socket can, waits until the agent has
   counted them all and every expected alert arrived; prints readings/s and the agent's peak RSS;
2. paced: publishes at --rate readings/s for --paced-seconds and prints the p50/p99 latency from a
   reading's publish to its alert on ``store/{sid}/alerts``.
Every lane walks 10 -> 0 units a unit at a time, then is restocked to 10, through the default
rules: the alert transitions expected are known exactly (see ``expected_alerts``) and each is
checked. The agent's CPU time per reading is reported next to the wall-clock figures. Figures
are printed with the machine and the commit; nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import commit, cpu_seconds, machine, memory_kb  # noqa: E402
from devices.mqtt import protocol as mqtt  # noqa: E402
from edge_agent.services import free_port, start_mosquitto  # noqa: E402
from rules.config import DEFAULTS  # noqa: E402

STORE = "bench-01"
UNIT = 100.0
CAPACITY, THRESHOLD = 10, 3
LANES_PER_SHELF = 20
CYCLE = list(range(CAPACITY - 1, -1, -1)) + [CAPACITY]  # 9..0 then restock to 10


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_packet(topic: bytes, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0: the load generator writes these straight to its socket so
    that it, not the agent, is never the bottleneck."""
    body = len(topic).to_bytes(2, "big") + topic + payload
    return b"\x30" + _remaining_length(len(body)) + body


class RawPublisher:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_id = b"bench-load"
        body = (b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id)
        self.sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        ack = self.sock.recv(4)
        if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
            raise RuntimeError(f"broker refused the load generator: {ack!r}")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")
        self.sock.close()


def reading(lane_index: int, grams: float, ts_ms: float) -> bytes:
    shelf, lane = divmod(lane_index, LANES_PER_SHELF)
    topic = f"store/{STORE}/dev/shelf-{shelf:03d}/weight".encode()
    payload = (b'{"lane":"L%05d","grams":%.1f,"ts":%.3f}' % (lane_index, grams, ts_ms))
    del lane
    return _publish_packet(topic, payload)


def store_config(workdir: Path, lanes: int, broker_port: int, http_port: int,
                 all_rules: bool) -> Path:
    shelves = (lanes + LANES_PER_SHELF - 1) // LANES_PER_SHELF
    rules_file = workdir / "rules.yaml"
    # The figure the targets compare with is one low-stock rule; --all-rules runs the library.
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
        "lanes": [{"id": f"L{i:05d}", "sku": "SKU-BENCH", "capacity": CAPACITY}
                  for i in range(lanes)],
        "devices": [{"type": "shelf_mqtt", "id": f"shelf-{s:03d}",
                     "lanes": [f"L{i:05d}" for i in range(s * LANES_PER_SHELF,
                                                           min(lanes, (s + 1) * LANES_PER_SHELF))]}
                    for s in range(shelves)],
    }
    path = workdir / "store.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class AlertListener:
    """Counts alerts per (rule, subject, transition) and the latency of each from its reading's
    timestamp.

    A bare socket and our own MQTT decoder on a thread, subscribed at QoS 0: the listener shares
    the 2 cores with the agent and the broker, so it avoids paho's per-message objects and
    callbacks and the PUBACK round trips of QoS 1. Loopback TCP loses nothing, so every alert is
    still checked."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str, str], int] = {}
        self.latencies: list[float] = []
        self.total = 0
        self.ready = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(mqtt.encode_connect("bench-alerts", keepalive=0))
        self.sock.sendall(mqtt.encode_subscribe(1, [(f"store/{STORE}/alerts", 0)]))
        self.thread = threading.Thread(target=self._run, name="bench-alerts", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        decoder = mqtt.Decoder()
        loads, now_s = json.loads, time.time
        while True:
            try:
                data = self.sock.recv(262_144)
            except OSError:
                return
            if not data:
                return
            now = now_s()
            messages, _, others = decoder.feed_batch(data)
            if any(isinstance(p, mqtt.SubAck) for p in others):
                self.ready.set()
            if not messages:
                continue
            with self.lock:
                for _topic, payload in messages:
                    alert = loads(payload)
                    key = (alert["rule"], alert["subject"], alert["detail"]["transition"])
                    self.seen[key] = self.seen.get(key, 0) + 1
                    self.total += 1
                    if alert.get("device_ts"):
                        self.latencies.append(now - alert["device_ts"])

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.latencies.clear()
            self.total = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(mqtt.encode_disconnect())
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def agent_counter(url: str, name: str) -> int:
    try:
        return int(httpx.get(url + "/readyz", timeout=5).json()["counters"].get(name, 0))
    except (httpx.HTTPError, KeyError, ValueError):
        return -1


def build_readings(lanes: int, cycles: int) -> list[tuple[int, float]]:
    """Readings in an order that interleaves lanes: (lane index, grams)."""
    out = []
    for _ in range(cycles):
        for units in CYCLE:
            for lane in range(lanes):
                out.append((lane, units * UNIT))
    return out


def expected_alerts(lanes: int, cycles: int, first: bool,
                    all_rules: bool) -> dict[tuple[str, str, str], int]:
    """The transitions the rules make, exactly. The first sample of each lane sets its count
    (9 units: nothing); each cycle then makes, per lane, low_stock opened at 3 units, worsened at
    2, 1 and 0, and cleared at the restock. With the whole library, also out_of_stock opened at 0
    and cleared at the restock, and, since a lane stepping 100 g every sample is noisy by
    sensor_noisy's measure (median step over 20 samples > 5 g), that opens once per lane in the
    ``first`` phase and never clears."""
    out: dict[tuple[str, str, str], int] = {}
    for i in range(lanes):
        lane = f"L{i:05d}"
        out[("low_stock", lane, "opened")] = cycles
        out[("low_stock", lane, "worsened")] = 3 * cycles
        out[("low_stock", lane, "cleared")] = cycles
        if not all_rules:
            continue
        out[("out_of_stock", lane, "opened")] = cycles
        out[("out_of_stock", lane, "cleared")] = cycles
        if first and cycles * len(CYCLE) > 20:
            shelf = i // LANES_PER_SHELF
            out[("sensor_noisy", f"shelf-{shelf:03d}/{lane}", "opened")] = 1
    return out


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def check(listener: AlertListener, expected: dict[tuple[str, str], int]) -> list[str]:
    with listener.lock:
        seen = dict(listener.seen)
    wrong = [f"{k}: expected {v}, got {seen.get(k, 0)}" for k, v in expected.items()
             if seen.get(k, 0) != v]
    wrong += [f"{k}: unexpected {v}" for k, v in seen.items() if k not in expected]
    return wrong


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--lanes", type=int, default=200)
    ap.add_argument("--rate", type=int, default=5_000)
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--all-rules", action="store_true",
                    help="run the whole rule library, not only low_stock")
    args = ap.parse_args()
    per_cycle = args.lanes * len(CYCLE)
    cycles = max(1, args.readings // per_cycle)
    workdir = Path(tempfile.mkdtemp(prefix="storeedge-bench-"))
    broker = start_mosquitto(workdir / "broker")
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    config = store_config(workdir, args.lanes, broker.port, http_port, args.all_rules)
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "--log-level", "WARNING",
                              "agent", "--config", str(config)], cwd=ROOT,
                             stdout=open(workdir / "agent.log", "wb"), stderr=subprocess.STDOUT)
    listener = AlertListener(broker.port)
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while agent_counter(url, "readings") < 0:
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError(f"agent did not start; see {workdir / 'agent.log'}")
            time.sleep(0.2)
        if not listener.ready.wait(10):
            raise RuntimeError("the alert listener was not subscribed")
        time.sleep(1.0)  # the agent's subscription is live once it reports connected
        rss_idle = memory_kb(agent.pid).get("VmRSS", 0)

        # 1. flood
        pub = RawPublisher(broker.port)
        plan = build_readings(args.lanes, cycles)
        now_ms = time.time() * 1000
        packets = [reading(lane, grams, now_ms) for lane, grams in plan]
        expected = expected_alerts(args.lanes, cycles, first=True, all_rules=args.all_rules)
        n_alerts = sum(expected.values())
        cpu0 = cpu_seconds(agent.pid)
        start = time.perf_counter()
        chunk = 2000
        for i in range(0, len(packets), chunk):
            pub.send(b"".join(packets[i:i + chunk]))
        sent = time.perf_counter()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if listener.total >= n_alerts and agent_counter(url, "readings") >= len(plan):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        cpu_flood = cpu_seconds(agent.pid) - cpu0
        processed = agent_counter(url, "readings")
        rss_peak = memory_kb(agent.pid).get("VmHWM", 0)
        time.sleep(0.5)
        failures += check(listener, expected)
        if processed != len(plan):
            failures.append(f"agent counted {processed} readings of {len(plan)}")
        flood = {"readings": len(plan), "seconds": round(elapsed, 3),
                 "readings_per_s": round(len(plan) / elapsed),
                 "publish_seconds": round(sent - start, 3), "alerts": listener.total,
                 "alerts_expected": n_alerts,
                 "agent_cpu_us_per_reading": round(cpu_flood / len(plan) * 1e6, 1),
                 "rss_idle_mb": round(rss_idle / 1024, 1),
                 "rss_peak_mb": round(rss_peak / 1024, 1)}
        print(json.dumps({"flood": flood}), file=sys.stderr, flush=True)

        # 2. paced latency: continue the same cycles so the expected alerts stay exact
        listener.reset()
        paced_cycles = max(1, int(args.rate * args.paced_seconds) // per_cycle)
        plan = build_readings(args.lanes, paced_cycles)
        interval = 1.0 / args.rate
        cpu0 = cpu_seconds(agent.pid)
        t0 = time.perf_counter()
        batch = max(1, args.rate // 1000)  # send every millisecond
        for i in range(0, len(plan), batch):
            target = t0 + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            now_ms = time.time() * 1000
            pub.send(b"".join(reading(lane, g, now_ms) for lane, g in plan[i:i + batch]))
        pace_s = time.perf_counter() - t0
        cpu_paced = cpu_seconds(agent.pid) - cpu0
        expected = expected_alerts(args.lanes, paced_cycles, first=False,
                                   all_rules=args.all_rules)
        deadline = time.monotonic() + 30
        while listener.total < sum(expected.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        failures += check(listener, expected)
        lat = sorted(listener.latencies)
        paced = {"rate_target": args.rate, "rate_achieved": round(len(plan) / pace_s),
                 "readings": len(plan), "alerts": len(lat),
                 "latency_ms_p50": round(statistics.median(lat) * 1000, 3) if lat else None,
                 "latency_ms_p99": round(percentile(lat, 0.99) * 1000, 3) if lat else None,
                 "latency_ms_max": round(lat[-1] * 1000, 3) if lat else None,
                 "agent_cpu_share": round(cpu_paced / pace_s, 3)}
        pub.close()
    finally:
        listener.close()
        agent.terminate()
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
        broker.stop()
    report = {"bench": "ingest", "commit": commit(), "machine": machine(), "lanes": args.lanes,
              "flood": flood, "paced": paced, "wrong": failures[:20], "ok": not failures}
    print(json.dumps(report, indent=2))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
