"""The durable outbox: ERP commands on disk until the ERP has taken them, exactly once in effect.

Enqueueing happens on the caller's SQLite connection, inside the caller's transaction, so a
sale and its ERP command are journalled atomically (:func:`enqueue`). Delivering happens in
:meth:`Outbox.run` on a connection of its own:

- strict FIFO, one command at a time, which keeps every subject's commands in order;
- ``ErpUnavailable``: the same command is retried after a random, capped, growing delay (it is
  never skipped, so nothing is reordered);
- ``ErpRejected``: the command moves to the dead letter (state ``rejected``) with the reason,
  is logged and counted, and the next one goes;
- delivered rows keep the ERP's document id and time; only they are pruned, after
  ``retention_s``. Pending and rejected rows are never deleted.

The ERP side must be idempotent on the key: a crash after the ERP booked a command but before
the outbox marked it delivered re-sends it on restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storeedge.errors import ErpRejected, ErpUnavailable

log = logging.getLogger(__name__)

Deliver = Callable[[str, dict[str, Any]], Awaitable[str]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    erp_id TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
"""


def enqueue(conn: sqlite3.Connection, key: str, kind: str, payload: dict[str, Any],
            subject: str) -> bool:
    """Add a command inside the caller's open transaction; the caller commits.

    ``conn`` must have :data:`SCHEMA` applied (WAL and ``synchronous=FULL`` make the commit
    durable). A key already enqueued is ignored, so replaying a journal is harmless. Returns
    whether the command was new. Call :meth:`Outbox.notify` after committing to deliver it now.
    """
    cursor = conn.execute(
        "INSERT OR IGNORE INTO outbox (key, kind, subject, payload, enqueued_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (key, kind, subject, json.dumps(payload, separators=(",", ":")), time.time()),
    )
    return cursor.rowcount == 1


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What health checks and metrics show about the outbox."""

    pending: int
    delivered: int
    rejected: int
    oldest_pending_age_s: float | None
    last_error: str | None


class Outbox:
    """The delivering side of the outbox on ``db_path`` (its own connection)."""

    SCHEMA = SCHEMA

    def __init__(self, db_path: Path | str, *, poll_s: float = 5.0, retry_initial_s: float = 0.5,
                 retry_max_s: float = 30.0, retention_s: float = 7 * 86400.0) -> None:
        self._conn = sqlite3.connect(db_path, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._poll_s = poll_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._retention_s = retention_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_error: str | None = None
        self._last_prune = 0.0

    def close(self) -> None:
        """Close the outbox's connection (after ``run`` has stopped)."""
        self._conn.close()

    def notify(self) -> None:
        """Wake ``run`` so a command just committed goes out now, not at the next poll.

        Safe to call from any thread.
        """
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self, deliver: Deliver) -> None:
        """Deliver commands in enqueue order with ``deliver(kind, payload) -> erp_id``, forever.

        ``payload`` is the enqueued dict with ``"key"`` set to the command's idempotency key,
        which the ERP side must use to book it at most once.

        Cancel the task to stop; a command being delivered when cancelled stays pending and is
        sent again (idempotently) next time.
        """
        self._loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            self._maybe_prune()
            row = self._head()
            if row is None:
                self._wake.clear()
                if self._head() is None:
                    try:
                        async with asyncio.timeout(self._poll_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                continue
            row_id, key, kind, payload = row
            try:
                erp_id = await deliver(kind, {**json.loads(payload), "key": key})
            except ErpUnavailable as exc:
                attempt += 1
                delay = self._backoff(attempt)
                self._record_error(row_id, f"unavailable: {exc}")
                log.warning("ERP unavailable for %s (attempt %d), retrying in %.2f s: %s",
                            key, attempt, delay, exc)
                await asyncio.sleep(delay)
                continue
            except ErpRejected as exc:
                attempt = 0
                self._finish(row_id, "rejected", None, f"rejected: {exc}")
                log.error("ERP rejected %s (%s), moved to the dead letter: %s", key, kind, exc)
                continue
            attempt = 0
            self._finish(row_id, "delivered", erp_id, None)
            log.debug("delivered %s as ERP document %s", key, erp_id)

    def stats(self) -> OutboxStats:
        """Counts per state, the age of the oldest pending command and the last error seen."""
        counts = dict(self._conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        (oldest,) = self._conn.execute(
            "SELECT MIN(enqueued_at) FROM outbox WHERE state = 'pending'").fetchone()
        return OutboxStats(
            pending=counts.get("pending", 0),
            delivered=counts.get("delivered", 0),
            rejected=counts.get("rejected", 0),
            oldest_pending_age_s=None if oldest is None else max(0.0, time.time() - oldest),
            last_error=self._last_error,
        )

    def rejected(self) -> list[dict[str, Any]]:
        """The dead letter: rejected commands with their reason, oldest first."""
        rows = self._conn.execute(
            "SELECT key, kind, subject, payload, last_error, done_at FROM outbox"
            " WHERE state = 'rejected' ORDER BY id")
        return [{"key": k, "kind": kd, "subject": s, "payload": json.loads(p), "reason": r,
                 "at": at} for k, kd, s, p, r, at in rows]

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing is pending; False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        while self._head() is not None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def prune(self, older_than_s: float | None = None) -> int:
        """Delete delivered commands older than ``older_than_s`` (the retention by default)."""
        cutoff = time.time() - (self._retention_s if older_than_s is None else older_than_s)
        cursor = self._conn.execute(
            "DELETE FROM outbox WHERE state = 'delivered' AND done_at < ?", (cutoff,))
        return cursor.rowcount

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune >= 3600.0:
            self._last_prune = now
            if pruned := self.prune():
                log.info("pruned %d delivered commands", pruned)

    def _head(self) -> tuple[int, str, str, str] | None:
        return self._conn.execute(
            "SELECT id, key, kind, payload FROM outbox WHERE state = 'pending'"
            " ORDER BY id LIMIT 1").fetchone()

    def _record_error(self, row_id: int, error: str) -> None:
        self._last_error = error
        self._conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                           " WHERE id = ?", (error, row_id))

    def _finish(self, row_id: int, state: str, erp_id: str | None, error: str | None) -> None:
        if error is not None:
            self._last_error = error
        self._conn.execute(
            "UPDATE outbox SET state = ?, erp_id = ?, done_at = ?, attempts = attempts + 1,"
            " last_error = COALESCE(?, last_error) WHERE id = ?",
            (state, erp_id, time.time(), error, row_id))

    def _backoff(self, attempt: int) -> float:
        # "equal jitter": growing, capped, and never two retries in lock step with another agent
        ceiling = min(self._retry_max_s, self._retry_initial_s * 2 ** min(attempt - 1, 30))
        return random.uniform(ceiling / 2, ceiling)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
