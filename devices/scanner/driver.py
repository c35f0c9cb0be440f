"""Reads one barcode scanner's serial port and reconnects by itself.

pyserial-asyncio-fast watches the port's file descriptor on the event loop (no thread); each
chunk read goes through the scanner's LineDecoder. A scanner says nothing until something is
scanned, so "online" means the port is open; an unplug shows as a read error or hang-up on the
port, after which the driver reopens it with a random, capped, growing delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import serial
import serial_asyncio_fast

from devices.reconnect import ReconnectingDriver
from devices.scanner.config import ScannerDevice
from devices.scanner.protocol import LineDecoder
from storeedge.errors import PeerError
from storeedge.events import DeviceStatus, Event, Scan
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class _LineProtocol(asyncio.Protocol):
    """Hands each received chunk to the driver and remembers why the port closed."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(f"port lost: {exc}" if exc else "port closed")


class ScannerDriver(ReconnectingDriver[ScannerDevice]):
    """Emits a Scan per good line of one scanner until cancelled.

    ``on_events`` gets the Scans decoded from each chunk read (one list per chunk); bad lines are
    counted, logged (rate-limited) and dropped; a scan with unreadable GS1 elements is kept and
    its ``gs1_errors`` logged (rate-limited). ``on_status`` gets DeviceStatus on each change:
    online when the port opens, offline with the reason when it cannot be opened or is lost.

    Counters: ``good`` (scans), ``bad`` (rejected lines), ``reconnects`` (reopens after a loss).
    """

    kind = "scanner"
    _log = log

    def __init__(
        self,
        device: ScannerDevice,
        store_id: str,
        on_events: Callable[[list[Event]], None],
        on_status: Callable[[DeviceStatus], None],
        clock: Callable[[], float] = time.time,
        *,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        super().__init__(device, store_id, on_status, clock, target=device.port,
                         reconnect_initial=reconnect_initial, reconnect_max=reconnect_max)
        self._on_events = on_events
        self._decoder = LineDecoder(store_id=store_id, device_id=device.id,
                                    separator=device.gs1_separator,
                                    gs1_without_prefix=device.gs1_without_prefix)
        self._bad_log = RateLimitedLog(log)

    @property
    def good(self) -> int:
        return self._decoder.good

    @property
    def bad(self) -> int:
        return self._decoder.bad

    async def _session(self) -> str:
        """Open the port and read until it is lost; return why."""
        dev = self.device
        loop = asyncio.get_running_loop()
        protocol = _LineProtocol(self._received)
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                loop, lambda: protocol, url=dev.port, baudrate=dev.baudrate, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            return f"cannot open {dev.port}: {exc}"
        try:
            self._decoder.reset()
            self._opened()
            log.info("scanner %s: port %s open", dev.id, dev.port)
            self._set_online(True)
            return await asyncio.shield(protocol.lost)
        finally:
            # On cancellation too: wait until the transport has really closed the port, so the
            # caller may reopen it (pyserial holds an exclusive lock) the moment run() returns.
            transport.close()
            await asyncio.shield(protocol.lost)

    def _received(self, data: bytes) -> None:
        events: list[Event] = []
        for item in self._decoder.feed(data, self._clock()):
            if isinstance(item, Scan):
                events.append(item)
                if item.gs1_errors:
                    self._bad_log.warning(f"gs1:{self.device.id}",
                                          "scanner %s: scan kept without what could not be "
                                          "read: %s", self.device.id, "; ".join(item.gs1_errors))
            else:
                self._report_bad(item)
        if events:
            self._on_events(events)

    def _report_bad(self, error: PeerError) -> None:
        self._bad_log.warning(f"bad-line:{self.device.id}", "scanner %s: line rejected: %s",
                              self.device.id, error)
