"""ERP drain benchmark: a store offline for a day of busy trading reconnects to Tryton.

    .venv/bin/python bench/erp_drain.py [--receipts 20000] [--hours 24] [--window 60]
                                        [--merge 3600] [--postgres] [--baseline 300]
                                        [--stores 3]

A store's journal and ERP bridge (the agent's own accept path: each receipt journalled in its
own transaction with its ERP share) take ``--receipts`` receipts spread over a simulated 24 hours
on a simulated clock, 1-4 lines each over a 200-SKU catalog, 3% of them with a returned item;
the windows close as the simulated day goes by, while the ERP is unreachable (each joining the
newest unsent summary up to ``--merge`` seconds, as the agent does). Then the store
reconnects to a real Tryton (SQLite, or PostgreSQL with ``--postgres``): the bench prints the
time until the ERP's sold units equal the truth, the documents and ERP calls (per receipt), the
check itself, and the ERP server's own CPU seconds per document (from /proc: what the drain
costs where the machine is not shared). ``--hours`` below 24 simulates a shorter stretch at the
same density and projects the day from it.

Baseline, same run: ``--baseline N`` receipts booked one document per receipt (window 0, the
bridge before summaries), and the day's drain time that rate implies.

With ``--postgres``, ``--stores K`` stores (a warehouse each) then drain an hour of 1-minute
summaries each, concurrently, into the one Tryton: the documents per second it absorbs, and
so how many stores' 1-minute summaries it keeps up with (documents/s x 60).
Figures are printed with the machine and the commit; nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import commit, cpu_seconds, machine  # noqa: E402
from cloud_bridge.bridge import SCHEMAS, ErpBridge  # noqa: E402
from cloud_bridge.tryton.connector import TrytonConnector  # noqa: E402
from cloud_bridge.tryton.postgres import start_postgres  # noqa: E402
from cloud_bridge.tryton.server import (  # noqa: E402
    TrytonServer,
    start_tryton,
    start_tryton_postgres,
)
from edge_agent.journal import Journal  # noqa: E402
from edge_agent.services import free_port  # noqa: E402
from storeedge.events import PosLine, PosTransaction  # noqa: E402

PASSWORD = "bench-erp-drain"
DAY_S = 86_400.0
T0 = 1_764_288_000.0  # a midnight, UTC
CATALOG = [{"sku": f"SKU-{i:03d}", "name": f"Product {i}", "barcode": None, "unit_grams": 100}
           for i in range(200)]
SKUS = [item["sku"] for item in CATALOG]
WEIGHTS = [1.0 / (rank + 1) for rank in range(len(SKUS))]  # a few sellers sell most


class SimClock:
    """The store's clock during the simulated day."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Store:
    def __init__(self, code: str, server: TrytonServer, workdir: Path, window_s: int,
                 clock: SimClock, merge_s: float = 0.0) -> None:
        self.code = code
        self.erp = TrytonConnector(server.url, server.database, "admin", PASSWORD,
                                   warehouse_code=code, timeout=60.0)
        self.journal = Journal(workdir / code / "journal.db", extra_schemas=SCHEMAS)
        self.bridge = ErpBridge(self.journal.path, code, self.erp, window_s=window_s,
                                merge_s=merge_s, clock=clock, retry_initial_s=0.05,
                                retry_max_s=1.0)
        self.clock = clock
        self.truth: Counter[str] = Counter()

    def trade(self, receipts: int, seconds: float, rng: random.Random) -> None:
        """``receipts`` receipts over ``seconds`` of the simulated clock, ERP offline."""
        start = self.clock.now
        window = self.bridge.windows.window_s
        current = None
        for i in range(receipts):
            self.clock.now = start + seconds * i / receipts
            skus = set(rng.choices(SKUS, WEIGHTS, k=rng.randint(1, 4)))
            lines = [(sku, rng.randint(1, 3)) for sku in sorted(skus)]
            if rng.random() < 0.03:
                lines.append((rng.choice(SKUS), -1))
            txn = PosTransaction(store_id=self.code, source="pos-1", received_ts=self.clock.now,
                                 txn_id=f"{self.code}-{i:06d}",
                                 lines=tuple(PosLine(sku=s, qty=q) for s, q in lines))
            self.journal.accept_sale(txn, self.bridge.enlist_sale(txn.txn_id, lines))
            for sku, qty in lines:
                self.truth[sku] += qty
            if window and self.clock.now // window != current:  # a window ended: close it
                current = self.clock.now // window
                self.bridge.close_due()
        self.clock.now = start + seconds + self.bridge.windows.window_s + 1
        self.bridge.close_due()

    async def drain(self) -> float:
        """Reconnect: deliver everything; seconds until the outbox is empty."""
        started = time.monotonic()
        task = asyncio.create_task(self.bridge.outbox.run(self.bridge.deliver))
        try:
            while not await self.bridge.outbox.drained(1.0):
                if task.done():
                    task.result()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return time.monotonic() - started

    async def aclose(self) -> None:
        self.bridge.close()
        self.journal.close()
        await self.erp.aclose()


async def offline_day(server: TrytonServer, workdir: Path, receipts: int, window_s: int,
                      hours: float, merge_s: float = 0.0, code: str = "WH") -> dict[str, Any]:
    store = Store(code, server, workdir, window_s, SimClock(T0), merge_s)
    assert server.pid is not None
    try:
        started = time.monotonic()
        store.trade(receipts, hours * 3600.0, random.Random(receipts))
        trade_s = time.monotonic() - started
        documents = store.bridge.outbox.stats().pending
        await store.erp.login()
        before = await store.erp.stock_units()
        calls_before = store.erp.calls
        cpu_before = cpu_seconds(server.pid)
        drain_s = await store.drain()
        erp_cpu_s = cpu_seconds(server.pid) - cpu_before
        calls = store.erp.calls - calls_before
        after = await store.erp.stock_units()
        sold = {sku: before[sku] - after[sku] for sku in SKUS if before[sku] != after[sku]}
        truth = {sku: n for sku, n in store.truth.items() if n}
        dead = store.bridge.outbox.stats().rejected
    finally:
        await store.aclose()
    return {"receipts": receipts, "hours": hours, "window_s": window_s, "merge_s": merge_s,
            "documents": documents,
            # the ERP's own CPU per document: what the drain costs on a machine not shared
            "erp_cpu_s": round(erp_cpu_s, 1),
            "erp_cpu_s_per_document": round(erp_cpu_s / documents, 3) if documents else None,
            "journal_s": round(trade_s, 1), "drain_s": round(drain_s, 1),
            "erp_calls": calls, "erp_calls_per_receipt": round(calls / receipts, 3),
            "documents_per_s": round(documents / drain_s, 2) if drain_s else None,
            "erp_equals_truth": sold == truth, "dead": dead}


async def chain(server: TrytonServer, workdir: Path, stores: int) -> dict[str, Any]:
    """``stores`` stores drain an hour of 1-minute summaries each, concurrently."""
    clock = SimClock(T0)
    chain_stores = [Store(f"S{i + 1}", server, workdir / "chain", 60, clock)
                    for i in range(stores)]
    try:
        for i, store in enumerate(chain_stores):
            clock.now = T0
            store.trade(840, 3600.0, random.Random(i))  # a busy hour: 14 receipts a minute
        documents = sum(s.bridge.outbox.stats().pending for s in chain_stores)
        started = time.monotonic()
        await asyncio.gather(*(s.drain() for s in chain_stores))
        elapsed = time.monotonic() - started
    finally:
        for store in chain_stores:
            await store.aclose()
    per_s = documents / elapsed
    return {"stores": stores, "documents": documents, "seconds": round(elapsed, 1),
            "documents_per_s": round(per_s, 2),
            "stores_kept_up_with_at_1_min_summaries": int(per_s * 60)}


async def main_async(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cluster = None
    started = time.monotonic()
    if args.postgres:
        cluster = start_postgres(free_port())
        codes = ["WH", *(f"S{i + 1}" for i in range(args.stores))]
        server = start_tryton_postgres(workdir / "tryton", free_port(), cluster.uri, CATALOG,
                                       {code: {} for code in codes}, PASSWORD)
    else:
        server = start_tryton(workdir / "tryton", free_port(), CATALOG, {}, PASSWORD)
    report: dict[str, Any] = {
        "bench": "erp_drain", "machine": machine(), "commit": commit(),
        "load_average": list(os.getloadavg()),
        "erp": "tryton-postgresql" if args.postgres else "tryton-sqlite",
        "erp_start_s": round(time.monotonic() - started, 1)}
    try:
        day = await offline_day(server, workdir, args.receipts, args.window, args.hours,
                                args.merge)
        scale = DAY_S / (args.hours * 3600.0)  # 1 unless a shorter stretch was simulated
        day["projected_for_24h"] = {
            "receipts": round(args.receipts * scale), "documents": round(day["documents"] * scale),
            "drain_s": round(day["drain_s"] * scale),
            "drain_s_on_one_free_core": round(day["erp_cpu_s"] * scale)}
        report["summarised"] = day
        if args.baseline:
            base = await offline_day(server, workdir / "baseline", args.baseline, 0,
                                     args.hours * args.baseline / args.receipts)
            base["projected_for_24h"] = {
                "drain_s": round(day["projected_for_24h"]["receipts"] / base["documents_per_s"])
                if base["documents_per_s"] else None,
                "drain_s_on_one_free_core": round(
                    day["projected_for_24h"]["receipts"] * base["erp_cpu_s_per_document"])
                if base["erp_cpu_s_per_document"] is not None else None}
            report["baseline_one_document_per_receipt"] = base
        if args.postgres and args.stores:
            report["chain"] = await chain(server, workdir, args.stores)
    finally:
        server.stop()
        if cluster is not None:
            cluster.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=60, help="summary window, seconds")
    parser.add_argument("--merge", type=float, default=3600.0,
                        help="erp.summary_merge_seconds: windows closed while the ERP is behind "
                        "join the newest unsent summary up to this span (0: never)")
    parser.add_argument("--hours", type=float, default=24.0,
                        help="simulated trading time the receipts spread over; below 24 the "
                        "report also projects the day at the same density")
    parser.add_argument("--baseline", type=int, default=300,
                        help="receipts booked one document each for comparison (0: none)")
    parser.add_argument("--postgres", action="store_true", help="Tryton on PostgreSQL")
    parser.add_argument("--stores", type=int, default=3, help="chain stores (with --postgres)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="erp-drain-") as tmp:
        report = asyncio.run(main_async(args, Path(tmp)))
    print(json.dumps(report, indent=2))
    day = report["summarised"]
    return 0 if day["erp_equals_truth"] and not day["dead"] else 1


if __name__ == "__main__":
    sys.exit(main())
