"""Lane occupancy on rendered shelf frames: the truth is the fill each lane was drawn at."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from devices.camera.config import CameraDevice, CameraLane
from devices.camera.occupancy import Reference, check_lanes, measure
from firmware_sim.camera import render_shelf
from storeedge.errors import ConfigError, FrameError

LANES = [
    ("A1", (20, 20, 280, 60)),
    ("A2", (340, 20, 280, 60)),
    ("B1", (20, 120, 60, 200)),  # upright: fills top to bottom
    ("B2", (120, 120, 180, 60)),
    ("B3", (340, 120, 280, 90)),
]
CONFIG = [CameraLane(lane=lane, roi=roi) for lane, roi in LANES]
TOLERANCE = 0.1
LIGHTING = [
    {"gain": 0.55},
    {"gain": 1.35},
    {"gain": 0.7, "gradient": 0.6},
    {"tint": (1.25, 1.0, 0.8)},  # warmer lamps: white balance shifts
    {"gain": 0.6, "gradient": -0.5, "tint": (0.9, 1.0, 1.15)},
]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.from_frame(render_shelf(LANES, {}))


def occupancy(fills: dict[str, float], reference: Reference, **render: object) -> dict[str, float]:
    frame = render_shelf(LANES, fills, rng=np.random.default_rng(3), **render)  # type: ignore[arg-type]
    return measure(frame, CONFIG, reference)


def assert_near(measured: dict[str, float], fills: dict[str, float]) -> None:
    wrong = {lane: (round(value, 3), fills.get(lane, 0.0)) for lane, value in measured.items()
             if abs(value - fills.get(lane, 0.0)) > TOLERANCE}
    assert not wrong, f"lanes off by more than {TOLERANCE} (measured, truth): {wrong}"


@pytest.mark.parametrize("level", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_every_lane_reads_its_fill_level(reference: Reference, level: float) -> None:
    fills = {lane: level for lane, _ in LANES}
    assert_near(occupancy(fills, reference, noise=4.0), fills)


def test_mixed_levels_are_told_apart(reference: Reference) -> None:
    fills = {"A1": 0.0, "A2": 1.0, "B1": 0.5, "B2": 0.3, "B3": 0.8}
    measured = occupancy(fills, reference, noise=4.0)
    assert_near(measured, fills)
    assert measured["A1"] < 0.05 and measured["A2"] > 0.95


@pytest.mark.parametrize("light", LIGHTING, ids=lambda light: ",".join(map(str, light.items())))
def test_lighting_change_flips_no_lane(reference: Reference, light: dict[str, object]) -> None:
    fills = {"A1": 0.0, "A2": 1.0, "B1": 0.5, "B2": 0.0, "B3": 0.6}
    assert_near(occupancy(fills, reference, noise=4.0, **light), fills)


def test_lighting_change_is_large_enough_to_matter(reference: Reference) -> None:
    # Guards the test above: the darkest lighting must change an empty lane's colour well past
    # the threshold, so lanes would read as full without the correction.
    empty = render_shelf(LANES, {}).astype(np.float32)
    dark = render_shelf(LANES, {}, **LIGHTING[0]).astype(np.float32)  # type: ignore[arg-type]
    assert np.median(np.abs(dark - empty) / (empty + 16)) > 2 * reference.threshold


@pytest.mark.parametrize("noise", [8.0, 15.0])
def test_sensor_noise_flips_no_lane(reference: Reference, noise: float) -> None:
    fills = {"A1": 0.0, "A2": 1.0, "B1": 0.5, "B2": 0.0, "B3": 0.25}
    assert_near(occupancy(fills, reference, noise=noise), fills)


def test_jpeg_compression_is_harmless(reference: Reference) -> None:
    import cv2

    fills = {"A1": 0.4, "A2": 1.0, "B1": 0.5, "B2": 0.0, "B3": 0.9}
    frame = render_shelf(LANES, fills, noise=4.0, rng=np.random.default_rng(5))
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    assert_near(measure(cv2.imdecode(data, cv2.IMREAD_COLOR), CONFIG, reference), fills)


def test_a_lane_outside_the_frame_is_named(reference: Reference) -> None:
    lanes = [*CONFIG, CameraLane(lane="C9", roi=(600, 400, 100, 50))]
    with pytest.raises(ConfigError, match=r"lanes\[C9\]\.roi.*outside the 640x480 frame"):
        check_lanes(lanes, reference)
    frame = render_shelf(LANES, {})
    with pytest.raises(ConfigError, match=r"C9"):
        measure(frame, lanes, reference)


def test_a_lane_smaller_than_a_cell_is_named(reference: Reference) -> None:
    with pytest.raises(ConfigError, match=r"lanes\[tiny\]\.roi.*no whole 8x8 cell"):
        check_lanes([CameraLane(lane="tiny", roi=(3, 3, 10, 10))], reference)


def test_a_frame_of_another_size_is_a_frame_error(reference: Reference) -> None:
    with pytest.raises(FrameError, match="not the reference's"):
        measure(np.zeros((240, 320, 3), np.uint8), CONFIG, reference)


def test_config_rejects_bad_lanes() -> None:
    base = {"type": "camera", "id": "cam-1", "source": "0",
            "calibration": {"reference": "empty.png"}}
    CameraDevice(**base, lanes=[{"lane": "A1", "roi": (0, 0, 10, 10)}])
    with pytest.raises(ValidationError, match="appears twice"):
        CameraDevice(**base, lanes=[{"lane": "A1", "roi": (0, 0, 10, 10)},
                                    {"lane": "A1", "roi": (20, 0, 10, 10)}])
    with pytest.raises(ValidationError):
        CameraDevice(**base, lanes=[{"lane": "A1", "roi": (0, 0, 0, 10)}])
    with pytest.raises(ValidationError):
        CameraDevice(**base, lanes=[{"lane": "A1", "roi": (-1, 0, 10, 10)}])
