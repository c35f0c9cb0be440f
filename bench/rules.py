"""Rule engine benchmark: events/s through the full rule library (company defaults, every rule
on) over a store of --lanes lanes, on one core, in one thread.

    /work/venv/bin/python bench/rules.py [--lanes 2000] [--events 500000]

The event mix is what the agent feeds: mostly raw shelf weights (20 lanes per controller),
with stock changes, sales, camera frames, climate samples, tag presence, checkout events and
scans, and a tick per simulated second. Events are built before the clock starts, so the figure
is the engine's alone. Printed with the machine and the commit; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=2000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rate", type=float, default=10_000.0, help="simulated events/s")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    engine = RuleEngine(load_rules(), model(args.lanes))
    feed = events(args.lanes, args.events, args.rate)
    actions = 0
    next_tick = T0 + 1.0
    start = time.perf_counter()
    for now, event in feed:
        if now >= next_tick:
            actions += len(engine.tick(now))
            next_tick += 1.0
        actions += len(engine.handle(event, now))
    elapsed = time.perf_counter() - start
    print(f"rules: {len(feed) / elapsed:,.0f} events/s ({len(feed):,} events, {args.lanes} lanes, "
          f"{len(engine.rule_names)} rules, {actions:,} actions, {elapsed:.2f} s, one core)")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}, commit {commit()}")


if __name__ == "__main__":
    main()
