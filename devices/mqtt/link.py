"""One MQTT network connection as an asyncio protocol: each socket read is handed over inside the
transport's read callback (a ``StreamReader`` took a future and a second loop turn for every
read). It reads the CONNACK (MQTT 3.1.1 section 3.2), pauses reading while the broker does not
take our writes, and keeps what the keep alive needs. ``MqttConnection`` (``client.py``) makes
one per connection and drops it whole on disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from devices.mqtt.protocol import ConnAck, Decoder, MqttFrameError
from storeedge.errors import BrokerUnavailable


class Link(asyncio.Protocol):
    """One network connection (see the module docstring); dropped whole on disconnect."""

    def __init__(self, on_data: Callable[[Link, bytes], None], max_packet_size: int) -> None:
        self.on_data = on_data  # each read after the CONNACK, in the transport's read callback
        self.decoder = Decoder(max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[ConnAck] = asyncio.get_running_loop().create_future()
        self.head = b""  # bytes before the CONNACK is whole
        self.error: BaseException | None = None  # why the link ended, once ``ended`` is set
        self.ended = asyncio.Event()
        self.paused = False  # reading paused until the broker takes what we wrote
        self.ping_outstanding = False
        self.ping_sent = 0.0
        now = time.monotonic()
        self.last_sent = now  # monotonic time of our last write: the keep alive counts from it
        self.last_received = now
        self.up_since: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # Nagle plus delayed ACK adds 20-40 ms per message at store rates (DESIGN.md).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.ended.is_set():
            return
        self.last_received = time.monotonic()
        try:
            if not self.connack.done():
                data = self._connack(data)
                if not data:
                    return
            self.on_data(self, data)
        except Exception as exc:  # BatchNotCommitted, a bad frame: the link ends
            self.end(exc)

    def _connack(self, data: bytes) -> bytes:
        # 3.2.0: the first packet from the server is CONNACK, always 4 bytes; whatever follows
        # it (a persistent session's queued PUBLISHes) is read on once it was accepted.
        self.head += data
        if len(self.head) < 4:
            return b""
        head, self.head = self.head, b""
        if head[0] != 0x20 or head[1] != 0x02:
            raise MqttFrameError(f"expected CONNACK first, got {head[:4]!r}")
        ack = self.decoder.feed(head[:4])[0]
        assert isinstance(ack, ConnAck)
        self.connack.set_result(ack)
        return head[4:] if ack.return_code == 0 else b""

    def eof_received(self) -> bool:
        self.end(EOFError("broker closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(exc or EOFError("broker closed the connection"))

    def pause_writing(self) -> None:
        # The broker does not take what we write: read no more until it does (our PUBACKs
        # must not pile up, nor what the handler publishes).
        self.paused = True
        if self.transport is not None and not self.ended.is_set():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.ended.is_set():
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        self.last_sent = time.monotonic()

    def end(self, exc: BaseException) -> None:
        """The link is over: nothing more is read or acknowledged on it."""
        if self.ended.is_set():
            return
        self.error = exc
        self.ended.set()
        if not self.connack.done():
            self.connack.set_exception(exc if isinstance(exc, MqttFrameError) else
                                       BrokerUnavailable(f"the broker closed the connection "
                                                         f"before CONNACK: {exc}"))
        if self.transport is not None:
            self.transport.close()

    async def wait_ended(self) -> None:
        """Raise why the link ended, once it has."""
        await self.ended.wait()
        assert self.error is not None
        raise self.error
