"""A store POS: posts completed transactions to the agent, and like a real register keeps each
one until the agent accepted it (store-and-forward), so an agent restart loses no sale."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transaction:
    txn_id: str
    ts_ms: int
    lines: tuple[tuple[str, int, float], ...]  # sku, qty, unit price

    def body(self) -> dict[str, object]:
        return {"txn_id": self.txn_id, "ts": self.ts_ms,
                "lines": [{"sku": s, "qty": q, "unit_price": p} for s, q, p in self.lines]}


class PosRegister:
    """``sell()`` queues a transaction; ``run()`` posts the queue in order, retrying each one
    until the agent answers 200 or 201. ``accepted_units`` is the scenario's sales truth."""

    def __init__(self, agent_url: str, token: str | None = None) -> None:
        self.url = agent_url.rstrip("/") + "/api/pos/transactions"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.queue: deque[Transaction] = deque()
        self.accepted_units: Counter[str] = Counter()
        self.accepted = 0
        self.rejected = 0
        self.retries = 0
        self._wake = asyncio.Event()

    def sell(self, txn: Transaction) -> None:
        self.queue.append(txn)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self.queue)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            delay = 0.2
            while True:
                if not self.queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                txn = self.queue[0]
                try:
                    resp = await client.post(self.url, json=txn.body(), headers=self.headers)
                except httpx.HTTPError as exc:
                    self.retries += 1
                    log.debug("POS post %s failed: %s", txn.txn_id, exc)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 3.0)
                    continue
                delay = 0.2
                if resp.status_code in (200, 201):
                    self.queue.popleft()
                    self.accepted += 1
                    for sku, qty, _ in txn.lines:
                        self.accepted_units[sku] += qty
                elif resp.status_code >= 500 or resp.status_code == 503:
                    self.retries += 1
                    await asyncio.sleep(0.5)
                else:
                    self.queue.popleft()
                    self.rejected += 1
                    log.error("POS transaction %s rejected by the agent: %s %s", txn.txn_id,
                              resp.status_code, resp.text[:300])

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued transaction was accepted (or ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.queue and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return not self.queue
