"""The agent's MQTT connection: our own asyncio MQTT 3.1.1 client (``devices.mqtt``) on the event
loop thread, one socket read (up to 256 KB, thousands of readings) decoded and handed to the agent
as one batch per loop turn; alerts and state go out on a second connection (see ``MqttLink``).

Why not paho or aiomqtt: measured on our 2-core machines with bench/ingest.py, paho's network
loop on a thread handing batches to asyncio sustained only ~13,000 readings/s end to end: paho's
per-message Python work (~15-20 us: MQTTMessage objects, callbacks, locks) plus the GIL handoffs
between its thread and the loop's took most of a core the agent needs for its own ~20 us a
reading. aiomqtt caps near 15,000 msg/s with a future and a queue item per message. Our codec
decodes a PUBLISH in ~0.6 us inside one ``Decoder.feed_batch`` call per read, with no thread, so
the transport costs a few us a message and the agent's own work sets the pace (see the report of
bench/ingest.py for the figures of the current commit).

The alert and state publisher stays on our client too. Measured 2026-11-28 with bench/ingest.py
(--readings 60000 --rate 2000, three interleaved runs each, same machine and load), the
publisher on aiomqtt 2.5 (one QoS 1 ``publish`` call per alert, up to 1,000 at once) cost the
agent 240-245 us of CPU per reading against 53-58 us with ours, and fell seconds behind at
2,000 readings/s: the flood makes ~0.45 alerts per reading, so the "low-rate" publisher carries
thousands of messages a second, each costing aiomqtt a future, a paho message and a callback.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from devices.mqtt.client import BatchNotCommitted, MqttConnection
from devices.mqtt.protocol import DEFAULT_MAX_PACKET_SIZE, Batch, Will

log = logging.getLogger(__name__)

__all__ = ["Batch", "BatchNotCommitted", "MqttLink"]


class MqttLink:
    """Subscribes to ``subscriptions`` (QoS 1, persistent session) and calls ``on_batch`` on the
    event loop with every message of one socket read; QoS 1 messages are acknowledged after
    ``on_batch`` returned. ``on_batch`` raises ``BatchNotCommitted`` when it could not make the
    batch durable: nothing of it is acknowledged and the broker sends it again after the link
    reconnects; any other exception makes the link hand the batch over again one message at a
    time and reject (acknowledge, count, log) the messages that still fail alone. The whole
    contract is ``devices.mqtt.client``'s docstring. Messages above ``max_packet_size`` bytes
    are skipped, acknowledged and counted.

    Two connections: ``connection`` (client ``client_id``) reads the devices, ``publisher``
    (``{client_id}-pub``, holding the will) sends alerts and state. On one connection the
    broker queues its PUBACKs for our alerts behind every reading it has queued for us (QoS 0
    readings are not flow-controlled), so under a flood of 200,000 readings the 65,535-message
    in-flight window filled and alerts were refused; on their own connection PUBACKs return at
    once.
    """

    def __init__(self, *, host: str, port: int, client_id: str, subscriptions: list[str],
                 on_batch: Callable[[Batch], None], username: str | None = None,
                 password: str | None = None, tls_ca: str | None = None, tls: bool = False,
                 keepalive: int = 30, will: tuple[str, bytes] | None = None,
                 online: tuple[str, bytes] | None = None,
                 on_connected: Callable[[], None] | None = None,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.subscriptions = subscriptions
        self.on_batch = on_batch
        self.on_connected = on_connected
        self.online = online
        self.publish_failures = 0
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(cafile=tls_ca)
        common: dict[str, Any] = dict(
            username=username or None, password=password if username else None, ssl=context,
            keepalive=keepalive, reconnect_initial=1.0, reconnect_max=30.0)
        self.connection = MqttConnection(
            host, port, client_id=client_id, clean_session=False,
            subscriptions=[(topic, 1) for topic in subscriptions], on_batch=self._on_batch,
            max_packet_size=max_packet_size, **common)
        self.publisher = MqttConnection(
            host, port, client_id=f"{client_id}-pub", clean_session=False,
            will=Will(will[0], will[1], qos=1, retain=True) if will else None,
            on_connect=self._on_connect, **common)
        # An asyncio.Event: ``is_set()`` as before; set and cleared on the loop thread.
        self.connected = self.connection.connected

    @property
    def received(self) -> int:
        return self.connection.received

    @property
    def healthy(self) -> bool:
        """Both connections up and every subscription granted."""
        return self.connection.healthy and self.publisher.connected.is_set()

    def stats(self) -> dict[str, Any]:
        """The device connection's counters (``MqttConnection.stats``) and ``publish_failures``."""
        return {**self.connection.stats(), "healthy": self.healthy,
                "publisher_connected": self.publisher.connected.is_set(),
                "publish_failures": self.publish_failures}

    def _on_batch(self, batch: Batch) -> None:
        self.on_batch(batch)

    def _on_connect(self, session_present: bool) -> None:
        if self.online:
            self.publish(self.online[0], self.online[1], qos=1, retain=True)
        if self.on_connected:
            self.on_connected()

    def start(self) -> None:
        """Start connecting (and reconnecting) in tasks on the running loop."""
        self.publisher.start()
        self.connection.start()

    async def wait_connected(self, timeout: float) -> bool:
        """Whether both connections are up within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.publisher.connected.wait()
                await self.connection.connected.wait()
        except TimeoutError:
            return False
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message: sent now, or (QoS 1) after reconnecting. False when refused (the
        in-flight window of 65,535 unacknowledged QoS 1 messages is full, or QoS 0 while
        disconnected), which is counted and logged."""
        if not self.publisher.publish(topic, payload, qos=qos, retain=retain):
            self.publish_failures += 1
            log.error("publish to %s refused by the MQTT client (in flight: %d, connected: %s)",
                      topic, self.publisher.inflight, self.publisher.connected.is_set())
            return False
        return True

    def publish_many(self, messages: list[tuple[str, bytes, bool]], qos: int = 1) -> bool:
        """``publish`` each ``(topic, payload, retain)`` in order, in one socket write. False
        when any was refused (counted and logged like ``publish``'s)."""
        accepted = self.publisher.publish_many(messages, qos=qos)
        refused = len(messages) - accepted
        if refused:
            self.publish_failures += refused
            log.error("%d publishes (first to %s) refused by the MQTT client (in flight: %d, "
                      "connected: %s)", refused, messages[accepted][0], self.publisher.inflight,
                      self.publisher.connected.is_set())
            return False
        return True

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Publish ``final`` (e.g. a retained offline state) and disconnect cleanly. Synchronous:
        ``final`` is written before DISCONNECT but its PUBACK is not awaited; ``aclose`` waits."""
        self.connection.close_nowait()
        self.publisher.close_nowait(final)

    async def aclose(self, final: tuple[str, bytes] | None = None, timeout: float = 2.0) -> None:
        """Like ``stop``, waiting up to ``timeout`` for ``final`` to be acknowledged and for the
        connection tasks to end."""
        await self.connection.aclose(None, timeout)
        await self.publisher.aclose(final, timeout)
