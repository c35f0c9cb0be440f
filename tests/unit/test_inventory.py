"""Weight to units: settling, tolerance, drift, and noise that never becomes a count."""

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.trackers.inventory import LaneScale
from storeedge.events import StockCause

SETTLE, BAND, TOL = 1.0, 3.0, 0.25


def scale(unit: float = 350.0) -> LaneScale:
    return LaneScale("A1-1", "COLA-330", unit, capacity=24)


def feed(lane: LaneScale, grams: float, start: float, seconds: float, hz: float = 10.0):
    changes = []
    n = int(seconds * hz)
    for i in range(n + 1):
        change = lane.update(grams, start + i / hz, SETTLE, BAND, TOL)
        if change is not None:
            changes.append(change)
    return changes


def test_first_stable_weight_sets_the_count():
    lane = scale()
    [change] = feed(lane, 3500.4, 0.0, 1.5)
    assert (change.cause, change.after, lane.units) == (StockCause.INITIAL, 10, 10)


def test_a_pick_counts_only_once_the_weight_is_stable():
    lane = scale()
    feed(lane, 3500.0, 0.0, 1.5)
    assert lane.update(2800.0, 2.0, SETTLE, BAND, TOL) is None  # moving: not yet
    assert lane.update(2801.0, 2.5, SETTLE, BAND, TOL) is None
    change = lane.update(2800.5, 3.0, SETTLE, BAND, TOL)
    assert change is not None
    assert (change.before, change.after, change.cause) == (10, 8, StockCause.PICK)
    assert feed(lane, 2800.5, 3.1, 2.0) == []  # the same stable weight never counts twice


def test_restock_adds_units():
    lane = scale(118.0)
    feed(lane, 118.0 * 2, 0.0, 1.5)
    [change] = feed(lane, 118.0 * 8 + 1.2, 2.0, 1.5)
    assert (change.before, change.after, change.cause) == (2, 8, StockCause.RESTOCK)


def test_a_remainder_outside_tolerance_is_ambiguous_and_keeps_the_count():
    lane = scale(350.0)
    feed(lane, 3500.0, 0.0, 1.5)
    [change] = feed(lane, 3500.0 + 160.0, 2.0, 1.5)  # a foreign 160 g item
    assert change.cause is StockCause.AMBIGUOUS
    assert lane.units == 10
    [change] = feed(lane, 3500.0 + 160.0 - 350.0, 4.0, 1.5)  # a pick after it still counts
    assert (change.cause, lane.units) == (StockCause.PICK, 9)


def test_slow_drift_never_changes_the_count():
    lane = scale(75.0)
    feed(lane, 750.0, 0.0, 1.5)
    t, grams = 2.0, 750.0
    for _ in range(300):  # +0.2 g per second for five minutes: 60 g of drift
        grams += 0.2
        t += 1.0
        assert lane.update(grams, t, SETTLE, BAND, TOL) is None or lane.units == 10
    assert lane.units == 10


def test_zero_settling_counts_each_sample():
    lane = scale(100.0)
    assert lane.update(1000.0, 0.0, 0.0, BAND, TOL).after == 10
    assert lane.update(900.0, 0.01, 0.0, BAND, TOL).after == 9


def test_snapshot_restores_the_count_and_reference():
    lane = scale()
    feed(lane, 3500.0, 0.0, 1.5)
    other = scale()
    other.restore(lane.snapshot())
    [change] = feed(other, 3150.0, 10.0, 1.5)  # one unit left while the agent was down
    assert (change.before, change.after) == (10, 9)


@settings(max_examples=200, deadline=None)
@given(units=st.integers(0, 30), unit=st.floats(20, 1000),
       noise=st.lists(st.floats(-1.4, 1.4), min_size=30, max_size=200))
def test_noise_within_the_band_never_changes_a_count(units, unit, noise):
    lane = scale(unit)
    feed(lane, units * unit, 0.0, 1.5)
    t = 2.0
    for n in noise:
        t += 0.1
        change = lane.update(units * unit + n, t, SETTLE, BAND, TOL)
        assert change is None or change.after == units
    assert lane.units == units


def test_an_empty_lane_drifting_off_zero_is_retared_not_ambiguous():
    lane = scale(75.0)
    feed(lane, 0.0, 0.0, 1.5)
    assert lane.units == 0
    [change] = [c for c in (lane.update(11.0, 2.0 + i / 10, SETTLE, BAND, TOL, 15.0)
                            for i in range(15)) if c]
    assert (change.cause, change.after) == (StockCause.TARE, 0)
    [change] = feed(lane, 11.0 + 75.0 * 2, 4.0, 1.5)  # a restock counts from the new zero
    assert (change.cause, change.after) == (StockCause.RESTOCK, 2)
