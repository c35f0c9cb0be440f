"""The camera driver (OpenCV's FFmpeg reader) against the camera simulator over real HTTP MJPEG."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from devices.camera.config import CameraDevice
from devices.camera.driver import CameraDriver
from firmware_sim.camera import BOUNDARY, CameraSim
from storeedge.events import DeviceStatus, Event, ShelfImage
from tests.waiting import until


async def until_camera(condition: Callable[[], object]) -> None:
    """Frames arrive at the stream's pace: give the camera more time than a serial port."""
    await until(condition, within=10.0)


LANES = [("A1", (20, 20, 280, 60)), ("A2", (340, 20, 280, 60)), ("B1", (20, 120, 60, 200))]


class Recorder:
    def __init__(self) -> None:
        self.events: list[ShelfImage] = []
        self.statuses: list[DeviceStatus] = []

    def on_events(self, events: list[Event]) -> None:
        self.events.extend(e for e in events if isinstance(e, ShelfImage))

    def occupancy(self) -> dict[str, float]:
        return self.events[-1].occupancy if self.events else {}

    def near(self, **fills: float) -> bool:
        now = self.occupancy()
        return bool(now) and all(abs(now[lane] - fill) <= 0.1 for lane, fill in fills.items())


@pytest.fixture
def sim() -> Iterator[CameraSim]:
    camera = CameraSim(LANES, fps=15, noise=4.0, seed=1)
    camera.start()
    yield camera
    camera.stop()


@pytest.fixture
async def driver(sim: CameraSim, tmp_path: Path,
                 store_id: str) -> AsyncIterator[tuple[CameraDriver, Recorder]]:
    device = CameraDevice(
        type="camera", id="cam-1", source=sim.url, measure_hz=10, min_change=0.1,
        lanes=[{"lane": lane, "roi": roi} for lane, roi in LANES],
        calibration={"reference": str(sim.write_reference(tmp_path / "empty.png"))},
        timeout_seconds=2.0)
    rec = Recorder()
    drv = CameraDriver(device, store_id, rec.on_events, rec.statuses.append,
                       reconnect_initial=0.05, reconnect_max=0.3)
    task = asyncio.create_task(drv.run(), name="camera-driver")
    yield drv, rec
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [t for t in threading.enumerate() if t.name.startswith("camera:")]


def test_stream_is_multipart_mjpeg(sim: CameraSim) -> None:
    # The framing of RFC 2046 section 5.1.1 as IP cameras use it, e.g. (the example quoted in
    # https://github.com/maraisr/meros/pull/20 and https://gist.github.com/cs8425/7869055):
    #   Content-Type: multipart/x-mixed-replace; boundary=myboundary
    #   --myboundary
    #   Content-Type: image/jpeg
    #   Content-length: 12345
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as conn:
        conn.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: camera\r\n\r\n")
        data = b""
        while data.count(b"\xff\xd9") < 2:  # two whole JPEGs (end-of-image markers)
            chunk = conn.recv(65536)
            assert chunk, "stream closed early"
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert f"Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}".encode() in head
    part_head, _, rest = body.partition(b"\r\n\r\n")
    lines = part_head.split(b"\r\n")
    assert lines[0] == f"--{BOUNDARY}".encode()
    assert b"Content-Type: image/jpeg" in lines
    length = int(next(v for k, _, v in (ln.partition(b": ") for ln in lines)
                      if k.lower() == b"content-length"))
    assert rest[:2] == b"\xff\xd8" and rest[length - 2:length] == b"\xff\xd9"
    assert rest[length:length + 4 + len(BOUNDARY)] == f"\r\n--{BOUNDARY}".encode()


async def test_events_follow_fill_changes(sim: CameraSim,
                                          driver: tuple[CameraDriver, Recorder]) -> None:
    drv, rec = driver
    await until_camera(lambda: rec.near(A1=0.0, A2=0.0, B1=0.0))
    assert rec.statuses[0].online
    sim.set_fill("A1", 1.0)
    await until_camera(lambda: rec.near(A1=1.0, A2=0.0, B1=0.0))
    sim.set_fill("B1", 0.5)
    sim.set_fill("A1", 0.25)
    await until_camera(lambda: rec.near(A1=0.25, A2=0.0, B1=0.5))
    sim.set_lighting(gain=0.6, gradient=0.4)
    await asyncio.sleep(0.5)  # ~5 measurements under the new light
    assert rec.near(A1=0.25, A2=0.0, B1=0.5), rec.occupancy()
    assert drv.good >= 5 and drv.bad == 0
    seqs = [e.seq for e in rec.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Changes below min_change send nothing: far fewer events than measurements.
    assert len(rec.events) < drv.good / 2


async def test_reconnects_after_the_stream_drops(sim: CameraSim,
                                                 driver: tuple[CameraDriver, Recorder]) -> None:
    drv, rec = driver
    await until_camera(lambda: drv.online)
    await asyncio.to_thread(sim.unplug)
    await until_camera(lambda: drv.online is False)
    assert not rec.statuses[-1].online and rec.statuses[-1].error
    await asyncio.sleep(0.5)  # several failed reopen attempts while it is away
    assert drv.online is False
    sim.set_fill("A2", 1.0)
    await asyncio.to_thread(sim.replug)
    await until_camera(lambda: drv.online)
    await until_camera(lambda: rec.near(A1=0.0, A2=1.0))
    assert drv.reconnects >= 1
    assert [s.online for s in rec.statuses] == [True, False, True]


async def test_a_missing_reference_reports_offline(sim: CameraSim, tmp_path: Path) -> None:
    device = CameraDevice(type="camera", id="cam-2", source=sim.url,
                          lanes=[{"lane": "A1", "roi": (20, 20, 280, 60)}],
                          calibration={"reference": str(tmp_path / "nope.png")})
    rec = Recorder()
    drv = CameraDriver(device, "s1", rec.on_events, rec.statuses.append,
                       reconnect_initial=0.05, reconnect_max=0.1)
    task = asyncio.create_task(drv.run())
    try:
        await until_camera(lambda: rec.statuses)
        assert rec.statuses[0].online is False
        assert "nope.png" in (rec.statuses[0].error or "")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
