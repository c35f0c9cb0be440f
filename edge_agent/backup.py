"""Online backup and restore of a store agent's data: the journal (facts, alert history, state
snapshots and the ERP outbox) and the time-series buffer beside it.

A backup is taken with SQLite's online backup API, so the agent keeps running and the copy is
one consistent transaction of each database; each copy is integrity-checked and fsync'd, then
the whole backup directory appears at once (renamed into place) with a ``manifest.json`` of
sizes and SHA-256 digests. Restore checks the manifest and each database before it writes
anything, refuses to overwrite a journal unless told to (the one there is then moved aside,
never deleted), and puts the files where the store config's ``journal.path`` says. An agent
started on a restored journal resumes delivery: what the ERP and HQ had not taken is still in
the outbox and the buffer, and what they had taken is refused as a duplicate by the key it
was sent with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from storeedge.errors import StoreEdgeError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PREFIX = "storeedge-backup-"
RETRY_SECONDS = 600.0  # after a failed scheduled backup


class BackupError(StoreEdgeError):
    """A backup could not be taken, or a backup is unusable (named with what is wrong)."""


@dataclass(frozen=True)
class BackupFile:
    role: str  # "journal" or "timeseries"
    name: str  # the file's name inside the backup
    source: Path


def data_files(journal: Path) -> list[BackupFile]:
    """The agent's databases for a journal path (the time-series buffer sits beside it)."""
    return [BackupFile("journal", "journal.db", journal),
            BackupFile("timeseries", "timeseries.db", journal.with_suffix(".tsdb.db"))]


def backup(journal: Path, into: Path, *, store_id: str, now: float | None = None) -> Path:
    """Copy the agent's databases into a new directory under ``into``; returns its path."""
    if not journal.exists():
        raise BackupError(f"{journal}: no journal to back up")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    final = into / f"{PREFIX}{store_id}-{stamp}"
    if final.exists():
        raise BackupError(f"{final}: a backup of that second exists already")
    into.mkdir(parents=True, exist_ok=True)
    work = into / f".{final.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    files: dict[str, dict[str, object]] = {}
    manifest = {"store": store_id, "created": stamp, "files": files}
    try:
        for f in data_files(journal):
            if not f.source.exists():
                continue
            target = work / f.name
            _copy_database(f.source, target)
            files[f.name] = {"role": f.role, "bytes": target.stat().st_size,
                             "sha256": _digest(target)}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _fsync_dir(work)
        work.rename(final)
        _fsync_dir(into)
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise BackupError(f"backup of {journal} into {into} failed: {exc}") from exc
    log.info("backup of store %s written to %s", store_id, final)
    return final


def restore(source: Path, journal: Path, *, force: bool = False) -> list[Path]:
    """Put a backup's databases at ``journal``'s paths; returns the files written."""
    files = verify(source)
    targets = {f.name: f.source for f in data_files(journal)}
    present = [p for p in targets.values() if p.exists()]
    if present and not force:
        raise BackupError(f"{journal}: a journal is there already; stop its agent and restore "
                          "with --force to move it aside")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for path in present:
        aside = path.with_name(f"{path.name}.replaced-{stamp}")
        path.rename(aside)
        for suffix in ("-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.rename(aside.with_name(aside.name + suffix))
        log.warning("restore: %s moved aside to %s", path, aside)
    journal.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for name in files:
        target = targets[name]
        partial = target.with_name(target.name + ".restoring")
        shutil.copyfile(source / name, partial)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        partial.rename(target)
        written.append(target)
    _fsync_dir(journal.parent)
    log.info("restored %s from %s", ", ".join(map(str, written)), source)
    return written


def verify(source: Path) -> list[str]:
    """Check a backup (manifest, digests, each database's integrity); the file names in it."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{source}: not a storeedge backup ({MANIFEST}: {exc})") from exc
    if "journal.db" not in files:
        raise BackupError(f"{source}: the backup holds no journal")
    known = {f.name for f in data_files(Path("journal.db"))}
    for name, meta in files.items():
        path = source / name
        if name not in known:
            raise BackupError(f"{source}: unknown file {name!r} in {MANIFEST}")
        if not path.exists():
            raise BackupError(f"{path}: missing")
        if _digest(path) != meta.get("sha256"):
            raise BackupError(f"{path}: SHA-256 differs from {MANIFEST}: the copy is damaged")
        problem = _integrity_problem(path)
        if problem is not None:
            raise BackupError(f"{path}: integrity check failed: {problem}")
    return sorted(files)


def prune(into: Path, keep: int, store_id: str) -> list[Path]:
    """Delete all but the newest ``keep`` backups of a store under ``into``; returns what
    went."""
    backups = sorted(p for p in into.glob(f"{PREFIX}{store_id}-*") if p.is_dir())
    gone = backups[:-keep] if keep > 0 else backups
    for path in gone:
        shutil.rmtree(path)
    return gone


class Schedule:
    """The config's ``journal.backup``: a backup every ``every_s`` (counted from the newest one
    there, so a restart neither skips nor repeats one), then all but the newest ``keep`` go. A
    failed backup is logged, shown by ``stats()`` and tried again after ``RETRY_SECONDS``."""

    def __init__(self, journal: Path, into: Path, store_id: str, every_s: float,
                 keep: int) -> None:
        self.journal, self.into, self.store_id = journal, into, store_id
        self.every_s, self.keep = every_s, keep
        self.last: str | None = None
        self.last_error: str | None = None
        self._retry_at: float | None = None

    def due(self) -> float:
        """When the next backup is due (epoch seconds)."""
        if self._retry_at is not None:
            return self._retry_at
        made = [p.stat().st_mtime for p in self.into.glob(f"{PREFIX}{self.store_id}-*")
                if p.is_dir()] if self.into.is_dir() else []
        return max(made) + self.every_s if made else time.time()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.due() - time.time()))
            try:
                made = await asyncio.to_thread(backup, self.journal, self.into,
                                               store_id=self.store_id)
                await asyncio.to_thread(prune, self.into, self.keep, self.store_id)
            except (BackupError, OSError) as exc:
                self.last_error = str(exc)
                self._retry_at = time.time() + RETRY_SECONDS
                log.error("scheduled backup of store %s failed: %s; next try in %.0f s",
                          self.store_id, exc, RETRY_SECONDS)
                continue
            self.last, self.last_error, self._retry_at = str(made), None, None

    def stats(self) -> dict[str, object]:
        return {"last": self.last, "last_error": self.last_error, "next_due": self.due()}


def _copy_database(source: Path, target: Path) -> None:
    # Read-only: a backup never creates or changes the agent's files.
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            problem = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    if problem != "ok":
        raise BackupError(f"{source}: the copy fails its integrity check: {problem}")
    with open(target, "rb") as fh:
        os.fsync(fh.fileno())


def _integrity_problem(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if result == "ok" else str(result)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
