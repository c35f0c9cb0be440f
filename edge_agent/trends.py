"""The manager's trends on the store's own agent, so a store without HQ still has them: sales
and alerts per hour, time to claim per rule, stock per lane over time, and what is open now
(problems, devices offline). From the journal alone; lane counts are sampled into it
(``lane_sample``) every ``journal.trend_sample_seconds``.

Hours are the store's (``store.timezone``).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS lane_sample (
    ts REAL NOT NULL,
    lane TEXT NOT NULL,
    units INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lane_sample_ts ON lane_sample (ts);
"""


def record(conn: sqlite3.Connection, lanes: list[tuple[str, int]], now: float) -> None:
    """One sample of every counted lane."""
    with conn:
        conn.executemany("INSERT INTO lane_sample (ts, lane, units) VALUES (?, ?, ?)",
                         [(now, lane, units) for lane, units in lanes])


def prune(conn: sqlite3.Connection, before: float) -> int:
    with conn:
        return conn.execute("DELETE FROM lane_sample WHERE ts < ?", (before,)).rowcount


def report(conn: sqlite3.Connection, since: float, until: float, timezone: str
           ) -> dict[str, Any]:
    """Everything the manager's trends show from ``since`` to ``until``, both included."""
    tz = ZoneInfo(timezone)

    def hour(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%dT%H:00")

    sales: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for ts, body in conn.execute("SELECT received_ts, body FROM sale WHERE received_ts >= ?"
                                 " AND received_ts <= ? ORDER BY received_ts", (since, until)):
        row = sales[hour(ts)]
        for line in json.loads(body)["lines"]:
            row[0] += line["qty"]
            row[1] += line["qty"] * line.get("unit_price", 0.0)
    opened: dict[str, Counter[str]] = defaultdict(Counter)
    to_claim: dict[str, list[float]] = defaultdict(list)
    for ts, rule, body in conn.execute(
            "SELECT ts, rule, body FROM alert_transition WHERE ts >= ? AND ts <= ?",
            (since, until)):
        detail = json.loads(body).get("detail") or {}
        transition = detail.get("transition")
        if transition == "opened":
            opened[hour(ts)][rule] += 1
        elif detail.get("claimed_at") == ts and "opened_at" in detail:  # a claim or a scan
            to_claim[rule].append(max(0.0, ts - detail["opened_at"]))
    stock: dict[str, list[list[float]]] = defaultdict(list)
    for ts, lane, units in conn.execute(
            "SELECT ts, lane, units FROM lane_sample WHERE ts >= ? AND ts <= ? ORDER BY ts",
            (since, until)):
        stock[lane].append([ts, units])
    return {
        "since": since, "until": until, "timezone": timezone,
        "sales_per_hour": [{"hour": h, "units": int(u), "amount": round(a, 2)}
                           for h, (u, a) in sorted(sales.items())],
        "alerts_per_hour": [{"hour": h, **dict(sorted(c.items()))}
                            for h, c in sorted(opened.items())],
        "time_to_claim_s": {rule: {"claims": len(v), "median": statistics.median(v),
                                   "max": max(v)} for rule, v in sorted(to_claim.items())},
        "stock": dict(sorted(stock.items())),
    }
