"""A wireless smart shelf: publishes lane weights as JSON over MQTT with our codec.

It announces itself with a retained ``online`` on ``store/{sid}/dev/{id}/status`` and leaves a
retained ``offline`` as its last will, publishes a lane when its weight changes and every lane as
a heartbeat every ``heartbeat_seconds``. ``crash()`` drops the connection without an MQTT
DISCONNECT, as a shelf losing power does, so the broker publishes the will; ``unplug()`` and
``replug()`` cut and restore its power. A ``firmware_sim.faults.Faults`` adds noise, drift and a
stuck sensor to the weights, duplicates and reorders weight messages, and skews the ``ts`` clock.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

from devices.shelf_mqtt.protocol import encode_status, encode_weight, status_topic, weight_topic
from firmware_sim.faults import Faults, ScenarioClock, ValueFilter
from firmware_sim.login import NO_LOGIN, BrokerLogin
from firmware_sim.paho_link import PahoLink, Retained
from storeedge.errors import UsageError
from storeedge.units import s_to_ms


class MqttShelfSim:
    """A wireless shelf with ``lanes`` (lane ids) talking to the broker at ``host:port``."""

    def __init__(
        self,
        store_id: str,
        device_id: str,
        lanes: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        heartbeat_seconds: float = 5.0,
        noise_grams: float = 0.0,
        qos: int = 0,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        elapsed: Callable[[], float] | None = None,
        login: BrokerLogin = NO_LOGIN,
    ) -> None:
        self.store_id = store_id
        self.device_id = device_id
        self.lanes = list(lanes)
        self.host = host
        self.port = port
        self.heartbeat_seconds = heartbeat_seconds
        self.noise_grams = noise_grams
        self.qos = qos
        self.faults = faults or Faults()
        self._clock = self.faults.device_clock(clock)
        self._random = random.Random(seed)
        self._values = ValueFilter(self.faults, elapsed or ScenarioClock(), self._random)
        self._grams = dict.fromkeys(self.lanes, 0.0)
        self._seq = 0
        self._lock = threading.Lock()
        self._beat_halt = threading.Event()
        self._beat_thread: threading.Thread | None = None
        self._weight_topic = weight_topic(store_id, device_id)
        self._offline = Retained(status_topic(store_id, device_id), encode_status(False))
        self._link = PahoLink(
            f"shelf-sim-{store_id}-{device_id}", name=device_id,
            thread_name=f"mqtt-shelf-{device_id}-net", faults=self.faults, rng=self._random,
            login=login, will=self._offline,
            announce=Retained(self._offline.topic, encode_status(True)),
        )

    @property
    def published(self) -> int:
        """Weight messages paho has taken to send."""
        return self._link.published

    def start(self, timeout: float = 5.0) -> None:
        """Connect, announce ``online`` and start the heartbeat; BrokerUnavailable on failure."""
        if self._link.running:
            raise UsageError(f"{self.device_id}: simulator already started")
        self._link.start(self.host, self.port, timeout)
        self._beat_halt.clear()
        self._beat_thread = threading.Thread(
            target=self._beat, name=f"mqtt-shelf-{self.device_id}-beat", daemon=True)
        self._beat_thread.start()

    def stop(self) -> None:
        """Say ``offline`` (retained) and disconnect cleanly (idempotent)."""
        self._stop_beat()
        self._link.stop(farewell=self._offline)

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the last will."""
        self._stop_beat()
        self._link.crash()

    def unplug(self) -> None:
        """Cut the power: the connection drops and the broker publishes the last will."""
        self.crash()

    def replug(self) -> None:
        """Power back on: reconnect and announce ``online`` again."""
        self.start()

    def set_grams(self, lane: str, grams: float) -> None:
        """Put ``grams`` on ``lane``; publishes at once when the weight changed."""
        if lane not in self._grams:
            raise UsageError(f"{self.device_id} has no lane {lane!r}")
        with self._lock:
            changed = self._grams[lane] != grams
            self._grams[lane] = grams
        if changed:
            self._publish(lane)

    def publish_all(self) -> None:
        """Publish every lane now (what a heartbeat does)."""
        for lane in self.lanes:
            self._publish(lane)

    def _publish(self, lane: str) -> None:
        with self._lock:
            self._seq += 1
            seq = self._seq
            grams = self._grams[lane]
        if self.noise_grams:
            grams += self._random.gauss(0.0, self.noise_grams)
        if self.faults.any:
            grams = self._values.apply(lane, grams)
        payload = encode_weight(lane, round(grams, 1), seq=seq, ts_ms=s_to_ms(self._clock()))
        self._link.publish(self._weight_topic, payload, qos=self.qos)

    def _beat(self) -> None:
        while not self._beat_halt.wait(self.heartbeat_seconds):
            self.publish_all()

    def _stop_beat(self) -> None:
        self._beat_halt.set()
        if self._beat_thread is not None:
            self._beat_thread.join()
            self._beat_thread = None
