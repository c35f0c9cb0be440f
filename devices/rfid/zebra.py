"""Zebra IoT Connector tag data events (FX7500, FX9600, ATR7000): a sans-I/O codec.

A fixed reader publishes one JSON object per tag report on its data topic::

    {"data": {"idHex": "e2801160600002084f5dab5a", "antenna": 1, "peakRssi": -52,
              "eventNum": 5, "reads": 1, "format": "epc", "PC": "3000", ...},
     "timestamp": "2021-03-31T12:44:01.484+0000", "type": "CUSTOM"}

(``type`` names the operating mode: SIMPLE, INVENTORY, CUSTOM...; which ``data`` members appear
depends on the tag metadata the mode enables: only ``idHex`` is required here.) Kept where a rule
can use them: ``reads`` (``seenCount`` in dataEVT), ``MAC`` and ``hostName`` of the reader,
``TID`` memory, ``accessResults``. With batching a
message holds several such objects, one after another or in a JSON array; handheld/FXR90 firmware
sends ``{"data": {"tagData": [{"EPC": ..., "peakRssi": ..., "eventNum": ...}, ...]}, ...}``
(dataEVT). All of these decode; a bad object is rejected alone and the others flow on.

``eventNum`` becomes the event's ``seq``; ``timestamp`` its ``device_ts`` and ``event_ts`` (the
reader reports no separate last-seen time).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from devices.rfid import (
    Decoded,
    count,
    decode_events,
    epc_hex,
    mac_address,
    memory_hex,
    number,
    reads_or_raise,
    short_text,
    timestamp,
)
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
    seq = count(data.get("eventNum"), "eventNum", source)
    # The IoT Connector names the count "reads"; dataEVT firmware "seenCount".
    reads_key = "reads" if "reads" in data else "seenCount"
    access = data.get("accessResults")
    if access is not None and (type(access) is not list
                               or not all(type(a) is str for a in access)):
        raise PayloadError(f"accessResults is not an array of strings: {access!r:.40}",
                           source=source)
    return TagRead(store_id=store_id, source=source, received_ts=received_ts,
                   device_ts=device_ts, event_ts=device_ts, seq=seq, epc=epc, antenna=antenna,
                   rssi=rssi, reads=count(data.get(reads_key), reads_key, source),
                   reader_mac=mac_address(data.get("MAC"), "MAC", source),
                   reader_host=short_text(data.get("hostName"), "hostName", source),
                   tid=memory_hex(data.get("TID"), "TID", source),
                   access_results=tuple(access) if access else ())


def encode(epc: str, *, antenna: int | None = None, rssi: float | None = None,
           event_num: int | None = None, ts: str | None = None, mode: str = "SIMPLE",
           mac: str | None = None, host_name: str | None = None) -> bytes:
    """One tag data event as a fixed reader publishes it (lower-case ``idHex``, as readers do).
    ``ts`` is the reader's ISO 8601 time, e.g. ``2021-03-31T12:44:01.484+0000``; ``mac`` and
    ``host_name`` are the reader's, as the MAC and HOSTNAME metadata report them."""
    data: dict[str, Any] = {"idHex": epc.lower(), "format": "epc"}
    if antenna is not None:
        data["antenna"] = antenna
    if rssi is not None:
        data["peakRssi"] = rssi
    if event_num is not None:
        data["eventNum"] = event_num
        data["reads"] = 1
    if mac is not None:
        data["MAC"] = mac
    if host_name is not None:
        data["hostName"] = host_name
    obj: dict[str, Any] = {"data": data}
    if ts is not None:
        obj["timestamp"] = ts
    obj["type"] = mode
    return json.dumps(obj, separators=(",", ":")).encode()
