"""Count proposals: where the store's own counts and the ERP's quantity per SKU disagree, a
difference a manager approves (booked in the ERP as one inventory, exactly once) or dismisses.

The ERP's quantity lags the store by the sales it has not booked yet (lines in open sales
windows, summaries in the outbox, dead letters): the ERP is *expected* to hold its quantity less
those, and the proposal is the difference between that and the count. A difference, not a
quantity, goes to the ERP: sales booked meanwhile move the ERP's quantity and leave the
difference as it was (``TrytonConnector.book_count``).

Proposals live in the journal (``SCHEMA``); approving one enqueues its outbox command (kind
``count``, key ``{store}:count:{id}``) in the same transaction, so it is booked once however
often the manager presses the button or the agent restarts. A newer proposal for a SKU
supersedes an open older one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from typing import Any

from cloud_bridge.outbox import enqueue
from storeedge.errors import ConflictError
from storeedge.ids import idempotency_key

KIND = "count"

SCHEMA = """
CREATE TABLE IF NOT EXISTS count_proposal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sku TEXT NOT NULL,
    counted INTEGER NOT NULL,     -- the store's count (shelf weight, RFID)
    erp INTEGER NOT NULL,         -- the ERP's quantity when compared
    unbooked INTEGER NOT NULL,    -- net units sold the ERP had not booked then
    difference INTEGER NOT NULL,  -- counted - (erp - unbooked): what the ERP is moved by
    proposed_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'proposed'
        CHECK (state IN ('proposed', 'approved', 'dismissed', 'superseded')),
    decided_by TEXT,
    decided_at REAL,
    key TEXT
);
CREATE INDEX IF NOT EXISTS count_proposal_open ON count_proposal (state, sku);
"""

_COLUMNS = ("id, sku, counted, erp, unbooked, difference, proposed_at, state, decided_by,"
            " decided_at, key")


def unbooked(conn: sqlite3.Connection) -> Counter[str]:
    """Net units per SKU the store sold that the ERP has not booked: in open sales windows and
    in sales commands not yet delivered (pending or in the dead letter)."""
    out: Counter[str] = Counter()
    for sku, qty in conn.execute("SELECT sku, SUM(qty) FROM erp_sale_line GROUP BY sku"):
        out[sku] += qty
    for (payload,) in conn.execute("SELECT payload FROM outbox WHERE kind IN ('sales', 'sale')"
                                   " AND state != 'delivered'"):
        for sku, qty in json.loads(payload)["lines"]:
            out[sku] += qty
    return out


def propose(conn: sqlite3.Connection, counted: dict[str, int], erp: dict[str, int],
            not_booked: Counter[str], tolerance: int, now: float | None = None
            ) -> list[dict[str, Any]]:
    """Record a proposal per SKU whose difference passes ``tolerance`` units (superseding its
    open one); returns the open proposals. One transaction on ``conn`` (autocommit mode)."""
    now = time.time() if now is None else now
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sku in sorted(counted):
            difference = counted[sku] - (erp.get(sku, 0) - not_booked.get(sku, 0))
            open_ = conn.execute("SELECT difference FROM count_proposal"
                                 " WHERE sku = ? AND state = 'proposed'", (sku,)).fetchone()
            if open_ is not None and open_[0] == difference:
                continue
            conn.execute("UPDATE count_proposal SET state = 'superseded', decided_at = ?"
                         " WHERE sku = ? AND state = 'proposed'", (now, sku))
            if abs(difference) > tolerance:
                conn.execute(
                    "INSERT INTO count_proposal (sku, counted, erp, unbooked, difference,"
                    " proposed_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (sku, counted[sku], erp.get(sku, 0), not_booked.get(sku, 0), difference,
                     now))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return proposals(conn, "proposed")


def proposals(conn: sqlite3.Connection, state: str | None = None,
              limit: int = 500) -> list[dict[str, Any]]:
    """Proposals, newest first, optionally of one state."""
    where, args = ("WHERE state = ?", (state, limit)) if state else ("", (limit,))
    rows = conn.execute(f"SELECT {_COLUMNS} FROM count_proposal {where}"
                        " ORDER BY id DESC LIMIT ?", args).fetchall()
    names = [c.strip() for c in _COLUMNS.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


def decide(conn: sqlite3.Connection, store_id: str, proposal_id: int, approve: bool, by: str,
           now: float | None = None) -> dict[str, Any] | None:
    """Approve (enqueueing its ERP command) or dismiss an open proposal, in one transaction.
    None for an unknown id; ConflictError for one already decided or superseded."""
    now = time.time() if now is None else now
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT sku, difference, state FROM count_proposal WHERE id = ?",
                           (proposal_id,)).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return None
        sku, difference, state = row
        if state != "proposed":
            raise ConflictError(f"count proposal {proposal_id} is {state}, not open")
        key = idempotency_key(store_id, KIND, str(proposal_id)) if approve else None
        if key is not None:
            enqueue(conn, key, KIND, {"lines": [[sku, difference]]}, subject=sku)
        conn.execute("UPDATE count_proposal SET state = ?, decided_by = ?, decided_at = ?,"
                     " key = ? WHERE id = ?",
                     ("approved" if approve else "dismissed", by, now, key, proposal_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    (found,) = [p for p in proposals(conn) if p["id"] == proposal_id]
    return found
