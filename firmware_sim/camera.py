"""A shelf camera: renders synthetic shelf frames and serves them as HTTP MJPEG on loopback.

The stream is ``multipart/x-mixed-replace`` (RFC 2046 section 5.1.1 with the ``x-mixed-replace``
subtype browsers and IP cameras use): each part is a delimiter line ``--<boundary>``, its headers
``Content-Type: image/jpeg`` and ``Content-Length``, a blank line and one JPEG frame. The delimiter
comes before each part, as FFmpeg's ``mpjpeg`` demuxer (inside ``cv2.VideoCapture``) requires.

Each lane is a rectangle of the frame; a lane at fill level f shows product facings along its
longer side over the share f of it, on a textured shelf with rails and price tags outside the
lanes. Faults: gaussian pixel noise, a lighting change (gain, a left-to-right gradient, a colour
tint), corrupted JPEG bytes, and ``unplug()``/``replug()`` (``stop()``/``start()``) to drop and
restore the stream. A ``firmware_sim.faults.Faults`` supplies ``corrupt_rate`` (per frame) and
``noise`` (a fraction of full scale: 0.02 adds 5 grey levels of noise); ``plug_schedule`` drives
``unplug``/``replug``.
"""

from __future__ import annotations

import logging
import random
import threading
import zlib
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from firmware_sim.faults import Faults
from storeedge.errors import UsageError

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 640, 480
BOUNDARY = "storeedgeframe"
_SHELF = (178, 186, 192)  # BGR of the empty shelf's back panel
_RAIL = (70, 72, 75)
_PRODUCT_COLOURS = [
    (40, 40, 200), (200, 60, 40), (40, 160, 40), (30, 200, 230), (150, 40, 150),
    (20, 20, 30), (220, 140, 30), (60, 100, 180), (30, 90, 60), (120, 30, 80),
]
_FACING = 26  # pixels per product facing along the lane
_GAP = 3

Lane = tuple[str, tuple[int, int, int, int]]  # (lane id, (x, y, w, h))


def _shelf_texture(width: int, height: int) -> np.ndarray:
    # A fixed faint grain, so the empty shelf is not a flat colour (real ones never are).
    grain = np.random.default_rng(7).normal(0.0, 6.0, (height // 4, width // 4)).astype(np.float32)
    grain = cv2.resize(cv2.GaussianBlur(grain, (0, 0), 1.0), (width, height))
    return grain[..., None]


def render_shelf(
    lanes: Sequence[Lane],
    fills: dict[str, float],
    *,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    gain: float = 1.0,
    gradient: float = 0.0,
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One BGR uint8 frame of the shelf: each lane filled to ``fills.get(lane, 0)`` (0..1).

    Lighting: the frame is multiplied by ``gain``, by ``1 + gradient * (x / width - 0.5)`` and per
    channel by ``tint`` (B, G, R); then gaussian ``noise`` (standard deviation, grey levels) is
    added.
    """
    width, height = size
    frame = np.empty((height, width, 3), np.float32)
    frame[:] = _SHELF
    frame += _shelf_texture(width, height)
    rects = [roi for _, roi in lanes]
    for x, y, w, h in rects:  # the rail under each lane, with a price tag
        cv2.rectangle(frame, (x, y + h + 2), (x + w - 1, y + h + 11), _RAIL, -1)
        cv2.rectangle(frame, (x + 4, y + h + 4), (x + 30, y + h + 10), (235, 235, 235), -1)
    for lane, (x, y, w, h) in lanes:
        frame[y:y + h, x:x + w] = _SHELF + _shelf_texture(width, height)[y:y + h, x:x + w]
        fill = min(max(fills.get(lane, 0.0), 0.0), 1.0)
        colour = _PRODUCT_COLOURS[zlib.crc32(lane.encode()) % len(_PRODUCT_COLOURS)]
        along, across = (w, h) if w >= h else (h, w)
        covered = round(fill * along)
        start = 0
        while start < covered:
            end = min(start + _FACING, covered)
            _facing(frame, (x, y, w, h), start, end, across, colour, horizontal=w >= h)
            start = end + _GAP
    ramp = 1.0 + gradient * (np.arange(width, dtype=np.float32) / width - 0.5)
    frame *= gain * ramp[None, :, None] * np.asarray(tint, np.float32)
    if noise:
        rng = rng or np.random.default_rng()
        frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _facing(frame: np.ndarray, roi: tuple[int, int, int, int], start: int, end: int,
            across: int, colour: tuple[int, int, int], *, horizontal: bool) -> None:
    x, y, _, _ = roi
    if horizontal:
        p0, p1 = (x + start, y + 1), (x + end - 1, y + across - 1)
    else:
        p0, p1 = (x + 1, y + start), (x + across - 1, y + end - 1)
    cv2.rectangle(frame, p0, p1, colour, -1)
    cv2.rectangle(frame, p0, p1, (15, 15, 15), 1)
    label = tuple(min(255, c + 90) for c in colour)
    lx0, ly0 = p0[0] + (p1[0] - p0[0]) // 4, p0[1] + (p1[1] - p0[1]) // 3
    lx1, ly1 = p1[0] - (p1[0] - p0[0]) // 4, p1[1] - (p1[1] - p0[1]) // 3
    if lx1 > lx0 and ly1 > ly0:
        cv2.rectangle(frame, (lx0, ly0), (lx1, ly1), label, -1)


class CameraSim:
    """A camera serving ``http://127.0.0.1:<port>/stream.mjpg`` at ``fps`` frames a second.

    ``start()`` binds (``port=0`` picks a free port, kept across ``stop()``/``start()`` so a
    restarted camera comes back at the same URL) and serves on threads; ``stop()`` ends every
    stream and joins the threads. ``set_fill`` and ``set_lighting`` are safe from any thread.
    """

    def __init__(self, lanes: Sequence[Lane], port: int = 0, *, device_id: str = "camera",
                 fps: float = 10.0, noise: float = 3.0, corrupt: float = 0.0,
                 faults: Faults | None = None, seed: int | None = None,
                 size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
        width, height = size
        for lane, (x, y, w, h) in lanes:
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise UsageError(f"lane {lane!r} {(x, y, w, h)} leaves the {width}x{height} frame")
        faults = faults or Faults()
        self.device_id = device_id
        self.lanes = list(lanes)
        self.port = port
        self.fps = fps
        self.noise = noise + 255.0 * faults.noise
        self.corrupt = max(corrupt, faults.corrupt_rate)
        self.size = size
        self.frames_sent = 0
        self._fills = {lane: 0.0 for lane, _ in self.lanes}
        self._lighting: dict[str, object] = {"gain": 1.0, "gradient": 0.0, "tint": (1.0, 1.0, 1.0)}
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The MJPEG stream's URL (valid once started)."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def set_fill(self, lane: str, fill: float) -> None:
        """Fill ``lane`` to ``fill`` (0 empty .. 1 full) from the next frame on."""
        if lane not in self._fills:
            raise UsageError(f"camera has no lane {lane!r}")
        if not 0.0 <= fill <= 1.0:
            raise UsageError(f"fill must be 0..1, got {fill}")
        with self._lock:
            self._fills[lane] = fill

    def set_lighting(self, gain: float = 1.0, gradient: float = 0.0,
                     tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        """Change the lighting (see ``render_shelf``) from the next frame on."""
        with self._lock:
            self._lighting = {"gain": gain, "gradient": gradient, "tint": tint}

    def frame(self) -> np.ndarray:
        """The frame the camera sees now, noise and lighting included."""
        with self._lock:
            fills, lighting = dict(self._fills), dict(self._lighting)
            rng = np.random.default_rng(self._rng.integers(2**63))
        return render_shelf(self.lanes, fills, size=self.size, noise=self.noise, rng=rng,
                            **lighting)  # type: ignore[arg-type]

    def write_reference(self, path: str | Path) -> Path:
        """Write the empty shelf under neutral light, noise-free, as the install-time reference
        image (PNG: lossless) and return its path."""
        path = Path(path)
        if not cv2.imwrite(str(path), render_shelf(self.lanes, {}, size=self.size)):
            raise UsageError(f"cannot write {path}")
        return path

    def jpeg(self) -> bytes:
        """The current frame as JPEG bytes, corrupted with probability ``corrupt``."""
        ok, data = cv2.imencode(".jpg", self.frame(), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise UsageError("JPEG encoding failed")
        raw = bytearray(data.tobytes())
        with self._lock:
            corrupt = self._random.random() < self.corrupt
            if corrupt:  # garble the entropy-coded data, keep the length honest
                for _ in range(64):
                    raw[self._random.randrange(len(raw) // 2, len(raw) - 2)] = \
                        self._random.randrange(256)
        return bytes(raw)

    def start(self) -> None:
        """Bind and serve (plugged in)."""
        if self._server is not None:
            raise UsageError("camera already started")
        self._stop.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.sim = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"camera-sim:{self.port}", daemon=True)
        self._thread.start()
        log.info("camera sim serving %s", self.url)

    def stop(self) -> None:
        """End every stream, close the port and join the threads (unplugged). Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()
        server.shutdown()
        server.server_close()  # joins the per-client threads, which see _stop within a frame
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        log.info("camera sim on port %d stopped", self.port)

    def unplug(self) -> None:
        """The camera drops off the network (``stop``)."""
        self.stop()

    def replug(self) -> None:
        """The camera comes back at the same URL (``start``)."""
        self.start()

    def __enter__(self) -> CameraSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every client thread
    block_on_close = True
    sim: CameraSim


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5.0  # a client that stops reading cannot pin a thread forever

    def do_GET(self) -> None:
        sim = self.server.sim
        if self.path == "/frame.jpg":
            data = sim.jpeg()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.path != "/stream.mjpg":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        period = 1.0 / sim.fps
        try:
            while not sim._stop.is_set():
                data = sim.jpeg()
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode("ascii") + data + b"\r\n")
                self.wfile.flush()
                sim.frames_sent += 1
                sim._stop.wait(period)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("camera sim: " + format, *args)
