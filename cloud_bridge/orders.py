"""Store orders on the chain's distribution centre: proposed from demand, approved by a manager,
booked in the ERP once, received by staff scanning what arrived.

Policy, per SKU (``Policy``): demand is the net units sold per day over the last
``window_days``; the store holds the ERP's quantity less the sales it has not booked yet
(``counts.unbooked``) plus what approved orders still bring. When that is at or below the
reorder point, ``ceil(demand x lead_days)`` plus the SKU's shelf minimum (its lanes' low-stock
thresholds), the order brings it up to ``ceil(demand x (lead_days + cover_days))`` plus that
minimum. One proposal holds every SKU that needs ordering; a newer one supersedes an open one.

Approving (with the manager's own quantities, if given) enqueues, in the same transaction, one
outbox command (kind ``order``, key ``{store}:order:{id}``): one internal shipment in the ERP.
Receiving: each scan adds a unit of a SKU to the order's receipt; finishing compares it with
the order (over, under, not ordered), records that, and enqueues the ``receive`` command (key
``{store}:receive:{id}``) with what arrived of the ordered SKUs. Both in the journal, so a
restart or a second press books nothing twice.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cloud_bridge.outbox import enqueue
from storeedge.errors import ConflictError, PayloadError
from storeedge.ids import idempotency_key

ORDER = "order"
RECEIVE = "receive"

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_order (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL DEFAULT 'proposed' CHECK (state IN
        ('proposed', 'approved', 'dismissed', 'superseded', 'received')),
    lines TEXT NOT NULL,          -- [[sku, units], ...] as proposed, then as approved
    basis TEXT NOT NULL,          -- per SKU: demand, on hand, on order, reorder point
    proposed_at REAL NOT NULL,
    decided_by TEXT,
    decided_at REAL,
    received TEXT,                -- per SKU: units that arrived (when received)
    discrepancies TEXT,           -- [{sku, ordered, received, kind: over|under|not_ordered}]
    received_by TEXT,
    received_at REAL
);
CREATE TABLE IF NOT EXISTS order_scan (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES store_order (id),
    sku TEXT NOT NULL,
    by TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS order_scan_order ON order_scan (order_id);
"""


@dataclass(frozen=True)
class Policy:
    lead_days: float = 1.0  # from approval to the goods on the shelf
    cover_days: float = 3.0  # what an order should last beyond the lead time
    window_days: float = 7.0  # the sales that measure demand


def demand(conn: sqlite3.Connection, since: float, days: float) -> dict[str, float]:
    """Net units per SKU sold per day since ``since`` (the journal's sales, over ``days``)."""
    rows = conn.execute(
        "SELECT json_extract(line.value, '$.sku'), SUM(json_extract(line.value, '$.qty'))"
        " FROM sale, json_each(sale.body, '$.lines') AS line WHERE sale.received_ts >= ?"
        " GROUP BY 1", (since,))
    return {sku: max(0.0, units / days) for sku, units in rows}


def on_order(conn: sqlite3.Connection) -> Counter[str]:
    """Units approved orders still bring (not received yet)."""
    out: Counter[str] = Counter()
    for (lines,) in conn.execute("SELECT lines FROM store_order WHERE state = 'approved'"):
        for sku, units in json.loads(lines):
            out[sku] += units
    return out


def propose(conn: sqlite3.Connection, policy: Policy, daily: dict[str, float],
            held: dict[str, int], minimum: dict[str, int],
            now: float | None = None) -> dict[str, Any] | None:
    """Record the order the policy asks for (``held``: units the store holds per SKU;
    ``minimum``: its shelf minimum), superseding an open one; None when nothing needs
    ordering. One transaction on ``conn`` (autocommit mode)."""
    now = time.time() if now is None else now
    with _transaction(conn):
        coming = on_order(conn)
        lines: list[list[Any]] = []
        basis: dict[str, dict[str, float]] = {}
        for sku in sorted(set(daily) | set(minimum)):
            rate = daily.get(sku, 0.0)
            floor = minimum.get(sku, 0)
            reorder = math.ceil(rate * policy.lead_days) + floor
            position = held.get(sku, 0) + coming[sku]
            if position > reorder:
                continue
            units = math.ceil(rate * (policy.lead_days + policy.cover_days)) + floor - position
            if units >= 1:
                lines.append([sku, units])
                basis[sku] = {"demand_per_day": round(rate, 2), "held": held.get(sku, 0),
                              "on_order": coming[sku], "reorder_point": reorder}
        conn.execute("UPDATE store_order SET state = 'superseded', decided_at = ?"
                     " WHERE state = 'proposed'", (now,))
        if not lines:
            return None
        cursor = conn.execute(
            "INSERT INTO store_order (lines, basis, proposed_at) VALUES (?, ?, ?)",
            (json.dumps(lines), json.dumps(basis), now))
    return get(conn, cursor.lastrowid or 0)


def decide(conn: sqlite3.Connection, store_id: str, order_id: int, approve: bool, by: str,
           lines: list[tuple[str, int]] | None = None,
           now: float | None = None) -> dict[str, Any] | None:
    """Approve (with ``lines`` instead of the proposed ones, if given) or dismiss an open
    proposal, enqueueing the ERP's order in the same transaction. None for an unknown id;
    ConflictError once decided; PayloadError for an approval with no units."""
    now = time.time() if now is None else now
    with _transaction(conn):
        order = _open(conn, order_id, "proposed")
        if order is None:
            return None
        source = lines if lines is not None else [(str(k), int(n)) for k, n in order["lines"]]
        chosen: list[tuple[str, int]] = [(sku, int(units)) for sku, units in source if units]
        if approve and not chosen:
            raise PayloadError(f"order {order_id}: an approved order needs a line of units")
        if approve:
            enqueue(conn, idempotency_key(store_id, ORDER, order_id), ORDER,
                    {"lines": [list(line) for line in chosen]},
                    subject=" ".join(sku for sku, _ in chosen))
        conn.execute("UPDATE store_order SET state = ?, lines = ?, decided_by = ?,"
                     " decided_at = ? WHERE id = ?",
                     ("approved" if approve else "dismissed",
                      json.dumps(chosen if approve else order["lines"]), by, now, order_id))
    return get(conn, order_id)


def scan(conn: sqlite3.Connection, order_id: int, sku: str, by: str,
         now: float | None = None) -> dict[str, Any] | None:
    """One unit of ``sku`` arrived for an approved order; its receipt so far (None when the
    order is unknown; ConflictError when it is not waiting for goods)."""
    with _transaction(conn):
        if _open(conn, order_id, "approved") is None:
            return None
        conn.execute("INSERT INTO order_scan (order_id, sku, by, at) VALUES (?, ?, ?, ?)",
                     (order_id, sku, by, time.time() if now is None else now))
    return receipt(conn, order_id)


def receipt(conn: sqlite3.Connection, order_id: int) -> dict[str, Any] | None:
    """An order with what has arrived so far per SKU and how that differs from it."""
    order = get(conn, order_id)
    if order is None:
        return None
    arrived = Counter(dict(conn.execute(
        "SELECT sku, COUNT(*) FROM order_scan WHERE order_id = ? GROUP BY sku", (order_id,))))
    return {**order, "arrived": dict(arrived),
            "discrepancies": _discrepancies(order["lines"], arrived)}


def finish(conn: sqlite3.Connection, store_id: str, order_id: int, by: str,
           now: float | None = None) -> dict[str, Any] | None:
    """Close the receipt: record what arrived and its discrepancies, and enqueue the ERP's
    receipt of the ordered SKUs, in one transaction."""
    now = time.time() if now is None else now
    with _transaction(conn):
        order = _open(conn, order_id, "approved")
        if order is None:
            return None
        arrived = Counter(dict(conn.execute(
            "SELECT sku, COUNT(*) FROM order_scan WHERE order_id = ? GROUP BY sku",
            (order_id,))))
        ordered = {sku for sku, _ in order["lines"]}
        enqueue(conn, idempotency_key(store_id, RECEIVE, order_id), RECEIVE,
                {"order": idempotency_key(store_id, ORDER, order_id),
                 "lines": sorted([sku, n] for sku, n in arrived.items() if sku in ordered)},
                subject=" ".join(sorted(ordered)))
        conn.execute("UPDATE store_order SET state = 'received', received = ?,"
                     " discrepancies = ?, received_by = ?, received_at = ? WHERE id = ?",
                     (json.dumps(dict(arrived)),
                      json.dumps(_discrepancies(order["lines"], arrived)), by, now, order_id))
    return get(conn, order_id)


def orders(conn: sqlite3.Connection, state: str | None = None,
           limit: int = 200) -> list[dict[str, Any]]:
    """Orders, newest first, optionally of one state."""
    where, args = ("WHERE state = ?", (state, limit)) if state else ("", (limit,))
    return [_row(row) for row in conn.execute(
        f"SELECT {_COLUMNS} FROM store_order {where} ORDER BY id DESC LIMIT ?", args)]


def get(conn: sqlite3.Connection, order_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM store_order WHERE id = ?",
                       (order_id,)).fetchone()
    return None if row is None else _row(row)


_COLUMNS = ("id, state, lines, basis, proposed_at, decided_by, decided_at, received,"
            " discrepancies, received_by, received_at")
_JSON = {"lines", "basis", "received", "discrepancies"}


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    names = [c.strip() for c in _COLUMNS.split(",")]
    return {name: json.loads(value) if name in _JSON and value is not None else value
            for name, value in zip(names, row, strict=True)}


def _open(conn: sqlite3.Connection, order_id: int, state: str) -> dict[str, Any] | None:
    order = get(conn, order_id)
    if order is not None and order["state"] != state:
        raise ConflictError(f"order {order_id} is {order['state']}, not {state}")
    return order


def _discrepancies(lines: list[list[Any]], arrived: Counter[str]) -> list[dict[str, Any]]:
    ordered = {sku: units for sku, units in lines}
    out = []
    for sku in sorted(set(ordered) | set(arrived)):
        want, got = ordered.get(sku, 0), arrived.get(sku, 0)
        if want != got:
            kind = "not_ordered" if not want else "over" if got > want else "under"
            out.append({"sku": sku, "ordered": want, "received": got, "kind": kind})
    return out


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
