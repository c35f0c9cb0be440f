"""Count proposals in the journal: the ERP's lag by unbooked sales, superseding, deciding once."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge import counts
from cloud_bridge.bridge import SCHEMAS
from cloud_bridge.outbox import enqueue
from storeedge.errors import ConflictError


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    for schema in SCHEMAS:
        conn.executescript(schema)
    yield conn
    conn.close()


def test_unbooked_counts_open_windows_and_undelivered_commands(conn) -> None:
    conn.execute("INSERT INTO erp_sale_line (window_start, sku, qty, txn_id)"
                 " VALUES (0, 'COLA', 2, 'r1'), (0, 'COLA', -1, 'r2'), (0, 'CHIPS', 1, 'r3')")
    for key, lines, state in (("k1", [["COLA", 3]], "pending"), ("k2", [["CHIPS", 4]], "rejected"),
                              ("k3", [["COLA", 50]], "delivered")):
        enqueue(conn, key, "sales", {"lines": lines, "receipts": []}, subject="x")
        conn.execute("UPDATE outbox SET state = ? WHERE key = ?", (state, key))
    assert counts.unbooked(conn) == Counter({"COLA": 4, "CHIPS": 5})


def test_a_newer_difference_supersedes_and_a_decision_is_taken_once(conn) -> None:
    [first] = counts.propose(conn, {"COLA": 7, "CHIPS": 10}, {"COLA": 10, "CHIPS": 10},
                             Counter({"COLA": 1}), tolerance=1, now=100.0)
    assert (first["sku"], first["difference"]) == ("COLA", -2)
    assert counts.propose(conn, {"COLA": 7}, {"COLA": 10}, Counter({"COLA": 1}), 1) == [first]
    [second] = counts.propose(conn, {"COLA": 6}, {"COLA": 10}, Counter({"COLA": 1}), 1)
    assert second["difference"] == -3 and second["id"] != first["id"]
    assert [p["state"] for p in counts.proposals(conn)] == ["proposed", "superseded"]
    with pytest.raises(ConflictError, match="superseded"):
        counts.decide(conn, "s1", first["id"], True, "wang")
    approved = counts.decide(conn, "s1", second["id"], True, "wang", now=200.0)
    assert approved is not None
    assert (approved["state"], approved["decided_by"], approved["key"]) == (
        "approved", "wang", f"s1:count:{second['id']}")
    assert conn.execute("SELECT kind, payload FROM outbox").fetchall() == [
        ("count", '{"lines":[["COLA",-3]]}')]
    with pytest.raises(ConflictError, match="approved"):
        counts.decide(conn, "s1", second["id"], False, "li")
    assert counts.decide(conn, "s1", 999, True, "wang") is None
    # back within the tolerance: the open proposal is withdrawn, none is made
    [third] = counts.propose(conn, {"COLA": 1}, {"COLA": 10}, Counter(), 1)
    assert counts.propose(conn, {"COLA": 10}, {"COLA": 10}, Counter(), 1) == []
    assert counts.proposals(conn, "superseded")[0]["id"] == third["id"]
