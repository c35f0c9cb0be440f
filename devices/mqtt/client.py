"""``MqttConnection``: an MQTT 3.1.1 client on the asyncio event loop, around the sans-I/O codec.

Built for a subscriber that must keep up with a store's devices: every socket read is decoded
in one call and handed to ``on_batch`` as one list of ``(topic, payload)``; QoS 1 messages are
acknowledged only after ``on_batch`` returned, so a crash never acks what was not processed.
No thread, no per-message future or task.

    conn = MqttConnection("127.0.0.1", 1883, client_id="agent-1", clean_session=False,
                          subscriptions=[("store/s1/dev/+/+", 1)], on_batch=handle)
    task = asyncio.create_task(conn.run())      # connects, reconnects with backoff
    await conn.wait_connected(10)
    conn.publish("store/s1/alerts", b"...", qos=1)
    await conn.aclose()

Outgoing QoS 1 messages stay in flight (by packet id) until their PUBACK; after a reconnect the
ones already sent are re-sent with DUP set (MQTT 3.1.1 section 4.4), those never sent without.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl as ssl_mod
from collections.abc import Callable, Iterable

from devices.mqtt.protocol import (
    CONNACK_REASONS,
    ConnAck,
    Decoder,
    MqttFrameError,
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

log = logging.getLogger(__name__)

Batch = list[tuple[str, bytes]]


class _Connection:
    """One network connection's state: dropped whole on disconnect."""

    __slots__ = ("decoder", "leftover", "ping_outstanding", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder()
        self.ping_outstanding = False
        self.leftover = b""


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
                 read_size: int = 65_536) -> None:
        if not 0 < max_inflight <= 65_535:
            raise UsageError("max_inflight must be 1..65535 (the packet id space)")
        self.host, self.port = host, port
        self.client_id = client_id
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.username, self.password = username, password
        self.will = will
        self.ssl = ssl
        self.subscriptions: list[tuple[str, int]] = list(subscriptions or [])
        self.on_batch = on_batch
        self.on_connect = on_connect
        self.reconnect_initial, self.reconnect_max = reconnect_initial, reconnect_max
        self.connect_timeout = connect_timeout
        self.max_inflight = max_inflight
        self.read_size = read_size
        self.connected = asyncio.Event()
        self.received = 0
        self.session_present = False
        # packet id -> [encoded PUBLISH without DUP, sent on the current or an earlier link]
        self._inflight: dict[int, list[object]] = {}
        self._next_id = 0
        self._sub_waiters: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._drained: asyncio.Event = asyncio.Event()
        self._drained.set()
        self._conn: _Connection | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # Public API

    @property
    def inflight(self) -> int:
        """QoS 1 messages published and not yet acknowledged by the broker."""
        return len(self._inflight)

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
        attempt = 0
        while not self._closing:
            try:
                await self._serve_once()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, TimeoutError, BrokerUnavailable, MqttFrameError) as exc:
                if self._closing:
                    break
                if self.connected.is_set() or attempt == 0:
                    log.warning("MQTT %s:%s (client %s): %s; reconnecting", self.host, self.port,
                                self.client_id, exc or type(exc).__name__)
                attempt = attempt + 1 if not isinstance(exc, _Served) else 1
            finally:
                self._drop()
            if self._closing:
                break
            cap = min(self.reconnect_max, self.reconnect_initial * 2 ** min(attempt, 16))
            await asyncio.sleep(random.uniform(self.reconnect_initial / 2, cap))

    async def connect(self) -> bool:
        """Open the network connection and exchange CONNECT/CONNACK (3.1, 3.2). Returns the
        session-present flag. Raises ``BrokerUnavailable`` when unreachable or refused."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl, limit=max(self.read_size * 4, 2 ** 18))
        except (OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot reach MQTT broker {self.host}:{self.port}: "
                                    f"{exc or type(exc).__name__}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # Nagle plus delayed ACK adds 20-40 ms per message at store rates (DESIGN.md).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(reader, writer)
        try:
            writer.write(encode_connect(self.client_id, clean_session=self.clean_session,
                                        keepalive=self.keepalive, username=self.username,
                                        password=self.password, will=self.will))
            # 3.2.0: the first packet from the server is CONNACK, always 4 bytes; whatever
            # follows it in the same read (a persistent session's queued PUBLISHes) is kept
            # for the read loop.
            buf = b""
            async with asyncio.timeout(self.connect_timeout):
                while len(buf) < 4:
                    data = await reader.read(self.read_size)
                    if not data:
                        raise BrokerUnavailable(f"MQTT broker {self.host}:{self.port} closed "
                                                "the connection before CONNACK")
                    buf += data
            if buf[0] != 0x20 or buf[1] != 0x02:
                raise MqttFrameError(f"expected CONNACK first, got {buf[:4]!r}")
            ack = conn.decoder.feed(buf[:4])[0]
            assert isinstance(ack, ConnAck)
            conn.leftover = buf[4:]
            if ack.return_code != 0:
                raise BrokerUnavailable(f"MQTT broker {self.host}:{self.port} refused client "
                                        f"{self.client_id!r}: {ack.reason} "
                                        f"(code {ack.return_code})")
        except BaseException as exc:
            writer.close()
            if isinstance(exc, (OSError, TimeoutError)):
                raise BrokerUnavailable(f"MQTT broker {self.host}:{self.port}: "
                                        f"{exc or type(exc).__name__}") from exc
            raise
        self._conn = conn
        self.session_present = ack.session_present
        return ack.session_present

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Send now, or (QoS 1) keep until acknowledged and send after reconnecting. False when
        not accepted: the in-flight window is full, or QoS 0 while disconnected."""
        conn = self._conn if self.connected.is_set() else None
        if qos == 0:
            if conn is None:
                return False
            self._write(conn, encode_publish(topic, payload, retain=retain))
            return True
        if len(self._inflight) >= self.max_inflight:
            return False
        pid = self._allocate_id()
        packet = encode_publish(topic, payload, qos=qos, retain=retain, packet_id=pid)
        entry: list[object] = [packet, False]
        self._inflight[pid] = entry
        self._drained.clear()
        if conn is not None:
            self._write(conn, packet)
            entry[1] = True
        return True

    def publish_many(self, messages: Iterable[tuple[str, bytes, bool]], qos: int = 1) -> int:
        """``publish`` each ``(topic, payload, retain)`` in order, in one socket write (a send
        per message cost more than encoding it). Returns how many were accepted: all of them,
        or (QoS 1, the in-flight window full) the ones before the first refused."""
        conn = self._conn if self.connected.is_set() else None
        if qos == 0 and conn is None:
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
                self._write(conn, b"".join(packets))
        return len(packets)

    async def subscribe(self, filters: list[tuple[str, int]],
                        timeout: float = 10.0) -> tuple[int, ...]:
        """Add subscriptions (kept for reconnects) and, when connected, wait for their SUBACK."""
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
                conn.writer.write(encode_disconnect())
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

    def _write(self, conn: _Connection, data: bytes) -> None:
        try:
            conn.writer.write(data)
        except (OSError, RuntimeError) as exc:  # the reader notices and reconnects
            log.debug("MQTT write failed (client %s): %s", self.client_id, exc)

    async def _subscribe(self, conn: _Connection, filters: list[tuple[str, int]],
                         timeout: float) -> tuple[int, ...]:
        pid = self._allocate_sub_id()
        fut: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self._sub_waiters[pid] = fut
        try:
            conn.writer.write(encode_subscribe(pid, filters))
            async with asyncio.timeout(timeout):
                granted = await fut
        finally:
            self._sub_waiters.pop(pid, None)
        refused = [f for f, g in zip(filters, granted, strict=False) if g == 0x80]
        if refused:
            log.error("MQTT broker refused subscriptions %s (client %s)", refused, self.client_id)
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
                reader = tg.create_task(self._read_loop(conn), name=f"mqtt-read:{self.client_id}")
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
                    conn.writer.write(b"".join(resend))
                self.connected.set()
                log.info("MQTT connected to %s:%s (client %s, session present: %s, %d re-sent)",
                         self.host, self.port, self.client_id, self.session_present, len(resend))
                if self.on_connect is not None:
                    self.on_connect(self.session_present)
                if self.keepalive:
                    tg.create_task(self._ping_loop(conn), name=f"mqtt-ping:{self.client_id}")
                await reader
        except* (OSError, EOFError, TimeoutError, MqttFrameError, BrokerUnavailable) as eg:
            raise _Served(str(eg.exceptions[0]) or type(eg.exceptions[0]).__name__) from eg

    async def _read_loop(self, conn: _Connection) -> None:
        reader, writer, decoder = conn.reader, conn.writer, conn.decoder
        size = self.read_size
        while True:
            data, conn.leftover = conn.leftover or await reader.read(size), b""
            if not data:
                raise EOFError("broker closed the connection")
            conn.ping_outstanding = False  # alive: its PINGRESP may queue behind a backlog
            messages, acks, others = decoder.feed_batch(data)
            if messages:
                self.received += len(messages)
                if self.on_batch is not None:
                    try:
                        self.on_batch(messages)
                    except Exception:
                        # Not acknowledged: the broker redelivers them on the next connection.
                        log.exception("on_batch failed on %d MQTT messages (client %s); not "
                                      "acknowledged", len(messages), self.client_id)
                        acks = []
                if acks:
                    writer.write(encode_pubacks(acks))
            for packet in others:
                self._handle(conn, packet)

    def _handle(self, conn: _Connection, packet: Packet) -> None:
        if isinstance(packet, PubAck):
            if self._inflight.pop(packet.packet_id, None) is not None and not self._inflight:
                self._drained.set()
        elif isinstance(packet, SubAck):
            fut = self._sub_waiters.get(packet.packet_id)
            if fut is not None and not fut.done():
                fut.set_result(packet.granted)
        elif isinstance(packet, PingResp):
            conn.ping_outstanding = False
        else:  # a second CONNACK
            raise MqttFrameError(f"unexpected {type(packet).__name__} on an open connection")

    async def _ping_loop(self, conn: _Connection) -> None:
        """3.1.2.10: a PINGREQ well within the keep alive; no PINGRESP by the next one means
        the connection is dead."""
        interval = self.keepalive / 2
        while True:
            await asyncio.sleep(interval)
            if conn.ping_outstanding:
                raise TimeoutError(f"no PINGRESP within {interval:.0f}s")
            conn.ping_outstanding = True
            conn.writer.write(encode_pingreq())

    def _drop(self) -> None:
        self.connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.writer.close()
        for fut in self._sub_waiters.values():
            if not fut.done():
                fut.cancel()


class _Served(ConnectionError):
    """A connection that was established and then lost (resets the backoff)."""


__all__ = ["CONNACK_REASONS", "Batch", "MqttConnection", "Will"]
