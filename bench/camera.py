"""Camera occupancy benchmark: lane measurements per second on one core.

    /work/venv/bin/python bench/camera.py [--lanes 20] [--seconds 5]

Renders 640x480 shelf frames with ``--lanes`` lanes at varied fill levels, noise and lighting
(JPEG round trip included, as a camera delivers them), then runs ``measure`` over them for
``--seconds`` with OpenCV held to one thread. Prints lane-measurements/s and frames/s with the
machine and the commit; the target is 200 lane-measurements/s (20 lanes at 10 frames/s). Frame
decoding is not timed: the driver's capture thread does it, whatever the measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import machine_line  # noqa: E402
from devices.camera.config import CameraLane  # noqa: E402
from devices.camera.occupancy import Reference, measure  # noqa: E402
from firmware_sim.camera import render_shelf  # noqa: E402


def shelf_lanes(count: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """``count`` lanes in rows of five across a 640x480 frame, a rail's gap between rows."""
    per_row, width, height = 5, 112, 64
    rows = -(-count // per_row)
    if rows * (height + 20) > 480:
        raise SystemExit(f"{count} lanes do not fit a 640x480 frame in rows of {per_row}")
    return [(f"L{i + 1:02d}", (8 + (i % per_row) * (width + 14), 8 + (i // per_row) * (height + 20),
                               width, height)) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    lanes = shelf_lanes(args.lanes)
    config = [CameraLane(lane=lane, roi=roi) for lane, roi in lanes]
    reference = Reference.from_frame(render_shelf(lanes, {}))
    rng = np.random.default_rng(1)
    frames, truths = [], []
    for i in range(16):
        fills = {lane: float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])) for lane, _ in lanes}
        frame = render_shelf(lanes, fills, noise=4.0, rng=rng, gain=0.7 + 0.04 * i,
                             gradient=0.3 if i % 2 else 0.0)
        frames.append(cv2.imdecode(cv2.imencode(".jpg", frame)[1], cv2.IMREAD_COLOR))
        truths.append(fills)
    worst = max(abs(value - truth[lane]) for frame, truth in zip(frames, truths, strict=True)
                for lane, value in measure(frame, config, reference).items())
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < args.seconds:
        measure(frames[done % len(frames)], config, reference)
        done += 1
    print(f"{machine_line()}; opencv {cv2.__version__} (1 thread)")
    print(f"lanes: {args.lanes}, frame 640x480, {done} frames in {elapsed:.2f} s")
    print(f"frames/s: {done / elapsed:,.0f}")
    print(f"lane-measurements/s: {done * args.lanes / elapsed:,.0f} (target 200)")
    print(f"worst error against the rendered fill: {worst:.3f}")


if __name__ == "__main__":
    main()
