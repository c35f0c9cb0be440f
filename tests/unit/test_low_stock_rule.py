"""Low stock: once per crossing, re-armed only by a restock above the threshold."""

from hypothesis import given
from hypothesis import strategies as st

from rules.actions import ClearAlert, OpenAlert
from rules.low_stock import low_stock


def step(active: bool, units: int, threshold: int = 3):
    return low_stock(active=active, lane="A1-1", sku="COLA-330", units=units,
                     threshold=threshold, capacity=10)


def test_fires_when_the_count_falls_to_the_threshold():
    action = step(False, 3)
    assert isinstance(action, OpenAlert)
    assert (action.rule, action.subject, action.sku) == ("low_stock", "A1-1", "COLA-330")
    assert action.detail["bring"] == 7


def test_does_not_fire_above_the_threshold_or_twice():
    assert step(False, 4) is None
    assert step(True, 2) is None
    assert step(True, 0) is None


def test_clears_only_after_a_restock_above_the_threshold():
    assert step(True, 3) is None
    assert isinstance(step(True, 4), ClearAlert)


@given(st.lists(st.integers(0, 10), min_size=1, max_size=200))
def test_alerts_never_exceed_crossings(counts):
    active, opened = False, 0
    crossings, above = 0, True
    for units in counts:
        action = step(active, units)
        if isinstance(action, OpenAlert):
            active, opened = True, opened + 1
        elif isinstance(action, ClearAlert):
            active = False
        if above and units <= 3:
            crossings += 1
        above = units > 3
    assert opened == crossings
