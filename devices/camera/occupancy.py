"""Lane occupancy from one camera frame, sans-I/O: a BGR frame in, occupancy per lane out.

The method, chosen to stay cheap (one resize and one blur per frame, whatever the lane count) and
to shrug off lighting changes and sensor noise:

1. Both the frame and the empty-shelf reference are cut into square cells of ``cell`` pixels and
   reduced to each cell's mean BGR (one ``INTER_AREA`` resize). Averaging a cell of 64 pixels
   divides per-pixel noise by eight.
2. Lighting: products never cover the cells outside every lane, so there the ratio frame/reference
   is pure illumination (exposure, white balance, a gradient across the frame). A normalised
   convolution (a wide blur of the ratio over those cells, divided by the blur of their mask)
   spreads it over the lanes, per channel; where no uncovered cell is near, the median ratio of
   all uncovered cells stands in.
3. A lane cell is covered when its colour differs from the relit reference by more than
   ``threshold``, relative, in its most different channel. A 3x3 closing fills the gaps between
   product facings, and the lane's occupancy is the share of its cells covered.

Errors: a lane whose rectangle leaves the reference frame raises ``ConfigError`` naming the lane
(``check_lanes`` tells at start-up, ``measure`` on first use); a frame whose size differs from the
reference raises ``FrameError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from storeedge.errors import ConfigError, FrameError

# Added before dividing so black pixels do not make ratios explode.
_DARK = 4.0
# Floor of the denominator of the relative difference: small absolute differences on a dark shelf
# are noise, not products.
_FLOOR = 16.0
# Below this blurred mask weight, too few uncovered cells are near for a local lighting estimate.
_MIN_WEIGHT = 0.02
_CLOSE = np.ones((3, 3), np.uint8)


class LaneRoi(Protocol):
    """A lane id and its rectangle ``(x, y, w, h)`` in frame pixels (``CameraLane`` fits)."""

    @property
    def lane(self) -> str: ...
    @property
    def roi(self) -> tuple[int, int, int, int]: ...


@dataclass(frozen=True, slots=True)
class _Layout:
    lanes: tuple[tuple[str, int, int, int, int], ...]  # lane, row0, row1, col0, col1 (cells)
    mask: np.ndarray  # float32 (rows, cols, 1): 1 where no lane is
    weight: np.ndarray  # float32 (rows, cols, 1): the mask blurred
    local: np.ndarray  # bool (rows, cols, 1): where the blurred estimate is trusted
    sigma: float


@dataclass(frozen=True, slots=True, eq=False)
class Reference:
    """The empty shelf as cells: build it with ``Reference.from_frame``."""

    cells: np.ndarray  # float32 (rows, cols, 3): mean BGR per cell
    width: int
    height: int
    cell: int
    threshold: float
    where: str  # names the reference in errors (its file, usually)
    _layouts: dict[tuple[tuple[str, tuple[int, int, int, int]], ...], _Layout] = field(
        default_factory=dict, repr=False)

    @classmethod
    def from_frame(cls, empty: np.ndarray, *, cell: int = 8, threshold: float = 0.2,
                   where: str = "reference frame") -> Reference:
        """The reference from a BGR frame of the empty shelf (``where`` names it in errors)."""
        if empty.ndim != 3 or empty.shape[2] != 3 or empty.dtype != np.uint8:
            raise ConfigError(where, "reference", f"not a BGR 8-bit image: shape {empty.shape}, "
                                                  f"dtype {empty.dtype}")
        height, width = empty.shape[:2]
        if height < cell or width < cell:
            raise ConfigError(where, "reference", f"{width}x{height} is smaller than one cell")
        return cls(_cells(empty, cell), width, height, cell, threshold, where)

    def layout(self, lanes: Sequence[LaneRoi]) -> _Layout:
        key = tuple((lane.lane, tuple(lane.roi)) for lane in lanes)
        found = self._layouts.get(key)  # type: ignore[arg-type]
        if found is None:
            found = self._layouts[key] = self._build_layout(lanes)  # type: ignore[index]
        return found

    def _build_layout(self, lanes: Sequence[LaneRoi]) -> _Layout:
        rows, cols = self.cells.shape[:2]
        mask = np.ones((rows, cols), np.float32)
        placed = []
        for lane in lanes:
            x, y, w, h = lane.roi
            if x + w > self.width or y + h > self.height:
                raise ConfigError(
                    self.where, f"lanes[{lane.lane}].roi",
                    f"({x}, {y}, {w}, {h}) reaches ({x + w}, {y + h}), outside the "
                    f"{self.width}x{self.height} frame")
            # Cells wholly inside the rectangle measure the lane; cells it touches are no
            # background for the lighting estimate.
            r0, r1 = -(-y // self.cell), (y + h) // self.cell
            c0, c1 = -(-x // self.cell), (x + w) // self.cell
            if r1 - r0 < 1 or c1 - c0 < 1:
                raise ConfigError(
                    self.where, f"lanes[{lane.lane}].roi",
                    f"({x}, {y}, {w}, {h}) holds no whole {self.cell}x{self.cell} cell")
            cell = self.cell
            mask[y // cell:-(-(y + h) // cell), x // cell:-(-(x + w) // cell)] = 0
            placed.append((lane.lane, r0, r1, c0, c1))
        sigma = max(rows, cols) / 6
        weight = cv2.GaussianBlur(mask, (0, 0), sigma)
        return _Layout(tuple(placed), mask[..., None], weight[..., None],
                       (weight > _MIN_WEIGHT)[..., None], sigma)


def check_lanes(lanes: Sequence[LaneRoi], reference: Reference) -> None:
    """Raise ``ConfigError`` naming the first lane that does not fit the reference frame."""
    reference.layout(lanes)


def measure(frame: np.ndarray, lanes: Sequence[LaneRoi], reference: Reference) -> dict[str, float]:
    """Occupancy 0..1 of each lane in a BGR uint8 frame the size of the reference."""
    if frame.shape != (reference.height, reference.width, 3):
        raise FrameError(f"frame shape {frame.shape} is not the reference's "
                         f"{(reference.height, reference.width, 3)}")
    layout = reference.layout(lanes)
    cells = _cells(frame, reference.cell)
    ref = reference.cells + _DARK
    ratio = (cells + _DARK) / ref
    background = layout.mask[..., 0] > 0
    if background.any():
        overall = np.median(ratio[background], axis=0)
    else:
        overall = np.ones(3, np.float32)
    spread = cv2.GaussianBlur(ratio * layout.mask, (0, 0), layout.sigma)
    gain = np.where(layout.local, spread / np.maximum(layout.weight, _MIN_WEIGHT), overall)
    expected = ref * gain - _DARK
    diff = np.abs(cells - expected) / (np.maximum(expected, 0.0) + _FLOOR)
    covered = (diff.max(axis=2) > reference.threshold).astype(np.uint8)
    out = {}
    for lane, r0, r1, c0, c1 in layout.lanes:
        closed = cv2.morphologyEx(covered[r0:r1, c0:c1], cv2.MORPH_CLOSE, _CLOSE)
        out[lane] = float(closed.mean())
    return out


def _cells(frame: np.ndarray, cell: int) -> np.ndarray:
    rows, cols = frame.shape[0] // cell, frame.shape[1] // cell
    cropped = frame[:rows * cell, :cols * cell]
    return cv2.resize(cropped, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
