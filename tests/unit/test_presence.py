"""Tag presence with an injected clock: arrive, hold against noise, move, depart, clock drift."""

from __future__ import annotations

import json
import random

import pytest

from rules.trackers.presence import PresenceParams, PresenceTracker
from storeedge.errors import UsageError
from storeedge.events import TagPresence, TagRead

EPC = "3074257BF7194E4000001A85"
SKUS = {EPC: "SKU-1"}
PARAMS = PresenceParams(window=20, rssi_offset_db=6.0, offset_decay_s=60.0,
                        departed_after_s=300.0, min_reads_to_move=2)


def read(t: float, rssi: float | None, *, source: str = "r1", device_ts: float | None = None,
         epc: str = EPC) -> TagRead:
    return TagRead(store_id="s1", source=source, received_ts=t, device_ts=device_ts, epc=epc,
                   rssi=rssi)


def tracker(params: PresenceParams = PARAMS) -> PresenceTracker:
    return PresenceTracker(params, SKUS.get)


def changes(events: list[TagPresence]) -> list[tuple[str, str, str | None]]:
    return [(e.change, e.location, e.previous) for e in events]


def test_first_read_arrives_once() -> None:
    tr = tracker()
    [event] = tr.observe(read(100.0, -50), "A1")
    assert (event.change, event.location, event.sku, event.epc) == ("arrived", "A1", "SKU-1", EPC)
    assert (event.store_id, event.source, event.received_ts) == ("s1", "r1", 100.0)
    assert tr.observe(read(100.1, -50), "A1") == []
    assert tr.present() == {EPC: "A1"}


def test_unknown_sku_still_arrives() -> None:
    [event] = tracker().observe(read(1.0, -50, epc="E2801160600002084F5DAB5A"), "A1")
    assert event.sku is None


def test_noise_at_a_border_does_not_flap() -> None:
    tr = tracker()
    rng = random.Random(7)
    out = tr.observe(read(0.0, -55), "A1")
    for i in range(1, 2000):  # both antennas see the tag about equally, with 4 dB of noise
        t = i * 0.05
        out += tr.observe(read(t, -55 + rng.gauss(0, 4)), "A1" if i % 2 else "A2")
    assert changes(out) == [("arrived", "A1", None)]


def test_moves_when_another_location_clearly_wins() -> None:
    tr = tracker()
    tr.observe(read(0.0, -60), "A1")
    tr.observe(read(0.1, -60), "A1")
    # One strong read at A2 is not enough; the second one is (mean -45 beats -60 + 6).
    assert tr.observe(read(0.2, -45), "A2") == []
    [event] = tr.observe(read(0.3, -45), "A2")
    assert changes([event]) == [("moved", "A2", "A1")]
    assert tr.present() == {EPC: "A2"}


def test_slightly_better_location_does_not_win_while_current_reads() -> None:
    tr = tracker()
    out = []
    for i in range(40):
        t = i * 0.5
        out += tr.observe(read(t, -55), "A1")
        out += tr.observe(read(t + 0.1, -52), "A2")  # 3 dB better: under the 6 dB offset
    assert changes(out) == [("arrived", "A1", None)]


def test_offset_shrinks_as_the_current_location_goes_quiet() -> None:
    tr = tracker()
    tr.observe(read(0.0, -55), "A1")
    # A2 reads 3 dB better; the offset is 6 dB * (1 - quiet / 60 s).
    assert tr.observe(read(20.0, -52), "A2") == []  # a single read never moves
    assert tr.observe(read(25.0, -52), "A2") == []  # offset 3.5 dB: not beaten
    [event] = tr.observe(read(35.0, -52), "A2")  # offset 2.5 dB: beaten
    assert changes([event]) == [("moved", "A2", "A1")]


def test_stale_location_loses_to_a_weaker_one() -> None:
    tr = tracker()
    tr.observe(read(0.0, -40), "A1")
    tr.observe(read(61.0, -70), "A2")
    [event] = tr.observe(read(62.0, -70), "A2")
    assert event.change == "moved"


def test_departs_after_timeout_and_arrives_again() -> None:
    tr = tracker()
    tr.observe(read(0.0, -50), "A1")
    tr.observe(read(100.0, -50), "A1")
    assert tr.tick(399.9) == []
    [event] = tr.tick(400.1)
    assert (event.change, event.location, event.sku, event.received_ts) == ("departed", "A1",
                                                                             "SKU-1", 400.1)
    assert tr.present() == {} and tr.tick(1000.0) == []
    [again] = tr.observe(read(500.0, -50), "B7")
    assert (again.change, again.location) == ("arrived", "B7")


def test_skewed_reader_clock_is_corrected() -> None:
    # The reader's clock is an hour behind; reads arrive 20-80 ms after they happen.
    tr = tracker()
    skew = -3600.0
    rng = random.Random(3)
    for i in range(200):
        t = 1000.0 + i * 0.1
        tr.observe(read(t + rng.uniform(0.02, 0.08), -50, device_ts=t + skew), "A1")
    assert tr.reader_offset("r1") == pytest.approx(3600.02, abs=0.01)
    # Uncorrected, every read would be an hour old and the tag would depart at once.
    assert tr.tick(1100.0) == []
    assert len(tr.tick(1020.0 + 300.1)) == 1


def test_backlog_after_an_outage_keeps_its_read_times() -> None:
    tr = tracker()
    for i in range(10):
        tr.observe(read(100.0 + i + 0.05, -50, device_ts=100.0 + i), "A1")
    # The reader was cut off from 110 s to 500 s; at 500 s it flushes reads made at 110..119 s.
    for i in range(10):
        tr.observe(read(500.0, -50, device_ts=110.0 + i), "A1")
    # The estimate may have risen by max_drift (1 ms/s) over the 390 s gap, no more.
    assert tr.reader_offset("r1") == pytest.approx(0.05, abs=0.4)
    # The tag was last seen at ~119 s, not at 500 s: it departs 300 s after that.
    assert len(tr.tick(420.0)) == 1


def test_stepped_reader_clock_is_adopted() -> None:
    tr = tracker(PresenceParams(departed_after_s=300.0, clock_step_s=30.0))
    for i in range(50):
        tr.observe(read(float(i), -50, device_ts=float(i)), "A1")
    # NTP sets the reader's clock back by 500 s and it stays there.
    for i in range(50, 120):
        tr.observe(read(float(i), -50, device_ts=i - 500.0), "A1")
    assert tr.reader_offset("r1") == pytest.approx(500.0)


def test_snapshot_restores_state() -> None:
    tr = tracker()
    tr.observe(read(0.0, -60, device_ts=-1.0), "A1")
    tr.observe(read(0.1, -45), "A2")
    data = json.loads(json.dumps(tr.snapshot()))
    again = tracker()
    again.restore(data)
    assert again.present() == {EPC: "A1"}
    assert again.reader_offset("r1") == pytest.approx(1.0)
    # The restored window holds A2's first read: one more strong read moves the tag.
    assert changes(again.observe(read(0.2, -45), "A2")) == [("moved", "A2", "A1")]
    with pytest.raises(UsageError):
        again.restore({"version": 1, "tags": {"x": {}}, "clocks": {}})
    assert again.present() == {EPC: "A2"}  # a bad snapshot changes nothing


def test_params_are_checked() -> None:
    with pytest.raises(UsageError):
        PresenceParams(window=2, min_reads_to_move=3)
    with pytest.raises(UsageError):
        PresenceParams(departed_after_s=0)


def test_missing_rssi_counts_as_weak() -> None:
    tr = tracker()
    tr.observe(read(0.0, -50), "A1")
    assert tr.observe(read(0.1, None), "A2") == []
    assert tr.observe(read(0.2, None), "A2") == []
