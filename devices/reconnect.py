"""The reconnect loop and online status that every port- or stream-reading driver shares.

A driver subclasses ``ReconnectingDriver`` and writes only ``_session()``: open the port or stream,
work until it is lost and return why. ``run()`` does the rest: it reports the device offline with
that reason, waits a random, growing delay capped at ``reconnect_max`` seconds and opens the next
session. The delay starts again from ``reconnect_initial`` after a session that got the device
online, so a device that flaps is retried quickly and one that stays away is not hammered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import ClassVar, Generic, Protocol, TypeVar

from storeedge.events import DeviceStatus


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


DeviceT = TypeVar("DeviceT", bound=_Identified)


class ReconnectingDriver(Generic[DeviceT]):
    """Runs ``_session()`` over and over until cancelled; reports every online/offline change.

    Subclasses set ``kind`` (the first word of their log lines, e.g. ``"rfid"``) and ``_log``
    (their module's logger, so the lines keep their origin), implement ``_session``, call
    ``_opened()`` whenever the port or stream opens and ``_set_online(True)`` when the device
    proves alive. ``on_status`` gets a DeviceStatus on each change only.

    Counter: ``reconnects`` (times the port or stream was opened again after the first time).
    """

    kind: ClassVar[str]
    _log: ClassVar[logging.Logger]

    def __init__(
        self,
        device: DeviceT,
        store_id: str,
        on_status: Callable[[DeviceStatus], None],
        clock: Callable[[], float] = time.time,
        *,
        target: str,
        reconnect_initial: float,
        reconnect_max: float,
    ) -> None:
        self.device = device
        self.store_id = store_id
        self.reconnects = 0
        self._on_status = on_status
        self._clock = clock
        self._target = target  # what is reopened, for the log: a port or a stream
        self._reconnect_initial = reconnect_initial
        self._reconnect_max = reconnect_max
        self._online: bool | None = None
        self._opened_before = False

    @property
    def online(self) -> bool | None:
        """True once the device proved alive, False after a loss, None before either."""
        return self._online

    async def run(self) -> None:
        """Work until cancelled; device trouble never escapes and cancelling closes the port."""
        attempt = 0
        while True:
            error = await self._session()
            if self._online:
                attempt = 0
            self._set_online(False, error)
            ceiling = min(self._reconnect_max, self._reconnect_initial * 2**attempt)
            attempt += 1
            delay = random.uniform(ceiling / 2, ceiling)
            self._log.debug("%s %s: reopening %s in %.2fs", self.kind, self.device.id,
                            self._target, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """Open the port or stream and work until it is lost; return why. Must close what it
        opened, on cancellation too, and let no library exception escape."""
        raise NotImplementedError

    def _opened(self) -> None:
        """Count a reopen: every opening but the first is a reconnect."""
        if self._opened_before:
            self.reconnects += 1
        self._opened_before = True

    def _set_online(self, online: bool, error: str | None = None) -> None:
        if self._online is online:
            return
        self._online = online
        if online:
            self._log.info("%s %s: online", self.kind, self.device.id)
        else:
            self._log.warning("%s %s: offline: %s", self.kind, self.device.id, error)
        self._on_status(DeviceStatus(store_id=self.store_id, source=self.device.id,
                                     received_ts=self._clock(), online=online, error=error))
