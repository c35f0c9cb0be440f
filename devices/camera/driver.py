"""Reads one camera through OpenCV, measures lane occupancy and reconnects by itself.

OpenCV's reads block, so each connection lives on its own thread: it opens the source, reads
frames, measures occupancy (numpy, off the event loop too) and hands results to the event loop
with ``call_soon_threadsafe``. Everything else (status, change detection, callbacks, reconnect
back-off) happens on the event loop. A live stream is drained at its own frame rate (``grab``) and
decoded only when a measurement is due, so measurements never lag behind a buffer of old frames; a
file is read one frame per measurement.

OpenCV reports trouble by returning False, or by raising ``cv2.error``: either way the connection
ends with the reason as the offline status' error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from devices.camera.config import CameraDevice
from devices.camera.occupancy import Reference, check_lanes, measure
from devices.reconnect import ReconnectingDriver
from storeedge.errors import ConfigError, FrameError
from storeedge.events import DeviceStatus, Event, ShelfImage
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


def load_reference(device: CameraDevice) -> Reference:
    """The device's empty-shelf reference, checked against its lanes; ConfigError if unusable."""
    path = device.calibration.reference
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(path, f"devices[{device.id}].calibration.reference",
                          "cannot read the image (missing, or not an image)")
    reference = Reference.from_frame(image, cell=device.calibration.cell,
                                     threshold=device.calibration.threshold, where=path)
    check_lanes(device.lanes, reference)
    return reference


class CameraDriver(ReconnectingDriver[CameraDevice]):
    """Measures ``device``'s lanes ``measure_hz`` times a second until cancelled.

    ``on_events`` gets ``[ShelfImage]`` with every lane's occupancy when a lane moved by more
    than ``min_change`` since the last event, and every ``heartbeat_seconds`` anyway; ``seq``
    counts the events. ``on_status`` gets DeviceStatus on every change: online at the first good
    frame, offline with the reason when the stream cannot be opened, ends, or yields ``max_bad``
    bad frames in a row. Then it is reopened after a random, growing delay capped at
    ``reconnect_max`` seconds. Callbacks run on the event loop. Cancelling ``run()`` closes the
    stream (within ``timeout_seconds`` when a read hangs).

    Counters: ``good`` and ``bad`` frames, ``reconnects`` (times the stream opened again).
    """

    kind = "camera"
    _log = log

    def __init__(
        self,
        device: CameraDevice,
        store_id: str,
        on_events: Callable[[list[Event]], None],
        on_status: Callable[[DeviceStatus], None],
        clock: Callable[[], float] = time.time,
        *,
        max_bad: int = 10,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        super().__init__(device, store_id, on_status, clock, target=device.source,
                         reconnect_initial=reconnect_initial, reconnect_max=reconnect_max)
        self.good = 0
        self.bad = 0
        self._on_events = on_events
        self._max_bad = max_bad
        self._reference: Reference | None = None
        self._last: dict[str, float] | None = None
        self._last_at = 0.0
        self._seq = 0
        self._bad_log = RateLimitedLog(log)

    @property
    def occupancy(self) -> dict[str, float] | None:
        """The occupancy last sent in an event."""
        return self._last

    async def _session(self) -> str:
        """Open the stream on a thread and measure until it is lost; return why."""
        loop = asyncio.get_running_loop()
        if self._reference is None:
            try:
                self._reference = await asyncio.to_thread(load_reference, self.device)
            except ConfigError as exc:
                log.error("camera %s: %s", self.device.id, exc)
                return str(exc)
        reference = self._reference
        stop = threading.Event()
        done: asyncio.Future[str] = loop.create_future()

        def work() -> None:
            try:
                reason = self._capture(reference, stop, loop)
            except Exception as exc:  # cv2.error and whatever else OpenCV lets through
                reason = f"capture failed: {exc}"
            try:
                loop.call_soon_threadsafe(_resolve, done, reason)
            except RuntimeError:  # the loop is gone: nobody is waiting any more
                pass

        thread = threading.Thread(target=work, name=f"camera:{self.device.id}", daemon=True)
        thread.start()
        try:
            return await asyncio.shield(done)
        finally:
            stop.set()
            if not done.done():  # cancelled: let the thread release the capture first
                await done
            thread.join()  # its last step was posting ``done``: this returns at once

    def _capture(self, reference: Reference, stop: threading.Event,
                 loop: asyncio.AbstractEventLoop) -> str:
        """The connection's thread: open, read, measure, post results; return why it ended."""
        dev = self.device
        cap = _open(dev.source, dev.timeout_seconds)
        try:
            if not cap.isOpened():
                return f"cannot open {dev.source}"
            self._opened()
            log.info("camera %s: opened %s", dev.id, dev.source)
            live = _is_live(dev.source)
            period = 1.0 / dev.measure_hz
            due = time.monotonic()
            bad_run = 0
            while not stop.is_set():
                if live:
                    if not cap.grab():
                        return f"stream {dev.source} ended or timed out"
                    if time.monotonic() < due:
                        continue
                    ok, frame = cap.retrieve()
                else:
                    if stop.wait(max(0.0, due - time.monotonic())):
                        break
                    ok, frame = cap.read()
                    if not ok:
                        return f"end of {dev.source}"
                due = max(due + period, time.monotonic())
                try:
                    if not ok or frame is None:
                        raise FrameError("frame did not decode", source=dev.id)
                    occupancy = measure(frame, dev.lanes, reference)
                except FrameError as exc:
                    self.bad += 1
                    bad_run += 1
                    self._bad_log.warning(f"bad:{dev.id}", "camera %s: bad frame: %s", dev.id, exc)
                    if bad_run >= self._max_bad:
                        return f"{bad_run} bad frames in a row: {exc}"
                    continue
                self.good += 1
                bad_run = 0
                loop.call_soon_threadsafe(self._measured, occupancy)
            return "stopped"
        finally:
            cap.release()

    def _measured(self, occupancy: dict[str, float]) -> None:
        self._set_online(True)
        now = self._clock()
        last = self._last
        changed = last is None or any(
            abs(value - last.get(lane, -1.0)) > self.device.min_change
            for lane, value in occupancy.items())
        if not changed and now - self._last_at < self.device.heartbeat_seconds:
            return
        self._last = {lane: round(value, 3) for lane, value in occupancy.items()}
        self._last_at = now
        self._seq += 1
        self._on_events([ShelfImage(store_id=self.store_id, source=self.device.id,
                                    received_ts=now, seq=self._seq, occupancy=dict(self._last))])


def _resolve(future: asyncio.Future[str], reason: str) -> None:
    if not future.done():
        future.set_result(reason)


def _is_live(source: str) -> bool:
    return source.isdigit() or "://" in source or not Path(source).is_file()


def _open(source: str, timeout: float) -> cv2.VideoCapture:
    if source.isdigit():
        return cv2.VideoCapture(int(source))
    ms = int(timeout * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
