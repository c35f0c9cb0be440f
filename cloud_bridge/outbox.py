"""The durable outbox: ERP commands on disk until the ERP has taken them, exactly once in effect.

Enqueueing happens on the caller's SQLite connection, inside the caller's transaction, so a
sale and its ERP command are journalled atomically (:func:`enqueue`). Delivering happens in
:meth:`Outbox.run` on a connection of its own, oldest command first, one at a time:

- ``ErpUnavailable`` (the ERP is down, slow, overloaded): the whole queue waits a random,
  capped, growing delay and the same command goes again; never skipped, never quarantined, since
  no command is to blame for an outage;
- ``ErpRejected`` (the ERP refused the command for good): the command moves to the dead letter
  (state ``rejected``) with the ERP's reason at once, and the next one goes;
- :class:`CommandFailed` or any error the outbox does not expect (a value the connector cannot
  convert, a bug): the command is held back for a growing delay while the queue moves on to
  commands about other subjects; commands sharing a subject with it wait behind it, so each
  subject (SKU) keeps its order. After ``quarantine_after`` failures in a row with the same
  reason it is quarantined to the dead letter with that reason;
- delivered rows keep the ERP's document id and time; only they are pruned, after
  ``retention_s``. Pending and dead rows are never deleted by the outbox.

The dead letter is operated by hand (``storeedge outbox list|show|retry|drop``, the manager
API): ``retry`` puts a dead command back in the queue, ``drop`` deletes it (logged on the audit
logger); a pending command can be neither dropped nor retried.

Bound: :class:`Limits` caps the undelivered backlog in commands and bytes (triggers keep the
``outbox_usage`` row exact inside every transaction). :func:`enqueue` and :func:`reserve` with
limits raise :class:`OutboxFull` when a new command would pass them; the caller's transaction
then rolls back, so the sale is refused (HTTP 503), never accepted and silently dropped.

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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storeedge.errors import ErpRejected, ErpUnavailable, Unavailable, UsageError

log = logging.getLogger(__name__)
audit = logging.getLogger("storeedge.audit")

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
CREATE TABLE IF NOT EXISTS outbox_usage (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_usage
    SELECT 1, COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE state = 'pending';
CREATE TRIGGER IF NOT EXISTS outbox_usage_insert AFTER INSERT ON outbox
WHEN NEW.state = 'pending' BEGIN
    UPDATE outbox_usage SET rows = rows + 1, bytes = bytes + LENGTH(NEW.payload) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS outbox_usage_state AFTER UPDATE OF state ON outbox
WHEN (OLD.state = 'pending') != (NEW.state = 'pending') BEGIN
    UPDATE outbox_usage
    SET rows = rows + IIF(NEW.state = 'pending', 1, -1),
        bytes = bytes + IIF(NEW.state = 'pending', 1, -1) * LENGTH(NEW.payload)
    WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS outbox_usage_payload AFTER UPDATE OF payload ON outbox
WHEN NEW.state = 'pending' BEGIN
    UPDATE outbox_usage SET bytes = bytes + LENGTH(NEW.payload) - LENGTH(OLD.payload)
    WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS outbox_usage_delete AFTER DELETE ON outbox
WHEN OLD.state = 'pending' BEGIN
    UPDATE outbox_usage SET rows = rows - 1, bytes = bytes - LENGTH(OLD.payload) WHERE id = 1;
END;
"""


class CommandFailed(ErpUnavailable):
    """The ERP answered but failed on this command (a server exception, not an outage).

    Retried like any unexpected error, while the rest of the queue moves on, and quarantined
    after ``quarantine_after`` identical failures.
    """


class OutboxFull(Unavailable):
    """The undelivered backlog is at its bound: new work is refused until the ERP catches up."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The bound of the undelivered backlog (commands plus whatever else reserves room)."""

    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024


def reserve(conn: sqlite3.Connection, rows: int, nbytes: int, limits: Limits | None) -> None:
    """Raise :class:`OutboxFull` when ``rows`` and ``nbytes`` more would pass ``limits``.

    Call inside the caller's write transaction, before adding the work (the caller's own
    triggers must then count it in ``outbox_usage``).
    """
    if limits is None:
        return
    used_rows, used_bytes = conn.execute(
        "SELECT rows, bytes FROM outbox_usage WHERE id = 1").fetchone()
    if used_rows + rows > limits.max_rows or used_bytes + nbytes > limits.max_bytes:
        raise OutboxFull(
            f"the ERP outbox is full ({used_rows} of {limits.max_rows} items, {used_bytes} of "
            f"{limits.max_bytes} bytes not yet delivered): new sales are refused until the ERP "
            "takes the backlog; nothing of this one was recorded")


def enqueue(conn: sqlite3.Connection, key: str, kind: str, payload: dict[str, Any],
            subject: str, limits: Limits | None = None) -> bool:
    """Add a command inside the caller's open transaction; the caller commits.

    ``subject`` names what the command is about, several separated by spaces (e.g. the SKUs of
    a sale): commands sharing a subject are delivered in enqueue order. ``conn`` must have
    :data:`SCHEMA` applied (WAL and ``synchronous=FULL`` make the commit durable). A key already
    enqueued is ignored, so replaying a journal is harmless. Returns whether the command was
    new. Raises :class:`OutboxFull` when ``limits`` are given and it would pass them. Call
    :meth:`Outbox.notify` after committing to deliver it now.
    """
    body = json.dumps(payload, separators=(",", ":"))
    reserve(conn, 1, len(body), limits)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO outbox (key, kind, subject, payload, enqueued_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (key, kind, subject, body, time.time()),
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
    backlog_bytes: int  # undelivered bytes counted against the bound
    held: int  # commands waiting out their own retry delay after a command failure
    delivered_since_start: int
    retries_since_start: int


class Outbox:
    """The delivering side of the outbox on ``db_path`` (its own connection), and its admin."""

    SCHEMA = SCHEMA

    def __init__(self, db_path: Path | str, *, poll_s: float = 5.0, retry_initial_s: float = 0.5,
                 retry_max_s: float = 30.0, retention_s: float = 7 * 86400.0,
                 quarantine_after: int = 5, limits: Limits | None = None) -> None:
        self._conn = sqlite3.connect(db_path, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        columns = {name for _, name, *_ in self._conn.execute("PRAGMA table_info(outbox)")}
        if "streak" not in columns:  # an outbox written before quarantine existed
            self._conn.execute("ALTER TABLE outbox ADD COLUMN streak INTEGER NOT NULL DEFAULT 0")
        self._poll_s = poll_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._retention_s = retention_s
        self._quarantine_after = quarantine_after
        self.limits = limits or Limits()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_error: str | None = None
        self._last_prune = 0.0
        self._held: dict[int, float] = {}  # row id -> monotonic time it may go again
        #: The command being delivered now (its ERP call is in progress), if any.
        self.in_flight: int | None = None
        self._delivered = 0
        self._retries = 0

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
        """Deliver commands with ``deliver(kind, payload) -> erp_id``, forever.

        ``payload`` is the enqueued dict with ``"key"`` set to the command's idempotency key,
        which the ERP side must use to book it at most once.

        Cancel the task to stop; a command being delivered when cancelled stays pending and is
        sent again (idempotently) next time.
        """
        self._loop = asyncio.get_running_loop()
        outage = 0
        while True:
            self._maybe_prune()
            row = self._next()
            if row is None:
                self._wake.clear()
                if self._next() is None:
                    await self._idle()
                continue
            row_id, key, kind, payload = row
            self.in_flight = row_id
            try:
                erp_id = await deliver(kind, {**json.loads(payload), "key": key})
            except ErpRejected as exc:
                outage = 0
                self._held.pop(row_id, None)
                self._finish(row_id, "rejected", None, f"rejected: {exc}")
                log.error("ERP rejected %s (%s), moved to the dead letter: %s", key, kind, exc)
                continue
            except ErpUnavailable as exc:
                if not isinstance(exc, CommandFailed):
                    outage += 1
                    self._retries += 1
                    delay = self._backoff(outage)
                    self._record_error(row_id, f"unavailable: {exc}")
                    log.warning("ERP unavailable for %s (attempt %d), retrying in %.2f s: %s",
                                key, outage, delay, exc)
                    await asyncio.sleep(delay)
                    continue
                outage = 0
                self._command_failed(row_id, key, kind, f"failed: {exc}")
                continue
            except Exception as exc:  # the queue must not die with one command
                outage = 0
                log.exception("unexpected error delivering %s (%s)", key, kind)
                self._command_failed(row_id, key, kind, f"{type(exc).__name__}: {exc}")
                continue
            finally:
                self.in_flight = None
            outage = 0
            self._held.pop(row_id, None)
            self._finish(row_id, "delivered", erp_id, None)
            self._last_error = None
            self._delivered += 1
            log.debug("delivered %s as ERP document %s", key, erp_id)

    async def _idle(self) -> None:
        timeout = self._poll_s
        if self._held:
            timeout = max(0.0, min(timeout, min(self._held.values()) - time.monotonic()))
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _command_failed(self, row_id: int, key: str, kind: str, reason: str) -> None:
        self._retries += 1
        (streak,) = self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1,"
            " streak = IIF(last_error IS ?, streak + 1, 1), last_error = ?"
            " WHERE id = ? RETURNING streak", (reason, reason, row_id)).fetchone()
        self._last_error = reason
        if streak >= self._quarantine_after:
            self._held.pop(row_id, None)
            self._finish(row_id, "rejected", None,
                         f"quarantined after {streak} identical failures: {reason}")
            log.error("%s (%s) quarantined to the dead letter after %d identical failures: %s",
                      key, kind, streak, reason)
            return
        delay = self._backoff(streak)
        self._held[row_id] = time.monotonic() + delay
        log.warning("%s (%s) failed (%d in a row), held back %.2f s while unrelated commands "
                    "go on: %s", key, kind, streak, delay, reason)

    def stats(self) -> OutboxStats:
        """Counts per state, the age of the oldest pending command and the last error seen."""
        counts = dict(self._conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        (oldest,) = self._conn.execute(
            "SELECT MIN(enqueued_at) FROM outbox WHERE state = 'pending'").fetchone()
        (backlog_bytes,) = self._conn.execute(
            "SELECT bytes FROM outbox_usage WHERE id = 1").fetchone()
        return OutboxStats(
            pending=counts.get("pending", 0),
            delivered=counts.get("delivered", 0),
            rejected=counts.get("rejected", 0),
            oldest_pending_age_s=None if oldest is None else max(0.0, time.time() - oldest),
            last_error=self._last_error,
            backlog_bytes=backlog_bytes,
            held=len(self._held),
            delivered_since_start=self._delivered,
            retries_since_start=self._retries,
        )

    def rejected(self) -> list[dict[str, Any]]:
        """The dead letter: rejected commands with their reason, oldest first."""
        rows = self._conn.execute(
            "SELECT key, kind, subject, payload, last_error, done_at FROM outbox"
            " WHERE state = 'rejected' ORDER BY id")
        return [{"key": k, "kind": kd, "subject": s, "payload": json.loads(p), "reason": r,
                 "at": at} for k, kd, s, p, r, at in rows]

    # Admin: what ``storeedge outbox`` and the manager API do

    def list(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Commands (without payload), oldest first; ``state`` filters (``pending``,
        ``delivered``, ``rejected``)."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY id LIMIT ?", (*args, limit))
        return [_row(r) for r in rows]

    def show(self, key: str) -> dict[str, Any] | None:
        """One command with its payload, or None."""
        row = self._conn.execute(f"SELECT {_COLUMNS}, payload FROM outbox WHERE key = ?",
                                 (key,)).fetchone()
        if row is None:
            return None
        return {**_row(row[:-1]), "payload": json.loads(row[-1])}

    def retry(self, key: str) -> dict[str, Any] | None:
        """Put a dead command back in the queue (after fixing its cause in the ERP); None when
        unknown. Raises ``UsageError`` for a command that is not dead."""
        found = self._dead(key)
        if found is None:
            return None
        self._conn.execute("UPDATE outbox SET state = 'pending', streak = 0, done_at = NULL"
                           " WHERE key = ?", (key,))
        audit.info("outbox: dead command %s (%s) put back in the queue", key, found["kind"])
        self.notify()
        return self.show(key)

    def drop(self, key: str) -> dict[str, Any] | None:
        """Delete a dead command for good, returning it; None when unknown. Raises
        ``UsageError`` for a command that is not dead (pending work is never dropped)."""
        found = self._dead(key)
        if found is None:
            return None
        self._conn.execute("DELETE FROM outbox WHERE key = ?", (key,))
        audit.info("outbox: dead command %s (%s) dropped: %s", key, found["kind"],
                   json.dumps(found["payload"], separators=(",", ":")))
        return found

    def _dead(self, key: str) -> dict[str, Any] | None:
        found = self.show(key)
        if found is not None and found["state"] != "rejected":
            raise UsageError(f"outbox command {key} is {found['state']}: only dead (rejected) "
                             "commands can be retried or dropped")
        return found

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing is pending; False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        while self._conn.execute(
                "SELECT 1 FROM outbox WHERE state = 'pending' LIMIT 1").fetchone() is not None:
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

    def _next(self) -> tuple[int, str, str, str] | None:
        """The oldest pending command neither held back nor behind a held one on a subject."""
        now = time.monotonic()
        blocked: set[str] = set()
        for row_id, subject in self._pending():
            subjects = set(subject.split())
            if self._held.get(row_id, 0.0) > now or not subjects.isdisjoint(blocked):
                blocked |= subjects
                continue
            key, kind, payload = self._conn.execute(
                "SELECT key, kind, payload FROM outbox WHERE id = ?", (row_id,)).fetchone()
            return row_id, key, kind, payload
        return None

    def _pending(self) -> Iterator[tuple[int, str]]:
        # lazily, in pages: the common case reads one row
        last = 0
        while True:
            page = self._conn.execute(
                "SELECT id, subject FROM outbox WHERE state = 'pending' AND id > ?"
                " ORDER BY id LIMIT 256", (last,)).fetchall()
            if not page:
                return
            yield from page
            last = page[-1][0]

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


_COLUMNS = ("key, kind, subject, state, attempts, streak, last_error, enqueued_at, erp_id,"
            " done_at")


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(("key", "kind", "subject", "state", "attempts", "failures_in_a_row",
                     "last_error", "enqueued_at", "erp_id", "done_at"), row, strict=True))


def admin_command(db_path: Path | str, action: str, key: str | None = None,
                  state: str | None = None, limit: int = 100) -> int:
    """``storeedge outbox ACTION [KEY]``: print JSON lines; the exit status says how it went
    (0 done, 1 no such command, 2 not allowed). Safe beside a running agent (SQLite WAL)."""
    import sys

    outbox = Outbox(db_path)
    try:
        if action == "list":
            for row in outbox.list(state, limit):
                print(json.dumps(row))
            return 0
        if key is None:
            print(f"storeedge outbox {action}: which command? give its key", file=sys.stderr)
            return 2
        try:
            found = {"show": outbox.show, "retry": outbox.retry, "drop": outbox.drop}[action](key)
        except UsageError as exc:
            print(f"storeedge outbox {action}: {exc}", file=sys.stderr)
            return 2
        if found is None:
            print(f"storeedge outbox {action}: no command {key!r}", file=sys.stderr)
            return 1
        print(json.dumps(found))
        return 0
    finally:
        outbox.close()


class OutboxCollector:
    """Prometheus metrics of one store's outbox (register on the agent's registry)."""

    def __init__(self, outbox: Outbox, store_id: str) -> None:
        self._outbox = outbox
        self._store = store_id

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._outbox.stats()
        labels = [self._store]
        for name, help_text, value in (
                ("storeedge_outbox_backlog", "ERP commands not yet delivered", s.pending),
                ("storeedge_outbox_backlog_bytes", "Undelivered bytes counted against the bound",
                 s.backlog_bytes),
                ("storeedge_outbox_oldest_age_seconds", "Age of the oldest undelivered command",
                 s.oldest_pending_age_s or 0.0),
                ("storeedge_outbox_dead", "Commands in the dead letter", s.rejected)):
            gauge = GaugeMetricFamily(name, help_text, labels=["store"])
            gauge.add_metric(labels, value)
            yield gauge
        for name, help_text, value in (
                ("storeedge_outbox_delivered", "Commands the ERP took", s.delivered_since_start),
                ("storeedge_outbox_retried", "Failed delivery attempts retried",
                 s.retries_since_start)):
            counter = CounterMetricFamily(name, help_text, labels=["store"])
            counter.add_metric(labels, value)
            yield counter


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
