"""One paho-mqtt connection for a simulated MQTT device, on a network thread of our own.

``PahoLink`` connects (``BrokerUnavailable`` when it cannot), keeps reconnecting while the
broker is away, publishes through a ``firmware_sim.faults.FaultyPublisher`` and counts what paho
accepted, and ends either cleanly (``stop``: DISCONNECT) or as a device losing power does
(``crash``: the TCP connection just drops, so the broker publishes the will). What a device says
and when stays with its simulator.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from firmware_sim.faults import Faults, FaultyPublisher
from firmware_sim.login import NO_LOGIN, BrokerLogin
from storeedge.errors import BrokerUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Retained:
    """A status message, published retained at QoS 1."""

    topic: str
    payload: bytes


class PahoLink:
    """A paho ``mqtt.Client`` with ``login`` applied, run by a thread named ``thread_name``.

    ``name`` starts every error and log line. ``will`` is left with the broker at each connect;
    ``announce`` is published (past the faults, not counted) each time the broker accepts the
    connection; ``on_loop`` is called on the network thread after each network round that went
    well (about every 50 ms, sooner under traffic).
    """

    def __init__(
        self,
        client_id: str,
        *,
        name: str,
        thread_name: str,
        faults: Faults,
        rng: random.Random,
        login: BrokerLogin = NO_LOGIN,
        will: Retained | None = None,
        announce: Retained | None = None,
        on_loop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.published = 0
        self._thread_name = thread_name
        self._announce = announce
        self._on_loop = on_loop
        self._halt = threading.Event()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        login.apply(self._client)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        write_on_network_thread(self._client)
        self._send = FaultyPublisher(self._client.publish, faults, rng)

    @property
    def running(self) -> bool:
        """Started and neither stopped nor crashed since."""
        return self._thread is not None

    @property
    def connected(self) -> bool:
        """The broker has accepted the connection since the last ``start``."""
        return self._connected.is_set()

    def start(self, host: str, port: int, timeout: float) -> None:
        """Connect to ``host:port`` and run the network thread until ``stop`` or ``crash``.

        ``BrokerUnavailable`` when the broker cannot be reached or has not accepted the
        connection within ``timeout`` seconds; the link is then down again.
        """
        self._halt.clear()
        self._connected.clear()
        self._disconnected.clear()
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(f"{self.name}: cannot reach {host}:{port}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            self.crash()
            raise BrokerUnavailable(f"{self.name}: no CONNACK from {host}:{port}")

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish through the faults; counts ``published`` when paho takes the message and
        logs a warning when it refuses it."""
        info = self._send(topic, payload, qos=qos, retain=retain)
        if info is None:  # held back by a reorder fault: it goes out after the next one
            return
        # paho reports a full queue or a lost connection by return code, never by raising.
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.published += 1
        else:
            log.warning("%s: publish failed: %s", self.name, mqtt.error_string(info.rc))

    def stop(self, farewell: Retained | None = None) -> None:
        """Send what the faults hold back, then ``farewell`` if given, and disconnect cleanly
        (idempotent)."""
        if self._thread is None:
            return
        self._send.flush()
        if farewell is not None:
            info = self._client.publish(farewell.topic, farewell.payload, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected: the will says it
                info.wait_for_publish(2.0)
        self._client.disconnect()
        self._disconnected.wait(2.0)  # the network thread sends the DISCONNECT
        self._halt_thread()

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the will
        (idempotent)."""
        if self._thread is None:
            return
        self._halt_thread()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _run(self) -> None:
        # Our own loop rather than paho's loop_start(): crash() must stop the network at once,
        # and paho's thread notices a stop request only after up to a second.
        client = self._client
        while not self._halt.is_set():
            if client.loop(timeout=0.05) == mqtt.MQTT_ERR_SUCCESS:
                if self._on_loop is not None:
                    self._on_loop()
            elif not self._halt.wait(0.5):  # the broker is away: keep trying, as devices do
                with contextlib.suppress(OSError):
                    client.reconnect()

    def _halt_thread(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        # paho closes the socket pair loop() wakes itself with only in Client.__del__, which the
        # GC may run after the sockets' own finalisers (a ResourceWarning per simulator).
        self._client._reset_sockets(sockpair_only=True)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            log.warning("%s: connect refused: %s", self.name, reason)
            return
        if self._announce is not None:
            client.publish(self._announce.topic, self._announce.payload, qos=1, retain=True)
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
