"""The wireless shelf's MQTT JSON: a sans-I/O codec.

Topics: ``store/{sid}/dev/{device_id}/weight`` carries one lane reading,

    {"lane": "A1-3", "grams": 1234.5, "seq": 17, "ts": 1764160000123}

with ``seq`` (a non-negative int) and ``ts`` (the device's clock, epoch milliseconds) optional;
unknown keys are ignored. ``store/{sid}/dev/{device_id}/status`` carries ``online`` or ``offline``
(retained; ``offline`` is the last will).

``decode_weight`` is the agent's hot path (tens of thousands of readings a second): orjson
(``json.loads`` for what it does not take) and hand-written checks, no schema library.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from devices.shelf_mqtt.config import ShelfMqttDevice
from storeedge.errors import PayloadError, UsageError
from storeedge.events import ShelfWeight

MIN_GRAMS = -1000.0  # a tared lane reads slightly negative; beyond this the load cell is broken
MAX_GRAMS = 1e6

_loads = json.loads
_fast_loads = orjson.loads
_READ_KEYS = ("lane", "grams", "seq", "ts")
_BIG = 2.0**63
_isfinite = math.isfinite


def weight_topic(store_id: str, device_id: str) -> str:
    return f"store/{store_id}/dev/{device_id}/weight"


def status_topic(store_id: str, device_id: str) -> str:
    return f"store/{store_id}/dev/{device_id}/status"


def decode_weight(
    payload: bytes, *, store_id: str, device_id: str, received_ts: float
) -> ShelfWeight:
    """Decode one weight payload; raise PayloadError naming what is wrong."""
    try:
        obj = _parse(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"weight payload is not JSON: {exc}", source=device_id) from None
    if type(obj) is not dict:
        raise PayloadError(
            f"weight payload is not a JSON object but {type(obj).__name__}", source=device_id
        )
    lane = obj.get("lane")
    if type(lane) is not str or not lane:
        if lane is None:
            raise PayloadError("weight payload has no lane", source=device_id)
        raise PayloadError(f"lane is not a non-empty string: {lane!r:.40}", source=device_id)
    grams: Any = obj.get("grams")
    tg = type(grams)
    if tg is float:
        if not _isfinite(grams):
            raise PayloadError(f"grams is not a finite number: {grams}", source=device_id)
    elif tg is not int:
        what = "missing" if grams is None else f"not a number: {grams!r:.40}"
        raise PayloadError(f"grams is {what}", source=device_id)
    if not MIN_GRAMS <= grams <= MAX_GRAMS:
        raise PayloadError(
            f"grams {grams!r:.40} is absurd (outside {MIN_GRAMS:g}..{MAX_GRAMS:g})",
            source=device_id,
        )
    seq = obj.get("seq")
    if seq is not None and (type(seq) is not int or seq < 0):
        raise PayloadError(f"seq is not a non-negative integer: {seq!r:.40}", source=device_id)
    ts = obj.get("ts")
    device_ts = None
    if ts is not None:
        tt = type(ts)
        if not (tt is int or (tt is float and _isfinite(ts))):
            raise PayloadError(f"ts is not a number of epoch ms: {ts!r:.40}", source=device_id)
        try:
            device_ts = ts / 1000.0
        except OverflowError:
            raise PayloadError(
                f"ts is not a plausible epoch ms: {ts!r:.40}", source=device_id
            ) from None
    return ShelfWeight(
        store_id=store_id,
        source=device_id,
        received_ts=received_ts,
        device_ts=device_ts,
        seq=seq,
        lane=lane,
        grams=float(grams),
    )


def _parse(payload: bytes) -> Any:
    # orjson parses a reading four times faster than json's own scanner. It takes strict RFC 8259
    # JSON only, a subset of what json.loads takes, to the same values; everything else (NaN,
    # BOMs, UTF-16, huge ints, errors) goes through json.loads, so what is accepted and the error
    # messages stay exactly json.loads'.
    try:
        obj = _fast_loads(payload)
    except ValueError:  # orjson.JSONDecodeError
        return _loads(payload)
    # orjson reads an integer beyond 64 bits as a float, json.loads as an int: those (and any
    # float as big, rare and harmless) are read again where a check or its message could tell.
    if type(obj) is dict:
        for key in _READ_KEYS:
            value = obj.get(key)
            if type(value) is float and not -_BIG < value < _BIG:
                return _loads(payload)
    elif type(obj) is float:
        return _loads(payload)
    return obj


def encode_weight(
    lane: str, grams: float, seq: int | None = None, ts_ms: int | None = None
) -> bytes:
    """The payload a wireless shelf publishes for one lane reading."""
    obj: dict[str, object] = {"lane": lane, "grams": grams}
    if seq is not None:
        obj["seq"] = seq
    if ts_ms is not None:
        obj["ts"] = ts_ms
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise UsageError(f"cannot encode grams {grams!r}: {exc}") from exc


def decode_status(payload: bytes) -> bool:
    """``online`` -> True, ``offline`` -> False; anything else is a PayloadError."""
    text = payload.strip()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    raise PayloadError(f"status is neither 'online' nor 'offline': {payload[:40]!r}")


def encode_status(online: bool) -> bytes:
    return b"online" if online else b"offline"


def decode(payload: bytes, *, device: ShelfMqttDevice, store_id: str,
           received_ts: float) -> list[ShelfWeight]:
    """The device-kind entry point: one weight reading, for one of this shelf's lanes."""
    reading = decode_weight(payload, store_id=store_id, device_id=device.id,
                            received_ts=received_ts)
    if reading.lane not in device.lanes:
        raise PayloadError(f"lane {reading.lane!r} is not one of this shelf's", source=device.id)
    return [reading]

