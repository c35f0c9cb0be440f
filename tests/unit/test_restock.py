"""RestockChecks: what it expects of a lane after "restocked", and that a restart keeps it."""

from __future__ import annotations

import json

from rules.trackers.restock import RestockChecks
from storeedge.events import Alert, AlertState, Severity


def resolved(units: int) -> Alert:
    return Alert(store_id="s1", source="rules", received_ts=0.0, alert_id="A-1",
                 rule="out_of_stock", severity=Severity.CRITICAL, subject="B1", message="",
                 state=AlertState.RESOLVED, sku="CHIPS", location="B1",
                 detail={"units": units, "zone": "snacks", "bring": 20})


def test_a_lane_that_rose_before_or_after_is_not_reopened_and_one_that_did_not_is() -> None:
    checks = RestockChecks(wait_s=100)
    checks.resolved(resolved(units=0), units=5, now=0)  # rose before the button was pressed
    assert len(checks) == 0
    checks.resolved(resolved(units=0), units=0, now=0)
    checks.counted("B1", 0)  # a reading, no rise
    assert checks.due(99) == []
    again = RestockChecks(wait_s=100)
    again.restore(json.loads(json.dumps(checks.snapshot())))  # the agent restarted
    [reopened] = again.due(100)
    assert (reopened.rule, reopened.subject, reopened.severity) == (
        "out_of_stock", "B1", Severity.CRITICAL)
    assert reopened.detail["reopened_from"] == "A-1" and reopened.zone == "snacks"
    checks.counted("B1", 6)
    assert checks.due(100) == [] and len(checks) == 0


def test_a_zero_wait_or_an_uncounted_lane_checks_nothing() -> None:
    off = RestockChecks(wait_s=0)
    off.resolved(resolved(0), 0, 0)
    uncounted = RestockChecks(wait_s=100)
    uncounted.resolved(resolved(0), None, 0)
    assert len(off) == len(uncounted) == 0
