"""Rule engine benchmark: events/s through the full rule library (company defaults, every rule
on) over a store of --lanes lanes, on one core, in one thread.

    /work/venv/bin/python bench/rules.py [--lanes 2000] [--events 500000]
    /work/venv/bin/python bench/rules.py --state [--lanes 200] [--events 200000]

The event mix is what the agent feeds: mostly raw shelf weights (20 lanes per controller),
with stock changes, sales, camera frames, climate samples, tag presence, checkout events and
scans, and a tick per simulated second. Events are built before the clock starts, so the figure
is the engine's alone. Printed with the machine and the commit; nothing is asserted.

``--state`` replays what ``bench/ingest.py --all-rules`` feeds instead (every lane of one SKU
picked 10 -> 0 a unit at a time and restocked, lanes interleaved, no sales: every pick is
unexplained shrink) and prints the engine state's memory and the cost of ``snapshot()`` and of
encoding it as the journal does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import machine_line  # noqa: E402
from rules.config import load_rules  # noqa: E402
from rules.engine import RuleEngine  # noqa: E402
from rules.model import LaneModel, StoreModel, ZoneModel  # noqa: E402
from storeedge.events import (  # noqa: E402
    CheckoutEvent,
    CheckoutKind,
    Climate,
    Event,
    Sale,
    Scan,
    ShelfImage,
    ShelfWeight,
    StockCause,
    StockChanged,
    TagPresence,
)

STORE = "bench-01"
T0 = 1_764_000_000.0


def model(lanes: int) -> StoreModel:
    return StoreModel(
        store_id=STORE,
        lanes=tuple(LaneModel(id=f"L{i}", sku=f"SKU{i // 2}", zone=f"z{i % 10}", capacity=20,
                              threshold=3) for i in range(lanes)),
        zones=tuple(ZoneModel(id=f"z{z}", min_c=0.0 if z == 0 else None,
                              max_c=5.0 if z == 0 else None,
                              sensors=tuple(f"fridge-{k}" for k in range(10)) if z == 0 else ())
                    for z in range(10)),
        devices=tuple((f"shelf-{i // 20}", f"z{i % 10}") for i in range(0, lanes, 20)),
    )


def events(lanes: int, n: int, rate: float) -> list[tuple[float, Event]]:
    """``n`` events at ``rate`` per simulated second."""
    rng = random.Random(1)
    counts = dict.fromkeys(range(lanes), 20)
    out: list[tuple[float, Event]] = []
    env = {"store_id": STORE}
    for i in range(lanes):
        out.append((T0, StockChanged(**env, source="agent", received_ts=T0, sku=f"SKU{i // 2}",
                                     location=f"L{i}", before=0, after=20,
                                     cause=StockCause.INITIAL)))
    for k in range(n):
        t = T0 + k / rate
        r = rng.random()
        lane = rng.randrange(lanes)
        if r < 0.90:
            ev: Event = ShelfWeight(**env, source=f"shelf-{lane // 20}", received_ts=t,
                                    lane=f"L{lane}", grams=counts[lane] * 100 + rng.random())
        elif r < 0.94:
            before = counts[lane]
            after = before - 1 if before > 1 else 20
            counts[lane] = after
            ev = StockChanged(**env, source="agent", received_ts=t, sku=f"SKU{lane // 2}",
                              location=f"L{lane}", before=before, after=after,
                              cause=StockCause.PICK if after < before else StockCause.RESTOCK)
        elif r < 0.97:
            ev = Sale(**env, source="pos-1", received_ts=t, sku=f"SKU{lane // 2}", qty=1,
                      txn_id=str(k))
        elif r < 0.975:
            occ = {f"L{j}": counts[j] / 20 for j in range(lane, min(lane + 20, lanes))}
            ev = ShelfImage(**env, source="cam-1", received_ts=t, occupancy=occ)
        elif r < 0.985:
            ev = Climate(**env, source=f"fridge-{lane % 10}", received_ts=t,
                         temperature=3 + rng.random())
        elif r < 0.99:
            ev = TagPresence(**env, source="rfid-1", received_ts=t, epc=f"E{k}",
                             change=rng.choice(["arrived", "departed"]), location=f"L{lane}",
                             sku=f"SKU{lane // 2}")
        elif r < 0.998:
            ev = CheckoutEvent(**env, source="kiosk-1", received_ts=t, kiosk="kiosk-1",
                               session=f"S{k // 50}",
                               kind=rng.choice([CheckoutKind.ITEM_SCANNED, CheckoutKind.VOIDED,
                                                CheckoutKind.PAID]))
        else:
            ev = Scan(**env, source="scanner-1", received_ts=t, code="x", gtin="0950600013435"
                      + str(k % 10), batch=f"B{k % 100}", expiry="2026-01-31")
        out.append((t, ev))
    return out


def throughput(lanes: int, n: int, rate: float) -> None:
    engine = RuleEngine(load_rules(), model(lanes))
    feed = events(lanes, n, rate)
    start = time.perf_counter()
    actions = run(engine, feed)
    elapsed = time.perf_counter() - start
    print(f"rules: {len(feed) / elapsed:,.0f} events/s ({len(feed):,} events, {lanes} lanes, "
          f"{len(engine.rule_names)} rules, {actions:,} actions, {elapsed:.2f} s, one core)")
    print(snapshot_cost(engine))


def restock_loop(lanes: int, n: int, rate: float) -> list[tuple[float, Event]]:
    """``n`` StockChanged of bench/ingest.py's store at ``rate`` per simulated second: lanes of
    one SKU step 10 -> 0 and back to 10, interleaved; no sales."""
    env = {"store_id": STORE, "source": "agent", "sku": "SKU-BENCH"}
    out: list[tuple[float, Event]] = []
    units = dict.fromkeys(range(lanes), 10)
    for k in range(n):
        t = T0 + k / rate
        lane = k % lanes
        before = units[lane]
        after = units[lane] = before - 1 if before else 10
        out.append((t, StockChanged(**env, received_ts=t, location=f"L{lane}", before=before,
                                    after=after, cause=StockCause.PICK if after < before
                                    else StockCause.RESTOCK)))
    return out


def run(engine: RuleEngine, feed: list[tuple[float, Event]]) -> int:
    """Feed every event, ticking once per simulated second; the number of actions."""
    actions = 0
    next_tick = feed[0][0] + 1.0
    for now, event in feed:
        if now >= next_tick:
            actions += len(engine.tick(now))
            next_tick += 1.0
        actions += len(engine.handle(event, now))
    return actions


def state(lanes: int, n: int, events_per_second: float) -> None:
    feed = restock_loop(lanes, n, events_per_second)
    bench_model = StoreModel(store_id=STORE, lanes=tuple(
        LaneModel(id=f"L{i}", sku="SKU-BENCH", capacity=10, threshold=3) for i in range(lanes)))
    engine = RuleEngine(load_rules(), bench_model)
    start = time.perf_counter()
    run(engine, feed)
    rate = len(feed) / (time.perf_counter() - start)
    tracemalloc.start()  # a second engine, as tracing slows the first's figure
    engine = RuleEngine(load_rules(), bench_model)
    run(engine, feed)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"state after {n:,} stock changes over {lanes} lanes, no sales ({rate:,.0f} events/s): "
          f"{held / 1e6:.2f} MB held by the engine")
    print(snapshot_cost(engine))


def snapshot_cost(engine: RuleEngine) -> str:
    snap_ms, encode_ms = [], []
    for _ in range(5):
        start = time.perf_counter()
        snap = engine.snapshot()
        snap_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        body = json.dumps(snap, separators=(",", ":"))  # what Journal.save_state does
        encode_ms.append((time.perf_counter() - start) * 1000)
    return (f"snapshot: {len(body):,} bytes; snapshot() {statistics.median(snap_ms):.2f} ms, "
            f"encoding it {statistics.median(encode_ms):.2f} ms (median of 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=None, help="2,000; 200 with --state")
    parser.add_argument("--events", type=int, default=None, help="500,000; 200,000 with --state")
    parser.add_argument("--rate", type=float, default=None,
                        help="simulated events/s (10,000; 5,000 with --state)")
    parser.add_argument("--state", action="store_true",
                        help="measure state and snapshot under bench/ingest.py's traffic")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.state:
        state(args.lanes or 200, args.events or 200_000, args.rate or 5_000.0)
    else:
        throughput(args.lanes or 2000, args.events or 500_000, args.rate or 10_000.0)
    print(machine_line())


if __name__ == "__main__":
    main()
