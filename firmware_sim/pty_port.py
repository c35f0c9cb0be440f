"""A pseudo-terminal standing in for a USB/RS-485 serial adapter, and the simulators behind one.

The simulator owns the master side; the agent opens the slave side through a stable symlink
(``<dir>/<device_id>.tty -> /dev/pts/N``), exactly as it would open ``/dev/ttyUSB0``. Closing the
port hangs up the agent's side and removes the link, as pulling the adapter out does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import threading
import tty
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from firmware_sim.faults import ByteFilter, Faults
from storeedge.errors import UsageError

log = logging.getLogger(__name__)


class PtyPort:
    """One plug-in of a simulated serial adapter: a raw-mode pty and the symlink naming it."""

    def __init__(self, link_path: str | os.PathLike[str]) -> None:
        self.link_path = Path(link_path)
        self.master_fd = -1
        self._slave_fd = -1
        self.slave_name = ""

    @property
    def is_open(self) -> bool:
        return self.master_fd >= 0

    def open(self) -> None:
        """Create the pty and point the link at it (atomically, replacing an old link)."""
        if self.is_open:
            raise UsageError(f"{self.link_path} is already open")
        master, slave = os.openpty()
        tty.setraw(slave)
        # We keep a slave fd of our own: without it, reads on the master fail with EIO whenever
        # the agent has the port closed (between its reconnect attempts).
        self.master_fd, self._slave_fd = master, slave
        self.slave_name = os.ttyname(slave)
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link_path)
        log.debug("pty %s -> %s open", self.link_path, self.slave_name)

    def close(self) -> None:
        """Hang up the agent's side and remove the link (only if it still names our pty)."""
        if not self.is_open:
            return
        with contextlib.suppress(OSError):
            if os.readlink(self.link_path) == self.slave_name:
                self.link_path.unlink()
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master_fd = self._slave_fd = -1
        log.debug("pty %s -> %s closed", self.link_path, self.slave_name)


class PtySim:
    """What every simulated serial device shares: its adapter (a PtyPort), plugging it in and out,
    and corrupting the bytes it sends on demand or at ``faults.corrupt_rate``.

    ``start()`` plugs it in, ``stop()`` unplugs it (idempotent); ``unplug()``/``replug()`` are
    the same, under the names ``firmware_sim.faults.plug_schedule`` calls. Subclasses set ``kind``
    (their log lines' name, e.g. ``"scanner sim"``) and ``_log`` (their module's logger) and
    implement ``_plug`` and ``_unplug``.
    """

    kind: ClassVar[str]
    _log: ClassVar[logging.Logger]

    def __init__(self, device_id: str, link_path: str | os.PathLike[str],
                 faults: Faults | None, rng: random.Random) -> None:
        self.device_id = device_id
        self.port = PtyPort(link_path)
        self.faults = faults or Faults()
        self._bytes = ByteFilter(self.faults, rng)
        self._corrupt = 0
        self._corrupt_lock = threading.Lock()

    @property
    def link_path(self) -> Path:
        return self.port.link_path

    def start(self) -> None:
        """Plug the adapter in (and start answering, for a device that answers)."""
        self._plug()
        self._log.info("%s %s plugged in at %s", self.kind, self.device_id, self.link_path)

    def stop(self) -> None:
        """Unplug, after answering stops (idempotent)."""
        if self._unplug():
            self._log.info("%s %s unplugged", self.kind, self.device_id)

    def unplug(self) -> None:
        """Pull the adapter out: the agent's port hangs up and its path disappears."""
        self.stop()

    def replug(self) -> None:
        """Plug it back in: a new pty behind the same path."""
        self.start()

    def corrupt_next(self, n: int) -> None:
        """Flip a byte in each of the next ``n`` frames (or lines) sent."""
        with self._corrupt_lock:
            self._corrupt += n

    def _corrupted(self, data: bytes) -> bytes:
        """``data`` as it goes out: a byte flipped when asked for, or by the faults."""
        with self._corrupt_lock:
            force = self._corrupt > 0
            if force:
                self._corrupt -= 1
            return self._bytes.apply(data, force=force)

    def _plug(self) -> None:
        """Open the port; UsageError when it is open already."""
        raise NotImplementedError

    def _unplug(self) -> bool:
        """Close the port; False when it was not open."""
        raise NotImplementedError


class _Parser(Protocol):
    errors: int

    def reset(self) -> None: ...
    def feed(self, data: bytes) -> Sequence[object]: ...


class ServingPtySim(PtySim):
    """A PtySim that answers the agent: a thread reads the port, feeds ``parser`` and hands each
    frame to ``_handle``, which may ``_send`` replies."""

    def __init__(self, device_id: str, link_path: str | os.PathLike[str],
                 faults: Faults | None, rng: random.Random, parser: _Parser) -> None:
        super().__init__(device_id, link_path, faults, rng)
        self._parser = parser
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1

    @property
    def frame_errors(self) -> int:
        """Bad frames received (bad checksum, unknown function, garbage)."""
        return self._parser.errors

    def _plug(self) -> None:
        if self._thread is not None:
            raise UsageError(f"{self.device_id}: simulator already started")
        self.port.open()
        self._parser.reset()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"{self.kind.replace(' ', '-')}-{self.device_id}")
        self._thread.start()

    def _unplug(self) -> bool:
        if self._thread is None:
            return False
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._thread = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.port.close()
        return True

    def _serve(self) -> None:
        master = self.port.master_fd
        while True:
            ready, _, _ = select.select([master, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                data = os.read(master, 4096)
            except OSError as exc:
                self._log.warning("%s %s: read failed: %s", self.kind, self.device_id, exc)
                return
            for frame in self._parser.feed(data):
                self._handle(master, frame)

    def _handle(self, master: int, frame: Any) -> None:
        """Act on one frame received, on the serving thread."""
        raise NotImplementedError

    def _send(self, master: int, frame: bytes) -> bool:
        """Write one frame (corrupted as the faults say); False when unplugged meanwhile."""
        try:
            os.write(master, self._corrupted(frame))
        except OSError:
            return False
        return True
