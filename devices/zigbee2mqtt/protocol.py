"""Zigbee2MQTT's device JSON for fridge sensors (temperature/humidity, door contact): a sans-I/O
codec.

Zigbee2MQTT publishes a device's whole state on ``{base_topic}/{friendly_name}`` each time it
reports, e.g. an Aqara WSDCGQ11LM (exposes battery, temperature, humidity, pressure, voltage,
linkquality), a Tuya TS0201 (battery, temperature, humidity, voltage, linkquality) or a SONOFF
SNZB-04P door contact (contact, battery_low, tamper, battery, voltage, linkquality):

    {"battery": 86, "humidity": 55.43, "linkquality": 97, "pressure": 1000.6,
     "temperature": 22.75, "voltage": 2995}

Read here, as the device pages define them: ``temperature`` (degrees C), ``contact`` (true when
closed), ``humidity`` (%), ``pressure`` (hPa), ``battery`` (%, 0..100), ``voltage`` (mV for
battery devices; the device's ``voltage_unit`` says otherwise), ``linkquality`` (LQI, integer
0..255) and, when Zigbee2MQTT's ``last_seen`` option is on, ``last_seen`` (epoch ms, or ISO 8601
with an offset) as the device time. Every other key is ignored, and so is a null (Zigbee2MQTT
publishes null for a property it has not heard yet).

Devices and older Zigbee2MQTT versions send mistyped and absurd fields (a battery as a string, an
LQI of 300, a humidity of 120 %, a voltage in the other unit). Each field is judged on its own: a
bad one is left out of the event and named in ``Climate.rejected``, and everything else the
message said is kept. Only a message whose every field is bad is a PayloadError (naming them).

Availability (when Zigbee2MQTT's availability feature is on) is retained on
``{base_topic}/{friendly_name}/availability``: ``{"state":"online"}`` / ``{"state":"offline"}``,
or plain ``online`` / ``offline`` with ``legacy_availability_payload``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from storeedge.errors import PayloadError, UsageError
from storeedge.events import Climate, DeviceStatus, Event

# Bounds past which a reading is a broken sensor or a misread unit, not a cold room.
TEMPERATURE_RANGE = (-100.0, 150.0)
HUMIDITY_RANGE = (0.0, 100.0)
PRESSURE_RANGE = (300.0, 1100.0)  # hPa: the air pressure anywhere a store stands
BATTERY_RANGE = (0.0, 100.0)
LINKQUALITY_RANGE = (0, 255)
VOLTAGE_RANGE_V = (0.5, 10.0)  # a battery or low-voltage supply; a reading in the wrong unit
#                                (3000 where volts are meant, 3.0 where millivolts are) misses it


class _Bad(Exception):
    """A field that is mistyped or out of range; the message says why, after the field name."""


def decode(payload: bytes, *, device: Zigbee2MqttDevice, store_id: str,
           received_ts: float) -> list[Event]:
    """Decode one state message into a Climate event, or none when it carries no value of ours
    (e.g. only an OTA ``update`` status). Raises PayloadError when it is not a JSON object, or
    when every field of ours in it is bad (naming each)."""
    source = device.id
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"state payload is not JSON: {exc}", source=source) from None
    if type(obj) is not dict:
        raise PayloadError(f"state payload is not a JSON object but {type(obj).__name__}",
                           source=source)
    values: dict[str, Any] = {}
    rejected: list[str] = []
    for key, check in _CHECKS[device.voltage_unit]:
        raw = obj.get(key)
        if raw is None:
            continue
        try:
            values[key] = check(raw)
        except _Bad as exc:
            rejected.append(f"{key} {exc}")
    device_ts = values.pop("last_seen", None)
    if not values:
        if rejected:
            raise PayloadError("; ".join(rejected), source=source)
        return []
    return [Climate(store_id=store_id, source=source, received_ts=received_ts,
                    device_ts=device_ts, rejected=tuple(rejected), **values)]


class _Number:
    """A finite JSON number within ``bounds`` (in the field's own unit), divided by ``per``."""

    def __init__(self, bounds: tuple[float, float], unit: str = "", per: float = 1.0,
                 hint: str = "") -> None:
        self.bounds = bounds
        self.unit = unit
        self.per = per
        self.hint = hint

    def __call__(self, value: object) -> float:
        kind = type(value)
        if kind is not int and kind is not float:  # bool is not a number here
            raise _Bad(f"is not a number: {value!r:.40}")
        assert isinstance(value, int | float)
        low, high = self.bounds
        # Compare before any float conversion: a huge JSON integer overflows a float.
        if (kind is float and not math.isfinite(value)) or not low <= value <= high:
            raise _Bad(f"{value!r:.40} is outside {low:g}..{high:g}{self.unit}{self.hint}")
        return float(value) / self.per


_TEMPERATURE = _Number(TEMPERATURE_RANGE)
_HUMIDITY = _Number(HUMIDITY_RANGE)
_PRESSURE = _Number(PRESSURE_RANGE, " hPa")
_BATTERY = _Number(BATTERY_RANGE)
_VOLTS = _Number(VOLTAGE_RANGE_V, " V", hint=" (a device that reports millivolts needs "
                 "voltage_unit: mV)")
_MILLIVOLTS = _Number((VOLTAGE_RANGE_V[0] * 1000, VOLTAGE_RANGE_V[1] * 1000), " mV", 1000,
                      " (a device that reports volts needs voltage_unit: V)")


def _contact(value: object) -> bool:
    if type(value) is not bool:
        raise _Bad(f"is not true or false: {value!r:.40}")
    return value


def _linkquality(value: object) -> int:
    if type(value) is not int:
        raise _Bad(f"is not an integer: {value!r:.40}")
    low, high = LINKQUALITY_RANGE
    if not low <= value <= high:
        raise _Bad(f"{value} is outside {low}..{high}")
    return value


def _last_seen(value: object) -> float:
    if type(value) is int:
        if not 0 < value < 10**14:  # epoch ms up to the year 5138
            raise _Bad(f"{value} is not a plausible epoch ms")
        return value / 1000.0
    if type(value) is str:
        try:
            seen = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(f"is not ISO 8601: {value!r:.40}") from None
        if seen.tzinfo is None:
            raise _Bad(f"has no UTC offset: {value!r:.40}")
        return seen.timestamp()
    raise _Bad(f"is neither epoch ms nor ISO 8601: {value!r:.40}")


# (field, check) in the order a rejection names them, for each unit a device's voltage is in.
_FIELDS_BUT_VOLTAGE = (("temperature", _TEMPERATURE), ("contact", _contact),
                       ("humidity", _HUMIDITY), ("pressure", _PRESSURE), ("battery", _BATTERY))
_CHECKS: dict[str, tuple[tuple[str, Callable[[object], Any]], ...]] = {
    unit: (*_FIELDS_BUT_VOLTAGE, ("voltage", volts), ("linkquality", _linkquality),
           ("last_seen", _last_seen))
    for unit, volts in (("mV", _MILLIVOLTS), ("V", _VOLTS))
}


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
                 voltage: int | None = None, pressure: float | None = None,
                 contact: bool | None = None, last_seen_ms: int | None = None) -> bytes:
    """A state message as Zigbee2MQTT publishes it (keys sorted, as it does; ``voltage`` in
    mV)."""
    fields = {"temperature": temperature, "humidity": humidity, "battery": battery,
              "linkquality": linkquality, "voltage": voltage, "pressure": pressure,
              "contact": contact, "last_seen": last_seen_ms}
    obj = {k: v for k, v in sorted(fields.items()) if v is not None}
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise UsageError(f"cannot encode state {obj!r}: {exc}") from exc


def encode_availability(online: bool, *, legacy: bool = False) -> bytes:
    """Zigbee2MQTT's availability payload: JSON, or the plain word with ``legacy``."""
    word = "online" if online else "offline"
    return word.encode() if legacy else json.dumps({"state": word}).encode()
