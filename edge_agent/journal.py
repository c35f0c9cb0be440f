"""The agent's durable journal: SQLite in WAL mode, fsync'd on commit.

Facts (sales, alert transitions, ERP commands) are committed here before they count as
received: a POS transaction is acknowledged only after its row and its ERP command are on disk
in one transaction. State (lane counts, the catalog) is snapshotted, never written per sample.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from edge_agent.checkpoint import Checkpointer
from rules.trackers.alerts import ACTIVE_STATES
from storeedge.errors import JournalUnavailable, UsageError
from storeedge.events import Alert, AlertState, Event, PosLine, PosTransaction, Severity

# ``seq`` is the rowid, without AUTOINCREMENT: its sqlite_sequence row was one more page in every
# commit's WAL (~9 us of CPU a commit). Retention never deletes a table's newest row, so a seq is
# never given out twice to the cursors that follow it (the publisher's). Journals made before
# keep AUTOINCREMENT, which works the same. No index on alert_id either: only start-up and the
# first health probe look for each alert's latest transition (one grouped scan), while every
# commit paid for the index with one more page in the WAL.
SCHEMA = """
CREATE TABLE IF NOT EXISTS sale (
    txn_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    received_ts REAL NOT NULL,
    device_ts REAL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_transition (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    alert_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL
);
DROP INDEX IF EXISTS alert_transition_by_alert;
CREATE TABLE IF NOT EXISTS fact (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state_snapshot (
    key TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    body TEXT NOT NULL
);
"""

log = logging.getLogger(__name__)

_ACTIVE_VALUES = frozenset(s.value for s in ACTIVE_STATES)

# Called inside the journal's transaction so that a fact and what it owes the ERP and HQ
# commit together: (connection, fact) -> None.
Enlist = Callable[[sqlite3.Connection], None]


class Journal:
    """One SQLite connection, used from the agent's event loop thread (and its tests)."""

    def __init__(self, path: str | Path, extra_schemas: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: Where a journal that failed its integrity check at start was moved, if one did.
        self.quarantined: Path | None = None
        problem = _integrity_problem(self.path)
        if problem is not None:
            self.quarantined = _quarantine(self.path, problem)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        for schema in extra_schemas:
            self._conn.executescript(schema)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
        self._checkpointer = Checkpointer(self.path, self._lock)
        # alert_counts() kept current by record_alerts after one query over the journal: the
        # health endpoint is polled, and that query grows with every transition ever made.
        self._alert_counts: dict[tuple[str, str], int] | None = None
        self._fact_counts: dict[str, int] | None = None
        self._alert_live: dict[str, tuple[str, str]] = {}  # active alert id -> (rule, state)

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._conn.close()  # the last connection to close checkpoints what is left

    def _tx(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in one write transaction. JournalUnavailable when SQLite cannot write
        (disk full, I/O error, read-only file): nothing of it is on disk, and the journal is
        usable again once the cause is gone."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise JournalUnavailable(f"journal {self.path}: {exc}") from exc
            return result

    def limit_pages(self, pages: int) -> int:
        """Cap the database file at ``pages`` pages (SQLite's ``max_page_count``; never below
        what it holds): a write beyond it fails as on a full disk. Returns the cap in force."""
        with self._lock:
            return int(self._conn.execute(f"PRAGMA max_page_count={int(pages)}").fetchone()[0])

    def page_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA page_count").fetchone()[0])

    # Facts

    def accept_sale(self, txn: PosTransaction, *enlist: Enlist) -> bool:
        """Journal a POS transaction; False when its txn_id was accepted before.

        ``enlist`` callbacks run in the same transaction (the ERP command, the HQ points), so
        either all of it is on disk or none of it is.
        """
        body = json.dumps(txn.to_dict(), separators=(",", ":"))

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO sale (txn_id, event_id, received_ts, device_ts, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (txn.txn_id, txn.event_id, txn.received_ts, txn.device_ts, body),
            )
            if cur.rowcount == 0:
                return False
            for callback in enlist:
                callback(conn)
            return True

        return bool(self._tx(work))

    def record_alerts(self, alerts: list[tuple[Alert, str]], *enlist: Enlist) -> None:
        """Journal alert transitions, each with its JSON body, in one transaction (one fsync
        for a whole batch)."""
        self.record([], alerts, *enlist)

    def record(self, facts: list[Event], alerts: list[tuple[Alert, str]],
               *enlist: Enlist) -> None:
        """Journal derived facts and alert transitions (each with its JSON body) in one
        transaction: all of it is on disk, or none of it and JournalUnavailable."""
        fact_rows = [(f.event_id, f.event_type, f.source, f.received_ts,
                      json.dumps(f.to_dict(), separators=(",", ":"), default=str))
                     for f in facts]
        alert_rows = [(a.event_id, a.alert_id, a.rule, a.subject, a.state.value,
                       a.received_ts, body) for a, body in alerts]

        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            added = 0
            if fact_rows:
                added = conn.executemany(
                    "INSERT OR IGNORE INTO fact (event_id, kind, source, ts, body)"
                    " VALUES (?, ?, ?, ?, ?)", fact_rows).rowcount
            # OR IGNORE: a retry after a commit whose outcome SQLite could not tell (an I/O
            # error) must not jam on rows that did land.
            added_alerts = 0
            if alert_rows:
                added_alerts = conn.executemany(
                    "INSERT OR IGNORE INTO alert_transition"
                    " (event_id, alert_id, rule, subject, state, ts, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", alert_rows).rowcount
            for callback in enlist:
                callback(conn)
            return added, added_alerts

        added, added_alerts = self._tx(work)
        with self._lock:
            if alerts and self._alert_counts is not None:
                if added_alerts != len(alerts):
                    self._alert_counts, self._alert_live = None, {}
                else:
                    self._count_alerts((a.alert_id, a.rule, a.state.value) for a, _ in alerts)
            if facts and self._fact_counts is not None:
                if added != len(facts):  # some were journaled before: count them again
                    self._fact_counts = None
                else:
                    for fact in facts:
                        kind = fact.event_type
                        self._fact_counts[kind] = self._fact_counts.get(kind, 0) + 1

    def _count_alerts(self, transitions: Iterable[tuple[str, str, str]]) -> None:
        counts, live = self._alert_counts, self._alert_live
        assert counts is not None
        for alert_id, rule, state in transitions:
            before = live.pop(alert_id, None)
            if before is not None:
                counts[before] -= 1
            key = (rule, state)
            counts[key] = counts.get(key, 0) + 1
            if state in _ACTIVE_VALUES:
                live[alert_id] = key

    def record_facts(self, facts: list[Event], *enlist: Enlist) -> None:
        """Journal derived facts (tag departures, suspect items, device health changes) in one
        transaction."""
        self.record(facts, [], *enlist)

    def fact_counts(self) -> dict[str, int]:
        """Facts journaled, per kind: one query over the table at the first call, then kept
        current by ``record`` (the health probe is polled)."""
        with self._lock:
            if self._fact_counts is None:
                rows = self._conn.execute("SELECT kind, COUNT(*) FROM fact GROUP BY kind")
                self._fact_counts = {kind: n for kind, n in rows}
            return dict(self._fact_counts)

    def active_alerts(self) -> list[Alert]:
        """The latest transition of every alert that has not been resolved or cleared."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM alert_transition WHERE seq IN ("
                " SELECT MAX(seq) FROM alert_transition GROUP BY alert_id) ORDER BY seq"
            ).fetchall()
        alerts = [alert_from_json(r[0]) for r in rows]
        return [a for a in alerts if a.state in ACTIVE_STATES]

    def latest_transitions(self, last: int) -> list[Alert]:
        """The latest transition of every alert among the ``last`` journaled transitions,
        oldest first. Counted in journal order, not by time: a wall clock stepped since would
        otherwise hide a transition or show an older one as the latest."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM alert_transition WHERE seq IN ("
                " SELECT MAX(seq) FROM alert_transition"
                " WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM alert_transition) - ?"
                " GROUP BY alert_id) ORDER BY seq", (last,)).fetchall()
        return [alert_from_json(r[0]) for r in rows]

    def sales_after(self, rowid: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` journaled sales (row id, body) after row ``rowid``, in journal order."""
        with self._lock:
            return self._conn.execute(
                "SELECT rowid, body FROM sale WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (rowid, limit)).fetchall()

    def transitions_after(self, seq: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` alert transitions (seq, body) after ``seq``, in journal order."""
        with self._lock:
            return self._conn.execute(
                "SELECT seq, body FROM alert_transition WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit)).fetchall()

    def sale_body(self, txn_id: str) -> dict[str, Any] | None:
        """The transaction accepted under ``txn_id``, as journaled (``PosTransaction.to_dict``)."""
        with self._lock:
            row = self._conn.execute("SELECT body FROM sale WHERE txn_id = ?",
                                     (txn_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def sale_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM sale").fetchone()[0])

    def alert_counts(self) -> dict[str, dict[str, int]]:
        """Alerts per rule: how many were raised, and how many are in each latest state."""
        with self._lock:
            if self._alert_counts is None:
                rows = self._conn.execute(
                    "SELECT alert_id, rule, state FROM alert_transition WHERE seq IN ("
                    " SELECT MAX(seq) FROM alert_transition GROUP BY alert_id) ORDER BY seq"
                ).fetchall()
                self._alert_counts = {}
                self._count_alerts(rows)
            counts = list(self._alert_counts.items())
        out: dict[str, dict[str, int]] = {}
        for (rule, state), n in counts:
            if n:
                out.setdefault(rule, {})[state] = n
        return out

    def prune(self, before: float, keep_alerts: Iterable[str] = ()) -> dict[str, int]:
        """Delete facts, alert transitions and sales older than ``before`` (epoch seconds),
        keeping every transition of the alerts in ``keep_alerts`` (the active ones) and every
        sale the ERP has not taken yet (in an open sales window, or in a command not
        delivered). Returns the rows deleted per table."""
        keep = json.dumps(sorted(keep_alerts))

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            out = {"fact": conn.execute(
                "DELETE FROM fact WHERE ts < ? AND seq < (SELECT MAX(seq) FROM fact)",
                (before,)).rowcount}
            out["alert_transition"] = conn.execute(
                "DELETE FROM alert_transition WHERE ts < ?"
                " AND seq < (SELECT MAX(seq) FROM alert_transition)"
                " AND alert_id NOT IN (SELECT value FROM json_each(?))", (before, keep)).rowcount
            tables = {name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            undelivered = ""
            if "outbox" in tables:  # a receipt's own command, or a window's that lists it
                undelivered += (
                    " AND txn_id NOT IN (SELECT subject FROM outbox"
                    " WHERE kind = 'sale' AND state != 'delivered')"
                    " AND txn_id NOT IN (SELECT r.value FROM outbox,"
                    " json_each(outbox.payload, '$.receipts') AS r"
                    " WHERE outbox.state != 'delivered')")
            if "erp_sale_line" in tables:  # in a sales window not closed yet
                undelivered += " AND txn_id NOT IN (SELECT txn_id FROM erp_sale_line)"
            out["sale"] = conn.execute(
                f"DELETE FROM sale WHERE received_ts < ?{undelivered}", (before,)).rowcount
            return out

        deleted: dict[str, int] = self._tx(work)
        with self._lock:  # recounted from what is left at the next read
            self._fact_counts = None
        return deleted

    # State

    def save_state(self, key: str, value: Any, ts: float | None = None) -> None:
        self.save_states({key: value}, ts)

    def save_states(self, values: dict[str, Any], ts: float | None = None) -> None:
        """Snapshot several pieces of state in one transaction (one fsync). orjson: 0.3 ms for
        1,000 lanes against 3.5 ms with the standard library's encoder, on the loop thread."""
        now = time.time() if ts is None else ts
        rows = [(key, now, orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())
                for key, value in values.items()]
        self._tx(lambda conn: conn.executemany(
            "INSERT INTO state_snapshot (key, ts, body) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET ts = excluded.ts, body = excluded.body", rows))

    def load_state(self, key: str) -> Any:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM state_snapshot WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read for health and metrics (the outbox's counts live in this file too)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise UsageError("Journal.execute is for reads; facts go through their methods")
        with self._lock:
            return self._conn.execute(sql, params).fetchall()


def _integrity_problem(path: Path) -> str | None:
    """What SQLite's quick check finds wrong with the journal at ``path`` (None: sound, or no
    journal yet)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if rows == [("ok",)]:
        return None
    return "; ".join(str(r[0]) for r in rows[:5])


def _quarantine(path: Path, problem: str) -> Path:
    """Move a corrupt journal (and its WAL) aside, so that the agent starts on a fresh one and
    the old one stays for recovery (docs/journal.md says how to replay its outbox)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    log.error("journal %s failed its integrity check (%s): moved to %s, starting a fresh one; "
              "its undelivered ERP commands can be replayed (see docs/journal.md)",
              path, problem, target)
    return target


def alert_from_json(text: str) -> Alert:
    try:
        data = orjson.loads(text)  # as ``alert_json`` wrote it; in two thirds of json's time
    except orjson.JSONDecodeError:  # a NaN, as an older agent's json wrote it
        data = json.loads(text)
    data.pop("event", None)
    data["severity"] = Severity(data["severity"])
    data["state"] = AlertState(data["state"])
    return Alert(**data)


def sale_from_json(text: str) -> PosTransaction:
    """A journaled sale (POS or kiosk) as the ``PosTransaction`` it booked."""
    data = json.loads(text)
    return PosTransaction(
        store_id=data["store_id"], source=data["source"], received_ts=data["received_ts"],
        device_ts=data.get("device_ts"), txn_id=data["txn_id"],
        lines=tuple(PosLine(sku=line["sku"], qty=line["qty"],
                            unit_price=line.get("unit_price", 0.0))
                    for line in data["lines"]))
