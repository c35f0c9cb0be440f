"""A store's ERP bridge: sales into windows, closed windows into the outbox, the outbox to the ERP.

The agent calls three things: :meth:`ErpBridge.enlist_sale` inside the journal transaction of
each accepted sale, :meth:`ErpBridge.accepted` after that commit, and :meth:`ErpBridge.run` as
one background task (it closes windows as they end and delivers the outbox). Everything else
here is the bridge's own: the summariser (:mod:`cloud_bridge.summary`), the outbox and its
policies (:mod:`cloud_bridge.outbox`), and how a command becomes ERP calls (:meth:`deliver`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cloud_bridge import counts, orders, summary
from cloud_bridge import outbox as outbox_mod
from storeedge.errors import ErpUnavailable, UsageError

log = logging.getLogger(__name__)

# in this order, on the journal's database
SCHEMAS = (outbox_mod.SCHEMA, summary.SCHEMA, counts.SCHEMA, orders.SCHEMA)


class SalesBooker(Protocol):
    async def book_sales(self, key: str, lines: list[tuple[str, int]],
                         receipts: list[str], at: float | None = None) -> str:
        """``at``: the start of the sales window (None: a single receipt, booked now)."""
        ...

    async def stock_units(self) -> dict[str, int]: ...

    async def book_count(self, key: str, lines: list[tuple[str, int]]) -> str: ...

    async def book_order(self, key: str, lines: list[tuple[str, int]]) -> str: ...

    async def book_receipt(self, key: str, received: list[tuple[str, int]]) -> str: ...


class ErpBridge:
    """Owns the outbox and the sales windows of one store's journal at ``db_path``."""

    def __init__(self, db_path: Path | str, store_id: str, erp: SalesBooker, *,
                 window_s: int = 60, merge_s: float = 3600.0,
                 limits: outbox_mod.Limits | None = None,
                 quarantine_after: int = 5, retry_initial_s: float = 0.5,
                 retry_max_s: float = 30.0, clock: Callable[[], float] = time.time,
                 observe_delivery: Callable[[float], None] | None = None) -> None:
        self.erp = erp
        self.clock = clock
        self._observe_delivery = observe_delivery  # seconds each delivery attempt took
        self.outbox = outbox_mod.Outbox(db_path, retry_initial_s=retry_initial_s,
                                        retry_max_s=retry_max_s,
                                        quarantine_after=quarantine_after, limits=limits)
        self._conn = sqlite3.connect(db_path, isolation_level=None, timeout=30.0)
        self._conn.executescript(summary.SCHEMA)
        self.windows = summary.SalesWindows(store_id, window_s, merge_s)

    def close(self) -> None:
        """Close the bridge's connections (after ``run`` has stopped)."""
        self._conn.close()
        self.outbox.close()

    def enlist_sale(self, txn_id: str, lines: list[tuple[str, int]],
                    bounded: bool = True) -> summary.Enlist:
        """The journal callback that records a sale for the ERP in the sale's transaction.

        ``bounded``: refuse it with ``OutboxFull`` when the backlog is at its bound (a POS
        retries a refused sale; a sale that cannot be refused, a paid kiosk session, passes).
        """
        return self.windows.enlist(txn_id, lines, self.clock(),
                                   self.outbox.limits if bounded else None)

    def accepted(self) -> None:
        """A sale was committed: with per-receipt documents it goes out now."""
        if self.windows.window_s == 0:
            self.outbox.notify()

    def stats(self) -> dict[str, Any]:
        """The outbox's stats plus the window length and the sale lines not yet in a command
        (in windows still open, or ended and about to close)."""
        (lines,) = self._conn.execute("SELECT COUNT(*) FROM erp_sale_line").fetchone()
        return {**dataclasses.asdict(self.outbox.stats()),
                "summary_window_s": self.windows.window_s, "unsummarised_lines": lines}

    def close_due(self) -> int:
        """Close the windows that have ended; returns the commands enqueued."""
        enqueued = self.windows.close_due(self._conn, self.clock(), busy=self.outbox.in_flight)
        if enqueued:
            self.outbox.notify()
        return enqueued

    async def propose_counts(self, counted: dict[str, int], tolerance: int) -> list[dict[str, Any]]:
        """Compare the store's ``counted`` units per SKU with the ERP's quantity (less what the
        ERP has not booked yet) and record the differences beyond ``tolerance`` as proposals;
        returns the open ones. Raises ErpUnavailable when the ERP cannot be asked."""
        erp, not_booked = await self._erp_stock()
        return counts.propose(self._conn, counted, erp, not_booked, tolerance, self.clock())

    async def propose_order(self, policy: orders.Policy,
                            minimum: dict[str, int]) -> dict[str, Any] | None:
        """The order the policy asks for now (``minimum``: each SKU's shelf minimum), from
        the journal's sales and the ERP's stock less what it has not booked; None when
        nothing needs ordering. Raises ErpUnavailable when the ERP cannot be asked."""
        erp, not_booked = await self._erp_stock()
        held = {sku: units - not_booked.get(sku, 0) for sku, units in erp.items()}
        now = self.clock()
        daily = orders.demand(self._conn, now - policy.window_days * 86_400, policy.window_days)
        return orders.propose(self._conn, policy, daily, held, minimum, now)

    async def _erp_stock(self) -> tuple[dict[str, int], Counter[str]]:
        """The ERP's units per SKU and the store's sales it has not booked, read together."""
        for _ in range(3):
            before = counts.unbooked(self._conn)
            erp = await self.erp.stock_units()
            if counts.unbooked(self._conn) == before:  # nothing was booked while we asked
                return erp, before
        raise ErpUnavailable("the ERP's stock moved while it was read three times running")

    def count_proposals(self, state: str | None = None) -> list[dict[str, Any]]:
        return counts.proposals(self._conn, state)

    def decide_count(self, proposal_id: int, approve: bool, by: str) -> dict[str, Any] | None:
        """Approve (booked in the ERP once) or dismiss a proposal; None for an unknown one."""
        decided = counts.decide(self._conn, self.windows.store_id, proposal_id, approve, by,
                                self.clock())
        if decided is not None and approve:
            self.outbox.notify()
        return decided

    def orders(self, state: str | None = None) -> list[dict[str, Any]]:
        return orders.orders(self._conn, state)

    def order(self, order_id: int) -> dict[str, Any] | None:
        """An order with what has arrived of it so far."""
        return orders.receipt(self._conn, order_id)

    def decide_order(self, order_id: int, approve: bool, by: str,
                     lines: list[tuple[str, int]] | None = None) -> dict[str, Any] | None:
        decided = orders.decide(self._conn, self.windows.store_id, order_id, approve, by,
                                lines, self.clock())
        if decided is not None and approve:
            self.outbox.notify()
        return decided

    def receive(self, order_id: int, sku: str, by: str) -> dict[str, Any] | None:
        return orders.scan(self._conn, order_id, sku, by, self.clock())

    def received(self, order_id: int, by: str) -> dict[str, Any] | None:
        done = orders.finish(self._conn, self.windows.store_id, order_id, by, self.clock())
        if done is not None:
            self.outbox.notify()
        return done

    async def run(self) -> None:
        """Close windows as they end and deliver the outbox, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.outbox.run(self.deliver), name="erp-outbox-deliver")
            tg.create_task(self._close_windows(), name="erp-sales-windows")

    async def _close_windows(self) -> None:
        while True:
            try:
                self.close_due()
            except sqlite3.Error:
                log.exception("closing sales windows failed; trying again in a second")
                await asyncio.sleep(1.0)
                continue
            # a hair past the end, so the window is really over by our clock
            await asyncio.sleep(min(self.windows.seconds_to_close(self.clock()) + 0.05, 60.0))

    async def deliver(self, kind: str, payload: dict[str, Any]) -> str:
        """One outbox command to the ERP; returns the ERP's document id(s)."""
        started = time.monotonic()
        try:
            return await self._deliver(kind, payload)
        finally:
            if self._observe_delivery is not None:
                self._observe_delivery(time.monotonic() - started)

    async def _deliver(self, kind: str, payload: dict[str, Any]) -> str:
        lines = [(str(sku), int(qty)) for sku, qty in payload["lines"]]
        if kind == summary.KIND:
            window = payload.get("window")
            return await self.erp.book_sales(payload["key"], lines, list(payload["receipts"]),
                                             window[0] if window else None)
        if kind == counts.KIND:
            return await self.erp.book_count(payload["key"], lines)
        if kind == orders.ORDER:
            return await self.erp.book_order(payload["key"], lines)
        if kind == orders.RECEIVE:
            return await self.erp.book_receipt(payload["order"], lines)
        if kind == "sale":  # one receipt, as enqueued before sales were summarised
            return await self.erp.book_sales(payload["key"], lines, [payload["reference"]])
        raise UsageError(f"no delivery for command kind {kind!r}")
