"""Store orders in the journal: the replenishment policy, superseding, deciding and receiving
once, and what a delivery got wrong."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge import orders
from cloud_bridge.bridge import SCHEMAS
from edge_agent.journal import Journal
from storeedge.errors import ConflictError, PayloadError

POLICY = orders.Policy(lead_days=1, cover_days=3, window_days=7)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    Journal(tmp_path / "journal.db", extra_schemas=SCHEMAS).close()  # the sale table too
    conn = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    yield conn
    conn.close()


def test_the_policy_orders_up_to_cover_what_sells_and_what_is_coming_counts(conn) -> None:
    # 14 a day of COLA (reorder at 14 + shelf 3, up to 56 + 3); CHIPS sells nothing but is
    # below its shelf minimum; WATER holds plenty
    order = orders.propose(conn, POLICY, {"COLA": 14.0, "WATER": 2.0},
                           held={"COLA": 10, "CHIPS": 1, "WATER": 40},
                           minimum={"COLA": 3, "CHIPS": 4, "WATER": 2}, now=100.0)
    assert order is not None and order["lines"] == [["CHIPS", 3], ["COLA", 49]]
    assert order["basis"]["COLA"] == {"demand_per_day": 14.0, "held": 10, "on_order": 0,
                                      "reorder_point": 17}
    with pytest.raises(PayloadError, match="needs a line of units"):
        orders.decide(conn, "s1", order["id"], True, "wang", [("COLA", 0)])
    approved = orders.decide(conn, "s1", order["id"], True, "wang", [("COLA", 40)])
    assert approved is not None and approved["lines"] == [["COLA", 40]]
    assert conn.execute("SELECT key, kind, payload FROM outbox").fetchall() == [
        (f"s1:order:{order['id']}", "order", '{"lines":[["COLA",40]]}')]
    with pytest.raises(ConflictError, match="approved, not proposed"):
        orders.decide(conn, "s1", order["id"], False, "li")
    # the 40 coming lift COLA above its reorder point; CHIPS is still short
    again = orders.propose(conn, POLICY, {"COLA": 14.0}, held={"COLA": 10, "CHIPS": 1},
                           minimum={"COLA": 3, "CHIPS": 4})
    assert again is not None and again["lines"] == [["CHIPS", 3]]
    newer = orders.propose(conn, POLICY, {}, held={"CHIPS": 0}, minimum={"CHIPS": 4})
    assert newer is not None and orders.get(conn, again["id"])["state"] == "superseded"
    assert orders.decide(conn, "s1", 999, True, "wang") is None


def test_a_delivery_is_received_once_with_what_it_got_wrong(conn) -> None:
    order = orders.propose(conn, POLICY, {}, held={"COLA": 0, "CHIPS": 0},
                           minimum={"COLA": 2, "CHIPS": 2})
    assert order is not None
    with pytest.raises(ConflictError, match="proposed, not approved"):
        orders.scan(conn, order["id"], "COLA", "li")
    orders.decide(conn, "s1", order["id"], True, "wang")
    for sku in ("COLA", "COLA", "COLA", "WATER"):
        receipt = orders.scan(conn, order["id"], sku, "li")
    assert receipt is not None and receipt["arrived"] == {"COLA": 3, "WATER": 1}
    done = orders.finish(conn, "s1", order["id"], "li")
    assert done is not None and done["discrepancies"] == [
        {"sku": "CHIPS", "ordered": 2, "received": 0, "kind": "under"},
        {"sku": "COLA", "ordered": 2, "received": 3, "kind": "over"},
        {"sku": "WATER", "ordered": 0, "received": 1, "kind": "not_ordered"}]
    (payload,) = conn.execute("SELECT payload FROM outbox WHERE kind = 'receive'").fetchone()
    assert payload == f'{{"order":"s1:order:{order["id"]}","lines":[["COLA",3]]}}'
    with pytest.raises(ConflictError, match="received, not approved"):
        orders.finish(conn, "s1", order["id"], "li")
