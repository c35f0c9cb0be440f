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
from pathlib import Path

from devices.scanner import gs1
from devices.scanner.protocol import encode_line
from firmware_sim.faults import ByteFilter, Faults
from firmware_sim.pty_port import PtyPort
from storeedge.errors import UsageError

log = logging.getLogger(__name__)


class ScannerSim:
    """A scanner behind ``link_path``; safe to drive from any thread.

    Writes never block: with nobody reading, the pty buffers a few kilobytes, after which further
    lines are dropped and counted in ``dropped`` (a real scanner beeps an error instead).
    """

    def __init__(self, device_id: str, link_path: str | os.PathLike[str], *,
                 terminator: bytes = b"\r\n", seed: int | None = None,
                 faults: Faults | None = None) -> None:
        self.device_id = device_id
        self.terminator = terminator
        self.port = PtyPort(link_path)
        self.sent = 0
        self.dropped = 0
        self._corrupt = 0
        self._random = random.Random(seed)
        self.faults = faults or Faults()
        self._bytes = ByteFilter(self.faults, self._random)
        self._lock = threading.Lock()

    @property
    def link_path(self) -> Path:
        return self.port.link_path

    def start(self) -> None:
        """Plug the scanner in."""
        with self._lock:
            if self.port.is_open:
                raise UsageError(f"{self.device_id}: simulator already started")
            self.port.open()
            os.set_blocking(self.port.master_fd, False)
        log.info("scanner sim %s plugged in at %s", self.device_id, self.link_path)

    def stop(self) -> None:
        """Unplug (idempotent)."""
        with self._lock:
            if not self.port.is_open:
                return
            self.port.close()
        log.info("scanner sim %s unplugged", self.device_id)

    def unplug(self) -> None:
        """Pull the USB cable: the agent's port hangs up and its path disappears."""
        self.stop()

    def replug(self) -> None:
        """Plug it back in: a new pty behind the same path."""
        self.start()

    def corrupt_next(self, n: int) -> None:
        """Flip one byte (never the terminator) in each of the next ``n`` lines."""
        with self._lock:
            self._corrupt += n

    def scan(self, code: str, aim: str | None = None) -> None:
        """Send one read of ``code`` with an optional AIM symbology identifier (e.g. ``]E0``)."""
        line = encode_line(code, aim, terminator=self.terminator)
        body = line[:-len(self.terminator)]
        with self._lock:
            force = self._corrupt > 0
            if force:
                self._corrupt -= 1
            body = self._bytes.apply(body, force=force)
        self.write_raw(body + self.terminator)

    def scan_gs1(self, elements: list[tuple[str, str]], aim: str = "]d2") -> None:
        """Send GS1 element strings, e.g. ``[("01", gtin14), ("17", "261231"), ("10", "L1")]``."""
        self.scan(gs1.encode_element_string(elements), aim)

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
