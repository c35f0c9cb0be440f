"""Configuration of one shelf camera.

Calibration: at install time, with the lanes empty, capture one frame from the camera at the
resolution it streams (``storeedge``'s simulator writes one with ``CameraSim.write_reference``) and
point ``calibration.reference`` at it. The frame is cut into square cells of ``cell`` pixels; a
cell of a lane counts as covered when its mean colour differs from the reference's by more than
``threshold`` (relative, the largest of the three channels) after correcting for lighting, and a
lane's occupancy is the share of its cells covered. Lighting (brightness, white balance, a slow
gradient across the frame) is estimated from the cells outside every lane, so the frame must show
some shelf that products never cover: shelf edges, price rails, the gaps between lanes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CameraLane(BaseModel):
    """One lane: its id and its rectangle ``(x, y, w, h)`` in pixels of the frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lane: Annotated[str, Field(min_length=1, max_length=32)]
    roi: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)],
               Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]


class CameraCalibration(BaseModel):
    """How an empty shelf looks, and how different a covered cell must be (see module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str  # path to an image of the empty shelf, same size as the stream's frames
    cell: Annotated[int, Field(ge=2, le=64)] = 8
    threshold: Annotated[float, Field(gt=0, lt=2)] = 0.2


class CameraDevice(BaseModel):
    """A camera watching shelf lanes; the driver emits ``ShelfImage`` events.

    ``source`` is anything ``cv2.VideoCapture`` opens: an ``rtsp://`` or ``http://`` (MJPEG) URL, a
    file path, or a local device index written as digits (``"0"``). Occupancy is measured
    ``measure_hz`` times a second; an event goes out when any lane moved by more than
    ``min_change`` since the last event, and every ``heartbeat_seconds`` regardless.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["camera"]
    id: str
    source: Annotated[str, Field(min_length=1)]
    measure_hz: Annotated[float, Field(gt=0, le=30)] = 2.0
    lanes: Annotated[list[CameraLane], Field(min_length=1, max_length=200)]
    calibration: CameraCalibration
    min_change: Annotated[float, Field(gt=0, le=1)] = 0.1
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 60.0
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0  # opening, and each read

    @model_validator(mode="after")
    def _unique_lanes(self) -> CameraDevice:
        seen: set[str] = set()
        for lane in self.lanes:
            if lane.lane in seen:
                raise ValueError(f"lane {lane.lane!r} appears twice")
            seen.add(lane.lane)
        return self
