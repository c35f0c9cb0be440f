"""Zigbee2MQTT's device JSON for temperature/humidity sensors: a sans-I/O codec.

Zigbee2MQTT publishes a device's whole state on ``{base_topic}/{friendly_name}`` each time it
reports, e.g. an Aqara WSDCGQ11LM (exposes battery, temperature, humidity, pressure, voltage,
linkquality) or a Tuya TS0201 (battery, temperature, humidity, voltage, linkquality):

    {"battery": 86, "humidity": 55.43, "linkquality": 97, "pressure": 1000.6,
     "temperature": 22.75, "voltage": 2995}

Read here: ``temperature`` (degrees C), ``humidity`` (%), ``battery`` (%, 0..100), ``linkquality``
(LQI, integer 0..255) and, when Zigbee2MQTT's ``last_seen`` option is on, ``last_seen`` (epoch ms,
or ISO 8601 with an offset) as the device time. Every other key is ignored, and so is a null
(Zigbee2MQTT publishes null for a property it has not heard yet). A wrong type or an absurd value
is a PayloadError.

Availability (when Zigbee2MQTT's availability feature is on) is retained on
``{base_topic}/{friendly_name}/availability``: ``{"state":"online"}`` / ``{"state":"offline"}``,
or plain ``online`` / ``offline`` with ``legacy_availability_payload``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from storeedge.errors import PayloadError, UsageError
from storeedge.events import Climate, DeviceStatus, Event

# Bounds past which a reading is a broken sensor, not a cold room.
TEMPERATURE_RANGE = (-100.0, 150.0)
HUMIDITY_RANGE = (0.0, 100.0)
BATTERY_RANGE = (0.0, 100.0)
LINKQUALITY_RANGE = (0, 255)


def decode(payload: bytes, *, device: Zigbee2MqttDevice, store_id: str,
           received_ts: float) -> list[Event]:
    """Decode one state message into a Climate event, or none when it carries no climate value
    (e.g. only an OTA ``update`` status). Raises PayloadError naming what is wrong."""
    source = device.id
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"state payload is not JSON: {exc}", source=source) from None
    if type(obj) is not dict:
        raise PayloadError(f"state payload is not a JSON object but {type(obj).__name__}",
                           source=source)
    temperature = _number(obj, "temperature", TEMPERATURE_RANGE, source)
    humidity = _number(obj, "humidity", HUMIDITY_RANGE, source)
    battery = _number(obj, "battery", BATTERY_RANGE, source)
    linkquality = _linkquality(obj, source)
    device_ts = _last_seen(obj.get("last_seen"), source)
    if temperature is None and humidity is None and battery is None and linkquality is None:
        return []
    return [Climate(store_id=store_id, source=source, received_ts=received_ts,
                    device_ts=device_ts, temperature=temperature, humidity=humidity,
                    battery=battery, linkquality=linkquality)]


def _number(obj: dict[str, Any], key: str, bounds: tuple[float, float],
            source: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is not int and kind is not float:  # bool is not a number here
        raise PayloadError(f"{key} is not a number: {value!r:.40}", source=source)
    # Compare before any float conversion: a huge JSON integer overflows a float.
    if (kind is float and not math.isfinite(value)) or not bounds[0] <= value <= bounds[1]:
        raise PayloadError(f"{key} {value!r:.40} is outside {bounds[0]:g}..{bounds[1]:g}",
                           source=source)
    return float(value)


def _linkquality(obj: dict[str, Any], source: str) -> int | None:
    value = obj.get("linkquality")
    if value is None:
        return None
    if type(value) is not int:
        raise PayloadError(f"linkquality is not an integer: {value!r:.40}", source=source)
    low, high = LINKQUALITY_RANGE
    if not low <= value <= high:
        raise PayloadError(f"linkquality {value} is outside {low}..{high}", source=source)
    return value


def _last_seen(value: object, source: str) -> float | None:
    if value is None:
        return None
    if type(value) is int:
        if not 0 < value < 10**14:  # epoch ms up to the year 5138
            raise PayloadError(f"last_seen {value} is not a plausible epoch ms", source=source)
        return value / 1000.0
    if type(value) is str:
        try:
            seen = datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(f"last_seen is not ISO 8601: {value!r:.40}", source=source) from None
        if seen.tzinfo is None:
            raise PayloadError(f"last_seen has no UTC offset: {value!r:.40}", source=source)
        return seen.timestamp()
    raise PayloadError(f"last_seen is neither epoch ms nor ISO 8601: {value!r:.40}",
                       source=source)


def decode_availability(payload: bytes) -> bool:
    """``{"state":"online"}`` or ``online`` -> True; the ``offline`` forms -> False; anything
    else is a PayloadError."""
    text = payload.strip()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    state = obj.get("state") if type(obj) is dict else None
    if state == "online":
        return True
    if state == "offline":
        return False
    raise PayloadError(f"availability is neither online nor offline: {payload[:40]!r}")


def decode_availability_status(payload: bytes, *, device: Zigbee2MqttDevice, store_id: str,
                               received_ts: float) -> DeviceStatus:
    """An availability message as the DeviceStatus the agent tracks health with."""
    try:
        online = decode_availability(payload)
    except PayloadError as exc:
        raise PayloadError(str(exc), source=device.id) from None
    return DeviceStatus(store_id=store_id, source=device.id, received_ts=received_ts,
                        online=online, error=None if online else "Zigbee2MQTT reports offline")


# Encoding (for simulators and tests)


def encode_state(*, temperature: float | None = None, humidity: float | None = None,
                 battery: float | None = None, linkquality: int | None = None,
                 voltage: int | None = None, last_seen_ms: int | None = None) -> bytes:
    """A state message as Zigbee2MQTT publishes it (keys sorted, as it does)."""
    fields = {"temperature": temperature, "humidity": humidity, "battery": battery,
              "linkquality": linkquality, "voltage": voltage, "last_seen": last_seen_ms}
    obj = {k: v for k, v in sorted(fields.items()) if v is not None}
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise UsageError(f"cannot encode state {obj!r}: {exc}") from exc


def encode_availability(online: bool, *, legacy: bool = False) -> bytes:
    """Zigbee2MQTT's availability payload: JSON, or the plain word with ``legacy``."""
    word = "online" if online else "offline"
    return word.encode() if legacy else json.dumps({"state": word}).encode()
