"""The chain: three stores book their sales concurrently into one Tryton on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

from cloud_bridge.bridge import SCHEMAS, ErpBridge
from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer
from edge_agent.journal import Journal
from storeedge.events import PosLine, PosTransaction
from tests.fixtures.postgres import CHAIN_STOCK
from tests.fixtures.tryton import ADMIN_PASSWORD, CATALOG

SKUS = [item["sku"] for item in CATALOG]
RECEIPTS = 40


class Store:
    """One store's journal and ERP bridge, accepting sales the way the agent does."""

    def __init__(self, code: str, server: TrytonServer, workdir: Path) -> None:
        self.code = code
        self.erp = TrytonConnector(server.url, server.database, "admin", ADMIN_PASSWORD,
                                   warehouse_code=code, timeout=30.0)
        self.journal = Journal(workdir / code / "journal.db", extra_schemas=SCHEMAS)
        self.bridge = ErpBridge(self.journal.path, code, self.erp, window_s=1,
                                retry_initial_s=0.05, retry_max_s=0.5)
        self.truth: Counter[str] = Counter()

    async def trade(self, rng: random.Random) -> None:
        for i in range(RECEIPTS):
            lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(SKUS, rng.randint(1, 3))]
            if i % 7 == 3:
                lines.append((rng.choice(SKUS), -1))  # a customer brings one back
            txn = PosTransaction(store_id=self.code, source="pos-1", received_ts=time.time(),
                                 txn_id=f"{self.code}-{i:03d}",
                                 lines=tuple(PosLine(sku=sku, qty=qty) for sku, qty in lines))
            assert self.journal.accept_sale(txn, self.bridge.enlist_sale(txn.txn_id, lines))
            self.bridge.accepted()
            for sku, qty in lines:
                self.truth[sku] += qty
            await asyncio.sleep(rng.uniform(0.01, 0.08))

    def settled(self) -> bool:
        stats = self.bridge.stats()
        return stats["unsummarised_lines"] == 0 and stats["pending"] == 0

    async def aclose(self) -> None:
        self.bridge.close()
        self.journal.close()
        await self.erp.aclose()


async def test_three_stores_post_concurrently_and_each_erp_stock_equals_its_truth(
        chain_tryton: TrytonServer, tmp_path: Path) -> None:
    stores = [Store(code, chain_tryton, tmp_path) for code in CHAIN_STOCK]
    runners = [asyncio.create_task(store.bridge.run(), name=f"bridge-{store.code}")
               for store in stores]
    try:
        async with asyncio.timeout(300):
            await asyncio.gather(*(store.trade(random.Random(store.code))
                                   for store in stores))
            while not all(store.settled() for store in stores):
                await asyncio.sleep(0.2)
        stock = {store.code: await store.erp.stock_units() for store in stores}
        documents = {store.code: await store.erp.call(
            "stock.shipment.out", "search_count",
            [("storeedge_key", "like", f"{store.code}:sales:%")]) for store in stores}
        dead = [store.bridge.outbox.rejected() for store in stores]
    finally:
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        for store in stores:
            await store.aclose()
    assert dead == [[], [], []]
    for store in stores:
        initial = CHAIN_STOCK[store.code]
        assert stock[store.code] == {sku: initial - store.truth[sku] for sku in SKUS}, store.code
        # summarised: a document per one-second window, far fewer than receipts
        assert 1 <= documents[store.code] < RECEIPTS
