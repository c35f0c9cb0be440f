"""A pseudo-terminal standing in for a USB/RS-485 serial adapter.

The simulator owns the master side; the agent opens the slave side through a stable symlink
(``<dir>/<device_id>.tty -> /dev/pts/N``), exactly as it would open ``/dev/ttyUSB0``. Closing the
port hangs up the agent's side and removes the link, as pulling the adapter out does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tty
from pathlib import Path

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
