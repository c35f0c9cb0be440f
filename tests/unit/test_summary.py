"""Sales summarised per window in the journal: one outbox command per store and window."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.bridge import SCHEMAS
from cloud_bridge.outbox import Limits, OutboxFull
from cloud_bridge.summary import SalesWindows

T0 = 1_764_320_400.0  # 2025-11-28T09:00:00Z, a window boundary for 60 s windows


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    for schema in SCHEMAS:
        conn.executescript(schema)
    yield conn
    conn.close()


def sell(conn: sqlite3.Connection, windows: SalesWindows, txn: str, lines: list[tuple[str, int]],
         now: float, limits: Limits | None = None) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        windows.enlist(txn, lines, now, limits)(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def commands(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [{"key": k, "kind": kind, "subject": s, **json.loads(p)} for k, kind, s, p in
            conn.execute("SELECT key, kind, subject, payload FROM outbox ORDER BY id")]


def test_a_window_sums_sales_and_returns_per_sku_and_names_its_receipts(conn) -> None:
    w = SalesWindows("s1", 60)
    sell(conn, w, "r1", [("COLA", 2), ("CHIPS", 1)], T0 + 1)
    sell(conn, w, "r2", [("COLA", 1), ("COLA", 1), ("WATER", 1)], T0 + 30)
    sell(conn, w, "r3", [("CHIPS", -1), ("NOODLE", -2)], T0 + 59.9)  # returns
    assert w.close_due(conn, T0 + 59.99) == 0  # still open
    assert w.close_due(conn, T0 + 60) == 1
    (cmd,) = commands(conn)
    assert cmd["key"] == "s1:sales:20251128T090000Z" and cmd["kind"] == "sales"
    assert cmd["lines"] == [["COLA", 4], ["NOODLE", -2], ["WATER", 1]]  # CHIPS nets to 0
    assert cmd["receipts"] == ["r1", "r2", "r3"]
    assert cmd["window"] == [T0, T0 + 60]
    assert cmd["subject"] == "COLA NOODLE WATER"
    assert conn.execute("SELECT COUNT(*) FROM erp_sale_line").fetchone() == (0,)


def test_each_window_is_closed_once_even_by_a_restarted_agent(conn, tmp_path: Path) -> None:
    w = SalesWindows("s1", 60)
    sell(conn, w, "r1", [("COLA", 1)], T0 + 5)
    sell(conn, w, "r2", [("COLA", 1)], T0 + 65)
    sell(conn, w, "r3", [("COLA", 1)], T0 + 125)
    assert w.close_due(conn, T0 + 130) == 2  # the agent was down: both ended windows close
    assert w.close_due(conn, T0 + 130) == 0
    restarted = SalesWindows("s1", 60)
    other = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    try:
        assert restarted.close_due(other, T0 + 170) == 0
        assert restarted.close_due(other, T0 + 180) == 1
    finally:
        other.close()
    assert [c["receipts"] for c in commands(conn)] == [["r1"], ["r2"], ["r3"]]
    assert len({c["key"] for c in commands(conn)}) == 3


def test_a_late_sale_goes_into_a_later_window_never_a_closed_one(conn) -> None:
    w = SalesWindows("s1", 60)
    sell(conn, w, "r1", [("COLA", 1)], T0 + 10)
    assert w.close_due(conn, T0 + 61) == 1
    sell(conn, w, "late", [("COLA", 5)], T0 + 30)  # the clock stepped back, or a slow commit
    assert w.close_due(conn, T0 + 100) == 0  # its window (the next one) is still open
    assert w.close_due(conn, T0 + 120) == 1
    first, second = commands(conn)
    assert first["receipts"] == ["r1"] and first["lines"] == [["COLA", 1]]
    assert second["receipts"] == ["late"] and second["window"] == [T0 + 60, T0 + 120]


def test_a_clock_stepped_back_an_hour_keeps_closing_windows(conn) -> None:
    w = SalesWindows("s1", 60)
    sell(conn, w, "ahead", [("COLA", 1)], T0 + 3600 + 10)  # the clock an hour ahead
    assert w.close_due(conn, T0 + 3600 + 61) == 1
    sell(conn, w, "back-1", [("COLA", 2)], T0 + 5)  # stepped back to the right time
    sell(conn, w, "back-2", [("TEA", 1)], T0 + 6)
    assert w.close_due(conn, T0 + 65) == 1  # a window's time later, not an hour later
    sell(conn, w, "back-3", [("COLA", 4)], T0 + 70)
    assert w.close_due(conn, T0 + 130) == 1
    keys = [c["key"] for c in commands(conn)]
    assert len(set(keys)) == 3  # no window's key is used twice: the ERP would drop one
    assert [c["receipts"] for c in commands(conn)] == [["ahead"], ["back-1", "back-2"],
                                                       ["back-3"]]


def test_sales_made_while_the_clock_ran_ahead_close_when_it_steps_back(conn) -> None:
    w = SalesWindows("s1", 60)
    sell(conn, w, "now", [("COLA", 1)], T0 + 5)
    sell(conn, w, "ahead", [("TEA", 2)], T0 + 3600 + 5)  # an hour ahead, no close meanwhile
    assert w.close_due(conn, T0 + 20) == 2  # stepped back: both close, not in an hour
    sell(conn, w, "after", [("COLA", 3)], T0 + 25)
    assert w.close_due(conn, T0 + 90) == 1
    assert [c["receipts"] for c in commands(conn)] == [["now"], ["ahead"], ["after"]]
    assert len({c["key"] for c in commands(conn)}) == 3


def test_unclosed_lines_survive_a_crash(conn, tmp_path: Path) -> None:
    sell(conn, SalesWindows("s1", 60), "r1", [("COLA", 3)], T0 + 1)
    conn.close()  # the agent dies before the window ends
    again = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    try:
        assert SalesWindows("s1", 60).close_due(again, T0 + 3600) == 1
        (payload,) = again.execute("SELECT payload FROM outbox").fetchone()
    finally:
        again.close()
    assert json.loads(payload)["lines"] == [["COLA", 3]]


def test_window_zero_books_one_command_per_receipt(conn) -> None:
    w = SalesWindows("s1", 0)
    sell(conn, w, "r1", [("COLA", 1), ("COLA", 2)], T0)
    sell(conn, w, "r2", [("WATER", -1)], T0)
    assert w.close_due(conn, T0 + 3600) == 0
    assert [(c["key"], c["lines"], c["receipts"]) for c in commands(conn)] == [
        ("s1:sale:r1", [["COLA", 3]], ["r1"]), ("s1:sale:r2", [["WATER", -1]], ["r2"])]


def test_open_window_lines_count_against_the_bound(conn) -> None:
    w = SalesWindows("s1", 60)
    limits = Limits(max_rows=3, max_bytes=1_000_000)
    sell(conn, w, "r1", [("COLA", 1), ("CHIPS", 1)], T0 + 1, limits)
    with pytest.raises(OutboxFull, match="2 of 3 items"):
        sell(conn, w, "r2", [("COLA", 1), ("WATER", 1)], T0 + 2, limits)
    sell(conn, w, "r3", [("COLA", 1)], T0 + 3, limits)
    assert conn.execute("SELECT rows FROM outbox_usage").fetchone() == (3,)
    w.close_due(conn, T0 + 60)  # three lines become one command
    assert conn.execute("SELECT rows FROM outbox_usage").fetchone() == (1,)


def usage(conn: sqlite3.Connection) -> tuple[int, int]:
    return conn.execute("SELECT rows, bytes FROM outbox_usage WHERE id = 1").fetchone()


def test_while_the_erp_is_behind_closed_windows_join_the_newest_unsent_summary(conn) -> None:
    w = SalesWindows("s1", 60, merge_s=180)
    for i, (txn, lines) in enumerate([("r1", [("COLA", 2)]), ("r2", [("CHIPS", 1)]),
                                      ("r3", [("COLA", -2), ("WATER", 1)]),
                                      ("r4", [("COLA", 5)])]):
        sell(conn, w, txn, lines, T0 + 60 * i + 1)
        assert w.close_due(conn, T0 + 60 * (i + 1)) == (1 if i in (0, 3) else 0)
    first, second = commands(conn)
    assert first["key"] == "s1:sales:20251128T090000Z"
    assert first["lines"] == [["CHIPS", 1], ["WATER", 1]]  # COLA sold and returned: nets to 0
    assert first["receipts"] == ["r1", "r2", "r3"] and first["window"] == [T0, T0 + 180]
    assert first["subject"] == "CHIPS WATER"
    assert second["key"] == "s1:sales:20251128T090300Z"  # 240 s would pass the 180 s span
    assert second["lines"] == [["COLA", 5]] and second["window"] == [T0 + 180, T0 + 240]
    # the bound's byte count follows the grown payloads
    assert usage(conn) == (2, sum(len(p) for (p,) in conn.execute("SELECT payload FROM outbox")))


def test_a_summary_tried_once_or_being_delivered_takes_no_more_windows(conn) -> None:
    w = SalesWindows("s1", 60, merge_s=3600)
    sell(conn, w, "r1", [("COLA", 1)], T0 + 1)
    assert w.close_due(conn, T0 + 60) == 1
    (busy,) = conn.execute("SELECT id FROM outbox").fetchone()
    sell(conn, w, "r2", [("COLA", 1)], T0 + 61)
    assert w.close_due(conn, T0 + 120, busy=busy) == 1  # its ERP call is under way
    conn.execute("UPDATE outbox SET attempts = 1 WHERE id = ?", (busy + 1,))  # tried, failed
    sell(conn, w, "r3", [("COLA", 1)], T0 + 121)
    assert w.close_due(conn, T0 + 180) == 1
    conn.execute("UPDATE outbox SET state = 'delivered'")
    sell(conn, w, "r4", [("COLA", 1)], T0 + 181)
    assert w.close_due(conn, T0 + 240) == 1  # the ERP has caught up: a window, a document
    assert [c["receipts"] for c in commands(conn)] == [["r1"], ["r2"], ["r3"], ["r4"]]


def test_a_merged_summary_that_nets_to_nothing_is_no_command(conn) -> None:
    w = SalesWindows("s1", 60, merge_s=3600)
    sell(conn, w, "r1", [("COLA", 1)], T0 + 1)
    assert w.close_due(conn, T0 + 60) == 1
    sell(conn, w, "r2", [("COLA", -1)], T0 + 61)
    assert w.close_due(conn, T0 + 120) == 0
    assert commands(conn) == [] and usage(conn) == (0, 0)
