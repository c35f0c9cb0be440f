"""Sales summarised per window before they go to the ERP: one document per store and window.

A sale's lines are journalled, in the sale's own transaction, into ``erp_sale_line`` under the
window open at the agent's clock: windows are ``window_s`` long and aligned to the epoch, and a
sale never goes into a window that is already closed (``closed_until``), so a late sale, or one
accepted after the clock stepped back, lands in a later window. :meth:`SalesWindows.close_due`
closes every window that has ended, in one transaction: per window the net quantity per SKU
(returns are negative lines) and the receipts it covers become one outbox command keyed by store
and window start, the lines are deleted and ``closed_until`` moves on. A crash before that
commit leaves the lines to be closed on restart; after it, the command is in the outbox, and its
key makes a second close of the same window impossible (the outbox ignores a known key).

While the ERP is behind (after an outage, say), a closing window joins the newest command
instead when that one is a sales summary never sent yet (not even tried) and the two together
span at most ``merge_s``: a store back from a day offline sends about one document per
``merge_s`` of trading, not one per window. The command keeps its key, and the window its
lines came from is closed in the same transaction, so nothing is booked twice or lost; its
``window`` grows to cover both.

With ``window_s`` 0 every receipt is its own command, keyed by its transaction id.

Lines in open windows count against the outbox's bound like commands do (``outbox_usage``).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from cloud_bridge.outbox import Limits, enqueue, reserve
from storeedge.ids import idempotency_key

# Applied after the outbox's schema (its triggers update ``outbox_usage``).
SCHEMA = """
CREATE TABLE IF NOT EXISTS erp_sale_line (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    window_start REAL NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    txn_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS erp_sale_line_window ON erp_sale_line (window_start);
CREATE TABLE IF NOT EXISTS erp_sales_window (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    closed_until REAL NOT NULL
);
INSERT OR IGNORE INTO erp_sales_window VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS erp_sale_line_usage_insert AFTER INSERT ON erp_sale_line BEGIN
    UPDATE outbox_usage SET rows = rows + 1,
        bytes = bytes + LENGTH(NEW.sku) + LENGTH(NEW.txn_id) + 16 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS erp_sale_line_usage_delete AFTER DELETE ON erp_sale_line BEGIN
    UPDATE outbox_usage SET rows = rows - 1,
        bytes = bytes - LENGTH(OLD.sku) - LENGTH(OLD.txn_id) - 16 WHERE id = 1;
END;
"""

KIND = "sales"  # payload: {"lines": [[sku, qty], ...], "receipts": [txn_id, ...], "window"?}

Enlist = Callable[[sqlite3.Connection], None]


class SalesWindows:
    """One store's sales windows in the journal (``SCHEMA`` applied to it)."""

    def __init__(self, store_id: str, window_s: int, merge_s: float = 0.0) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be 0 or more, not {window_s}")
        self.store_id = store_id
        self.window_s = window_s
        self.merge_s = merge_s

    def enlist(self, txn_id: str, lines: list[tuple[str, int]], now: float,
               limits: Limits | None) -> Enlist:
        """The callback that adds a sale inside the journal's transaction for it.

        Raises ``OutboxFull`` (from the callback) when ``limits`` are given and the sale would
        pass them; the journal then rolls the whole sale back.
        """
        net: Counter[str] = Counter()
        for sku, qty in lines:
            net[sku] += qty
        merged = sorted((sku, qty) for sku, qty in net.items() if qty)

        def add(conn: sqlite3.Connection) -> None:
            if not merged:
                return
            if self.window_s == 0:
                enqueue(conn, idempotency_key(self.store_id, "sale", txn_id), KIND,
                        {"lines": merged, "receipts": [txn_id]},
                        subject=" ".join(sku for sku, _ in merged), limits=limits)
                return
            reserve(conn, len(merged), sum(len(sku) + len(txn_id) + 16 for sku, _ in merged),
                    limits)
            (closed,) = conn.execute(
                "SELECT closed_until FROM erp_sales_window WHERE id = 1").fetchone()
            start = max(self._start(now), closed)
            conn.executemany(
                "INSERT INTO erp_sale_line (window_start, sku, qty, txn_id) VALUES (?, ?, ?, ?)",
                [(start, sku, qty, txn_id) for sku, qty in merged])

        return add

    def close_due(self, conn: sqlite3.Connection, now: float, busy: int | None = None) -> int:
        """Close every window that ended by ``now``: one outbox command each (windows with no
        net movement give none), or merged into the newest command (see the module's doc) if
        it is not ``busy`` (the outbox row being delivered). Runs its own transaction on
        ``conn`` (autocommit mode). Returns the number of commands enqueued."""
        if self.window_s == 0:
            return 0
        cutoff = self._start(now)
        conn.execute("BEGIN IMMEDIATE")
        try:
            (closed,) = conn.execute(
                "SELECT closed_until FROM erp_sales_window WHERE id = 1").fetchone()
            (ahead,) = conn.execute("SELECT MAX(window_start) FROM erp_sale_line").fetchone()
            if ahead is not None and ahead >= cutoff + self.window_s:
                # Lines in windows ahead of the clock: it was stepped back after they were
                # written. Close them now rather than when the clock catches up.
                cutoff = ahead + self.window_s
            if cutoff + self.window_s < closed:
                # The clock was stepped back behind windows already closed: sales go into the
                # window at the frontier (never a closed one), which closes as time passes
                # rather than when the clock catches up with it (that could take hours).
                cutoff = closed + self.window_s
            if cutoff <= closed:
                conn.execute("COMMIT")
                return 0
            lines: defaultdict[float, Counter[str]] = defaultdict(Counter)
            receipts: defaultdict[float, dict[str, None]] = defaultdict(dict)
            for start, sku, qty, txn_id in conn.execute(
                    "SELECT window_start, sku, qty, txn_id FROM erp_sale_line"
                    " WHERE window_start < ? ORDER BY id", (cutoff,)):
                lines[start][sku] += qty
                receipts[start][txn_id] = None
            enqueued = 0
            for start in sorted(lines):
                net = sorted((sku, qty) for sku, qty in lines[start].items() if qty)
                if not net:
                    continue
                end = min(cutoff, self._start(start) + self.window_s)
                if self._merged(conn, busy, lines[start], list(receipts[start]), end):
                    continue
                enqueued += enqueue(
                    conn, self.key(start), KIND,
                    {"lines": net, "receipts": list(receipts[start]), "window": [start, end]},
                    subject=" ".join(sku for sku, _ in net))
            conn.execute("DELETE FROM erp_sale_line WHERE window_start < ?", (cutoff,))
            conn.execute("UPDATE erp_sales_window SET closed_until = ? WHERE id = 1", (cutoff,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return enqueued

    def _merged(self, conn: sqlite3.Connection, busy: int | None, lines: Counter[str],
                receipts: list[str], end: float) -> bool:
        """Fold a closed window into the newest command if it may take it (True)."""
        if self.merge_s <= 0:
            return False
        row = conn.execute("SELECT id, kind, state, attempts, payload FROM outbox"
                           " ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return False
        row_id, kind, state, attempts, payload = row
        if kind != KIND or state != "pending" or attempts or row_id == busy:
            return False
        command = json.loads(payload)
        first = command.get("window", [None])[0]
        if first is None or end - first > self.merge_s:
            return False
        net: Counter[str] = Counter(dict(command["lines"]))
        net.update(lines)
        merged = sorted((sku, qty) for sku, qty in net.items() if qty)
        if not merged:  # returns cancelled every sale it held: nothing for the ERP
            conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            return True
        command.update(lines=merged, receipts=command["receipts"] + receipts,
                       window=[first, end])
        body = json.dumps(command, separators=(",", ":"))
        conn.execute("UPDATE outbox SET payload = ?, subject = ? WHERE id = ?",
                     (body, " ".join(sku for sku, _ in merged), row_id))
        return True

    def seconds_to_close(self, now: float) -> float:
        """Until the window open at ``now`` ends."""
        if self.window_s == 0:
            return math.inf
        return self._start(now) + self.window_s - now

    def key(self, window_start: float) -> str:
        """The idempotency key of a store's window: store, ``sales``, start in UTC."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(window_start))
        return idempotency_key(self.store_id, "sales", stamp)

    def _start(self, ts: float) -> float:
        return math.floor(ts / self.window_s) * self.window_s
