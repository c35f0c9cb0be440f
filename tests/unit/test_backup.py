"""Backup and restore of an agent's databases: consistent while a writer commits, checked
before anything is restored, never overwriting a journal unasked."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from edge_agent import backup
from edge_agent.backup import BackupError
from tests.waiting import until


def make_journal(path: Path, rows: int = 10) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS sale (n INTEGER PRIMARY KEY, body TEXT)")
    with conn:
        conn.executemany("INSERT INTO sale (body) VALUES (?)", [("x" * 100,)] * rows)
    conn.close()


def count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM sale").fetchone()[0])
    finally:
        conn.close()


def test_a_backup_taken_while_the_agent_writes_is_one_consistent_transaction(tmp_path):
    journal = tmp_path / "var" / "journal.db"
    journal.parent.mkdir()
    make_journal(journal, rows=0)
    stop = threading.Event()
    committed: list[int] = []

    def writer() -> None:  # the agent committing sales of 10 rows each meanwhile
        conn = sqlite3.connect(journal, timeout=30)
        while not stop.is_set():
            with conn:
                conn.executemany("INSERT INTO sale (body) VALUES (?)", [("y",)] * 10)
            committed.append(10)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        made = [backup.backup(journal, tmp_path / "backups", store_id="s1", now=1_800_000_000 + i)
                for i in range(5)]
    finally:
        stop.set()
        thread.join(timeout=30)
    for path in made:
        assert count(path / "journal.db") % 10 == 0  # never half a transaction
        assert backup.verify(path) == ["journal.db"]
    assert sum(committed) == count(journal)


def test_restore_checks_the_backup_and_never_overwrites_unasked(tmp_path):
    journal = tmp_path / "journal.db"
    make_journal(journal, rows=7)
    journal.with_suffix(".tsdb.db").write_bytes(b"")  # an empty buffer is a valid database
    made = backup.backup(journal, tmp_path / "b", store_id="s1")
    manifest = json.loads((made / "manifest.json").read_text())
    assert set(manifest["files"]) == {"journal.db", "timeseries.db"}

    target = tmp_path / "new" / "journal.db"
    assert backup.restore(made, target) == [target, target.with_suffix(".tsdb.db")]
    assert count(target) == 7

    make_journal(target, rows=1)  # the new store wrote since
    with pytest.raises(BackupError, match="already"):
        backup.restore(made, target)
    assert count(target) == 8
    backup.restore(made, target, force=True)
    assert count(target) == 7
    [aside] = target.parent.glob("journal.db.replaced-*")
    assert count(aside) == 8


def test_a_damaged_backup_is_refused_naming_the_file(tmp_path):
    journal = tmp_path / "journal.db"
    make_journal(journal)
    made = backup.backup(journal, tmp_path / "b", store_id="s1")
    with open(made / "journal.db", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff" * 16)
    with pytest.raises(BackupError, match=r"journal\.db: SHA-256 differs"):
        backup.restore(made, tmp_path / "new" / "journal.db")
    assert not (tmp_path / "new" / "journal.db").exists()
    with pytest.raises(BackupError, match="not a storeedge backup"):
        backup.verify(tmp_path)


def test_prune_keeps_the_newest(tmp_path):
    journal = tmp_path / "journal.db"
    make_journal(journal)
    made = [backup.backup(journal, tmp_path / "b", store_id="s1", now=1_800_000_000 + i)
            for i in range(4)]
    other = backup.backup(journal, tmp_path / "b", store_id="s0", now=1_700_000_000)
    assert backup.prune(tmp_path / "b", keep=2, store_id="s1") == made[:2]
    assert sorted((tmp_path / "b").iterdir()) == [other, *made[2:]]  # another store's stays


async def test_scheduled_backups_keep_the_newest_and_survive_a_failure(tmp_path):
    journal = tmp_path / "journal.db"
    make_journal(journal)
    (tmp_path / "a-file").write_text("not a directory")
    blocked = backup.Schedule(journal, tmp_path / "a-file", "s1", every_s=1.0, keep=2)
    into = tmp_path / "backups"
    schedule = backup.Schedule(journal, into, "s1", every_s=1.0, keep=2)
    made: set[str] = set()

    def three_made() -> bool:
        if schedule.last is not None:
            made.add(schedule.last)
        return len(made) >= 3

    tasks = [asyncio.create_task(blocked.run()), asyncio.create_task(schedule.run())]
    try:
        await until(three_made, within=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    kept = {str(p) for p in into.glob("storeedge-backup-s1-*")}
    assert len(kept) == 2 and kept <= made and min(made) not in kept
    assert all(backup.verify(Path(p)) and count(Path(p) / "journal.db") == 10 for p in kept)
    assert "a-file" in str(blocked.stats()["last_error"])
    assert blocked.stats()["next_due"] >= schedule.stats()["next_due"]  # retried much later


def test_the_command_line_backs_up_and_restores_a_store(tmp_path):
    journal = tmp_path / "var" / "journal.db"
    journal.parent.mkdir()
    make_journal(journal, rows=3)
    config = tmp_path / "store.yaml"
    config.write_text(yaml.safe_dump({"store": {"id": "bj-01"},
                                      "journal": {"path": str(journal)}}))
    cli = [sys.executable, "-m", "edge_agent.cli", "--log-format", "text"]
    done = subprocess.run([*cli, "backup", "--config", str(config), "--to", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    made = Path(done.stdout.strip())
    assert made.name.startswith("storeedge-backup-bj-01-")
    refused = subprocess.run([*cli, "restore", "--config", str(config), "--from", str(made)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--force" in refused.stderr
