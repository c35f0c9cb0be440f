"""The journal's checkpoint thread: committed WAL pages copied back into the database file,
beside the commits rather than in their way."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# How often the journal's own thread copies committed WAL pages back into the database file,
# and how big the WAL grows before it is started over (its file keeps that size on disk).
CHECKPOINT_SECONDS = 0.5
WAL_RESTART_BYTES = 64 * 1024 * 1024


class Checkpointer:
    """A checkpoint copies the WAL into the database file and fsyncs it: milliseconds that, run by
    the committing connection every ~1000 pages, stalled the event loop thread (the p99 of
    reading-to-alert). This thread does them instead, on its own connection, concurrently
    (PASSIVE never blocks a writer), holding commits off (``lock``) only to copy what came
    during its last pass. Commits stay fsync'd exactly as before.
    """

    def __init__(self, path: Path, lock: threading.Lock) -> None:
        self.path = path
        self._lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"journal-checkpoint:{path.name}")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                    # SQLite starts the WAL over only when, as a commit begins, a checkpoint
                    # has copied all of it. With commits every millisecond one always lands
                    # while the checkpoint above copies, and the WAL grew for ever (280 MB in a
                    # minute at 5,000 readings/s, every commit appended to newly allocated
                    # blocks: a third of the agent's system time). So once it is big enough,
                    # the few pages committed meanwhile are copied between two commits, and the
                    # next starts it over. That pass holds commits up (up to 1.8 ms): at every
                    # pass, it was what was left of the p99 of reading-to-alert.
                    if frames * page_size >= WAL_RESTART_BYTES:
                        with self._lock:
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the WAL only grows until the next one succeeds
                    log.warning("journal %s: checkpoint failed: %s", self.path, exc)
        finally:
            conn.close()
