"""A fridge/freezer sensor as Zigbee2MQTT publishes it, encoded with our codec.

``FridgeProfile`` is the physics, a pure function of time: the setpoint plus gaussian noise, a
door-open excursion (the air warms toward ambient while the door is open and recovers after it
closes) and a refrigeration failure (a steady drift upward). ``FridgeSim`` publishes the profile
on ``{base_topic}/{name}`` every ``interval_seconds`` and announces availability (retained) on
``{base_topic}/{name}/availability`` as Zigbee2MQTT does. A ``firmware_sim.faults.Faults`` adds
noise, drift and a stuck sensor to temperature and humidity, duplicates and reorders state
messages and skews the ``last_seen`` clock. ``quirks`` makes one side field of each message wrong
the way devices and older Zigbee2MQTT versions get it wrong (``QUIRKS``, in turn).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.zigbee2mqtt.protocol import encode_availability, encode_state
from firmware_sim.faults import Faults, ScenarioClock, ValueFilter
from firmware_sim.login import NO_LOGIN, BrokerLogin
from firmware_sim.paho_link import PahoLink
from storeedge.errors import UsageError
from storeedge.units import s_to_ms

# A side field as it arrives mistyped or absurd: (field, what it becomes given the right value).
QUIRKS: tuple[tuple[str, Callable[[float], object]], ...] = (
    ("battery", str),  # a number sent as a string
    ("linkquality", lambda lqi: lqi + 200),  # an LQI past 255
    ("humidity", lambda rh: rh + 60.0),  # a relative humidity past 100 %
    ("voltage", lambda mv: mv / 1000.0),  # volts where the device page says millivolts
)


@dataclass
class FridgeProfile:
    """Air temperature over time (epoch seconds in, degrees C out, noise excluded)."""

    setpoint: float = 4.0
    ambient: float = 22.0
    open_tau: float = 300.0  # seconds for the open-door air to close 63% of the gap to ambient
    recover_tau: float = 600.0  # seconds to recover 63% of an excursion after closing
    doors: list[tuple[float, float]] = field(default_factory=list)  # (opened at, closed at)
    failure_at: float | None = None
    failure_per_hour: float = 0.0

    def open_door(self, at: float, seconds: float) -> None:
        """The door is open from ``at`` for ``seconds``."""
        if seconds <= 0:
            raise UsageError(f"a door stays open a positive time, got {seconds}")
        self.doors.append((at, at + seconds))

    def fail(self, at: float, per_hour: float) -> None:
        """Refrigeration fails at ``at``: the temperature drifts ``per_hour`` degrees an hour."""
        self.failure_at, self.failure_per_hour = at, per_hour

    def temperature(self, t: float) -> float:
        excursion = 0.0
        for opened, closed in self.doors:
            if t < opened:
                continue
            gap = self.ambient - self.setpoint
            peak = gap * (1.0 - math.exp(-(min(t, closed) - opened) / self.open_tau))
            if t > closed:
                peak *= math.exp(-(t - closed) / self.recover_tau)
            excursion = max(excursion, peak)
        drift = 0.0
        if self.failure_at is not None and t > self.failure_at:
            drift = self.failure_per_hour * (t - self.failure_at) / 3600.0
        return self.setpoint + excursion + drift


class FridgeSim:
    """One Zigbee temperature/humidity sensor in a fridge, published through a broker at
    ``host:port`` as Zigbee2MQTT would (``name`` is its friendly name)."""

    def __init__(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        base_topic: str = "zigbee2mqtt",
        profile: FridgeProfile | None = None,
        humidity: float = 60.0,
        battery: float = 90.0,
        battery_drain_per_day: float = 0.05,
        linkquality: int = 120,
        noise: float = 0.0,
        interval_seconds: float = 60.0,
        last_seen: bool = False,
        legacy_availability: bool = False,
        quirks: bool = False,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        elapsed: Callable[[], float] | None = None,
        login: BrokerLogin = NO_LOGIN,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.profile = profile or FridgeProfile()
        self.humidity = humidity
        self.battery = battery
        self.battery_drain_per_day = battery_drain_per_day
        self.linkquality = linkquality
        self.noise = noise
        self.interval_seconds = interval_seconds
        self.last_seen = last_seen
        self.faults = faults or Faults()
        self.legacy_availability = legacy_availability
        self.quirks = quirks
        self._samples = 0
        self.state_topic = f"{base_topic}/{name}"
        self.availability_topic = f"{self.state_topic}/availability"
        self._clock = clock
        self._device_clock = self.faults.device_clock(clock)
        self._started_at = clock()
        self._random = random.Random(seed)
        self._values = ValueFilter(self.faults, elapsed or ScenarioClock(), self._random)
        self._lock = threading.Lock()
        self._next_at = 0.0  # time.monotonic() of the next interval publish
        self._link = PahoLink(
            f"fridge-sim-{name.replace('/', '-')}", name=f"fridge sim {name}",
            thread_name=f"fridge-{name}", faults=self.faults, rng=self._random, login=login,
            on_loop=self._on_loop,
        )

    @property
    def published(self) -> int:
        """State and availability messages paho has taken to send."""
        return self._link.published

    def sample(self) -> bytes:
        """The state message the sensor reports now."""
        now = self._clock()
        with self._lock:
            temperature = self.profile.temperature(now) + self._random.gauss(0.0, self.noise)
            humidity = self.humidity + self._random.gauss(0.0, self.noise)
        if self.faults.any:
            temperature = self._values.apply("temperature", temperature)
            humidity = self._values.apply("humidity", humidity)
        days = (now - self._started_at) / 86400.0
        battery = max(0.0, self.battery - self.battery_drain_per_day * days)
        payload = encode_state(
            temperature=round(temperature, 2),
            humidity=round(min(100.0, max(0.0, humidity)), 2),
            battery=round(battery),
            linkquality=self.linkquality,
            voltage=round(2600 + 4 * battery),  # a CR2032 from about 2.6 V empty to 3.0 V full
            last_seen_ms=s_to_ms(self._device_clock()) if self.last_seen else None,
        )
        if not self.quirks:
            return payload
        key, garble = QUIRKS[self._samples % len(QUIRKS)]
        self._samples += 1
        state = json.loads(payload)
        state[key] = garble(state[key])
        return json.dumps(state, separators=(",", ":")).encode()

    def start(self, timeout: float = 5.0) -> None:
        """Connect, announce availability online and publish every ``interval_seconds``."""
        if self._link.running:
            raise UsageError(f"fridge sim {self.name} already started")
        self._next_at = time.monotonic()
        self._link.start(self.host, self.port, timeout)
        self.set_available(True)

    def stop(self) -> None:
        """Stop publishing and disconnect (idempotent); availability stays as it was."""
        self._link.stop()

    def set_available(self, online: bool) -> None:
        """Publish availability (retained), as Zigbee2MQTT does when the sensor checks in or
        misses its check-in."""
        self._link.publish(self.availability_topic,
                           encode_availability(online, legacy=self.legacy_availability), qos=1,
                           retain=True)

    def publish_now(self) -> None:
        """Report the current state at once (what the sensor does on a change)."""
        self._link.publish(self.state_topic, self.sample(), qos=1)

    def _on_loop(self) -> None:
        if self._link.connected and time.monotonic() >= self._next_at:
            self._next_at += self.interval_seconds
            self.publish_now()
