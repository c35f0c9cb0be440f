"""Fault injection: each fault does what it says, and bad fault specs name the device and key."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from firmware_sim.faults import (
    ByteFilter,
    Faults,
    FaultyPublisher,
    ScenarioClock,
    ValueFilter,
    merge_fault_specs,
    parse_fault_spec,
    parse_faults,
    plug_schedule,
)
from storeedge.errors import ConfigError


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_faults_change_nothing() -> None:
    values = ValueFilter(Faults(), FakeTime())
    assert [values.apply("A1", g) for g in (0.0, 350.0, -2.5)] == [0.0, 350.0, -2.5]
    assert ByteFilter(Faults()).apply(b"\x01\x04\x02") == b"\x01\x04\x02"
    assert not Faults().any and Faults(noise=0.1).any


def test_noise_has_the_asked_spread() -> None:
    absolute = ValueFilter(Faults(noise_grams=2.0), FakeTime(), random.Random(1))
    samples = [absolute.apply("A1", 1000.0) for _ in range(4000)]
    assert statistics.fmean(samples) == pytest.approx(1000.0, abs=0.2)
    assert statistics.stdev(samples) == pytest.approx(2.0, rel=0.05)

    relative = ValueFilter(Faults(noise=0.01), FakeTime(), random.Random(1))
    samples = [relative.apply("A1", 500.0) for _ in range(4000)]
    assert statistics.stdev(samples) == pytest.approx(5.0, rel=0.05)


def test_drift_grows_with_scenario_time() -> None:
    t = FakeTime()
    values = ValueFilter(Faults(drift_per_s=0.5), t)
    assert values.apply("A1", 100.0) == 100.0
    t.now = 10.0
    assert values.apply("A1", 100.0) == 105.0
    t.now = 60.0
    assert values.apply("A2", 0.0) == 30.0


def test_stuck_repeats_the_last_value_per_channel() -> None:
    t = FakeTime()
    values = ValueFilter(Faults(stuck_at=5.0), t)
    assert values.apply("A1", 100.0) == 100.0
    assert values.apply("A2", 7.0) == 7.0
    t.now = 5.0
    assert values.apply("A1", 250.0) == 100.0
    assert values.apply("A2", 0.0) == 7.0
    assert values.apply("A3", 3.0) == 3.0  # never reported: nothing to repeat yet
    assert values.apply("A3", 9.0) == 3.0

    always = ValueFilter(Faults(stuck=True), t)
    assert [always.apply("x", v) for v in (1.0, 2.0, 3.0)] == [1.0, 1.0, 1.0]


def test_corrupt_flips_one_byte_at_the_rate() -> None:
    frame = bytes(range(16))
    always = ByteFilter(Faults(corrupt_rate=1.0), random.Random(3))
    out = always.apply(frame)
    diff = [i for i in range(16) if out[i] != frame[i]]
    assert len(out) == 16 and len(diff) == 1 and out[diff[0]] == frame[diff[0]] ^ 0xFF

    some = ByteFilter(Faults(corrupt_rate=0.2), random.Random(3))
    bad = sum(some.apply(frame) != frame for _ in range(5000))
    assert bad == some.corrupted
    assert 0.17 < bad / 5000 < 0.23
    assert ByteFilter(Faults()).apply(frame, force=True) != frame


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> str:
        self.sent.append((topic, payload, qos, retain))
        return "rc"


def test_duplicates_send_twice() -> None:
    wire = Wire()
    pub = FaultyPublisher(wire, Faults(duplicate_rate=1.0))
    assert pub("t", b"1", 1) == "rc"
    assert wire.sent == [("t", b"1", 1, False), ("t", b"1", 1, False)]
    assert pub.duplicated == 1


def test_reorder_holds_one_back_until_after_the_next() -> None:
    wire = Wire()
    pub = FaultyPublisher(wire, Faults(reorder_rate=1.0))
    assert pub("t", b"1") is None  # held
    pub("t", b"2")
    assert [p for _, p, _, _ in wire.sent] == [b"2", b"1"]
    pub("t", b"3")  # held again
    pub.flush()
    assert [p for _, p, _, _ in wire.sent] == [b"2", b"1", b"3"]
    assert pub.reordered == 2

    mixed = Wire()
    pub = FaultyPublisher(mixed, Faults(reorder_rate=0.3), random.Random(5))
    for i in range(200):
        pub("t", str(i).encode())
    pub.flush()
    got = [int(p) for _, p, _, _ in mixed.sent]
    assert sorted(got) == list(range(200)) and got != list(range(200))


def test_retained_status_passes_untouched() -> None:
    wire = Wire()
    pub = FaultyPublisher(wire, Faults(duplicate_rate=1.0, reorder_rate=1.0))
    pub("s", b"online", 1, True)
    assert wire.sent == [("s", b"online", 1, True)]


def test_clock_skew() -> None:
    assert Faults(clock_skew_s=-90.0).device_clock(lambda: 1000.0)() == 910.0
    base = FakeTime()
    assert Faults().device_clock(base) is base


class Plug:
    device_id = "shelf-a2"

    def __init__(self, t: ScenarioClock) -> None:
        self.t = t
        self.log: list[tuple[str, float]] = []

    def unplug(self) -> None:
        self.log.append(("unplug", self.t()))

    def replug(self) -> None:
        self.log.append(("replug", self.t()))


async def test_plug_schedule_unplugs_and_replugs_on_time() -> None:
    clock = ScenarioClock()
    plug = Plug(clock)
    seen: list[tuple[str, str]] = []
    await asyncio.wait_for(
        plug_schedule(plug, Faults(unplug_at=0.1, replug_at=0.3), clock,
                      lambda d, what, at: seen.append((d, what))), 5)
    assert [what for what, _ in plug.log] == ["unplug", "replug"]
    assert plug.log[0][1] == pytest.approx(0.1, abs=0.05)
    assert plug.log[1][1] == pytest.approx(0.3, abs=0.05)
    assert seen == [("shelf-a2", "unplugged"), ("shelf-a2", "replugged")]

    idle = Plug(clock)
    await asyncio.wait_for(plug_schedule(idle, Faults(), clock), 1)
    assert idle.log == []


def test_parse_from_scenario_mapping() -> None:
    f = parse_faults("shelf-b1", {"duplicate_rate": 0.1, "clock_skew_s": -30, "stuck": True})
    assert f == Faults(duplicate_rate=0.1, clock_skew_s=-30.0, stuck=True)


def test_parse_command_line_spec() -> None:
    assert parse_fault_spec("shelf-a1:unplug_at=20,replug_at=35") == (
        "shelf-a1", Faults(unplug_at=20.0, replug_at=35.0))
    assert parse_fault_spec("fridge-1:stuck") == ("fridge-1", Faults(stuck=True))


def test_command_line_overrides_scenario_key_by_key() -> None:
    base = {"shelf-a1": Faults(noise_grams=2.0, corrupt_rate=0.1)}
    merged = merge_fault_specs(base, ["shelf-a1:corrupt_rate=0", "shelf-b1:reorder_rate=0.5"])
    assert merged == {"shelf-a1": Faults(noise_grams=2.0),
                      "shelf-b1": Faults(reorder_rate=0.5)}


@pytest.mark.parametrize(("spec", "key", "words"), [
    ("shelf-a1:flood=1", "faults.shelf-a1.flood", "unknown fault"),
    ("shelf-a1:duplicate_rate=1.5", "faults.shelf-a1.duplicate_rate", "probability"),
    ("shelf-a1:noise_grams=-1", "faults.shelf-a1.noise_grams", "negative"),
    ("shelf-a1:drift_per_s=fast", "faults.shelf-a1.drift_per_s", "not a number"),
    ("shelf-a1:stuck=maybe", "faults.shelf-a1.stuck", "true or false"),
    ("shelf-a1:replug_at=5", "faults.shelf-a1.replug_at", "needs unplug_at"),
    ("shelf-a1:unplug_at=20,replug_at=10", "faults.shelf-a1.replug_at", "after unplug_at"),
    ("shelf-a1:", "faults.shelf-a1", "no KEY=VALUE"),
    ("unplug_at=20", "unplug_at=20", "DEVICE:KEY=VALUE"),
])
def test_bad_specs_name_device_and_key(spec: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_fault_spec(spec)
    assert err.value.key == key and words in err.value.problem
    assert err.value.file == "--fault"


def test_nan_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"faults\.cam-1\.noise: not a finite number"):
        parse_faults("cam-1", {"noise": float("nan")}, file="full.yaml")
