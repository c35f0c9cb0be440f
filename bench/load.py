"""The load side of the agent's benchmarks: a store's worth of wireless-shelf lanes, their noisy
readings as MQTT PUBLISH packets, the alerts they must produce, and the phases that send them
(``flood``, ``paced``) and check every alert that came back (missing, extra, duplicate).

It knows only the MQTT topics and payloads of DESIGN.md, so ``bench/ingest.py`` drives the agent
with it and ``bench/peer`` drives another system the same way.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import cpu_seconds, cpu_times, memory_kb  # noqa: E402
from devices.mqtt import protocol as mqtt  # noqa: E402

STORE = "bench-01"
ALERTS = f"store/{STORE}/alerts"
UNIT = 100.0
NOISE = 0.2  # load-cell noise per reading, of a unit weight
CAPACITY, THRESHOLD = 10, 3
LANES_PER_SHELF = 20
CYCLE = list(range(CAPACITY - 1, -1, -1)) + [CAPACITY]  # 9..0 then restock to 10
# Flood readings carry device timestamps this far apart (ms), so that an alert's device_ts says
# which reading it came from.
FLOOD_TS_STEP_MS = 0.01


def lane_id(index: int) -> str:
    return f"L{index:05d}"


def reading(lane_index: int, grams: float, ts_ms: float) -> bytes:
    """A wireless shelf's weight reading (DESIGN.md), as an MQTT PUBLISH at QoS 0."""
    shelf = lane_index // LANES_PER_SHELF
    payload = (b'{"lane":"%s","grams":%.1f,"ts":%.2f}' % (lane_id(lane_index).encode(), grams,
                                                          ts_ms))
    return mqtt.encode_publish(f"store/{STORE}/dev/shelf-{shelf:03d}/weight", payload)


class RawPublisher:
    """The load generator's connection: packets written straight to the socket, so that it, not
    the system under test, is never the bottleneck."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(mqtt.encode_connect("bench-load", keepalive=0))
        ack = self.sock.recv(4)
        if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
            raise RuntimeError(f"broker refused the load generator: {ack!r}")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.sendall(mqtt.encode_disconnect())
        self.sock.close()


class Workload:
    """``lanes`` lanes of one SKU (``UNIT`` grams, low stock at ``THRESHOLD``), their noisy
    readings, and the alerts those must produce. One more lane, the probe, tells when a system
    is subscribed and answering; its alerts are not counted."""

    def __init__(self, lanes: int, noise: float = NOISE, seed: int = 11) -> None:
        self.lanes = lanes
        self.noise = noise
        self.rng = random.Random(seed)
        self.probe = lane_id(lanes)

    @property
    def per_cycle(self) -> int:
        return self.lanes * len(CYCLE)

    def _units(self, lane: int, step: int) -> int:
        # Lanes start the cycle at different steps, so that alerts are spread evenly over the
        # readings rather than bunched where every lane runs low at once.
        return CYCLE[(step + lane) % len(CYCLE)]

    def _grams(self, units: int) -> float:
        return units * UNIT + self.rng.uniform(-self.noise * UNIT, self.noise * UNIT)

    def prime(self, all_rules: bool = False) -> tuple[list[tuple[int, float]],
                                                      dict[tuple[str, str, str], int]]:
        """Each lane's reading just before its first cycle, and the alerts those open: from
        then on every cycle makes the same alerts (``expected``)."""
        plan = [(lane, self._grams(self._units(lane, -1))) for lane in range(self.lanes)]
        out: dict[tuple[str, str, str], int] = {}
        for lane in range(self.lanes):
            units = self._units(lane, -1)
            if units <= THRESHOLD:
                out[("low_stock", lane_id(lane), "opened")] = 1
            if all_rules and units == 0:
                out[("out_of_stock", lane_id(lane), "opened")] = 1
        return plan, out

    def plan(self, cycles: int) -> list[tuple[int, float]]:
        """Readings in an order that interleaves lanes: (lane index, grams with noise)."""
        return [(lane, self._grams(self._units(lane, step)))
                for _ in range(cycles) for step in range(len(CYCLE))
                for lane in range(self.lanes)]

    def expected(self, cycles: int, first: bool,
                 all_rules: bool = False) -> dict[tuple[str, str, str], int]:
        """The transitions the rules make, exactly, once ``prime`` has set every lane's count.
        Each cycle makes, per lane, low_stock opened at 3 units, worsened at 2, 1 and 0, and
        cleared at the restock to 10. With the whole library, also out_of_stock opened at 0 and
        cleared at the restock, and, since a lane stepping 100 g every sample is noisy by
        sensor_noisy's measure (median step over 20 samples > 5 g), that opens once per lane in
        the ``first`` phase and never clears."""
        out: dict[tuple[str, str, str], int] = {}
        for i in range(self.lanes):
            lane = lane_id(i)
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


@dataclass(slots=True)
class Arrival:
    at: float  # this host's clock when the alert arrived
    device_ts: float | None  # the device timestamp of the reading that made it


class AlertListener:
    """Counts alerts per (rule, subject, transition) and keeps when each arrived.

    A bare socket and our own MQTT decoder on a thread, subscribed at QoS 0: the listener shares
    the 2 cores with the system under test and the broker, so it avoids paho's per-message
    objects and callbacks and the PUBACK round trips of QoS 1. Loopback TCP loses nothing, so
    every alert is still checked."""

    def __init__(self, port: int, probe: str) -> None:
        self.probe = probe
        self.probed = threading.Event()
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str, str], int] = {}
        self.arrivals: list[Arrival] = []
        self.total = 0
        self.ready = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(mqtt.encode_connect("bench-alerts", keepalive=0))
        self.sock.sendall(mqtt.encode_subscribe(1, [(ALERTS, 0)]))
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
                    if alert["subject"] == self.probe:
                        self.probed.set()
                        continue
                    key = (alert["rule"], alert["subject"], alert["detail"]["transition"])
                    self.seen[key] = self.seen.get(key, 0) + 1
                    self.total += 1
                    self.arrivals.append(Arrival(now, alert.get("device_ts")))

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.arrivals.clear()
            self.total = 0

    def wait_for(self, n: int, timeout: float, quiet: float = 60.0) -> None:
        """Until ``n`` alerts arrived, ``timeout`` passed, or none arrived for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        last, last_change = self.total, time.monotonic()
        while self.total < n and time.monotonic() < deadline:
            time.sleep(0.02)
            if self.total != last:
                last, last_change = self.total, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(mqtt.encode_disconnect())
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def wait_ready(pub: RawPublisher, listener: AlertListener, workload: Workload,
               all_rules: bool = False, timeout: float = 60.0) -> list[str]:
    """Publish the probe lane empty until its low-stock alert comes back (the system is
    subscribed, counting and publishing), then prime every lane. Returns what was wrong with
    the priming alerts."""
    if not listener.ready.wait(10):
        raise RuntimeError("the alert listener was not subscribed")
    probe = reading(workload.lanes, 0.0, time.time() * 1000)
    deadline = time.monotonic() + timeout
    while not listener.probed.wait(0.25):
        if time.monotonic() > deadline:
            raise RuntimeError("the system under test never answered the probe reading")
        pub.send(probe)
    plan, expected = workload.prime(all_rules)
    listener.reset()
    now_ms = time.time() * 1000
    pub.send(b"".join(reading(lane, grams, now_ms) for lane, grams in plan))
    listener.wait_for(sum(expected.values()), 30)
    time.sleep(0.3)
    return tally(listener, expected)["wrong"]


def tally(listener: AlertListener, expected: dict[tuple[str, str, str], int]) -> dict:
    """Missing, extra (a transition never expected) and duplicate (one expected, seen more
    often) alerts, with the first few keys that were wrong."""
    with listener.lock:
        seen = dict(listener.seen)
    missing = sum(max(0, n - seen.get(k, 0)) for k, n in expected.items())
    duplicate = sum(max(0, seen.get(k, 0) - n) for k, n in expected.items())
    extra = sum(n for k, n in seen.items() if k not in expected)
    wrong = [f"{k}: expected {v}, got {seen.get(k, 0)}" for k, v in expected.items()
             if seen.get(k, 0) != v]
    wrong += [f"{k}: unexpected {v}" for k, v in seen.items() if k not in expected]
    return {"missing": missing, "extra": extra, "duplicate": duplicate, "wrong": wrong[:10]}


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """The load generator and the alert listener share this process: a full collection here
    stalled the listener's thread up to 30 ms, which showed as alert latency of the system under
    test. What a phase makes (packets, arrivals) holds no reference cycles, so the collector is
    off while one runs."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def flood(pub: RawPublisher, listener: AlertListener, workload: Workload, cycles: int,
          pid: int, all_rules: bool = False, first: bool = True, timeout: float = 180.0) -> dict:
    """Publish ``cycles`` cycles as fast as one socket takes them. Readings carry device
    timestamps ``FLOOD_TS_STEP_MS`` apart, so each alert tells how far the system had got when
    it arrived: hence the rate at which it worked off what was still queued when the sender
    stopped."""
    plan = workload.plan(cycles)
    base_ms = time.time() * 1000 - len(plan) * FLOOD_TS_STEP_MS
    packets = [reading(lane, grams, base_ms + i * FLOOD_TS_STEP_MS)
               for i, (lane, grams) in enumerate(plan)]
    expected = workload.expected(cycles, first, all_rules)
    listener.reset()
    with no_collector_pauses():
        cpu0 = cpu_seconds(pid)
        start = time.time()
        chunk = 2000
        for i in range(0, len(packets), chunk):
            pub.send(b"".join(packets[i:i + chunk]))
        sent = time.time()
        listener.wait_for(sum(expected.values()), timeout)
        cpu = cpu_seconds(pid) - cpu0
    with listener.lock:
        arrivals = list(listener.arrivals)
    end = arrivals[-1].at if arrivals else time.time()
    done = max((round((a.device_ts * 1000 - base_ms) / FLOOD_TS_STEP_MS) + 1
                for a in arrivals if a.at <= sent and a.device_ts), default=0)
    after = len(plan) - done
    return {"readings": len(plan), "seconds": round(end - start, 3),
            "readings_per_s": round(len(plan) / (end - start)),
            "publish_seconds": round(sent - start, 3),
            "queued_when_sender_stopped": after,
            "rate_after_sender_stopped": round(after / (end - sent)) if end > sent else None,
            "alerts": listener.total, "alerts_expected": sum(expected.values()),
            "cpu_us_per_reading": round(cpu / len(plan) * 1e6, 1),
            "rss_peak_mb": round(memory_kb(pid).get("VmHWM", 0) / 1024, 1),
            **tally(listener, expected)}


def paced(pub: RawPublisher, listener: AlertListener, workload: Workload, rate: int,
          seconds: float, pid: int, all_rules: bool = False) -> dict:
    """Publish whole cycles at ``rate`` readings/s (a batch every millisecond, stamped with the
    time it is sent) for about ``seconds``: the latency from a reading's publish to its alert,
    and the CPU a reading costs when readings arrive at a store's pace."""
    cycles = max(1, round(rate * seconds / workload.per_cycle))
    plan = workload.plan(cycles)
    expected = workload.expected(cycles, first=False, all_rules=all_rules)
    listener.reset()
    interval = 1.0 / rate
    batch = max(1, rate // 1000)
    with no_collector_pauses():
        user0, sys0 = cpu_times(pid)
        t0 = time.perf_counter()
        for i in range(0, len(plan), batch):
            delay = t0 + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            now_ms = time.time() * 1000
            pub.send(b"".join(reading(lane, g, now_ms) for lane, g in plan[i:i + batch]))
        pace_s = time.perf_counter() - t0
        listener.wait_for(sum(expected.values()), 30)
        user, system = cpu_times(pid)  # to the last alert: one that fell behind still works
    user, system = user - user0, system - sys0
    cpu = user + system
    time.sleep(0.3)
    with listener.lock:
        lat = sorted(a.at - a.device_ts for a in listener.arrivals if a.device_ts)
    return {"rate_target": rate, "rate_achieved": round(len(plan) / pace_s),
            "readings": len(plan), "alerts": len(lat),
            "latency_ms_p50": round(statistics.median(lat) * 1000, 3) if lat else None,
            "latency_ms_p99": round(percentile(lat, 0.99) * 1000, 3) if lat else None,
            "latency_ms_max": round(lat[-1] * 1000, 3) if lat else None,
            "cpu_us_per_reading": round(cpu / len(plan) * 1e6, 1),
            "cpu_us_per_reading_system": round(system / len(plan) * 1e6, 1),
            "cpu_share": round(cpu / pace_s, 3),  # of one core, over the pacing time
            "rss_peak_mb": round(memory_kb(pid).get("VmHWM", 0) / 1024, 1),
            **tally(listener, expected)}
