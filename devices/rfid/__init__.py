"""RFID readers: fixed readers over MQTT (Zebra IoT Connector, Impinj IoT device interface) and
M100/R200-family UHF modules over serial.

- ``sgtin``: SGTIN-96 EPCs <-> GTIN + serial (GS1 EPC Tag Data Standard).
- ``zebra``, ``impinj``: sans-I/O JSON codecs, MQTT payload in, ``TagRead`` events out.
- ``m100``: the serial frame codec; ``driver``: the asyncio serial driver around it.
- ``config``: the three device config models.

The helpers here are shared by the JSON codecs: hot-path checks without a schema library.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from storeedge.errors import PayloadError

_HEX = frozenset("0123456789abcdefABCDEF")
MAX_EPC_HEX = 124  # 496 bits, the largest EPC a Gen2 PC word can announce
_decoder = json.JSONDecoder()
_WS = " \t\r\n"


def epc_hex(value: Any, what: str, source: str) -> str:
    """``value`` as an upper-case EPC hex string; PayloadError unless whole 16-bit words."""
    if type(value) is not str or not value:
        raise PayloadError(f"{what} is not a hex string: {value!r:.40}", source=source)
    if len(value) % 4 or len(value) > MAX_EPC_HEX or not _HEX.issuperset(value):
        raise PayloadError(f"{what} is not an EPC of whole 16-bit words in hex: {value!r:.40}",
                           source=source)
    return value.upper()


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
