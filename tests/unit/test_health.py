"""Device health from last will, silence and error rate, with an injected clock."""

from rules.trackers.health import HealthTracker
from storeedge.events import HealthState


def tracker() -> HealthTracker:
    return HealthTracker("s1", {"shelf-1": "shelf_mqtt", "scan-1": "scanner"})


def test_first_message_brings_a_device_online_once():
    t = tracker()
    change = t.seen("shelf-1", 100.0)
    assert change is not None and change.state is HealthState.ONLINE
    assert t.seen("shelf-1", 101.0) is None


def test_last_will_takes_it_offline_and_a_reading_brings_it_back():
    t = tracker()
    t.seen("shelf-1", 100.0)
    change = t.reported("shelf-1", False, None, 101.0)
    assert change.state is HealthState.OFFLINE and "reported offline" in change.reason
    assert t.seen("shelf-1", 102.0) is None  # still offline by its own word
    assert t.reported("shelf-1", True, None, 103.0).state is HealthState.ONLINE


def test_silence_beyond_the_kind_limit_is_offline_but_not_for_scanners():
    t = tracker()
    t.seen("shelf-1", 100.0)
    t.seen("scan-1", 100.0)
    assert t.tick(125.0) == []
    [change] = t.tick(131.0)
    assert (change.device, change.state) == ("shelf-1", HealthState.OFFLINE)
    assert "silent" in change.reason
    assert t.tick(10_000.0) == []  # a scanner nobody uses is not broken
    assert t.seen("shelf-1", 10_001.0).state is HealthState.ONLINE


def test_a_high_error_rate_is_degraded_then_recovers():
    t = tracker()
    for i in range(20):
        t.seen("shelf-1", 100.0 + i * 0.1, good=i % 2 == 0)
    assert t.view()["shelf-1"]["state"] == "degraded"
    for i in range(200):
        t.seen("shelf-1", 103.0 + i * 0.5)
    t.tick(170.0)
    assert t.view()["shelf-1"]["state"] == "online"
    assert [h["state"] for h in t.view()["shelf-1"]["history"]] == ["online", "degraded", "online"]
