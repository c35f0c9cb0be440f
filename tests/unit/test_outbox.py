"""The outbox's queue mechanics, with an in-test deliver function standing in for the ERP."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cloud_bridge.outbox import (
    CommandFailed,
    Limits,
    Outbox,
    OutboxCollector,
    OutboxFull,
    admin_command,
    enqueue,
)
from storeedge.errors import ErpRejected, ErpUnavailable, UsageError


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
    assert stats.delivered == 3 and stats.retries_since_start == 3
    assert stats.last_error is None  # cleared once the ERP took commands again
    (error,) = journal.execute("SELECT last_error FROM outbox WHERE key = 'b'").fetchone()
    assert "ERP down" in error  # the row keeps its history


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


async def test_a_failing_command_is_quarantined_and_only_its_subjects_wait(
        db: Path, journal) -> None:
    add(journal, "bad", subject="COLA")
    add(journal, "after-bad", subject="COLA CHIPS")  # shares COLA: must wait behind "bad"
    add(journal, "chips-later", subject="CHIPS")  # shares CHIPS with a waiting one: waits too
    add(journal, "water", subject="WATER")  # unrelated: flows at once
    order: list[str] = []
    delivered = asyncio.Event()

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        order.append(payload["key"])
        if payload["key"] == "bad":
            raise CommandFailed("Tryton model.stock.shipment.out.create: server error: KeyError")
        if payload["key"] == "chips-later":
            delivered.set()
        return "ok"

    outbox = Outbox(db, retry_initial_s=0.02, retry_max_s=0.05, quarantine_after=3)
    async with running(outbox, deliver):
        async with asyncio.timeout(10):
            await delivered.wait()
        stats, dead = outbox.stats(), outbox.rejected()
    assert [k for k in order if k != "bad"] == ["water", "after-bad", "chips-later"]
    assert order.index("water") < order.index("after-bad")
    assert order.count("bad") == 3
    assert order.index("after-bad") > max(i for i, k in enumerate(order) if k == "bad")
    assert (stats.delivered, stats.rejected, stats.pending) == (3, 1, 0)
    assert [d["key"] for d in dead] == ["bad"]
    assert dead[0]["reason"] == ("quarantined after 3 identical failures: failed: Tryton "
                                 "model.stock.shipment.out.create: server error: KeyError")


async def test_an_unexpected_error_neither_kills_the_outbox_nor_jams_it_after_restart(
        db: Path, journal) -> None:
    add(journal, "poison", subject="COLA", lines=[["COLA", "1e400"]])
    add(journal, "fine", subject="COLA")
    seen: list[str] = []

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        seen.append(payload["key"])
        if payload["key"] == "poison":
            int(float(payload["lines"][0][1]))  # OverflowError, as a connector would raise
        return "ok"

    first = Outbox(db, retry_initial_s=0.01, retry_max_s=0.02, quarantine_after=4)
    async with running(first, deliver):
        while seen.count("poison") < 2:
            await asyncio.sleep(0.01)
    # restarted: the failures so far count, the task survives, the queue moves on
    second = Outbox(db, retry_initial_s=0.01, retry_max_s=0.02, quarantine_after=4)
    async with running(second, deliver):
        assert await second.drained(5)
        stats, dead = second.stats(), second.rejected()
    assert seen.count("poison") == 4 and seen[-1] == "fine"
    assert (stats.delivered, stats.rejected) == (1, 1)
    assert dead[0]["reason"].startswith("quarantined after 4 identical failures: OverflowError")


async def test_different_failures_are_not_counted_as_the_same(db: Path, journal) -> None:
    add(journal, "flaky")
    failures = iter(["lock timeout", "deadlock", "lock timeout"])

    async def deliver(kind: str, payload: dict[str, Any]) -> str:
        reason = next(failures, None)
        if reason is not None:
            raise CommandFailed(reason)
        return "ok"

    outbox = Outbox(db, retry_initial_s=0.01, retry_max_s=0.02, quarantine_after=2)
    async with running(outbox, deliver):
        assert await outbox.drained(5)
        assert outbox.stats().delivered == 1


def test_the_bound_refuses_new_work_and_rolls_the_callers_transaction_back(
        db: Path, journal) -> None:
    limits = Limits(max_rows=2, max_bytes=10_000)
    journal.execute("CREATE TABLE sale (txn TEXT)")

    def sale(key: str) -> None:
        with journal:
            journal.execute("INSERT INTO sale VALUES (?)", (key,))
            enqueue(journal, key, "sale", {"lines": [["COLA", 1]]}, "COLA", limits)

    sale("a")
    sale("b")
    with pytest.raises(OutboxFull, match=r"2 of 2 items.*new sales are refused"):
        sale("c")
    assert [k for (k,) in journal.execute("SELECT txn FROM sale")] == ["a", "b"]
    with journal:  # delivered work frees its room
        journal.execute("UPDATE outbox SET state = 'delivered' WHERE key = 'a'")
    sale("c")
    with pytest.raises(OutboxFull, match="bytes"):
        with journal:
            enqueue(journal, "big", "sale", {"x": "y" * 20_000}, "COLA", limits)
    (rows, nbytes) = journal.execute("SELECT rows, bytes FROM outbox_usage").fetchone()
    expected = journal.execute("SELECT COUNT(*), SUM(LENGTH(payload)) FROM outbox"
                               " WHERE state = 'pending'").fetchone()
    assert (rows, nbytes) == expected


async def test_the_dead_letter_is_operated_by_key(db: Path, journal, capsys) -> None:
    add(journal, "dead")
    add(journal, "pending")
    with journal:
        journal.execute("UPDATE outbox SET state = 'rejected', last_error = 'rejected: NOPE'"
                        " WHERE key = 'dead'")
    outbox = Outbox(db)
    try:
        assert [r["key"] for r in outbox.list("rejected")] == ["dead"]
        assert outbox.show("dead")["payload"] == {"n": "dead"}
        assert outbox.show("nope") is None
        with pytest.raises(UsageError, match="pending: only dead"):
            outbox.drop("pending")
        with pytest.raises(UsageError):
            outbox.retry("pending")
        assert outbox.retry("dead")["state"] == "pending"
    finally:
        outbox.close()
    with journal:
        journal.execute("UPDATE outbox SET state = 'rejected' WHERE key = 'dead'")
    assert admin_command(db, "drop", "pending") == 2
    assert admin_command(db, "show", "nope") == 1
    assert admin_command(db, "drop", "dead") == 0
    assert admin_command(db, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert '"key": "dead"' in lines[0] and len(lines) == 2 and '"key": "pending"' in lines[1]
    assert [k for (k,) in journal.execute("SELECT key FROM outbox")] == ["pending"]


async def test_metrics_show_backlog_age_delivered_retried_and_dead(db: Path, journal) -> None:
    add(journal, "a")
    add(journal, "b", subject="OTHER")
    with journal:
        journal.execute("UPDATE outbox SET state = 'rejected' WHERE key = 'b'")
    outbox = Outbox(db)
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox, "s1"))
    try:
        text = generate_latest(registry).decode()
    finally:
        outbox.close()
    assert 'storeedge_outbox_backlog{store="s1"} 1.0' in text
    assert 'storeedge_outbox_dead{store="s1"} 1.0' in text
    assert 'storeedge_outbox_delivered_total{store="s1"} 0.0' in text
    assert 'storeedge_outbox_retried_total{store="s1"} 0.0' in text
    assert 'storeedge_outbox_oldest_age_seconds{store="s1"}' in text
