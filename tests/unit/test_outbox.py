"""The outbox's queue mechanics, with an in-test deliver function standing in for the ERP."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.outbox import Outbox, enqueue
from storeedge.errors import ErpRejected, ErpUnavailable


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(db: Path) -> Iterator[sqlite3.Connection]:
    """The agent's side: its own connection, enqueueing inside its own transactions."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(Outbox.SCHEMA)
    yield conn
    conn.close()


def add(conn: sqlite3.Connection, key: str, subject: str = "COLA", **payload: Any) -> bool:
    with conn:
        return enqueue(conn, key, "sale", {"n": key, **payload}, subject)


@asynccontextmanager
async def running(outbox: Outbox, deliver: Callable[[str, dict[str, Any]], Awaitable[str]]
                  ) -> AsyncIterator[None]:
    task = asyncio.create_task(outbox.run(deliver), name="outbox")
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outbox.close()


async def test_delivers_in_enqueue_order_with_key_and_erp_id(db: Path, journal) -> None:
    for i in range(20):
        add(journal, f"k{i:02d}", subject=f"s{i % 3}")
    seen: list[dict[str, Any]] = []

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        seen.append(payload)
        return f"erp-{payload['key']}"

    outbox = Outbox(db)
    async with running(outbox, deliver):
        assert await outbox.drained(5)
        stats = outbox.stats()
    assert [p["key"] for p in seen] == [f"k{i:02d}" for i in range(20)]
    assert seen[0] == {"n": "k00", "key": "k00"}
    assert (stats.pending, stats.delivered, stats.rejected) == (0, 20, 0)
    assert stats.oldest_pending_age_s is None
    rows = journal.execute("SELECT erp_id, done_at FROM outbox WHERE key = 'k07'").fetchone()
    assert rows[0] == "erp-k07" and rows[1] > 0


def test_enqueue_is_idempotent_and_joins_the_callers_transaction(journal) -> None:
    assert add(journal, "a")
    assert not add(journal, "a", extra=1)
    with pytest.raises(RuntimeError), journal:
        enqueue(journal, "b", "sale", {}, "COLA")
        raise RuntimeError("the sale's own write failed")
    keys = [k for (k,) in journal.execute("SELECT key FROM outbox ORDER BY id")]
    assert keys == ["a"]


async def test_unavailable_retries_the_same_command_without_reordering(db: Path, journal) -> None:
    for key in ("a", "b", "c"):
        add(journal, key)
    calls: list[str] = []

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        calls.append(payload["key"])
        if payload["key"] == "b" and calls.count("b") < 4:
            raise ErpUnavailable("ERP down")
        return "ok"

    outbox = Outbox(db, retry_initial_s=0.01, retry_max_s=0.05)
    async with running(outbox, deliver):
        assert await outbox.drained(5)
        stats = outbox.stats()
    assert calls == ["a", "b", "b", "b", "b", "c"]
    assert stats.delivered == 3 and stats.last_error is not None
    assert "ERP down" in stats.last_error


async def test_pending_stays_visible_while_the_erp_is_down(db: Path, journal) -> None:
    add(journal, "a")

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        raise ErpUnavailable("connection refused")

    outbox = Outbox(db, retry_initial_s=0.01, retry_max_s=0.02)
    async with running(outbox, deliver):
        assert not await outbox.drained(0.3)
        stats = outbox.stats()
    assert stats.pending == 1 and stats.oldest_pending_age_s is not None
    (attempts,) = journal.execute("SELECT attempts FROM outbox").fetchone()
    assert attempts >= 3


async def test_rejected_goes_to_the_dead_letter_and_the_rest_flows(db: Path, journal) -> None:
    for key in ("a", "bad", "c"):
        add(journal, key)
    delivered: list[str] = []

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        if payload["key"] == "bad":
            raise ErpRejected("unknown SKU NOPE", source="erp")
        delivered.append(payload["key"])
        return "ok"

    outbox = Outbox(db)
    async with running(outbox, deliver):
        assert await outbox.drained(5)
        stats = outbox.stats()
        dead = outbox.rejected()
    assert delivered == ["a", "c"]
    assert (stats.delivered, stats.rejected) == (2, 1)
    assert [d["key"] for d in dead] == ["bad"]
    assert "unknown SKU NOPE" in dead[0]["reason"]


async def test_notify_delivers_at_once_not_at_the_next_poll(db: Path, journal) -> None:
    delivered = asyncio.Event()

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        delivered.set()
        return "ok"

    outbox = Outbox(db, poll_s=60)
    async with running(outbox, deliver):
        await asyncio.sleep(0.05)  # let run() go idle on an empty queue
        add(journal, "a")
        outbox.notify()
        async with asyncio.timeout(2):
            await delivered.wait()


async def test_a_new_outbox_resumes_pending_work(db: Path, journal) -> None:
    for key in ("a", "b"):
        add(journal, key)

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        return "ok"

    first = Outbox(db)
    first.close()  # crashed before delivering anything
    second = Outbox(db)
    async with running(second, deliver):
        assert await second.drained(5)


def test_prune_removes_only_old_delivered_commands(db: Path, journal) -> None:
    for key in ("old", "pending", "dead"):
        add(journal, key)
    with journal:
        journal.execute("UPDATE outbox SET state='delivered', done_at=1 WHERE key='old'")
        journal.execute("UPDATE outbox SET state='rejected', done_at=1 WHERE key='dead'")
    outbox = Outbox(db, retention_s=3600)
    try:
        assert outbox.prune() == 1
    finally:
        outbox.close()
    keys = {k for (k,) in journal.execute("SELECT key FROM outbox")}
    assert keys == {"pending", "dead"}
