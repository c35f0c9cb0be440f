"""``MqttConnection``: an MQTT 3.1.1 client on the asyncio event loop, around the sans-I/O codec.

Built for a subscriber that must keep up with a store's devices: every socket read is decoded
in one call, inside the transport's read callback, and handed to ``on_batch`` as one ``Batch``
of ``(topic, payload)``. No thread, no future or task per message or per read.

    conn = MqttConnection("127.0.0.1", 1883, client_id="agent-1", clean_session=False,
                          subscriptions=[("store/s1/dev/+/+", 1)], on_batch=handle)
    task = asyncio.create_task(conn.run())      # connects, reconnects with backoff
    await conn.wait_connected(10)
    conn.publish("store/s1/alerts", b"...", qos=1)
    await conn.aclose()

The ``on_batch`` contract (QoS 1 messages are acknowledged only after it answered):
- it returns: every message of the batch is acknowledged (PUBACK, in order, 4.6);
- it raises ``BatchNotCommitted`` (it could not make the batch durable, e.g. the journal cannot
  write): nothing of the batch is acknowledged, the connection is closed and reopened after the
  reconnect delay, and the broker sends the unacknowledged messages again (4.4; this needs a
  persistent session, ``clean_session=False``). Messages at QoS 0 are not sent again;
- it raises anything else: the batch is handed to it again one message at a time, so one bad
  message cannot hold back the others; a message it still fails on alone is rejected: counted
  in ``rejected``, logged (rate-limited) and acknowledged, so the broker does not send it again.
  ``BatchNotCommitted`` during that pass stops it and acts as above.
So a message may reach ``on_batch`` more than once (after a reconnect, with ``Batch.dup`` set, or
in the one-at-a-time pass); handle messages idempotently.

A PUBLISH above ``max_packet_size`` is skipped without being held in memory, counted in
``oversized``, logged (rate-limited) and acknowledged. A SUBSCRIBE the broker refuses (SUBACK
0x80, 3.9.3) is logged and listed in ``refused_subscriptions``; ``healthy`` is false until it
is granted. Subscriptions are QoS 0 or 1: QoS 2 is refused when configured (see ``_check_qos``).

Outgoing QoS 1 messages stay in flight (by packet id) until their PUBACK; after a reconnect the
ones already sent are re-sent with DUP set (MQTT 3.1.1 section 4.4), those never sent without.
Writes are flow-controlled: reading pauses while the broker does not take what we write (the
transport's high-water mark), and a QoS 0 publish is refused while more than
``max_write_buffer`` bytes wait to be sent.

Reconnecting waits a random delay in [d/2, d], d = ``reconnect_initial`` doubled per failed
attempt up to ``reconnect_max``; only a connection that stayed up ``reconnect_max`` seconds
starts the count again, so a broker that accepts and then drops us is retried ever more slowly.
Every loss is logged (rate-limited) with its attempt and delay, counted in ``reconnects``, and
kept in ``last_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_mod
import time
from collections.abc import Callable, Iterable

from devices.mqtt.link import Link
from devices.mqtt.protocol import (
    CONNACK_REASONS,
    DEFAULT_MAX_PACKET_SIZE,
    Batch,
    Decoder,
    MqttFrameError,
    OversizedPublish,
    Packet,
    PingResp,
    PubAck,
    SubAck,
    Will,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
)
from storeedge.errors import BrokerUnavailable, UsageError
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class BatchNotCommitted(Exception):
    """Raised by ``on_batch``: the batch could not be made durable. Its QoS 1 messages are not
    acknowledged and the connection is reopened later, so the broker sends them again."""


class MqttConnection:
    """A reconnecting MQTT 3.1.1 client. ``run()`` is its one long-lived coroutine; everything
    else is called on the same event loop."""

    def __init__(self, host: str, port: int, *, client_id: str, clean_session: bool = False,
                 keepalive: int = 30, username: str | None = None,
                 password: str | None = None, will: Will | None = None,
                 ssl: ssl_mod.SSLContext | None = None,
                 subscriptions: list[tuple[str, int]] | None = None,
                 on_batch: Callable[[Batch], None] | None = None,
                 on_connect: Callable[[bool], None] | None = None,
                 reconnect_initial: float = 0.5, reconnect_max: float = 30.0,
                 connect_timeout: float = 10.0, max_inflight: int = 65_535,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                 max_write_buffer: int = 8 * 1024 * 1024) -> None:
        if not 0 < max_inflight <= 65_535:
            raise UsageError("max_inflight must be 1..65535 (the packet id space)")
        self.subscriptions: list[tuple[str, int]] = []
        _check_qos(list(subscriptions or []), "subscriptions")
        Decoder(max_packet_size)  # refuses a size it cannot use, now rather than on connect
        self.host, self.port = host, port
        self.client_id = client_id
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.username, self.password = username, password
        self.will = will
        self.ssl = ssl
        self.subscriptions = list(subscriptions or [])
        self.on_batch = on_batch
        self.on_connect = on_connect
        self.reconnect_initial, self.reconnect_max = reconnect_initial, reconnect_max
        self.connect_timeout = connect_timeout
        self.max_inflight = max_inflight
        self.max_packet_size = max_packet_size
        self.max_write_buffer = max_write_buffer
        self.connected = asyncio.Event()
        self.session_present = False
        # Counters since this object was made (see the module docstring).
        self.received = 0
        self.oversized = 0
        self.rejected = 0
        self.not_committed = 0
        self.reconnects = 0
        self.attempt = 0  # failed attempts since the last connection that stayed up
        self.last_error: str | None = None
        self.refused_subscriptions: list[tuple[str, int]] = []
        self._rlog = RateLimitedLog(log)
        # packet id -> [encoded PUBLISH without DUP, sent on the current or an earlier link]
        self._inflight: dict[int, list[object]] = {}
        self._next_id = 0
        self._sub_waiters: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._drained: asyncio.Event = asyncio.Event()
        self._drained.set()
        self._conn: Link | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # Public API

    @property
    def inflight(self) -> int:
        """QoS 1 messages published and not yet acknowledged by the broker."""
        return len(self._inflight)

    @property
    def healthy(self) -> bool:
        """Connected, and every subscription granted."""
        return self.connected.is_set() and not self.refused_subscriptions

    def stats(self) -> dict[str, object]:
        """The counters and state above, for health pages and metrics."""
        return {"connected": self.connected.is_set(), "healthy": self.healthy,
                "received": self.received, "oversized": self.oversized,
                "rejected": self.rejected, "not_committed": self.not_committed,
                "reconnects": self.reconnects, "last_error": self.last_error,
                "refused_subscriptions": [f for f, _ in self.refused_subscriptions]}

    def start(self) -> asyncio.Task[None]:
        """Run ``run()`` as a named task on the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"mqtt:{self.client_id}@{self.host}:{self.port}")
        return self._task

    async def wait_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.connected.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Connect, serve, and reconnect after a random, capped, growing delay, until closed."""
        while not self._closing:
            try:
                await self._serve_once()
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, TimeoutError, BrokerUnavailable, MqttFrameError,
                    BatchNotCommitted) as exc:
                if self._closing:
                    break
                conn = self._conn
                if conn is not None and conn.up_since is not None \
                        and time.monotonic() - conn.up_since >= self.reconnect_max:
                    self.attempt = 0  # up long enough: a new outage, not a flapping broker
                self.attempt += 1
                delay = backoff_delay(self.attempt, self.reconnect_initial, self.reconnect_max)
                self.reconnects += 1
                self.last_error = str(exc) or type(exc).__name__
                self._rlog.log("reconnect", logging.WARNING,
                               "MQTT %s:%s (client %s): %s; reconnecting in %.1fs (attempt %d)",
                               self.host, self.port, self.client_id, self.last_error, delay,
                               self.attempt)
            else:
                delay = 0.0
            finally:
                self._drop()
            if self._closing:
                break
            await asyncio.sleep(delay)

    async def connect(self) -> bool:
        """Open the network connection and exchange CONNECT/CONNACK (3.1, 3.2). Returns the
        session-present flag. Raises ``BrokerUnavailable`` when unreachable or refused."""
        loop = asyncio.get_running_loop()
        link = Link(self._received, self.max_packet_size)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: link, self.host, self.port, ssl=self.ssl)
        except (OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot reach MQTT broker {self.host}:{self.port}: "
                                    f"{exc or type(exc).__name__}") from exc
        try:
            link.write(encode_connect(self.client_id, clean_session=self.clean_session,
                                      keepalive=self.keepalive, username=self.username,
                                      password=self.password, will=self.will))
            async with asyncio.timeout(self.connect_timeout):
                ack = await link.connack
            if ack.return_code != 0:
                raise BrokerUnavailable(f"MQTT broker {self.host}:{self.port} refused client "
                                        f"{self.client_id!r}: {ack.reason} "
                                        f"(code {ack.return_code})")
        except BaseException as exc:
            link.end(exc)
            if isinstance(exc, (OSError, TimeoutError)):
                raise BrokerUnavailable(f"MQTT broker {self.host}:{self.port}: "
                                        f"{exc or type(exc).__name__}") from exc
            raise
        self._conn = link
        self.session_present = ack.session_present
        return ack.session_present

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Send now, or (QoS 1) keep until acknowledged and send after reconnecting. False when
        not accepted: the in-flight window is full, or QoS 0 while disconnected or while the
        socket's unsent bytes exceed ``max_write_buffer``."""
        conn = self._conn if self.connected.is_set() else None
        if qos == 0:
            if conn is None or self._backlogged(conn):
                return False
            conn.write(encode_publish(topic, payload, retain=retain))
            return True
        if len(self._inflight) >= self.max_inflight:
            return False
        pid = self._allocate_id()
        packet = encode_publish(topic, payload, qos=qos, retain=retain, packet_id=pid)
        entry: list[object] = [packet, False]
        self._inflight[pid] = entry
        self._drained.clear()
        if conn is not None:
            conn.write(packet)
            entry[1] = True
        return True

    def publish_many(self, messages: Iterable[tuple[str, bytes, bool]], qos: int = 1) -> int:
        """``publish`` each ``(topic, payload, retain)`` in order, in one socket write (a send
        per message cost more than encoding it). Returns how many were accepted: all of them,
        or (QoS 1, the in-flight window full) the ones before the first refused."""
        conn = self._conn if self.connected.is_set() else None
        if qos == 0 and (conn is None or self._backlogged(conn)):
            return 0
        packets = []
        inflight = self._inflight
        for topic, payload, retain in messages:
            if qos == 0:
                packets.append(encode_publish(topic, payload, retain=retain))
                continue
            if len(inflight) >= self.max_inflight:
                break
            pid = self._allocate_id()
            packet = encode_publish(topic, payload, qos=qos, retain=retain, packet_id=pid)
            packets.append(packet)
            inflight[pid] = [packet, conn is not None]
        if packets:
            if qos:
                self._drained.clear()
            if conn is not None:
                conn.write(b"".join(packets))
        return len(packets)

    async def subscribe(self, filters: list[tuple[str, int]],
                        timeout: float = 10.0) -> tuple[int, ...]:
        """Add subscriptions (kept for reconnects) and, when connected, wait for their SUBACK."""
        _check_qos(filters, "filters")
        for f in filters:
            if f not in self.subscriptions:
                self.subscriptions.append(f)
        conn = self._conn if self.connected.is_set() else None
        if conn is None:
            return ()
        return await self._subscribe(conn, filters, timeout)

    async def drain(self, timeout: float) -> bool:
        """Wait until every QoS 1 message published so far is acknowledged."""
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self, final: tuple[str, bytes] | None = None, timeout: float = 2.0) -> None:
        """Publish ``final`` (QoS 1, retained) and wait up to ``timeout`` for it, then send
        DISCONNECT (the broker drops the will, 3.14.4) and stop ``run()``."""
        if final is not None and self.connected.is_set():
            self.publish(final[0], final[1], qos=1, retain=True)
            await self.drain(timeout)
        self.close_nowait()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def close_nowait(self, final: tuple[str, bytes] | None = None) -> None:
        """Synchronous close: write ``final`` (QoS 1, retained) and DISCONNECT into the socket,
        close it and cancel ``run()``. The broker stores ``final`` before it reads DISCONNECT,
        but its PUBACK is not awaited."""
        self._closing = True
        conn = self._conn
        if conn is not None and self.connected.is_set():
            if final is not None:
                self.publish(final[0], final[1], qos=1, retain=True)
            with contextlib.suppress(Exception):
                conn.write(encode_disconnect())
        self._drop()
        if self._task is not None:
            self._task.cancel()

    # Internals

    def _allocate_id(self) -> int:
        pid = self._next_id
        while True:
            pid = pid % 65_535 + 1
            if pid not in self._inflight:
                self._next_id = pid
                return pid

    def _backlogged(self, conn: Link) -> bool:
        return conn.transport is None or \
            conn.transport.get_write_buffer_size() > self.max_write_buffer

    async def _subscribe(self, conn: Link, filters: list[tuple[str, int]],
                         timeout: float) -> tuple[int, ...]:
        pid = self._allocate_sub_id()
        fut: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self._sub_waiters[pid] = fut
        try:
            conn.write(encode_subscribe(pid, filters))
            async with asyncio.timeout(timeout):
                granted = await fut
        finally:
            self._sub_waiters.pop(pid, None)
        for f, g in zip(filters, granted, strict=False):
            if g == 0x80:  # 3.9.3: failure
                if f not in self.refused_subscriptions:
                    self.refused_subscriptions.append(f)
            elif f in self.refused_subscriptions:
                self.refused_subscriptions.remove(f)
        refused = [f for f, g in zip(filters, granted, strict=False) if g == 0x80]
        if refused:
            log.error("MQTT broker %s:%s refused subscriptions %s (client %s): their messages "
                      "will not arrive; the link reports itself unhealthy", self.host,
                      self.port, ", ".join(f for f, _ in refused), self.client_id)
        return granted

    def _allocate_sub_id(self) -> int:
        # Share the id space with publishes: an id must not be in use for two things (2.3.1).
        pid = self._allocate_id()
        while pid in self._sub_waiters:
            pid = self._allocate_id()
        return pid

    async def _serve_once(self) -> None:
        await self.connect()
        conn = self._conn
        assert conn is not None
        try:
            async with asyncio.TaskGroup() as tg:
                ended = tg.create_task(conn.wait_ended(), name=f"mqtt-link:{self.client_id}")
                if self.keepalive:
                    tg.create_task(self._ping_loop(conn), name=f"mqtt-ping:{self.client_id}")
                if self.subscriptions:
                    await self._subscribe(conn, list(self.subscriptions), self.connect_timeout)
                # 4.4: re-send unacknowledged PUBLISHes; DUP on those sent before.
                resend = []
                for _pid, entry in self._inflight.items():
                    packet = entry[0]
                    assert isinstance(packet, bytes)
                    resend.append(bytes((packet[0] | 0x08,)) + packet[1:] if entry[1] else packet)
                    entry[1] = True
                if resend:
                    conn.write(b"".join(resend))
                conn.up_since = time.monotonic()
                self.connected.set()
                log.info("MQTT connected to %s:%s (client %s, session present: %s, %d re-sent)",
                         self.host, self.port, self.client_id, self.session_present, len(resend))
                if self.on_connect is not None:
                    self.on_connect(self.session_present)
                await ended
        except* (OSError, EOFError, TimeoutError, MqttFrameError, BrokerUnavailable,
                 BatchNotCommitted) as eg:
            first = eg.exceptions[0]
            if isinstance(first, BatchNotCommitted):
                raise BatchNotCommitted(str(first)) from first
            raise _LinkLost(str(first) or type(first).__name__) from first

    def _received(self, conn: Link, data: bytes) -> None:
        """One socket read, in the transport's read callback: decoded, handed over, acked."""
        messages, acks, others = conn.decoder.feed_batch(data)
        for packet in others:  # first: a batch not committed must not lose our PUBACKs
            self._handle(conn, packet)
        if messages:
            self.received += len(messages)
            if self.on_batch is not None:
                self._deliver(messages)
        if acks:
            conn.write(encode_pubacks(acks))
        elif self.keepalive:
            # A long run of QoS 0 batches writes nothing: keep the keep alive here too,
            # whatever the ping task's turn on the loop (3.1.2.10).
            self._ping_if_due(conn, time.monotonic())

    def _deliver(self, messages: Batch) -> None:
        """``on_batch`` under the contract of the module docstring."""
        assert self.on_batch is not None
        try:
            self.on_batch(messages)
            return
        except BatchNotCommitted as exc:
            self._not_committed(messages, exc)
        except Exception as exc:
            self._rlog.log("batch-failed", logging.ERROR,
                           "on_batch failed on %d MQTT messages (client %s): %r; handing them "
                           "over one at a time", len(messages), self.client_id, exc)
        for i in range(len(messages)):
            try:
                self.on_batch(messages.subset((i,)))
            except BatchNotCommitted as exc:
                self._not_committed(messages, exc)
            except Exception as exc:
                self.rejected += 1
                self._rlog.log("rejected", logging.ERROR,
                               "MQTT message on %s rejected (client %s): on_batch raised %r; "
                               "acknowledged, not delivered again", messages[i][0],
                               self.client_id, exc)

    def _not_committed(self, messages: Batch, exc: BatchNotCommitted) -> None:
        self.not_committed += 1
        raise BatchNotCommitted(f"a batch of {len(messages)} MQTT messages was not committed "
                                f"({exc or 'no reason given'}); not acknowledged, the broker "
                                "sends it again after reconnecting") from exc

    def _handle(self, conn: Link, packet: Packet) -> None:
        if isinstance(packet, PubAck):
            if self._inflight.pop(packet.packet_id, None) is not None and not self._inflight:
                self._drained.set()
        elif isinstance(packet, OversizedPublish):
            self.oversized += 1
            self._rlog.log("oversized", logging.ERROR,
                           "MQTT message on %s of %d bytes exceeds the %d-byte limit (client %s):"
                           " skipped%s", packet.topic, packet.size, self.max_packet_size,
                           self.client_id, " and acknowledged" if packet.qos else "")
        elif isinstance(packet, SubAck):
            fut = self._sub_waiters.get(packet.packet_id)
            if fut is not None and not fut.done():
                fut.set_result(packet.granted)
        elif isinstance(packet, PingResp):
            conn.ping_outstanding = False
        else:  # a second CONNACK
            raise MqttFrameError(f"unexpected {type(packet).__name__} on an open connection")

    def _ping_if_due(self, conn: Link, now: float) -> None:
        # Even with a PINGREQ unanswered: its PINGRESP may wait behind a backlog we have not
        # read, and the broker needs a packet from us every keep alive all the same.
        if now - conn.last_sent >= self.keepalive / 2:
            if not conn.ping_outstanding:
                conn.ping_outstanding = True
                conn.ping_sent = now
            conn.write(encode_pingreq())

    async def _ping_loop(self, conn: Link) -> None:
        """3.1.2.10: a control packet at least every half keep alive (PINGREQ when nothing else
        went out). The connection is dead when a PINGREQ stays unanswered a whole keep alive
        and nothing at all arrived meanwhile; bytes still arriving (a backlog the PINGRESP waits
        behind) are not a dead broker, nor is a broker we stopped reading from until it takes
        our writes."""
        while True:
            await asyncio.sleep(self.keepalive / 4)
            now = time.monotonic()
            if conn.ping_outstanding and not conn.paused \
                    and now - max(conn.last_received, conn.ping_sent) >= self.keepalive:
                raise TimeoutError(f"no PINGRESP within {self.keepalive}s")
            self._ping_if_due(conn, now)

    def _drop(self) -> None:
        self.connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.end(EOFError("closed by the client"))
        for fut in self._sub_waiters.values():
            if not fut.done():
                fut.cancel()


def backoff_delay(attempt: int, initial: float, ceiling: float) -> float:
    """The wait before reconnect ``attempt`` (1, 2, ...): random in [d/2, d], d = ``initial``
    doubled per attempt up to ``ceiling``."""
    d = min(ceiling, initial * 2 ** min(attempt - 1, 30))
    return random.uniform(d / 2, d)


def _check_qos(filters: list[tuple[str, int]], key: str) -> None:
    """Subscriptions are QoS 0 or 1. QoS 2 (4.3.3) would promise exactly once, which only holds
    if the ids of received packets (4.3.3 Method B) were committed with what the agent made of
    them; kept in memory they are lost with the process and a redelivered message counts twice
    anyway, at the price of two more packets per message. At least once plus the devices'
    sequence numbers and transaction ids is the store's contract."""
    for i, (topic_filter, qos) in enumerate(filters):
        if qos not in (0, 1):
            raise UsageError(f"{key}[{i}]: {topic_filter!r} at QoS {qos}: subscriptions are "
                             "QoS 0 or 1 (QoS 2 is not supported; use 1)")


class _LinkLost(ConnectionError):
    """A connection that was established and then lost."""


__all__ = ["CONNACK_REASONS", "Batch", "BatchNotCommitted", "MqttConnection", "Will",
           "backoff_delay"]
