"""Weight to units: settling, tolerance, drift, noise that never becomes a count, and counts that
converge on the absolute weight."""

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import InventorySection
from rules.trackers.inventory import LaneScale, Settling
from storeedge.events import StockCause

DEFAULTS = InventorySection().settling
S = Settling(settle_seconds=1.0, band=3.0, tolerance=0.25)  # no re-tare, never reported
EVERY = Settling(settle_seconds=0.0, band=3.0, tolerance=0.25)


def scale(unit: float = 350.0) -> LaneScale:
    return LaneScale("A1-1", "COLA-330", unit, capacity=24)


def feed(lane: LaneScale, grams: float, start: float, seconds: float, hz: float = 10.0,
         s: Settling = S):
    changes = []
    n = int(seconds * hz)
    for i in range(n + 1):
        change = lane.update(grams, start + i / hz, s)
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
    assert lane.update(2800.0, 2.0, S) is None  # moving: not yet
    assert lane.update(2801.0, 2.5, S) is None
    change = lane.update(2800.5, 3.0, S)
    assert change is not None
    assert (change.before, change.after, change.cause) == (10, 8, StockCause.PICK)
    assert feed(lane, 2800.5, 3.1, 2.0) == []  # the same stable weight never counts twice


def test_restock_adds_units():
    lane = scale(118.0)
    feed(lane, 118.0 * 2, 0.0, 1.5)
    [change] = feed(lane, 118.0 * 8 + 1.2, 2.0, 1.5)
    assert (change.before, change.after, change.cause) == (2, 8, StockCause.RESTOCK)


def test_a_foreign_item_keeps_the_count_and_is_reported_only_when_it_stays():
    s = Settling(settle_seconds=1.0, band=3.0, tolerance=0.25, ambiguous_seconds=20.0)
    lane = scale(350.0)
    feed(lane, 3500.0, 0.0, 1.5, s=s)
    assert feed(lane, 3500.0 + 160.0, 2.0, 1.5, s=s) == []  # a foreign 160 g item
    assert (lane.units, lane.ambiguous) == (10, True)
    [change] = feed(lane, 3500.0 + 160.0 - 350.0, 4.0, 1.5, s=s)  # a pick beside it counts
    assert (change.cause, lane.units) == (StockCause.PICK, 9)
    [change] = feed(lane, 3500.0 + 160.0 - 350.0, 5.6, 20.0, s=s)  # still there 20 s on
    assert (change.cause, change.before, change.after) == (StockCause.AMBIGUOUS, 9, 9)
    assert feed(lane, 3500.0 + 160.0 - 350.0, 25.7, 20.0, s=s) == []  # reported once
    [change] = feed(lane, 3500.0 - 350.0, 46.0, 1.5, s=s)  # taken away
    assert (change.cause, change.before, change.after) == (StockCause.RECOUNT, 9, 9)
    assert not lane.ambiguous


def test_a_brief_ambiguity_is_resolved_by_the_next_whole_weight_without_a_report():
    s = Settling(settle_seconds=1.0, band=3.0, tolerance=0.25, ambiguous_seconds=20.0)
    lane = scale(100.0)
    feed(lane, 1000.0, 0.0, 1.5, s=s)
    assert feed(lane, 940.0, 2.0, 1.5, s=s) == []  # a hand resting on the shelf, lifting
    [change] = feed(lane, 800.0, 4.0, 1.5, s=s)
    assert (change.cause, change.before, change.after) == (StockCause.PICK, 10, 8)
    assert not lane.ambiguous


def test_a_missed_change_is_corrected_by_the_next_whole_weight():
    lane = scale(100.0)
    feed(lane, 1000.0, 0.0, 1.5)
    feed(lane, 1045.0, 2.0, 1.5)  # ambiguous: count kept at 10
    [change] = feed(lane, 700.0, 4.0, 1.5)  # the change (-345 g) is ambiguous; the weight is not
    assert (change.cause, change.before, change.after) == (StockCause.PICK, 10, 7)


def test_slow_drift_never_changes_the_count():
    lane = scale(75.0)
    feed(lane, 750.0, 0.0, 1.5)
    t, grams = 2.0, 750.0
    for _ in range(300):  # +0.2 g per second for five minutes: 60 g of drift, 0.8 of a unit
        grams += 0.2
        t += 1.0
        change = lane.update(grams, t, DEFAULTS)
        assert change is None or change.after == 10, change
    assert lane.units == 10
    [change] = feed(lane, grams - 75.0, t + 1, 1.5)  # and a pick still counts one
    assert (change.cause, change.after) == (StockCause.PICK, 9)


def test_zero_settling_counts_each_sample():
    lane = scale(100.0)
    assert lane.update(1000.0, 0.0, EVERY).after == 10
    assert lane.update(900.0, 0.01, EVERY).after == 9


def test_snapshot_restores_the_count_and_the_zero():
    lane = scale()
    feed(lane, 0.0, 0.0, 1.5, s=DEFAULTS)
    for i in range(300):  # the zero follows 150 g of drift, 0.43 of a unit
        lane.update(i * 0.5, 2.0 + i / 10, DEFAULTS)
    feed(lane, 3650.0, 70.0, 1.5, s=DEFAULTS)
    assert lane.units == 10
    other = scale()
    other.restore(lane.snapshot())
    # one unit left while the agent was down, and the zero moved 60 g more: the count comes
    # from the restored zero (neither the bare weight nor the change is a whole number)
    [change] = feed(other, 3360.0, 80.0, 1.5)
    assert (change.before, change.after) == (10, 9)


def test_a_reported_ambiguity_survives_a_restart_and_its_end_is_still_a_recount():
    s = Settling(settle_seconds=1.0, band=3.0, tolerance=0.25, ambiguous_seconds=5.0)
    lane = scale(100.0)
    feed(lane, 500.0, 0.0, 1.5, s=s)
    [change] = feed(lane, 550.0, 2.0, 6.0, s=s)
    assert change.cause is StockCause.AMBIGUOUS
    other = scale(100.0)
    other.restore(lane.snapshot())
    assert feed(other, 550.0, 9.0, 2.0, s=s) == []  # still the same finding, not a new one
    [change] = feed(other, 500.0, 12.0, 1.5, s=s)
    assert (change.cause, change.after) == (StockCause.RECOUNT, 5)


@settings(max_examples=200, deadline=None)
@given(units=st.integers(0, 30), unit=st.floats(20, 1000),
       noise=st.lists(st.floats(-1.4, 1.4), min_size=30, max_size=200))
def test_noise_within_the_band_never_changes_a_count(units, unit, noise):
    lane = scale(unit)
    feed(lane, units * unit, 0.0, 1.5, s=DEFAULTS)
    t = 2.0
    for n in noise:
        t += 0.1
        change = lane.update(units * unit + n, t, DEFAULTS)
        assert change is None or change.after == units
    assert lane.units == units


def test_an_empty_lane_drifting_off_zero_is_retared_not_ambiguous():
    lane = scale(30.0)
    feed(lane, 0.0, 0.0, 1.5, s=DEFAULTS)
    assert lane.units == 0
    [change] = feed(lane, 12.0, 2.0, 1.5, s=DEFAULTS)  # 0.4 of a unit: no whole number
    assert (change.cause, change.after) == (StockCause.TARE, 0)
    [change] = feed(lane, 12.0 + 30.0 * 2, 4.0, 1.5, s=DEFAULTS)  # counted from the new zero
    assert (change.cause, change.after) == (StockCause.RESTOCK, 2)


def test_a_single_noisy_sample_never_re_tares():
    lane = scale(30.0)
    assert lane.update(0.0, 0.0, Settling(0.0, 3.0, 0.25, retare_below=15.0)).after == 0
    assert lane.update(14.0, 0.1, Settling(0.0, 3.0, 0.25, retare_below=15.0)) is None
    assert lane.tare_grams == 0.0


counts = st.lists(st.integers(0, 24), min_size=1, max_size=40)
units_g = st.floats(20, 1000)


@settings(max_examples=150, deadline=None)
@given(steps=counts, unit=units_g, rng=st.randoms(use_true_random=False))
def test_noise_of_a_fifth_of_a_unit_per_sample_gives_exact_counts_when_every_sample_counts(
        steps, unit, rng):
    """Settling 0 (each sample is a stable weight), the rest as configured by default: every
    change the lane reports lands on the true count, whatever the change before it."""
    lane = scale(unit)
    s = Settling(0.0, DEFAULTS.band, DEFAULTS.tolerance, DEFAULTS.retare_below,
                 DEFAULTS.ambiguous_seconds)
    t = 0.0
    for true in steps:
        for _ in range(rng.randint(1, 3)):
            t += 0.05
            change = lane.update(true * unit + rng.uniform(-0.2, 0.2) * unit, t, s)
            assert change is None or change.after == true, (change, true)
            assert lane.units == true
    assert not lane.ambiguous


@settings(max_examples=100, deadline=None)
@given(steps=counts, unit=units_g, hz=st.sampled_from([2.0, 5.0, 10.0]),
       rng=st.randoms(use_true_random=False))
def test_noise_of_a_fifth_of_a_unit_per_sample_gives_exact_counts_with_the_defaults(
        steps, unit, hz, rng):
    """The default configuration, a lane sampled at ``hz`` and held at each count for a little
    more than the settling time: noise far wider than the settling band still settles, and every
    change lands on the true count."""
    lane = scale(unit)
    t = 0.0
    for true in steps:
        for _ in range(int((DEFAULTS.settle_seconds + 0.3) * hz) + 1):
            t += 1.0 / hz
            change = lane.update(true * unit + rng.uniform(-0.2, 0.2) * unit, t, DEFAULTS)
            assert change is None or change.after == true, (change, true)
        assert lane.units == true


@settings(max_examples=150, deadline=None)
@given(garbage=st.lists(st.floats(-500, 20_000), max_size=30), true=st.integers(0, 24),
       unit=units_g, rng=st.randoms(use_true_random=False))
def test_whatever_came_before_the_count_converges_on_the_next_whole_weight(
        garbage, true, unit, rng):
    lane = scale(unit)
    t = 0.0
    for grams in garbage:
        t += 0.2
        lane.update(grams, t, DEFAULTS)
    for _ in range(10):
        t += 0.2
        lane.update(lane.tare_grams + true * unit + rng.uniform(-0.2, 0.2) * unit, t, DEFAULTS)
    assert lane.units == true
    assert not lane.ambiguous


def test_a_new_unit_weight_waits_until_the_stocked_lane_is_empty():
    lane = scale(350.0)
    feed(lane, 3500.0, 0.0, 1.5)
    assert lane.set_unit(330.0)  # the ERP's new packaging: the 10 on the shelf are the old
    assert feed(lane, 3500.0, 2.0, 1.5) == []  # still 10, not 10.6 of the new
    [pick] = feed(lane, 1050.0, 4.0, 1.5)
    assert (pick.before, pick.after) == (10, 3) and lane.unit_grams == 350.0
    [empty] = feed(lane, 0.0, 6.0, 1.5)
    assert empty.after == 0 and lane.emptied() == 330.0
    [restock] = feed(lane, 330.0 * 6, 8.0, 1.5)
    assert (restock.before, restock.after) == (0, 6)  # counted at the new weight


def test_an_empty_lane_takes_a_new_unit_weight_at_once_and_a_restart_keeps_the_wait():
    empty = scale(350.0)
    feed(empty, 0.0, 0.0, 1.5)
    assert not empty.set_unit(330.0) and empty.unit_grams == 330.0

    stocked = scale(350.0)
    feed(stocked, 3500.0, 0.0, 1.5)
    after_restart = scale(330.0)  # the catalog already says 330 g when the agent starts
    after_restart.restore(stocked.snapshot())
    assert (after_restart.unit_grams, after_restart.pending_unit_grams) == (350.0, 330.0)
    assert feed(after_restart, 3500.0, 2.0, 1.5) == []
