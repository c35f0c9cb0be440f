"""RFID readers: fixed readers over MQTT (Zebra IoT Connector, Impinj IoT device interface) and
M100/R200-family UHF modules over serial.

- ``epc``: EPCs of the GS1 EPC Tag Data Standard (SGTIN-96, SGTIN-198, SSCC-96) between hex,
  tag URI and pure identity URI.
- ``zebra``, ``impinj``: sans-I/O JSON codecs, MQTT payload in, ``TagRead`` events out.
- ``m100``: the serial frame codec; ``driver``: the asyncio serial driver around it.
- ``config``: the three device config models.

The helpers here are shared by the JSON codecs: the message loop that keeps a bad event from
costing the good ones, and hot-path checks without a schema library.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storeedge.errors import PayloadError
from storeedge.events import TagRead
from storeedge.ratelimit import RateLimitedLog

_HEX = frozenset("0123456789abcdefABCDEF")
MAX_EPC_HEX = 124  # 496 bits, the largest EPC a Gen2 PC word can announce
_decoder = json.JSONDecoder()
_WS = " \t\r\n"

# (JSON value, source, store_id, received_ts, reads): appends the value's reads or raises.
EventDecoder = Callable[[Any, str, str, float, list[TagRead]], None]


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one MQTT message held: the good reads and one error per bad event."""

    reads: list[TagRead] = field(default_factory=list)
    errors: list[PayloadError] = field(default_factory=list)


def decode_events(payload: bytes, event: EventDecoder, source: str, store_id: str,
                  received_ts: float) -> Decoded:
    """Every JSON value of ``payload`` (see ``json_values``) through ``event``; a bad value is
    one error and the others flow on. Never raises."""
    out = Decoded()
    try:
        values = json_values(payload, source)
    except PayloadError as exc:
        out.errors.append(exc)
        return out
    for value in values:
        if isinstance(value, PayloadError):
            out.errors.append(value)
            continue
        try:
            event(value, source, store_id, received_ts, out.reads)
        except PayloadError as exc:
            out.errors.append(exc)
    return out


def reads_or_raise(result: Decoded, *, kind: str, what: str, device_id: str,
                   rlog: RateLimitedLog) -> list[TagRead]:
    """The device-kind contract over ``decode_events``: the good reads. PayloadError when
    something is bad and nothing good came with it; bad ``what`` beside good reads are logged
    (rate-limited, as ``kind``) and dropped."""
    errors = result.errors
    if errors:
        if not result.reads:
            if len(errors) == 1:
                raise errors[0]
            raise PayloadError(f"{len(errors)} bad {what}, first: {errors[0]}")
        rlog.warning(f"partial:{device_id}", "%s %s: dropped %d bad %s of %d: %s", kind,
                     device_id, len(errors), what, len(errors) + len(result.reads), errors[0])
    return result.reads


def epc_hex(value: Any, what: str, source: str) -> str:
    """``value`` as an upper-case EPC hex string; PayloadError unless whole 16-bit words."""
    if type(value) is not str or not value:
        raise PayloadError(f"{what} is not a hex string: {value!r:.40}", source=source)
    if len(value) % 4 or len(value) > MAX_EPC_HEX or not _HEX.issuperset(value):
        raise PayloadError(f"{what} is not an EPC of whole 16-bit words in hex: {value!r:.40}",
                           source=source)
    return value.upper()


def memory_hex(value: Any, what: str, source: str) -> str | None:
    """A tag memory bank (TID, USER) as upper-case hex; None for an empty or absent bank."""
    if value is None or value == "":
        return None
    if type(value) is not str or len(value) % 2 or not _HEX.issuperset(value):
        raise PayloadError(f"{what} is not hex of whole bytes: {value!r:.40}", source=source)
    return value.upper()


_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


def mac_address(value: Any, what: str, source: str) -> str | None:
    """A MAC address as ``84:24:8D:EE:2F:C6`` (from colons, dashes or bare hex)."""
    if value is None:
        return None
    if type(value) is not str or _MAC.fullmatch(value) is None:
        raise PayloadError(f"{what} is not a MAC address: {value!r:.40}", source=source)
    digits = value.replace(":", "").replace("-", "").upper()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def short_text(value: Any, what: str, source: str, limit: int = 128) -> str | None:
    """A JSON string of at most ``limit`` characters, or None when absent."""
    if value is None:
        return None
    if type(value) is not str or len(value) > limit:
        raise PayloadError(f"{what} is not a string of at most {limit} characters: "
                           f"{value!r:.40}", source=source)
    return value


def count(value: Any, what: str, source: str) -> int | None:
    """A non-negative JSON integer, or None when absent."""
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise PayloadError(f"{what} is not a non-negative integer: {value!r:.40}",
                           source=source)
    return value


def json_values(payload: bytes, source: str) -> list[Any]:
    """Every JSON value in ``payload``: one value, an array's items, or values written one after
    another (concatenated or newline-delimited, as readers batch them). PayloadError when the
    bytes are not UTF-8 or hold no JSON at all; a bad value after good ones ends the list with the
    error as its last item, so what came before it is kept."""
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not UTF-8: {exc}", source=source) from None
    values: list[Any] = []
    end, size = 0, len(text)
    while True:
        while end < size and text[end] in _WS:
            end += 1
        if end == size:
            break
        try:
            value, end = _decoder.raw_decode(text, end)
        except (ValueError, RecursionError) as exc:
            error = PayloadError(f"payload is not JSON at char {end}: {exc}", source=source)
            if not values:
                raise error from None
            values.append(error)
            break
        if type(value) is list:
            values.extend(value)
        else:
            values.append(value)
    if not values:
        raise PayloadError("payload is empty", source=source)
    return values


def timestamp(value: Any, what: str, source: str) -> float:
    """An ISO 8601 time (``Z``, ``+00:00`` or ``+0000``) or epoch milliseconds -> epoch seconds."""
    if type(value) is str:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(f"{what} is not an ISO 8601 time: {value!r:.40}",
                               source=source) from None
        if dt.tzinfo is None:
            raise PayloadError(f"{what} has no time zone: {value!r:.40}", source=source)
        return dt.timestamp()
    if (type(value) is int or type(value) is float) and math.isfinite(value) and value > 0:
        return value / 1000.0
    raise PayloadError(f"{what} is not a time: {value!r:.40}", source=source)


def number(value: Any, what: str, source: str, low: float, high: float) -> float:
    """A finite JSON number within ``low..high`` (bools are not numbers)."""
    t = type(value)
    if (t is int or t is float) and low <= value <= high:
        return value
    raise PayloadError(f"{what} is not a number in {low:g}..{high:g}: {value!r:.40}",
                       source=source)
