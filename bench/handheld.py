"""Handheld benchmark: reading-to-handheld latency, from a shelf reading's MQTT publish to the
alert arriving on the agent's Server-Sent Events stream, as the handheld page receives it.

    .venv/bin/python bench/handheld.py [--rates 1000,5000] [--seconds 10] [--lanes 200]
                                       [--repeat 3] [--browser-alerts 50] [--browser-rate 5]
                                       [--no-browser]

It starts its own Mosquitto and a real agent process (settling 0, no ERP, no time series), connects
to ``GET /api/alerts/stream`` as the handheld page does (no tokens configured: open), then for each
rate publishes shelf readings at that steady rate for --seconds. Every lane walks 10 -> 0 units a
unit at a time (each weight sent --repeat times, as a steady shelf reports) and is restocked to 10,
so each cycle makes exactly seven transitions per lane: low stock opened at the threshold and re-
notified ("worsened") at each unit below it, out of stock opened at zero, and both cleared by the
restock. Each reading carries its own publish time as ``ts`` (epoch ms with a microsecond fraction);
an alert carries its cause's ``ts`` back as ``device_ts``, which names the exact reading that caused
it. The bench checks that every expected transition arrived exactly once, caused by the right
reading, and prints p50/p90/p99/max of publish -> SSE ``alert`` event, overall and per kind of
transition.

First, while the agent is quiet and if /usr/bin/chromium exists, it opens the handheld page at
``/`` in a headless Chromium, makes --browser-alerts lanes fall to their threshold at
--browser-rate per second, and times each publish to the moment the alert's card
(``data-alert-id``) is inserted into the page, taken with ``Date.now()`` in a MutationObserver:
the page and this process read the same wall clock.

Figures are printed with the machine and the commit; nothing is asserted on speed. The exit
status is 1 when an alert was missing, duplicated, unexplained or caused by the wrong reading.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import agent_counter, store_config  # noqa: E402
from bench.load import CYCLE, THRESHOLD, UNIT, RawPublisher, reading  # noqa: E402
from bench.report import commit, cpu_seconds, machine  # noqa: E402
from edge_agent.services import free_port, start_mosquitto  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CAPACITY = CYCLE[-1]

# Records when each alert card first enters the page's list: render() rebuilds the list on
# every change, so only an id's first insertion counts.
CARD_OBSERVER = """() => {
  window.__cards = {};
  new MutationObserver((records) => {
    const now = Date.now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        const id = node.dataset && node.dataset.alertId;
        if (id && !(id in window.__cards)) window.__cards[id] = now;
      }
    }
  }).observe(document.getElementById("alerts"), { childList: true });
}"""


def lane_id(index: int) -> str:
    return f"L{index:05d}"


def stamp() -> float:
    """Now in epoch ms, rounded to the microsecond as the payload carries it."""
    return float(f"{time.time() * 1000:.3f}")


def ts_key(ts_ms: float) -> int:
    """A reading's timestamp in whole microseconds, as the payload's ``%.3f`` ms carries it."""
    return round(ts_ms * 1000)


class SseListener:
    """Reads the alert stream in a thread, as a handheld's EventSource would, and keeps every
    transition with the wall-clock time its event arrived."""

    def __init__(self, url: str, dump: Path | None = None) -> None:
        self.url = url
        self.dump = dump
        self.lock = threading.Lock()
        self.alerts: list[tuple[float, dict[str, Any]]] = []  # (arrival, transition)
        self.snapshots = 0
        self.live = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="sse", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        event, data = "message", []
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(10, read=60)) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
                        continue
                    now = time.time()
                    if data:
                        with self.lock:
                            if event == "alerts":
                                self.alerts += [(now, a) for a in json.loads("\n".join(data))]
                            elif event == "snapshot":
                                self.snapshots += 1
                        if event == "snapshot":
                            self.live.set()
                    event, data = "message", []
        except httpx.HTTPError as exc:
            self.error = f"alert stream: {type(exc).__name__}: {exc}"

    def take(self) -> list[tuple[float, dict[str, Any]]]:
        """The transitions received since the last call; also appended to ``dump`` (one
        JSON line each, with its arrival as ``_arrived``) for a look at what went wrong."""
        with self.lock:
            parsed, self.alerts = self.alerts, []
        if self.dump is not None:
            with open(self.dump, "a") as out:
                out.writelines(json.dumps({**a, "_arrived": t}) + "\n" for t, a in parsed)
        return parsed

    def count(self) -> int:
        with self.lock:
            return len(self.alerts)


class Publisher:
    """Paced shelf readings, each stamped with its own publish time; remembers every stamp so
    that an alert's ``device_ts`` names the reading that caused it."""

    def __init__(self, port: int) -> None:
        self.raw = RawPublisher(port)
        self.sent: dict[tuple[str, int], float] = {}  # (lane, ts in µs) -> grams
        self.count = 0

    def paced(self, plan: list[tuple[int, float]], rate: float) -> float:
        """Publish ``plan`` at ``rate`` readings/s (a batch every millisecond); returns the
        seconds it took."""
        batch = max(1, round(rate / 1000))
        interval = batch / rate
        t0 = time.perf_counter()
        for n, i in enumerate(range(0, len(plan), batch)):
            delay = t0 + n * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            packets = []
            for lane, grams in plan[i:i + batch]:
                ts_ms = stamp()
                packets.append(reading(lane, grams, ts_ms))
                self.sent[(lane_id(lane), ts_key(ts_ms))] = grams
            self.raw.send(b"".join(packets))
        self.count += len(plan)
        return time.perf_counter() - t0

    def one(self, lane: int, grams: float) -> float:
        """Publish one reading now; returns its ``ts`` (epoch ms)."""
        ts_ms = stamp()
        self.raw.send(reading(lane, grams, ts_ms))
        self.sent[(lane_id(lane), ts_key(ts_ms))] = grams
        self.count += 1
        return ts_ms

    def close(self) -> None:
        self.raw.close()


def cycle_plan(lanes: range, cycles: int, repeat: int) -> list[tuple[int, float]]:
    """Lanes interleaved, each walking 9..0 units and restocked to 10, ``cycles`` times; each
    weight is sent ``repeat`` times, as a shelf reports a steady weight between picks (a lane
    whose every sample jumps a unit is rightly a noisy sensor)."""
    return [(lane, units * UNIT) for _ in range(cycles) for units in CYCLE
            for _ in range(repeat) for lane in lanes]


# What one lane's walk 9..0 -> 10 causes: (rule, state, transition) -> the units of the readings
# that cause it, once each. Low stock opens at the threshold and is re-notified as it worsens.
CYCLE_TRANSITIONS = {
    ("low_stock", "open", "opened"): (THRESHOLD,),
    ("low_stock", "open", "worsened"): tuple(range(THRESHOLD - 1, -1, -1)),
    ("out_of_stock", "open", "opened"): (0,),
    ("low_stock", "cleared", "cleared"): (CAPACITY,),
    ("out_of_stock", "cleared", "cleared"): (CAPACITY,),
}
# A lane going from full straight to its threshold, then restocked.
DROP_TRANSITIONS = {
    ("low_stock", "open", "opened"): (THRESHOLD,),
    ("low_stock", "cleared", "cleared"): (CAPACITY,),
}

Key = tuple[str, str, str, str]  # (rule, lane, state, transition)


def expected_alerts(lanes: range, cycles: int,
                    transitions: dict[tuple[str, str, str], tuple[int, ...]]) -> Counter[Key]:
    return Counter({(rule, lane_id(i), state, transition): cycles * len(units)
                    for i in lanes for (rule, state, transition), units in transitions.items()})


def check_alerts(got: list[tuple[float, dict[str, Any]]], sent: dict[tuple[str, int], float],
                 expected: Counter[Key],
                 transitions: dict[tuple[str, str, str], tuple[int, ...]],
                 ) -> tuple[dict[str, list[float]], list[str]]:
    """Latencies (s) of the expected transitions by kind (``opened``, ``worsened``,
    ``cleared``), and what is wrong: a missing, duplicate or unexpected transition, or one whose
    ``device_ts`` is not a reading that must cause it."""
    seen: Counter[Key] = Counter()
    causes: set[tuple[str, str, str, int]] = set()
    latencies: dict[str, list[float]] = {}
    wrong: list[str] = []
    for arrived, alert in got:
        transition = alert["detail"].get("transition", "")
        key = (alert["rule"], alert["subject"], alert["state"], transition)
        seen[key] += 1
        units = transitions.get((alert["rule"], alert["state"], transition))
        if units is None:
            continue  # counted as unexpected below
        device_ts = alert.get("device_ts")
        cause = (alert["subject"], ts_key(device_ts * 1000)) if device_ts else None
        grams = sent.get(cause) if cause else None
        if grams is None or round(grams / UNIT) not in units:
            wrong.append(f"{key} caused by ts {device_ts!r} ({grams} g), not by a reading at "
                         f"{' or '.join(map(str, units))} units")
            continue
        if (alert["rule"], transition, *cause) in causes:
            wrong.append(f"{key}: a second one from the reading at {device_ts!r}")
            continue
        causes.add((alert["rule"], transition, *cause))
        latencies.setdefault(transition, []).append(arrived - device_ts)
    wrong += [f"{k}: expected {v}, got {seen[k]}" for k, v in expected.items() if seen[k] != v]
    wrong += [f"{k}: unexpected x{v}" for k, v in seen.items() if k not in expected]
    return latencies, wrong


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in ms, nearest-rank."""
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 2)

    return {"p50_ms": rank(0.5), "p90_ms": rank(0.9), "p99_ms": rank(0.99),
            "max_ms": round(ordered[-1] * 1000, 2)}


def wait_for(condition: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def run_rate(pub: Publisher, sse: SseListener, url: str, agent_pid: int, lanes: range,
             rate: int, seconds: float, repeat: int) -> tuple[dict[str, Any], list[str]]:
    cycles = max(1, round(rate * seconds / (len(lanes) * len(CYCLE) * repeat)))
    plan = cycle_plan(lanes, cycles, repeat)
    expected = expected_alerts(lanes, cycles, CYCLE_TRANSITIONS)
    sse.take()
    snapshots = sse.snapshots
    cpu = cpu_seconds(agent_pid)
    took = pub.paced(plan, rate)
    cpu = cpu_seconds(agent_pid) - cpu
    wait_for(lambda: sse.count() >= sum(expected.values())
             and agent_counter(url, "readings") >= pub.count, 30)
    time.sleep(0.5)  # room for a duplicate to show up
    got = sse.take()
    wrong = []
    if sse.snapshots != snapshots:
        wrong.append(f"the stream fell behind and re-sent the snapshot "
                     f"{sse.snapshots - snapshots} times")
    counted = agent_counter(url, "readings")
    if counted != pub.count:
        wrong.append(f"agent counted {counted} readings of {pub.count} published")
    latencies, problems = check_alerts(got, pub.sent, expected, CYCLE_TRANSITIONS)
    if problems:
        wrong.append(f"{len(problems)} alert problems, e.g. " + "; ".join(problems[:5]))
    return {"rate_target": rate, "rate_achieved": round(len(plan) / took),
            "readings": len(plan), "agent_cpu_pct": round(100 * cpu / took),
            "alerts_expected": sum(expected.values()), "alerts_received": len(got),
            "alerts_timed": sum(map(len, latencies.values())),
            "all": percentiles([v for values in latencies.values() for v in values]),
            **{kind: percentiles(values) for kind, values in sorted(latencies.items())}}, wrong


def run_browser(pub: Publisher, sse: SseListener, url: str, lanes: range,
                rate: float) -> tuple[dict[str, Any], list[str]]:
    """Cards on the real handheld page: each lane of ``lanes`` falls from full to its threshold,
    one every 1/rate s; then all are restocked and the page must show none."""
    from playwright.sync_api import sync_playwright

    # Full lanes first (their first sample sets the count: no alert).
    pub.paced([(lane, CAPACITY * UNIT) for lane in lanes], 1000)
    if not wait_for(lambda: agent_counter(url, "readings") >= pub.count, 10):
        return {}, ["agent did not count the browser lanes' first readings"]
    sse.take()
    step = "launch Chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 360, "height": 640},
                                          device_scale_factor=2, is_mobile=True,
                                          has_touch=True, locale="en-US")
            page = context.new_page()
            step = "open the handheld page and see it live"
            page.goto(url + "/")
            page.wait_for_selector("#conn[data-state=live]", timeout=15_000)
            page.evaluate(CARD_OBSERVER)
            published: dict[str, float] = {}  # lane -> publish time, ms
            start = time.perf_counter()
            for n, lane in enumerate(lanes):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                published[lane_id(lane)] = pub.one(lane, THRESHOLD * UNIT)
            step = f"see {len(lanes)} cards appear"
            page.wait_for_function(f"Object.keys(window.__cards).length >= {len(lanes)}",
                                   timeout=15_000)
            cards: dict[str, int] = page.evaluate("window.__cards")
            page.wait_for_timeout(300)  # room for a card we did not expect
            extra = set(page.evaluate("Object.keys(window.__cards)")) - set(cards)
            step = "see the restocked lanes' cards go"
            pub.paced([(lane, CAPACITY * UNIT) for lane in lanes], 1000)
            page.wait_for_function(
                "(ids) => ids.every((id) => !document.querySelector(`[data-alert-id='${id}']`))",
                arg=list(cards), timeout=15_000)
            context.close()
        except Exception as exc:
            raise RuntimeError(f"could not {step}: {exc}") from exc
        finally:
            browser.close()
    wait_for(lambda: sse.count() >= 2 * len(lanes), 10)
    time.sleep(0.3)
    got = sse.take()
    expected = expected_alerts(lanes, 1, DROP_TRANSITIONS)
    sse_latencies, problems = check_alerts(got, pub.sent, expected, DROP_TRANSITIONS)
    wrong = problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5 else [])
    lane_of = {a["alert_id"]: a["subject"] for _, a in got if a["state"] == "open"}
    latencies = []
    for alert_id, inserted_ms in cards.items():
        lane = lane_of.get(alert_id)
        if lane is None:
            wrong.append(f"a card for alert {alert_id} that the stream never opened")
            continue
        latencies.append((inserted_ms - published[lane]) / 1000)
    if extra:
        wrong.append(f"{len(extra)} cards beyond the {len(lanes)} expected")
    return {"alerts": len(lanes), "rate_per_s": rate, "cards_timed": len(latencies),
            "card": percentiles(latencies),
            "sse_same_alerts": percentiles(sse_latencies.get("opened", []))}, wrong


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,5000", help="readings/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="per rate")
    ap.add_argument("--lanes", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="samples of each steady weight")
    ap.add_argument("--browser-alerts", type=int, default=50)
    ap.add_argument("--browser-rate", type=float, default=5.0, help="alerts/s")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    browser = not args.no_browser and CHROMIUM.exists() and args.browser_alerts > 0
    signal.signal(signal.SIGTERM, _interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="storeedge-handheld-"))
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    lanes = range(args.lanes)
    browser_lanes = range(args.lanes, args.lanes + (args.browser_alerts if browser else 0))
    broker = agent = sse = pub = None
    report: dict[str, Any] = {"bench": "handheld", "commit": commit(), "machine": machine(),
                              "lanes": args.lanes, "sse": [], "browser": None}
    wrong: list[str] = []
    try:
        broker = start_mosquitto(workdir / "broker")
        config = store_config(workdir, args.lanes + len(browser_lanes), broker.port, http_port,
                              all_rules=True)
        with open(workdir / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "--log-level", "WARNING", "agent",
                 "--config", str(config)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        if not wait_for(lambda: agent.poll() is not None or agent_counter(url, "readings") >= 0,
                        30, 0.2) or agent.poll() is not None:
            raise RuntimeError(f"agent did not start; see {workdir / 'agent.log'}")
        sse = SseListener(url + "/api/alerts/stream", workdir / "sse-alerts.jsonl")
        if not sse.live.wait(10):
            raise RuntimeError(sse.error or "no snapshot on the alert stream")
        pub = Publisher(broker.port)
        # The agent's MQTT subscription comes up after its HTTP server: probe with a reading
        # that changes nothing (lane 0 at 9 units) until one is counted.
        deadline = time.monotonic() + 15
        while agent_counter(url, "readings") < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent counts no readings; see {workdir / 'agent.log'}")
            pub.one(0, CYCLE[0] * UNIT)
            time.sleep(0.1)
        wait_for(lambda: agent_counter(url, "readings") >= pub.count, 5)  # stragglers
        pub.count = agent_counter(url, "readings")
        # Every lane starts full (its first sample sets the count: no alert); each cycle starts
        # at 9 units and ends restocked to 10.
        pub.paced([(lane, CAPACITY * UNIT) for lane in lanes], 5000)
        if not wait_for(lambda: agent_counter(url, "readings") >= pub.count, 15):
            raise RuntimeError("the agent did not count the lanes' first readings")
        # The page first, while the agent is quiet: the figure is then the page's own.
        if browser:
            figures, problems = run_browser(pub, sse, url, browser_lanes, args.browser_rate)
            report["browser"] = figures
            wrong += [f"browser: {p}" for p in problems]
        for rate in rates:
            figures, problems = run_rate(pub, sse, url, agent.pid, lanes, rate,
                                         args.seconds, args.repeat)
            report["sse"].append(figures)
            wrong += [f"{rate}/s: {p}" for p in problems]
        if sse.error:
            wrong.append(sse.error)
    except KeyboardInterrupt:
        wrong.append("interrupted")
    except Exception as exc:  # the report and the clean-up still happen
        wrong.append(f"{type(exc).__name__}: {exc}")
    finally:
        if pub is not None:
            pub.close()
        if agent is not None and agent.poll() is None:
            agent.terminate()  # the agent closes the alert stream as it stops
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if sse is not None:
            sse.thread.join(10)
        if broker is not None:
            broker.stop()
    report.update(wrong=wrong[:30], ok=not wrong)
    if wrong:
        report["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
