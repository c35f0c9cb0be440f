"""Impinj IoT device interface events (R700, R720): a sans-I/O codec.

The reader publishes one JSON event per message over MQTT (newline-delimited over its HTTP
stream). An event carries one event object named for its kind, and usually an ``eventType``::

    {"timestamp": "2024-08-06T12:00:00.123Z", "hostname": "impinj-14-46-36",
     "eventType": "tagInventory",
     "tagInventoryEvent": {"epc": "MAAAAAAAAAAAAAAA", "epcHex": "300000000000000000000000",
                           "antennaPort": 1, "antennaName": "Antenna 1",
                           "peakRssiCdbm": -5325, "lastSeenTime": "2024-08-06T12:00:00.120Z"}}

Some modes and firmware leave ``eventType`` out, so the event is recognised by the object it
carries: a ``tagInventoryEvent`` is a tag read whatever ``eventType`` says; any other event object
(inventoryStatusEvent, antennaConnectedEvent, diagnosticEvent...) decodes to nothing, as does an
event whose ``eventType`` names another kind.

``epc`` is base64, ``epcHex`` hex: which appear depends on the event configuration (``epcHex``
is used when both do). ``peakRssiCdbm`` is centi-dBm. ``device_ts`` is the tag's
``lastSeenTime`` when reported, else the event's ``timestamp``; ``event_ts`` is the event's
``timestamp``. Also kept: the TID (``tidHex``, or base64 ``tid``) and the reader's ``hostname``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from devices.rfid import (
    Decoded,
    decode_events,
    epc_hex,
    memory_hex,
    number,
    reads_or_raise,
    short_text,
    timestamp,
)
from devices.rfid.config import RfidImpinjDevice
from devices.rfid.zebra import MAX_ANTENNA, MAX_RSSI, MIN_RSSI
from storeedge.errors import PayloadError
from storeedge.events import TagRead
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
_rlog = RateLimitedLog(log)

TAG_INVENTORY = "tagInventory"
TAG_INVENTORY_EVENT = "tagInventoryEvent"


def decode_all(payload: bytes, *, device: RfidImpinjDevice, store_id: str,
               received_ts: float) -> Decoded:
    """Decode every event in one message; never raises."""
    return decode_events(payload, _event, device.id, store_id, received_ts)


def decode(payload: bytes, *, device: RfidImpinjDevice, store_id: str,
           received_ts: float) -> list[TagRead]:
    """The device-kind contract: the message's tag reads (possibly none: a status event).
    PayloadError when something is bad and nothing good came with it."""
    result = decode_all(payload, device=device, store_id=store_id, received_ts=received_ts)
    return reads_or_raise(result, kind="impinj", what="events", device_id=device.id, rlog=_rlog)


def _event(obj: Any, source: str, store_id: str, received_ts: float,
           out: list[TagRead]) -> None:
    if type(obj) is not dict:
        raise PayloadError(f"event is not a JSON object but {type(obj).__name__}",
                           source=source)
    tag = obj.get(TAG_INVENTORY_EVENT)
    if tag is None:
        # Not a tag read: another event object, or at least an eventType that says so.
        kind = obj.get("eventType")
        if kind is not None and type(kind) is not str:
            raise PayloadError(f"eventType is not a string: {kind!r:.40}", source=source)
        if kind is not None and kind != TAG_INVENTORY:
            return
        if kind is None and any(k.endswith("Event") and type(v) is dict
                                for k, v in obj.items()):
            return
        if kind == TAG_INVENTORY:
            raise PayloadError("tagInventory event has no tagInventoryEvent object",
                               source=source)
        raise PayloadError("event has neither an eventType nor an event object such as "
                           "tagInventoryEvent", source=source)
    if type(tag) is not dict:
        raise PayloadError("tagInventoryEvent is not a JSON object", source=source)
    if "epcHex" in tag:
        epc = epc_hex(tag["epcHex"], "epcHex", source)
    else:
        epc = epc_hex(_unbase64(tag.get("epc"), source), "epc", source)
    antenna = tag.get("antennaPort")
    if antenna is not None and (type(antenna) is not int or not 0 <= antenna <= MAX_ANTENNA):
        raise PayloadError(f"antennaPort is not a port number: {antenna!r:.40}", source=source)
    rssi = tag.get("peakRssiCdbm")
    if rssi is not None:
        rssi = number(rssi, "peakRssiCdbm", source, MIN_RSSI * 100, MAX_RSSI * 100) / 100.0
    ts = obj.get("timestamp")
    event_ts = None if ts is None else timestamp(ts, "timestamp", source)
    seen = tag.get("lastSeenTime")
    last_seen = event_ts if seen is None else timestamp(seen, "lastSeenTime", source)
    out.append(TagRead(store_id=store_id, source=source, received_ts=received_ts,
                       device_ts=last_seen, event_ts=event_ts, epc=epc, antenna=antenna,
                       rssi=rssi, tid=_tid(tag, source),
                       reader_host=short_text(obj.get("hostname"), "hostname", source)))


def _tid(tag: dict[str, Any], source: str) -> str | None:
    """The TID bank from ``tidHex``, else from the base64 ``tid``, as the EPC is given."""
    if "tidHex" in tag:
        return memory_hex(tag["tidHex"], "tidHex", source)
    value = tag.get("tid")
    if value is None:
        return None
    try:
        return memory_hex(base64.b64decode(value, validate=True).hex(), "tid", source)
    except (binascii.Error, ValueError, TypeError):
        raise PayloadError(f"tid is not base64: {value!r:.40}", source=source) from None


def _unbase64(value: Any, source: str) -> str:
    if type(value) is not str:
        raise PayloadError(f"tagInventoryEvent has neither epcHex nor a base64 epc: "
                           f"{value!r:.40}", source=source)
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        raise PayloadError(f"epc is not base64: {value!r:.40}", source=source) from None


def encode(epc: str, *, antenna: int | None = None, rssi: float | None = None,
           ts: str | None = None, last_seen: str | None = None, tid: str | None = None,
           hostname: str = "impinj-sim", event_type: bool = True) -> bytes:
    """One tag inventory event with both ``epc`` (base64) and ``epcHex``; ``event_type`` False
    leaves ``eventType`` out, as some modes and firmware do."""
    tag: dict[str, Any] = {"epc": base64.b64encode(bytes.fromhex(epc)).decode(),
                           "epcHex": epc.upper()}
    if antenna is not None:
        tag["antennaPort"] = antenna
    if rssi is not None:
        tag["peakRssiCdbm"] = round(rssi * 100)
    if last_seen is not None:
        tag["lastSeenTime"] = last_seen
    if tid is not None:
        tag["tidHex"] = tid
    obj: dict[str, Any] = {"hostname": hostname}
    if ts is not None:
        obj["timestamp"] = ts
    if event_type:
        obj["eventType"] = TAG_INVENTORY
    obj[TAG_INVENTORY_EVENT] = tag
    return json.dumps(obj, separators=(",", ":")).encode()
