"""Zebra IoT Connector tag data events (FX7500, FX9600, ATR7000): a sans-I/O codec.

A fixed reader publishes one JSON object per tag report on its data topic::

    {"data": {"idHex": "e2801160600002084f5dab5a", "antenna": 1, "peakRssi": -52,
              "eventNum": 5, "reads": 1, "format": "epc", "PC": "3000", ...},
     "timestamp": "2021-03-31T12:44:01.484+0000", "type": "CUSTOM"}

(``type`` names the operating mode: SIMPLE, INVENTORY, CUSTOM...; which ``data`` members appear
depends on the tag metadata the mode enables: only ``idHex`` is required here.) With batching a
message holds several such objects, one after another or in a JSON array; handheld/FXR90 firmware
sends ``{"data": {"tagData": [{"EPC": ..., "peakRssi": ..., "eventNum": ...}, ...]}, ...}``
(dataEVT). All of these decode; a bad object is rejected alone and the others flow on.

``eventNum`` becomes the event's ``seq``; ``timestamp`` its ``device_ts``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from devices.rfid import Decoded, decode_events, epc_hex, number, reads_or_raise, timestamp
from devices.rfid.config import RfidZebraDevice
from storeedge.errors import PayloadError
from storeedge.events import TagRead
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
_rlog = RateLimitedLog(log)

MIN_RSSI, MAX_RSSI = -128.0, 20.0  # dBm; anything outside is not a measurement
MAX_ANTENNA = 65535


def decode_all(payload: bytes, *, device: RfidZebraDevice, store_id: str,
               received_ts: float) -> Decoded:
    """Decode every tag report in one message; never raises."""
    return decode_events(payload, _event, device.id, store_id, received_ts)


def decode(payload: bytes, *, device: RfidZebraDevice, store_id: str,
           received_ts: float) -> list[TagRead]:
    """The device-kind contract: the message's good reads. PayloadError when nothing in it is
    good; bad objects beside good ones are logged (rate-limited) and dropped."""
    result = decode_all(payload, device=device, store_id=store_id, received_ts=received_ts)
    return reads_or_raise(result, kind="zebra", what="tag reports", device_id=device.id,
                          rlog=_rlog)


def _event(obj: Any, source: str, store_id: str, received_ts: float,
           out: list[TagRead]) -> None:
    if type(obj) is not dict:
        raise PayloadError(f"tag event is not a JSON object but {type(obj).__name__}",
                           source=source)
    data = obj.get("data")
    if type(data) is not dict:
        raise PayloadError("tag event has no data object", source=source)
    ts = obj.get("timestamp")
    device_ts = None if ts is None else timestamp(ts, "timestamp", source)
    tags = data.get("tagData")
    if tags is None:
        out.append(_tag(data, "idHex", source, store_id, received_ts, device_ts))
        return
    if type(tags) is not list:
        raise PayloadError("tagData is not an array", source=source)
    # A batch is one reader event: one bad record rejects the batch, not the message.
    batch = [_tag(t, "EPC", source, store_id, received_ts, device_ts) for t in tags]
    out.extend(batch)


def _tag(data: Any, epc_key: str, source: str, store_id: str, received_ts: float,
         device_ts: float | None) -> TagRead:
    if type(data) is not dict:
        raise PayloadError("tag record is not a JSON object", source=source)
    epc = epc_hex(data.get(epc_key), epc_key, source)
    antenna = data.get("antenna")
    if antenna is not None and (type(antenna) is not int or not 0 <= antenna <= MAX_ANTENNA):
        raise PayloadError(f"antenna is not a port number: {antenna!r:.40}", source=source)
    rssi = data.get("peakRssi")
    if rssi is not None:
        rssi = float(number(rssi, "peakRssi", source, MIN_RSSI, MAX_RSSI))
    seq = data.get("eventNum")
    if seq is not None and (type(seq) is not int or seq < 0):
        raise PayloadError(f"eventNum is not a non-negative integer: {seq!r:.40}", source=source)
    return TagRead(store_id=store_id, source=source, received_ts=received_ts,
                   device_ts=device_ts, seq=seq, epc=epc, antenna=antenna, rssi=rssi)


def encode(epc: str, *, antenna: int | None = None, rssi: float | None = None,
           event_num: int | None = None, ts: str | None = None,
           mode: str = "SIMPLE") -> bytes:
    """One tag data event as a fixed reader publishes it (lower-case ``idHex``, as readers do).
    ``ts`` is the reader's ISO 8601 time, e.g. ``2021-03-31T12:44:01.484+0000``."""
    data: dict[str, Any] = {"idHex": epc.lower(), "format": "epc"}
    if antenna is not None:
        data["antenna"] = antenna
    if rssi is not None:
        data["peakRssi"] = rssi
    if event_num is not None:
        data["eventNum"] = event_num
        data["reads"] = 1
    obj: dict[str, Any] = {"data": data}
    if ts is not None:
        obj["timestamp"] = ts
    obj["type"] = mode
    return json.dumps(obj, separators=(",", ":")).encode()
