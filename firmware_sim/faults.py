"""Fault injection for the simulated devices: what real hardware does to an agent.

A ``Faults`` value says how one device misbehaves; the helpers below apply it:

- ``ValueFilter``: noise (absolute grams or a fraction of the value), drift, a stuck sensor.
- ``ByteFilter``: flipped bytes in serial output (a frame fails its checksum).
- ``FaultyPublisher``: duplicated and reordered MQTT messages.
- ``Faults.device_clock``: a device clock skewed by ``clock_skew_s``.
- ``plug_schedule``: pulls a device's plug at ``unplug_at`` and puts it back at ``replug_at``.

Times (``unplug_at``, ``replug_at``, ``stuck_at``, the drift's start) are seconds into the
scenario, measured by a ``ScenarioClock`` the store starts once and hands every device.

Faults come from a scenario file (``faults: {device_id: {key: value}}``) or the command line
(``--fault shelf-a1:unplug_at=20,replug_at=35``); a wrong key or value raises ConfigError naming
the device and the key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from storeedge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Faults:
    """How one simulated device misbehaves. The default misbehaves in no way."""

    noise_grams: float = 0.0  # gaussian standard deviation added to every value
    noise: float = 0.0  # gaussian standard deviation as a fraction of the value
    drift_per_s: float = 0.0  # added to every value per second of scenario time
    stuck: bool = False  # repeat the last value for good (from stuck_at, else from the start)
    stuck_at: float | None = None
    corrupt_rate: float = 0.0  # chance that a serial frame or line goes out with a byte flipped
    unplug_at: float | None = None  # physical ports: the adapter is pulled out...
    replug_at: float | None = None  # ...and plugged back in
    duplicate_rate: float = 0.0  # chance that an MQTT message is sent twice
    reorder_rate: float = 0.0  # chance that an MQTT message is held back and sent after the next
    clock_skew_s: float = 0.0  # the device's clock runs this far ahead (negative: behind)

    @property
    def any(self) -> bool:
        return self != Faults()

    def device_clock(self, clock: Callable[[], float] = time.time) -> Callable[[], float]:
        """The device's idea of the time: ``clock`` plus the skew."""
        if not self.clock_skew_s:
            return clock
        skew = self.clock_skew_s
        return lambda: clock() + skew

    def is_stuck(self, elapsed: float) -> bool:
        if self.stuck_at is not None:
            return elapsed >= self.stuck_at
        return self.stuck


_RATES = ("corrupt_rate", "duplicate_rate", "reorder_rate")
_NON_NEGATIVE = ("noise_grams", "noise", "stuck_at", "unplug_at", "replug_at")
_FIELDS = {f.name: f for f in fields(Faults)}


def parse_faults(device_id: str, raw: Mapping[str, Any], *, file: str = "<faults>") -> Faults:
    """A ``Faults`` from ``{key: value}``; ConfigError naming ``faults.<device>.<key>``."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"faults.{device_id}.{key}"
        if key not in _FIELDS:
            raise ConfigError(file, where, f"unknown fault; known: {', '.join(_FIELDS)}")
        if key == "stuck":
            values[key] = _boolean(file, where, value)
            continue
        number = _number(file, where, value)
        if key in _RATES and not 0.0 <= number <= 1.0:
            raise ConfigError(file, where, f"must be a probability in 0..1, got {value!r}")
        if key in _NON_NEGATIVE and number < 0:
            raise ConfigError(file, where, f"must not be negative, got {value!r}")
        values[key] = number
    faults = Faults(**values)
    if faults.replug_at is not None:
        if faults.unplug_at is None:
            raise ConfigError(file, f"faults.{device_id}.replug_at", "needs unplug_at")
        if faults.replug_at <= faults.unplug_at:
            raise ConfigError(file, f"faults.{device_id}.replug_at",
                              f"must come after unplug_at ({faults.unplug_at:g}), "
                              f"got {faults.replug_at:g}")
    return faults


def _number(file: str, where: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(file, where, f"not a number: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(file, where, f"not a finite number: {value!r}")
    return float(value)


def _boolean(file: str, where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no",
                                                    "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise ConfigError(file, where, f"not true or false: {value!r}")


def parse_fault_spec(spec: str) -> tuple[str, Faults]:
    """One ``--fault`` option: ``device:key=value,key=value`` -> (device, Faults)."""
    device_id, raw = _split_spec(spec)
    return device_id, parse_faults(device_id, raw, file="--fault")


def merge_fault_specs(base: Mapping[str, Faults], specs: Iterable[str]) -> dict[str, Faults]:
    """The scenario's faults with ``--fault`` options laid over them, key by key."""
    merged = dict(base)
    for spec in specs:
        device_id, raw = _split_spec(spec)
        parse_faults(device_id, raw, file="--fault")  # errors name the option, not the merge
        old = merged.get(device_id, Faults())
        keep = {f: getattr(old, f) for f in _FIELDS if getattr(old, f) is not None}
        merged[device_id] = parse_faults(device_id, {**keep, **raw}, file="--fault")
    return merged


def _split_spec(spec: str) -> tuple[str, dict[str, str]]:
    device_id, sep, body = spec.partition(":")
    device_id = device_id.strip()
    if not sep or not device_id:
        raise ConfigError("--fault", spec, "expected DEVICE:KEY=VALUE[,KEY=VALUE...]")
    raw: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, value = item.partition("=")
        raw[key.strip()] = value.strip() if eq else "true"  # a bare flag: ``shelf-a1:stuck``
    if not raw:
        raise ConfigError("--fault", f"faults.{device_id}", "no KEY=VALUE given")
    return device_id, raw


class ScenarioClock:
    """Seconds since the scenario started (monotonic); every device of a store shares one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()

    def __call__(self) -> float:
        return self._clock() - self.started


class ValueFilter:
    """Applies noise, drift and sticking to a device's readings, per channel (lane, sensor).

    Thread-safe: simulators read values on their own threads.
    """

    def __init__(self, faults: Faults, elapsed: Callable[[], float],
                 rng: random.Random | None = None) -> None:
        self.faults = faults
        self._elapsed = elapsed
        self._rng = rng or random.Random()
        self._last: dict[object, float] = {}
        self._lock = threading.Lock()

    def apply(self, channel: object, value: float) -> float:
        """What the device reports on ``channel`` when the truth is ``value``."""
        f = self.faults
        now = self._elapsed()
        with self._lock:
            if f.is_stuck(now) and channel in self._last:
                return self._last[channel]
            out = value + f.drift_per_s * now
            if f.noise_grams:
                out += self._rng.gauss(0.0, f.noise_grams)
            if f.noise:
                out += self._rng.gauss(0.0, f.noise * abs(value))
            self._last[channel] = out
            return out


class ByteFilter:
    """Flips one byte of a serial frame (or line) with probability ``corrupt_rate``."""

    def __init__(self, faults: Faults, rng: random.Random | None = None) -> None:
        self.rate = faults.corrupt_rate
        self.corrupted = 0
        self._rng = rng or random.Random()

    def apply(self, data: bytes, *, force: bool = False) -> bytes:
        """``data`` as it goes out on the wire; ``force`` corrupts it whatever the rate."""
        if not data or not (force or (self.rate and self._rng.random() < self.rate)):
            return data
        at = self._rng.randrange(len(data))
        self.corrupted += 1
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


class Publish(Protocol):
    def __call__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any: ...


class FaultyPublisher:
    """Wraps an MQTT publish function with duplicates and reordering.

    A reordered message is held back and goes out right after the next one; ``flush()`` sends a
    message still held (call it before stopping). Retained messages (status) pass untouched:
    they are state, and brokers keep only the last one anyway. Returns what the last underlying
    call returned, so callers keep checking paho's result codes.
    """

    def __init__(self, publish: Publish, faults: Faults,
                 rng: random.Random | None = None) -> None:
        self._publish = publish
        self.faults = faults
        self.duplicated = 0
        self.reordered = 0
        self._rng = rng or random.Random()
        self._held: tuple[str, bytes, int] | None = None
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
        if retain:
            return self._publish(topic, payload, qos, retain)
        f = self.faults
        with self._lock:
            if self._held is None and f.reorder_rate and self._rng.random() < f.reorder_rate:
                self._held = (topic, payload, qos)
                self.reordered += 1
                return None
            held, self._held = self._held, None
            times = 2 if f.duplicate_rate and self._rng.random() < f.duplicate_rate else 1
            self.duplicated += times - 1
            # Under the lock, so a held message cannot overtake its successor on another thread.
            result = None
            for _ in range(times):
                result = self._publish(topic, payload, qos, False)
            if held is not None:
                self._publish(held[0], held[1], held[2], False)
            return result

    def flush(self) -> None:
        """Send a held-back message now."""
        with self._lock:
            held, self._held = self._held, None
            if held is not None:
                self._publish(held[0], held[1], held[2], False)


class Pluggable(Protocol):
    device_id: str

    def unplug(self) -> None: ...

    def replug(self) -> None: ...


async def plug_schedule(device: Pluggable, faults: Faults, elapsed: Callable[[], float],
                        on_change: Callable[[str, str, float], None] | None = None) -> None:
    """Pull ``device``'s plug at ``faults.unplug_at`` and put it back at ``faults.replug_at``.

    ``on_change(device_id, "unplugged" | "replugged", elapsed)`` records what happened when.
    Returns when done (at once when the faults plan no unplug); cancel to abandon.
    """
    steps = [(faults.unplug_at, device.unplug, "unplugged"),
             (faults.replug_at, device.replug, "replugged")]
    for at, action, what in steps:
        if at is None:
            return
        await asyncio.sleep(max(0.0, at - elapsed()))
        # unplug/replug join threads and close ptys: keep them off the event loop.
        await asyncio.to_thread(action)
        now = elapsed()
        log.info("fault: %s %s at %.1f s", device.device_id, what, now)
        if on_change is not None:
            on_change(device.device_id, what, now)
