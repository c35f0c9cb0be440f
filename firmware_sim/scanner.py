"""A USB-CDC barcode scanner on a real pseudo-terminal, writing lines with our codec.

``scan()`` sends one read as the scanner would (optional AIM prefix, CRLF); GS1 codes are built
with ``devices.scanner.gs1.encode_element_string``. Faults: corrupted lines (one byte flipped, on
demand or at ``Faults.corrupt_rate``), raw bytes of any kind, and unplugging and re-plugging the
USB cable (``unplug()``/``replug()``, which ``firmware_sim.faults.plug_schedule`` drives).
"""

from __future__ import annotations

import logging
import os
import random
import threading

from devices.scanner import gs1
from devices.scanner.protocol import encode_line
from firmware_sim.faults import Faults
from firmware_sim.pty_port import PtySim
from storeedge.errors import UsageError

log = logging.getLogger(__name__)


class ScannerSim(PtySim):
    """A scanner behind ``link_path``; safe to drive from any thread.

    Writes never block: with nobody reading, the pty buffers a few kilobytes, after which further
    lines are dropped and counted in ``dropped`` (a real scanner beeps an error instead).
    ``corrupt_next`` never touches a line's terminator.
    """

    kind = "scanner sim"
    _log = log

    def __init__(self, device_id: str, link_path: str | os.PathLike[str], *,
                 terminator: bytes = b"\r\n", seed: int | None = None,
                 faults: Faults | None = None) -> None:
        super().__init__(device_id, link_path, faults, random.Random(seed))
        self.terminator = terminator
        self.sent = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def _plug(self) -> None:
        with self._lock:
            if self.port.is_open:
                raise UsageError(f"{self.device_id}: simulator already started")
            self.port.open()
            os.set_blocking(self.port.master_fd, False)

    def _unplug(self) -> bool:
        with self._lock:
            if not self.port.is_open:
                return False
            self.port.close()
            return True

    def scan(self, code: str, aim: str | None = None) -> None:
        """Send one read of ``code`` with an optional AIM symbology identifier (e.g. ``]E0``)."""
        line = encode_line(code, aim, terminator=self.terminator)
        body = line[:-len(self.terminator)]
        self.write_raw(self._corrupted(body) + self.terminator)

    def scan_gs1(self, elements: list[tuple[str, str]], aim: str | None = "]d2",
                 separator: str = gs1.GS) -> None:
        """Send GS1 element strings, e.g. ``[("01", gtin14), ("17", "261231"), ("10", "L1")]``;
        ``aim`` None and ``separator`` act as a scanner set to send no prefix and another
        character for FNC1."""
        self.scan(gs1.encode_element_string(elements, separator=separator), aim)

    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (noise, a partial line, an over-long line)."""
        with self._lock:
            if not self.port.is_open:
                self.dropped += 1
                return
            try:
                written = os.write(self.port.master_fd, data)
            except OSError as exc:  # BlockingIOError: the pty buffer is full
                log.warning("scanner sim %s: write failed: %s", self.device_id, exc)
                written = 0
            if written == len(data):
                self.sent += 1
            else:
                self.dropped += 1
