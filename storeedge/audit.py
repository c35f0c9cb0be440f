"""The append-only audit log every storeedge web app keeps: who did what, when and from where,
one row per action of a signed-in person and per refused request (``SecurityMiddleware`` in
``storeedge.httpsec`` writes them), readable as records and as CSV."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    status INTEGER NOT NULL,
    client TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

AUDIT_FIELDS = ("seq", "ts", "who", "role", "action", "status", "client")


class AuditRecord(BaseModel):
    seq: int
    ts: float
    who: str
    role: str
    action: str
    status: int
    client: str


class AuditLog:
    """Who did what, when and from where: one row per action, in an SQLite file whose triggers
    refuse every UPDATE and DELETE. ``path=None`` keeps it in memory (tests)."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None,
                                   check_same_thread=False)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(AUDIT_SCHEMA)

    def record(self, who: str, role: str, action: str, status_code: int, client: str) -> None:
        self._db.execute("INSERT INTO audit (ts, who, role, action, status, client) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (self.clock(), who, role, action[:300], status_code, client))

    def records(self, after: int = 0, limit: int = 1000) -> list[AuditRecord]:
        rows = self._db.execute(
            f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit))
        return [AuditRecord(**dict(zip(AUDIT_FIELDS, row, strict=True))) for row in rows]

    def csv(self, after: int = 0) -> Iterator[str]:
        """Every record after ``after`` as CSV, header first."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(AUDIT_FIELDS)
        while True:
            page = self.records(after, 1000)
            for r in page:
                writer.writerow([r.seq, f"{r.ts:.3f}", r.who, r.role, r.action, r.status,
                                 r.client])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(page) < 1000:
                return
            after = page[-1].seq

    def close(self) -> None:
        self._db.close()
