"""A wireless smart shelf: publishes lane weights as JSON over MQTT with our codec.

It announces itself with a retained ``online`` on ``store/{sid}/dev/{id}/status`` and leaves a
retained ``offline`` as its last will, publishes a lane when its weight changes and every lane as
a heartbeat every ``heartbeat_seconds``. ``crash()`` drops the connection without an MQTT
DISCONNECT, as a shelf losing power does, so the broker publishes the will; ``unplug()`` and
``replug()`` cut and restore its power. A ``firmware_sim.faults.Faults`` adds noise, drift and a
stuck sensor to the weights, duplicates and reorders weight messages, and skews the ``ts`` clock.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt

from devices.shelf_mqtt.protocol import encode_status, encode_weight, status_topic, weight_topic
from firmware_sim.faults import Faults, FaultyPublisher, ScenarioClock, ValueFilter
from firmware_sim.login import NO_LOGIN, BrokerLogin
from storeedge.errors import BrokerUnavailable, UsageError
from storeedge.units import s_to_ms

log = logging.getLogger(__name__)


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
        self.published = 0
        self.faults = faults or Faults()
        self._clock = self.faults.device_clock(clock)
        self._random = random.Random(seed)
        self._values = ValueFilter(self.faults, elapsed or ScenarioClock(), self._random)
        self._grams = dict.fromkeys(self.lanes, 0.0)
        self._seq = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._threads: list[threading.Thread] = []
        self._weight_topic = weight_topic(store_id, device_id)
        self._status_topic = status_topic(store_id, device_id)
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"shelf-sim-{store_id}-{device_id}"
        )
        login.apply(self._client)
        self._client.will_set(self._status_topic, encode_status(False), qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        write_on_network_thread(self._client)
        self._send = FaultyPublisher(self._client.publish, self.faults, self._random)

    def start(self, timeout: float = 5.0) -> None:
        """Connect, announce ``online`` and start the heartbeat; BrokerUnavailable on failure."""
        if self._threads:
            raise UsageError(f"{self.device_id}: simulator already started")
        self._connected.clear()
        self._disconnected.clear()
        self._halt.clear()
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(f"{self.device_id}: cannot reach {self.host}:{self.port}: "
                                    f"{exc}") from exc
        for target, role in ((self._network, "net"), (self._beat, "beat")):
            thread = threading.Thread(target=target, name=f"mqtt-shelf-{self.device_id}-{role}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._connected.wait(timeout):
            self._halt_threads()
            self._drop_socket()
            raise BrokerUnavailable(f"{self.device_id}: no CONNACK from {self.host}:{self.port}")

    def stop(self) -> None:
        """Say ``offline`` (retained) and disconnect cleanly (idempotent)."""
        if not self._threads:
            return
        self._send.flush()
        info = self._client.publish(self._status_topic, encode_status(False), qos=1, retain=True)
        with contextlib.suppress(RuntimeError, ValueError):  # not connected: the will says it
            info.wait_for_publish(2.0)
        self._client.disconnect()
        self._disconnected.wait(2.0)
        self._halt_threads()

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the last will."""
        if not self._threads:
            return
        self._halt_threads()
        self._drop_socket()

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
        info = self._send(self._weight_topic, payload, qos=self.qos)
        if info is None:  # held back to go out after the next one
            return
        # paho reports a full queue or a lost connection by return code, never by raising.
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.published += 1
        else:
            log.warning("shelf sim %s: publish failed: %s", self.device_id,
                        mqtt.error_string(info.rc))

    def _network(self) -> None:
        # Our own loop rather than paho's loop_start(): crash() must stop the network at once,
        # and paho's thread notices a stop request only after up to a second.
        client = self._client
        while not self._halt.is_set():
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and not self._halt.wait(0.5):
                with contextlib.suppress(OSError):  # the broker is away: keep trying, as shelves do
                    client.reconnect()

    def _beat(self) -> None:
        while not self._halt.wait(self.heartbeat_seconds):
            self.publish_all()

    def _drop_socket(self) -> None:
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _halt_threads(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
        # paho closes the socket pair loop() wakes itself with only in Client.__del__, which the
        # GC may run after the sockets' own finalisers (a ResourceWarning per simulator).
        self._client._reset_sockets(sockpair_only=True)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            log.warning("shelf sim %s: connect refused: %s", self.device_id, reason)
            return
        client.publish(self._status_topic, encode_status(True), qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: mqtt.ReasonCode, properties: object) -> None:
        self._disconnected.set()


def write_on_network_thread(client: mqtt.Client) -> None:
    """Make ``client``'s publishes from any thread only queue, for the thread that runs its
    ``loop()`` to send. Without paho's own thread (``loop_start``), paho writes a publish to the
    socket on the caller's thread, while the network thread may be reading it: two threads in
    one TLS connection, which OpenSSL does not allow (the simulator died of it, in libc). With a
    write-interest callback set, paho leaves the writing to ``loop()``, whose select() wakes
    for the queued packet."""
    client.on_socket_register_write = _leave_it_to_loop


def _leave_it_to_loop(client: mqtt.Client, userdata: object, sock: object) -> None:
    pass
