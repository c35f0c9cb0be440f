"""Online orders picked in the store (click and collect), in the journal.

The online shop (or the ERP) hands the store an order: it becomes a pick task on the handheld
(an alert of rule ``click_collect``, routed to the zone of its first product's lane). Staff
claim it, pick the units and say so: the rules then hear the picked units as sold, so units
leaving the shelf for an order raise no shrink (loss) alert. Handing the order to the customer
books it through the POS path (``txn_id`` ``pickup:{order}``), so the ERP gets it exactly once
however often the button is pressed or the agent restarts. A manager may cancel an order not
handed over; its units stay store stock.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from storeedge.errors import ConflictError

RULE = "click_collect"

SCHEMA = """
CREATE TABLE IF NOT EXISTS pickup (
    order_id TEXT PRIMARY KEY,
    lines TEXT NOT NULL,            -- [{"sku", "qty", "unit_price"}, ...]
    customer TEXT,
    state TEXT NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'picked', 'handed_over', 'cancelled')),
    created_at REAL NOT NULL,
    picked_by TEXT,
    picked_at REAL,
    done_by TEXT,
    done_at REAL
);
"""

_COLUMNS = ("order_id, lines, customer, state, created_at, picked_by, picked_at, done_by,"
            " done_at")


def create(conn: sqlite3.Connection, order_id: str, lines: list[dict[str, Any]],
           customer: str | None, now: float | None = None) -> bool:
    """Record a new order: True when new, False when the same order came before;
    ConflictError naming the difference when its id came with other lines."""
    body = json.dumps(lines, sort_keys=True)
    with conn:
        before = get(conn, order_id)
        if before is not None:
            if json.dumps(before["lines"], sort_keys=True) != body:
                raise ConflictError(f"order {order_id!r} came before with other lines: "
                                    f"{before['lines']}")
            return False
        conn.execute("INSERT INTO pickup (order_id, lines, customer, created_at)"
                     " VALUES (?, ?, ?, ?)",
                     (order_id, body, customer, time.time() if now is None else now))
    return True


def move(conn: sqlite3.Connection, order_id: str, to: str, by: str,
         now: float | None = None) -> dict[str, Any] | None:
    """``open`` -> ``picked`` -> ``handed_over``, or ``open``/``picked`` -> ``cancelled``; a
    move to the state it is in changes nothing. None when unknown; ConflictError otherwise."""
    allowed = {"picked": ("open",), "handed_over": ("picked",),
               "cancelled": ("open", "picked")}[to]
    now = time.time() if now is None else now
    with conn:
        order = get(conn, order_id)
        if order is None or order["state"] == to:
            return order
        if order["state"] not in allowed:
            raise ConflictError(f"order {order_id} is {order['state']}: it cannot be {to}")
        who = "picked" if to == "picked" else "done"
        conn.execute(f"UPDATE pickup SET state = ?, {who}_by = ?, {who}_at = ?"
                     " WHERE order_id = ?", (to, by, now, order_id))
    return get(conn, order_id)


def get(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM pickup WHERE order_id = ?",
                       (order_id,)).fetchone()
    return None if row is None else _row(row)


def pickups(conn: sqlite3.Connection, state: str | None = None,
            limit: int = 200) -> list[dict[str, Any]]:
    """Orders, newest first, optionally of one state."""
    where, args = ("WHERE state = ?", (state, limit)) if state else ("", (limit,))
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM pickup {where} ORDER BY created_at DESC LIMIT ?", args)]


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    names = [c.strip() for c in _COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["lines"] = json.loads(out["lines"])
    return out
