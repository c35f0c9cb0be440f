"""The engine's guarantees: one alert per (rule, subject), cooldowns, hysteresis under noise
(property tests), reload and snapshot keep state, and a clean simulated day raises nothing."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.actions import ClearAlert, EscalateAlert, OpenAlert
from rules.config import load_rules
from rules.engine import RuleEngine
from storeedge.events import (
    Alert,
    AlertState,
    CheckoutEvent,
    CheckoutKind,
    Climate,
    DeviceHealth,
    HealthState,
    Sale,
    Scan,
    ShelfImage,
    ShelfWeight,
    StockCause,
    StockChanged,
)
from tests.unit.test_rules_library import (
    DAY0,
    MODEL,
    config,
    engine,
    env,
    health,
    opened,
    stock,
    temp,
)


def test_reload_keeps_open_alerts_and_windows():
    e = engine(low_stock={}, cold_chain={"minutes": 10})
    e.handle(stock("A1", 4, 3), DAY0)
    e.handle(temp(9.0), DAY0)  # cold-chain timer running
    e.reload(config(low_stock={"severity": "critical"}, cold_chain={"minutes": 10}))
    assert e.open_alerts() == [("low_stock", "A1")]
    assert e.handle(stock("A1", 3, 2), DAY0 + 1)[0].severity == "critical"  # new params
    assert len(opened(e.tick(DAY0 + 601))) == 1  # the timer survived the reload
    assert len(e.handle(stock("A1", 2, 9, StockCause.RESTOCK), DAY0 + 700)) == 1


def test_reload_that_switches_a_rule_off_clears_its_alerts():
    e = engine(low_stock={}, out_of_stock={})
    e.handle(stock("A1", 5, 1), DAY0)
    e.handle(stock("B1", 5, 0), DAY0)
    out = e.reload(config(out_of_stock={}))
    assert [(a.rule, a.subject) for a in out] == [("low_stock", "A1")]
    assert e.open_alerts() == [("out_of_stock", "B1")]


def test_snapshot_restore_round_trips_through_json():
    e = engine(low_stock={}, shrink={"window_seconds": 600}, device_offline={"seconds": 60},
               days_of_cover={"min_units": 2})
    e.handle(stock("A1", 4, 3), DAY0)
    e.handle(stock("B1", 9, 8), DAY0)  # shrink pending
    e.handle(health("shelf-a", HealthState.OFFLINE), DAY0)
    e.handle(Sale(**env(sku="COLA", qty=3, txn_id="t")), DAY0)
    data = json.loads(json.dumps(e.snapshot()))
    twin = engine(low_stock={}, shrink={"window_seconds": 600}, device_offline={"seconds": 60},
                  days_of_cover={"min_units": 2})
    twin.restore(data)
    assert twin.snapshot() == e.snapshot()
    assert twin.handle(stock("A1", 3, 2), DAY0 + 1) == e.handle(stock("A1", 3, 2), DAY0 + 1)
    assert twin.tick(DAY0 + 700) == e.tick(DAY0 + 700) != []


def alert_of(action: OpenAlert, state: AlertState, at: float) -> Alert:
    return Alert(**env(ts=at), alert_id=f"A-{action.subject}", rule=action.rule,
                 severity=action.severity, subject=action.subject, message=action.message,
                 state=state, sku=action.sku, location=action.location,
                 detail={"opened_at": at, "zone": action.zone})


def test_reconcile_takes_the_journals_open_alerts_over_an_older_snapshot():
    rules = {"low_stock": {"escalate_after_seconds": 60}, "out_of_stock": {}}
    e = engine(**rules)
    snap = e.snapshot()  # saved before A1 opened
    [a1] = opened(e.handle(stock("A1", 5, 3), DAY0))

    twin = engine(**rules)
    twin.restore(json.loads(json.dumps(snap)))
    twin.reconcile([alert_of(a1, AlertState.OPEN, DAY0)], DAY0 + 10)

    assert twin.open_alerts() == [("low_stock", "A1")]
    escalated = [a for a in twin.tick(DAY0 + 61) if isinstance(a, EscalateAlert)]
    assert [(a.rule, a.subject) for a in escalated] == [("low_stock", "A1")]


def test_reconcile_closes_what_the_journal_ended_since_the_snapshot():
    e = engine(out_of_stock={"cooldown_seconds": 0})
    e.handle(stock("B1", 1, 0), DAY0)
    snap = json.loads(json.dumps(e.snapshot()))  # B1 open; then staff resolved it
    twin = engine(out_of_stock={"cooldown_seconds": 0})
    twin.restore(snap)
    twin.reconcile([], DAY0 + 10)
    assert twin.open_alerts() == []
    twin.handle(stock("B1", 0, 2, StockCause.RESTOCK), DAY0 + 20)
    assert [(a.rule, a.subject) for a in opened(twin.handle(stock("B1", 2, 0), DAY0 + 30))] == [
        ("out_of_stock", "B1")]


def test_snapshot_shares_nothing_with_the_engine():
    e = engine(shrink={"window_seconds": 600})
    e.handle(stock("B1", 9, 8), DAY0)
    snap = e.snapshot()
    snap["rules"]["shrink"]["pending"]["CHIPS"][0][1] = 99
    snap["counts"]["B1"] = 99
    assert e.snapshot()["rules"]["shrink"]["pending"]["CHIPS"][0][1] == 1
    assert e.snapshot()["counts"]["B1"] == 8


def test_changes_moves_only_when_there_is_state_to_save():
    e = engine(low_stock={}, device_offline={"seconds": 60})
    seen = e.changes
    e.tick(DAY0)
    assert e.handle(temp(3.0), DAY0) == []  # nobody listens to climate here
    assert e.changes == seen
    e.handle(health("shelf-a", HealthState.OFFLINE), DAY0)
    assert e.changes > seen
    seen = e.changes
    e.tick(DAY0 + 30)
    assert e.changes == seen  # time passing, nothing due
    assert len(opened(e.tick(DAY0 + 60))) == 1
    assert e.changes > seen
    seen = e.changes
    e.resolved("device_offline", "shelf-a", DAY0 + 70)
    assert e.changes > seen


def test_listens_to_the_events_of_enabled_rules_and_always_to_stock():
    e = engine(device_offline={})
    assert e.listens(DeviceHealth) and e.listens(StockChanged)
    assert not e.listens(Climate) and not e.listens(ShelfWeight)
    e.reload(config(device_offline={}, cold_chain={}))
    assert e.listens(Climate) and not e.listens(ShelfWeight)


def test_cooldown_defers_a_reopen_and_drops_it_when_the_condition_ends():
    e = engine(device_offline={"seconds": 10, "cooldown_seconds": 300})
    e.handle(health("shelf-a", HealthState.OFFLINE), DAY0)
    assert len(opened(e.tick(DAY0 + 10))) == 1
    assert len(e.handle(health("shelf-a", HealthState.ONLINE), DAY0 + 20)) == 1
    e.handle(health("shelf-a", HealthState.OFFLINE), DAY0 + 30)
    assert e.tick(DAY0 + 40) == []  # due, but within the cooldown: deferred
    assert e.handle(health("shelf-a", HealthState.ONLINE), DAY0 + 50) == []  # dropped
    assert e.tick(DAY0 + 60) == []
    e.handle(health("shelf-a", HealthState.OFFLINE), DAY0 + 100)
    assert e.tick(DAY0 + 200) == []
    assert len(opened(e.tick(DAY0 + 320))) == 1  # still offline when the cooldown ended


def test_resolved_level_alert_reopens_only_after_the_condition_returns():
    e = engine(low_stock={})
    e.handle(stock("A1", 4, 3), DAY0)
    e.resolved("low_stock", "A1", DAY0 + 5)
    assert e.open_alerts() == []
    assert e.handle(stock("A1", 3, 2), DAY0 + 6) == []
    assert e.handle(stock("A1", 2, 8, StockCause.RESTOCK), DAY0 + 7) == []
    assert len(opened(e.handle(stock("A1", 8, 3), DAY0 + 8))) == 1


# Noise around a threshold never yields more than one alert per crossing.


def _pairs_ok(actions: list, key: tuple[str, str]) -> tuple[int, int]:
    """Opens and clears for ``key``, asserting they alternate starting with an open."""
    seq = [type(a) for a in actions
           if (a.rule, a.subject) == key and type(a) in (OpenAlert, ClearAlert)]
    for i, kind in enumerate(seq):
        assert kind is (OpenAlert if i % 2 == 0 else ClearAlert), seq
    return seq.count(OpenAlert), seq.count(ClearAlert)


@given(st.lists(st.integers(0, 10), min_size=1, max_size=300))
def test_low_stock_one_alert_per_crossing_and_one_task_per_lane(counts):
    e = engine(low_stock={}, out_of_stock={})
    out, before, crossings, low = [], 10, 0, False
    for i, units in enumerate(counts):
        out += e.handle(stock("A1", before, units), DAY0 + i)
        before = units
        # low_stock holds 1..threshold (3); an empty lane is out_of_stock's alone
        if units == 0 or units > 3:
            low = False
        elif not low:
            low, crossings = True, crossings + 1
        assert len([k for k in e.open_alerts() if k[1] == "A1"]) <= 1
    opens, _ = _pairs_ok(out, ("low_stock", "A1"))
    assert opens == crossings
    _pairs_ok(out, ("out_of_stock", "A1"))


@settings(max_examples=60)
@given(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=400),
       st.floats(0.5, 3.0))
def test_cold_chain_noise_at_the_limit_opens_once_per_real_excursion(noise, hysteresis):
    # Samples hover at the 5 °C limit with up to 1 °C of noise, a minute apart. An alert may
    # only clear on a reading inside the range by the hysteresis; if the hysteresis exceeds
    # the noise, nothing ever clears, so at most one alert is ever opened.
    e = engine(cold_chain={"minutes": 5, "hysteresis_c": hysteresis})
    out = []
    for m, n in enumerate(noise):
        out += e.handle(temp(5.0 + n), DAY0 + 60 * m)
        out += e.tick(DAY0 + 60 * m + 30)
    opens, clears = _pairs_ok(out, ("cold_chain", "fridge-1"))
    if hysteresis > 1.0:
        assert opens <= 1 and clears == 0


@settings(max_examples=60)
@given(st.lists(st.floats(-0.2, 0.2), min_size=1, max_size=200))
def test_shelf_camera_noise_within_the_band_never_flaps(noise):
    # Count 5/10 = 0.5; occupancy 0.95 +- 0.2 straddles the 0.3 margin (0.8) but never comes
    # within the 0.2 clear margin (0.7): at most one alert, never cleared.
    e = engine(shelf_camera={"margin": 0.3, "clear_margin": 0.2, "seconds": 30})
    e.handle(stock("A1", 0, 5, StockCause.INITIAL), DAY0)
    out = []
    for i, n in enumerate(noise):
        t = DAY0 + 10 * i
        out += e.handle(ShelfImage(**env(occupancy={"A1": 0.95 + n})), t)
        out += e.tick(t)
    opens, clears = _pairs_ok(out, ("shelf_camera", "A1"))
    assert opens <= 1 and clears == 0


@settings(max_examples=60)
@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_flapping_device_opens_at_most_once_per_cooldown(states):
    e = engine(device_offline={"seconds": 20, "cooldown_seconds": 600})
    out = []
    for i, online in enumerate(states):
        t = DAY0 + 15 * i
        out += e.handle(health("shelf-a", HealthState.ONLINE if online else HealthState.OFFLINE),
                        t)
        out += e.tick(t + 7)
    _pairs_ok(out, ("device_offline", "shelf-a"))
    times = [i for i, a in enumerate(out) if isinstance(a, OpenAlert)]
    assert len(times) <= 1 + (15 * len(states)) // 600


# A clean simulated day of normal events raises nothing.


def test_clean_simulated_day_raises_nothing():
    rng = random.Random(7)
    e = RuleEngine(load_rules(), MODEL)
    counts = {lane.id: lane.capacity for lane in MODEL.lanes}
    unit = {"A1": 350.0, "A2": 350.0, "B1": 120.0, "F1": 1050.0}
    device = {"A1": "shelf-a", "A2": "shelf-a", "B1": "shelf-b", "F1": "shelf-f"}
    out = []
    for lane, n in counts.items():
        out += e.handle(stock(lane, 0, n, StockCause.INITIAL), DAY0)
    for d in ("shelf-a", "shelf-b", "shelf-f", "fridge-1", "freezer-1", "kiosk-1", "cam-1"):
        out += e.handle(DeviceHealth(**env(device=d, state=HealthState.ONLINE)), DAY0)
    sales_due: list[tuple[float, str]] = []
    session = 0
    for step in range(0, 86_400, 10):
        now = DAY0 + step
        for lane, n in counts.items():
            grams = n * unit[lane] + rng.uniform(-0.4, 0.4)
            out += e.handle(ShelfWeight(**env(source=device[lane], lane=lane, grams=grams)), now)
        if step % 60 == 0:
            out += e.handle(Climate(**env(source="fridge-1",
                                          temperature=3 + rng.uniform(-0.2, 0.2))), now)
            out += e.handle(Climate(**env(source="freezer-1",
                                          temperature=-21 + rng.uniform(-0.2, 0.2))), now)
            occupancy = {lane: n / MODEL.lane[lane].capacity + rng.uniform(-0.1, 0.1)
                         for lane, n in counts.items()}
            out += e.handle(ShelfImage(**env(source="cam-1", occupancy=occupancy)), now)
        if rng.random() < 0.005:  # a shopper takes one item and pays a few minutes later
            lane = rng.choice(list(counts))
            counts[lane] -= 1
            out += e.handle(stock(lane, counts[lane] + 1, counts[lane]), now)
            sales_due.append((now + rng.uniform(60, 900), MODEL.lane[lane].sku))
            if counts[lane] <= 5:  # staff restock before the threshold
                out += e.handle(stock(lane, counts[lane], MODEL.lane[lane].capacity,
                                      StockCause.RESTOCK), now + 5)
                counts[lane] = MODEL.lane[lane].capacity
        for due, sku in [s for s in sales_due if s[0] <= now]:
            sales_due.remove((due, sku))
            out += e.handle(Sale(**env(sku=sku, qty=1, txn_id=f"t{step}")), now)
        if step % 1800 == 0:
            session += 1
            s = f"S{session}"
            for kind in (CheckoutKind.STARTED, CheckoutKind.ITEM_SCANNED, CheckoutKind.VOIDED,
                         CheckoutKind.PAID):
                out += e.handle(CheckoutEvent(**env(source="kiosk-1", kiosk="kiosk-1", session=s,
                                                    kind=kind)), now)
            out += e.handle(Scan(**env(source="scanner-1", code="x", gtin="09506000134352",
                                       expiry="2025-12-31", batch="L9")), now)
        out += e.tick(now)
    assert [(a.rule, a.subject, type(a).__name__) for a in out] == [], out
