"""Polls an M100/R200-family UHF module over serial and reconnects by itself.

pyserial-asyncio-fast moves the bytes; ``m100`` frames them. Each poll sends a single inventory
(0x22); the module answers with one notice per tag in the field, or error 0x15 when there is none.
Either answer means the module is alive: ``max_silent_polls`` polls in a row without a valid
frame, or the port hanging up (the USB adapter pulled out), take it offline; the port is then
closed and reopened after a random, growing delay capped at ``reconnect_max`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import serial_asyncio_fast

from devices.reconnect import ReconnectingDriver
from devices.rfid import m100
from devices.rfid.config import RfidSerialDevice
from storeedge.events import DeviceStatus, Event
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
_rlog = RateLimitedLog(log)


class RfidSerialDriver(ReconnectingDriver[RfidSerialDevice]):
    """Inventories one module ``poll_hz`` times a second until cancelled.

    ``on_events`` gets each poll's TagReads (``seq`` counts reads per device, ``antenna`` is
    None: the config's ``location`` places them). ``on_status`` gets DeviceStatus on every change.
    Counters: ``good`` (valid frames), ``bad`` (rejected frames and module errors other than "no
    tag"), ``reads`` (tag reads), ``reconnects`` (times the port was opened again).
    """

    kind = "rfid"
    _log = log

    def __init__(
        self,
        device: RfidSerialDevice,
        store_id: str,
        on_events: Callable[[list[Event]], None],
        on_status: Callable[[DeviceStatus], None],
        clock: Callable[[], float] = time.time,
        *,
        max_silent_polls: int = 5,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        super().__init__(device, store_id, on_status, clock, target=device.port,
                         reconnect_initial=reconnect_initial, reconnect_max=reconnect_max)
        self.good = 0
        self.bad = 0
        self.reads = 0
        self._on_events = on_events
        self._max_silent = max_silent_polls
        self._framing = m100.Framing(device.framing)
        self._command = m100.single_inventory(self._framing)

    async def _session(self) -> str:
        """Open the port and poll until it is lost; return why."""
        dev = self.device
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=dev.port, baudrate=dev.baudrate, exclusive=True)
        except Exception as exc:  # SerialException, OSError, ValueError: the port is not there
            return f"cannot open {dev.port}: {exc}"
        self._opened()
        log.info("rfid %s: port %s open", dev.id, dev.port)
        try:
            return await self._poll(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _poll(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        loop = asyncio.get_running_loop()
        parser = m100.FrameParser(self._framing)
        period = 1.0 / self.device.poll_hz
        silent = 0
        deadline = loop.time()
        while True:
            if writer.transport.is_closing():
                return f"port {self.device.port} lost"
            writer.write(self._command)
            deadline += period
            answered = False
            while (remaining := deadline - loop.time()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        data = await reader.read(4096)
                except TimeoutError:
                    break
                except Exception as exc:  # the port hung up: SerialException, OSError
                    return f"port {self.device.port} lost: {exc}"
                if not data:
                    return f"port {self.device.port} closed"
                answered |= self._handle(parser, data)
            if answered:
                silent = 0
            else:
                silent += 1
                if silent >= self._max_silent:
                    return f"no valid answer to {silent} polls"
            if deadline < loop.time():  # fell behind: poll now, do not burst to catch up
                deadline = loop.time()

    def _handle(self, parser: m100.FrameParser, data: bytes) -> bool:
        """Feed bytes; emit the reads; True when a valid frame came."""
        errors_before = parser.errors
        frames = parser.feed(data)
        if parser.errors != errors_before:
            self.bad += parser.errors - errors_before
            _rlog.warning(f"frame:{self.device.id}", "rfid %s: bad frame: %s", self.device.id,
                          parser.last_error)
        if not frames:
            return False
        self.good += len(frames)
        now = self._clock()
        reads: list[Event] = []
        for frame in frames:
            if isinstance(frame, m100.TagNotice):
                self.reads += 1
                reads.append(m100.to_tag_read(frame, source=self.device.id,
                                              store_id=self.store_id, received_ts=now,
                                              seq=self.reads))
            elif isinstance(frame, m100.ErrorResponse) and not frame.no_tag:
                self.bad += 1
                _rlog.warning(f"module:{self.device.id}", "rfid %s: module error 0x%02x",
                              self.device.id, frame.code)
        self._set_online(True)
        if reads:
            self._on_events(reads)
        return True
