"""The alert lifecycle on an injected clock: open, claim, resolve; auto-clear; escalation;
re-notification when worse; no duplicates; permissions; restore; the manager's summary."""

from __future__ import annotations

import pytest

from rules.actions import ClearAlert, EscalateAlert, OpenAlert, UpdateAlert
from rules.trackers.alerts import (
    Actor,
    AlertManager,
    AlertNotFound,
    IllegalTransition,
    NotPermitted,
    Outcome,
)
from storeedge.errors import PayloadError
from storeedge.events import Alert, AlertState, Severity, ShelfWeight

STORE = "sh-0042"
T0 = 1_764_160_000.0
ANA = Actor("ana", "staff", frozenset({"drinks"}))
BO = Actor("bo", "staff", frozenset({"drinks"}))
CY = Actor("cy", "staff", frozenset({"frozen"}))
MEI = Actor("mei", "manager", frozenset())
HQ = Actor("hq-dash", "hq")


def low(lane: str = "A1-3", units: int = 1, *, severity: Severity = Severity.WARNING,
        sku: str = "COLA-330", **detail: object) -> OpenAlert:
    """What the low-stock rule asks for at ``lane`` (capacity 8, threshold 2)."""
    return OpenAlert(rule="low_stock", subject=lane, severity=severity, sku=sku, location=lane,
                     message=f"{sku} at lane {lane}: {units} left (threshold 2); bring {8 - units}",
                     detail={"units": units, "threshold": 2, "bring": 8 - units, **detail})


def restocked(lane: str = "A1-3") -> ClearAlert:
    return ClearAlert(rule="low_stock", subject=lane, reason="restocked to 8")


@pytest.fixture
def manager() -> AlertManager:
    return AlertManager(STORE, claim_within={"low_stock": 300.0}, zones={"A1-3": "drinks",
                                                                        "A1-4": "drinks",
                                                                        "F2-1": "frozen"})


def opened(manager: AlertManager, action: OpenAlert | None = None, now: float = T0) -> Alert:
    [alert] = manager.apply([action or low()], now)
    return alert


def test_open_claim_resolve_records_who_and_when(manager: AlertManager) -> None:
    cause = ShelfWeight(store_id=STORE, source="shelf-a1", received_ts=T0, device_ts=T0 - 0.2,
                        lane="A1-3", grams=330.0)
    [first] = manager.apply([low(units=1)], T0, cause)

    assert (first.state, first.rule, first.subject, first.sku, first.location) == (
        AlertState.OPEN, "low_stock", "A1-3", "COLA-330", "A1-3")
    assert (first.source, first.device_ts, first.received_ts) == ("shelf-a1", T0 - 0.2, T0)
    # A restock task says what to bring: target (capacity 8) minus the 1 left.
    assert first.detail["task"] == {"sku": "COLA-330", "lane": "A1-3", "bring": 7}
    assert "bring 7" in first.message
    assert first.detail | {"transition": "opened", "by": "rule", "zone": "drinks",
                           "opened_at": T0, "claim_within_s": 300.0} == first.detail

    [claimed] = manager.claim(first.alert_id, ANA, T0 + 40)
    [resolved] = manager.resolve(first.alert_id, ANA, "restocked", T0 + 100, note="from back")

    assert [a.alert_id for a in (claimed, resolved)] == [first.alert_id] * 2
    assert len({first.event_id, claimed.event_id, resolved.event_id}) == 3
    assert (claimed.state, claimed.detail["claimed_by"], claimed.detail["claimed_at"]) == (
        AlertState.CLAIMED, "ana", T0 + 40)
    assert (resolved.state, resolved.detail["outcome"], resolved.detail["resolved_by"],
            resolved.detail["note"], resolved.received_ts) == (
        AlertState.RESOLVED, "restocked", "ana", "from back", T0 + 100)
    assert manager.active() == []
    assert manager.get(first.alert_id) == resolved
    assert manager.history(first.alert_id) == [first, claimed, resolved]


def test_one_alert_per_rule_and_subject(manager: AlertManager) -> None:
    first = opened(manager)

    assert manager.apply([low(units=1), low(units=1)], T0 + 1) == []
    assert manager.apply([low(units=2)], T0 + 2) == []  # better is not news
    [other] = manager.apply([low(lane="A1-4")], T0 + 3)
    assert other.alert_id != first.alert_id
    assert len(manager) == 2


def test_worsening_renotifies_the_same_alert_and_keeps_its_claim(manager: AlertManager) -> None:
    first = opened(manager, low(units=1))
    manager.claim(first.alert_id, ANA, T0 + 10)

    [more] = manager.apply([low(units=0)], T0 + 20)
    [hotter] = manager.apply([low(units=0, severity=Severity.CRITICAL)], T0 + 30)

    assert (more.alert_id, more.state, more.detail["transition"]) == (
        first.alert_id, AlertState.CLAIMED, "worsened")
    assert more.detail["bring"] == 8 and "bring 8" in more.message
    assert more.detail["claimed_by"] == "ana" and more.detail["opened_at"] == T0
    assert (hotter.severity, hotter.detail["renotified"]) == (Severity.CRITICAL, 2)
    assert manager.apply([low(units=0)], T0 + 40) == []  # back to warning: not worse


def test_condition_ending_clears_whatever_the_state(manager: AlertManager) -> None:
    a = opened(manager)
    b = opened(manager, low(lane="A1-4"))
    manager.claim(b.alert_id, ANA, T0 + 5)

    cleared = manager.apply([restocked("A1-3"), restocked("A1-4"), restocked("Z9")], T0 + 60)

    assert [(c.alert_id, c.state, c.detail["reason"]) for c in cleared] == [
        (a.alert_id, AlertState.CLEARED, "restocked to 8"),
        (b.alert_id, AlertState.CLEARED, "restocked to 8")]
    assert cleared[1].detail["claimed_by"] == "ana"
    assert manager.active() == [] and not manager.is_active("low_stock", "A1-3")
    with pytest.raises(IllegalTransition, match="cleared"):
        manager.claim(a.alert_id, ANA, T0 + 61)


def test_unclaimed_alert_escalates_once_after_its_limit(manager: AlertManager) -> None:
    a = opened(manager)
    quick = opened(manager, low(lane="A1-4", claim_within_s=30.0))
    b = opened(manager, low(lane="F2-1"), now=T0 + 100)
    manager.claim(b.alert_id, CY, T0 + 101)

    assert [x.alert_id for x in manager.tick(T0 + 30)] == [quick.alert_id]
    assert manager.tick(T0 + 299.9) == []
    [escalated] = manager.tick(T0 + 300)

    assert (escalated.alert_id, escalated.state, escalated.detail["escalated"],
            escalated.detail["route"], escalated.detail["by"]) == (
        a.alert_id, AlertState.ESCALATED, True, "manager", "timer")
    assert manager.tick(T0 + 10_000) == []  # the claimed one never escalates
    # Escalated, it can still be claimed by the zone's staff.
    [claimed] = manager.claim(a.alert_id, BO, T0 + 400)
    assert (claimed.state, claimed.detail["escalated"]) == (AlertState.CLAIMED, True)


def test_the_engines_update_and_escalate_actions(manager: AlertManager) -> None:
    a = opened(manager, OpenAlert(rule="cold_chain", subject="F2", severity=Severity.WARNING,
                                  message="F2 at -12 °C", location="F2", zone="frozen",
                                  detail={"celsius": -12}))
    b = opened(manager, low())
    manager.claim(b.alert_id, ANA, T0 + 1)

    [worse] = manager.apply([UpdateAlert(rule="cold_chain", subject="F2",
                                         severity=Severity.CRITICAL, message="F2 at -8 °C",
                                         detail={"celsius": -8})], T0 + 60)
    escalations = manager.apply([
        EscalateAlert(rule="cold_chain", subject="F2", role="manager", reason="unclaimed 300 s"),
        EscalateAlert(rule="low_stock", subject="A1-3", role="manager", reason="claimed: no"),
        UpdateAlert(rule="cold_chain", subject="nowhere", severity=Severity.CRITICAL,
                    message="-"),
    ], T0 + 300)

    assert (worse.alert_id, worse.state, worse.severity, worse.message) == (
        a.alert_id, AlertState.OPEN, Severity.CRITICAL, "F2 at -8 °C")
    assert (worse.detail["celsius"], worse.detail["zone"], worse.detail["renotified"]) == (
        -8, "frozen", 1)
    [escalated] = escalations
    assert (escalated.alert_id, escalated.state, escalated.detail["route"],
            escalated.detail["reason"]) == (
        a.alert_id, AlertState.ESCALATED, "manager", "unclaimed 300 s")
    assert manager.get(b.alert_id).state is AlertState.CLAIMED


def test_without_limits_tick_never_escalates() -> None:
    plain = AlertManager(STORE)
    opened(plain)
    assert plain.tick(T0 + 10 * 86_400) == []


def test_a_resolved_condition_opens_again_only_when_the_rule_says_so(
    manager: AlertManager,
) -> None:
    a = opened(manager)
    manager.resolve(a.alert_id, MEI, Outcome.FALSE_ALARM, T0 + 10)

    assert not manager.is_active("low_stock", "A1-3")
    assert manager.apply([restocked()], T0 + 20) == []  # nothing active: no transition
    [again] = manager.apply([low()], T0 + 30)
    assert again.alert_id != a.alert_id and again.state is AlertState.OPEN


def test_zones_and_roles_decide_who_may_act(manager: AlertManager) -> None:
    drinks = opened(manager)
    frozen = opened(manager, low(lane="F2-1"))
    office = opened(manager, OpenAlert(rule="repeated_voids", subject="kiosk-2",
                                       severity=Severity.WARNING, message="5 voids",
                                       location="A1-4", role="manager"))

    with pytest.raises(NotPermitted, match="zone drinks"):
        manager.claim(drinks.alert_id, CY, T0 + 1)
    with pytest.raises(NotPermitted):
        manager.claim(office.alert_id, ANA, T0 + 1)
    with pytest.raises(NotPermitted):
        manager.claim(drinks.alert_id, HQ, T0 + 1)
    manager.claim(drinks.alert_id, ANA, T0 + 2)
    with pytest.raises(IllegalTransition, match="already claimed by ana"):
        manager.claim(drinks.alert_id, BO, T0 + 3)
    assert manager.claim(drinks.alert_id, ANA, T0 + 4) == []  # a retried tap changes nothing
    with pytest.raises(NotPermitted, match="claimed by ana"):
        manager.resolve(drinks.alert_id, BO, "restocked", T0 + 5)
    with pytest.raises(IllegalTransition, match="claim it first"):
        manager.resolve(frozen.alert_id, CY, "restocked", T0 + 5)
    with pytest.raises(PayloadError, match="outcome 'done'"):
        manager.resolve(drinks.alert_id, ANA, "done", T0 + 5)

    # A manager may resolve what nobody claimed, or what someone else claimed.
    [r1] = manager.resolve(frozen.alert_id, MEI, "counted", T0 + 6)
    [r2] = manager.resolve(drinks.alert_id, MEI, "restocked", T0 + 6)
    assert (r1.detail.get("claimed_by"), r1.detail["resolved_by"]) == (None, "mei")
    assert (r2.detail["claimed_by"], r2.detail["resolved_by"]) == ("ana", "mei")
    with pytest.raises(IllegalTransition, match="resolved"):
        manager.claim(frozen.alert_id, MEI, T0 + 7)
    with pytest.raises(IllegalTransition, match="resolved"):
        manager.resolve(frozen.alert_id, MEI, "counted", T0 + 7)
    with pytest.raises(AlertNotFound):
        manager.claim("no-such-alert", MEI, T0 + 7)


def test_staff_see_their_zones_and_the_store_wide_alerts(manager: AlertManager) -> None:
    drinks = opened(manager)
    frozen = opened(manager, low(lane="F2-1"))
    [store_wide] = manager.apply([OpenAlert(rule="device_offline", subject="shelf-a1",
                                            severity=Severity.WARNING, message="shelf-a1 off")],
                                 T0)

    assert [ANA.can_see(a) for a in (drinks, frozen, store_wide)] == [True, False, True]
    assert all(HQ.can_see(a) and MEI.can_see(a) for a in (drinks, frozen, store_wide))
    assert store_wide.detail["zone"] is None
    with pytest.raises(NotPermitted):  # store-wide work needs every zone, or a manager
        manager.claim(store_wide.alert_id, ANA, T0 + 1)
    manager.claim(store_wide.alert_id, Actor("di", "staff"), T0 + 1)


def test_scan_confirms_the_product_at_the_lane(manager: AlertManager) -> None:
    barcodes = {"COLA-330": "6901234567892", "CHIPS-70": "00012345678905"}
    cola = opened(manager)
    opened(manager, low(lane="A1-4", sku="CHIPS-70"))

    # UPC-A 012345678905 is GTIN-14 00012345678905; the AIM prefix ]E0 is the symbology.
    match = manager.scan("]E0012345678905\r", ANA, T0 + 5, barcodes)
    assert match.alert is not None and match.alert.sku == "CHIPS-70"
    assert (match.alert.state, match.alert.detail["confirmed_by"],
            match.alert.detail["claimed_by"], match.alert.detail["transition"]) == (
        AlertState.CLAIMED, "ana", "ana", "confirmed")
    assert match.to_dict() | {"matched": True, "lane": "A1-4", "bring": 7} == match.to_dict()

    gs1 = manager.scan("0106901234567892" + "10LOT7", ANA, T0 + 6, barcodes)
    assert gs1.alert is not None and gs1.alert.alert_id == cola.alert_id

    assert manager.scan("6901234567892", CY, T0 + 7, barcodes).to_dict()["reason"] == (
        "no open task for this product in your zones")
    unknown = manager.scan("4006381333931", ANA, T0 + 7, barcodes)
    assert (unknown.alert, unknown.transitions, unknown.to_dict()["reason"]) == (
        None, (), "unknown code")


def test_restore_takes_back_active_alerts_and_history(manager: AlertManager) -> None:
    a = opened(manager)
    [claimed] = manager.claim(a.alert_id, ANA, T0 + 5)
    b = opened(manager, low(lane="F2-1"))
    [resolved] = manager.resolve(b.alert_id, MEI, "counted", T0 + 9)
    legacy = Alert(store_id=STORE, source="shelf-a1", received_ts=T0 - 50, alert_id="old-1",
                   rule="low_stock", severity=Severity.WARNING, subject="A1-4", message="old",
                   state=AlertState.OPEN, sku="CHIPS-70", location="A1-4",
                   detail={"bring": 3})
    history = [a, claimed, b, resolved]

    fresh = AlertManager(STORE, claim_within={"low_stock": 300.0}, zones={"A1-4": "drinks"})
    fresh.restore([claimed, legacy], history)

    assert {x.alert_id for x in fresh.active()} == {a.alert_id, "old-1"}
    assert fresh.history(a.alert_id) == [a, claimed]
    assert fresh.get(b.alert_id) == resolved
    assert fresh.apply([low()], T0 + 20) == []  # still one alert for A1-3
    [resolved_a] = fresh.resolve(a.alert_id, ANA, "restocked", T0 + 30)
    assert resolved_a.detail["opened_at"] == T0
    # A journaled alert from before the lifecycle existed escalates from when it was raised.
    [escalated] = fresh.tick(T0 + 250)
    assert (escalated.alert_id, escalated.detail["zone"]) == ("old-1", "drinks")


def test_summary_times_and_people(manager: AlertManager) -> None:
    a = opened(manager)
    b = opened(manager, low(lane="A1-4"), now=T0 + 10)
    c = opened(manager, low(lane="F2-1"), now=T0 + 20)
    manager.claim(a.alert_id, ANA, T0 + 60)
    manager.resolve(a.alert_id, ANA, "restocked", T0 + 300)
    manager.claim(b.alert_id, BO, T0 + 130)
    manager.resolve(b.alert_id, BO, "false_alarm", T0 + 190)
    manager.tick(T0 + 400)

    s = manager.summary(T0 + 500)

    assert [x["alert_id"] for x in s["open"]] == [c.alert_id]
    assert (s["open"][0]["state"], s["open"][0]["age_s"]) == ("escalated", 480.0)
    low_rule = s["rules"]["low_stock"]
    assert (low_rule["opened"], low_rule["claimed"], low_rule["resolved"],
            low_rule["escalated"]) == (3, 2, 2, 1)
    assert low_rule["to_claim_s"] == {"n": 2, "median": 90.0, "p90": 120.0}
    assert low_rule["to_resolve_s"] == {"n": 2, "median": 240.0, "p90": 300.0}
    assert s["people"]["ana"] == {"claimed": 1, "confirmed": 0, "resolved": 1,
                                  "outcomes": {"restocked": 1}}
    assert s["people"]["bo"]["outcomes"] == {"false_alarm": 1}
    assert [(r["by"], r["action"]) for r in s["recent"]] == [
        ("bo", "resolved"), ("bo", "claimed"), ("ana", "resolved"), ("ana", "claimed")]


def test_history_is_bounded_in_time(manager: AlertManager) -> None:
    short = AlertManager(STORE, history_seconds=100.0)
    a = opened(short)
    short.resolve(a.alert_id, MEI, "counted", T0 + 10)
    short.apply([low(lane="B1")], T0 + 200)

    with pytest.raises(AlertNotFound):
        short.get(a.alert_id)
