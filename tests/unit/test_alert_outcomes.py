"""Outcomes that fit the rule: only shelf stock is restocked; a checkout suspect, a device or an
expired batch closes with an outcome of its own kind, and any other is refused, named."""

from __future__ import annotations

import pytest

from rules.actions import OpenAlert
from rules.trackers.alerts import OUTCOMES, Actor, AlertManager, Outcome, outcomes_for
from storeedge.errors import PayloadError
from storeedge.events import Severity

T0 = 1_764_160_000.0
MEI = Actor("mei", "manager")


def suspect() -> OpenAlert:
    return OpenAlert(rule="checkout_suspect", subject="kiosk-1/S-9", severity=Severity.WARNING,
                     message="kiosk kiosk-1: 350 g in the bagging area not scanned",
                     location="kiosk-1", detail={"session": "S-9", "unexplained_grams": 350.0})


def test_a_checkout_suspect_is_not_restocked() -> None:
    manager = AlertManager("sh-0042")
    [alert] = manager.apply([suspect()], T0)

    with pytest.raises(PayloadError, match="'restocked' does not fit a checkout_suspect alert: "
                                           "one of fixed, false_alarm, other"):
        manager.resolve(alert.alert_id, MEI, "restocked", T0 + 1)
    [resolved] = manager.resolve(alert.alert_id, MEI, Outcome.FIXED, T0 + 2)
    assert resolved.detail["outcome"] == "fixed"


def test_only_stock_rules_take_restocked_and_every_rule_takes_false_alarm_and_other() -> None:
    restockable = {rule for rule, fits in OUTCOMES.items() if Outcome.RESTOCKED in fits}
    assert restockable == {"low_stock", "out_of_stock", "days_of_cover"}
    assert all({Outcome.FALSE_ALARM, Outcome.OTHER} <= set(fits) for fits in OUTCOMES.values())
    assert outcomes_for("a_stores_own_rule") == tuple(Outcome)
