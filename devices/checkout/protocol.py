"""Self-checkout kiosk session events over MQTT: a sans-I/O codec.

Interface specification (version 1)
===================================

A kiosk publishes every step of a shopper's session as one JSON object (UTF-8) per MQTT message
on ``store/{store_id}/dev/{kiosk_id}/session`` (the ``session`` stream), QoS 1, not retained.
Its status (``online``/``offline``, retained, ``offline`` as last will) goes to
``store/{store_id}/dev/{kiosk_id}/status`` as every device's does.

Common keys (every message):

========  ========  ==========================================================================
key       type      meaning
========  ========  ==========================================================================
session   string    the session id, 1-64 characters, unique per kiosk (``"K1-000123"``)
kind      string    ``started``, ``item_scanned``, ``bagging_weight``, ``voided``, ``paid``,
                    ``cancelled`` or ``assistance``
seq       integer   optional; counts up by one per message of the kiosk (duplicates are
                    recognised by it); non-negative
ts        number    optional; the kiosk's clock, epoch milliseconds
========  ========  ==========================================================================

Keys by kind:

- ``started``: none. Opens the session; the bagging area is expected to be empty (tared).
- ``item_scanned``: ``barcode`` (GTIN-8, -12, -13 or -14 as digits, with a valid GS1 check
  digit) or ``sku`` (the store's article code, 1-64 characters), or both; ``qty`` (integer
  1-999, default 1); ``expected_grams`` (weight of ONE unit, 0-100000; absent for an item that
  is not bagged, such as a crate of water left in the trolley); ``unit_price`` (0 or more).
- ``voided``: the same keys as ``item_scanned``; removes ``qty`` units of that item.
- ``bagging_weight``: ``grams``, the bagging-area scale's current total (-500..100000; a tared
  scale may read slightly below zero). Sent whenever the reading changes, possibly still moving:
  the receiver decides when it is stable.
- ``paid``: ``amount`` (0 or more, in the store's currency); ``txn_id`` (optional, 1-64
  characters, the payment terminal's reference). Closes the session.
- ``cancelled``: none. Closes the session without a sale.
- ``assistance``: ``reason`` (optional string up to 200 characters), the shopper asked for help.

Unknown keys are ignored, so a kiosk may send more. Examples::

    {"session": "K1-000123", "kind": "started", "seq": 1, "ts": 1764160000123}
    {"session": "K1-000123", "kind": "item_scanned", "seq": 2, "ts": 1764160004200,
     "barcode": "4006381333931", "qty": 2, "expected_grams": 410.0, "unit_price": 1.99}
    {"session": "K1-000123", "kind": "bagging_weight", "seq": 3, "ts": 1764160006010,
     "grams": 818.5}
    {"session": "K1-000123", "kind": "paid", "seq": 4, "ts": 1764160030000, "amount": 3.98,
     "txn_id": "T-88412"}

The session model (open, items with expected weights, bagging-scale totals, close) follows the
event set of Intel's RTSF-at-checkout loss detection reference design (basket open, scanned
item, scale reading, payment, basket close); the encoding is ours.

``decode`` is plain ``json.loads`` and hand-written checks, no schema library.
"""

from __future__ import annotations

import json
import math
from typing import Any

from devices.checkout.config import CheckoutDevice
from storeedge.errors import PayloadError, UsageError
from storeedge.events import CheckoutEvent, CheckoutKind
from storeedge.ids import gs1_check_digit

STREAM = "session"
MIN_GRAMS = -500.0
MAX_GRAMS = 100_000.0
MAX_QTY = 999
MAX_TS_MS = 1e14  # year 5138: anything later is a broken clock or a corrupt payload
_KINDS = {k.value: k for k in CheckoutKind}
_ITEM_KINDS = (CheckoutKind.ITEM_SCANNED, CheckoutKind.VOIDED)
_GTIN_LENGTHS = (8, 12, 13, 14)
_isfinite = math.isfinite


def session_topic(store_id: str, kiosk_id: str) -> str:
    return f"store/{store_id}/dev/{kiosk_id}/{STREAM}"


def decode(payload: bytes, *, device: CheckoutDevice, store_id: str,
           received_ts: float) -> list[CheckoutEvent]:
    """Decode one session message into one event; raise PayloadError naming what is wrong."""
    return [decode_event(payload, kiosk_id=device.id, store_id=store_id,
                         received_ts=received_ts)]


def decode_event(payload: bytes, *, kiosk_id: str, store_id: str,
                 received_ts: float) -> CheckoutEvent:
    """``decode`` for callers without a device config (tests, tools)."""
    src = kiosk_id
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"session payload is not JSON: {exc}", source=src) from None
    if type(obj) is not dict:
        raise PayloadError(f"session payload is not a JSON object but {type(obj).__name__}",
                           source=src)
    session = _string(obj, "session", src, 64)
    if session is None:
        raise PayloadError("session payload has no session", source=src)
    raw_kind = obj.get("kind")
    kind = _KINDS.get(raw_kind) if type(raw_kind) is str else None
    if kind is None:
        what = "missing" if raw_kind is None else f"not one of {', '.join(_KINDS)}: " \
                                                   f"{raw_kind!r:.40}"
        raise PayloadError(f"kind is {what}", source=src)
    seq = obj.get("seq")
    if seq is not None and (type(seq) is not int or seq < 0):
        raise PayloadError(f"seq is not a non-negative integer: {seq!r:.40}", source=src)
    ts = obj.get("ts")
    device_ts = None
    if ts is not None:
        if type(ts) not in (int, float) or not 0 <= ts < MAX_TS_MS:
            raise PayloadError(f"ts is not a number of epoch ms: {ts!r:.40}", source=src)
        device_ts = ts / 1000.0
    fields: dict[str, Any] = {}
    if kind in _ITEM_KINDS:
        barcode = _string(obj, "barcode", src, 14)
        if barcode is not None:
            _check_gtin(barcode, src)
        sku = _string(obj, "sku", src, 64)
        if barcode is None and sku is None:
            raise PayloadError(f"{kind.value} has neither barcode nor sku", source=src)
        qty = obj.get("qty", 1)
        if type(qty) is not int or not 1 <= qty <= MAX_QTY:
            raise PayloadError(f"qty is not an integer 1..{MAX_QTY}: {qty!r:.40}", source=src)
        fields.update(barcode=barcode, sku=sku, qty=qty,
                      expected_grams=_number(obj, "expected_grams", src, 0.0, MAX_GRAMS),
                      unit_price=_number(obj, "unit_price", src, 0.0, 1e9))
    elif kind is CheckoutKind.BAGGING_WEIGHT:
        fields["grams"] = _number(obj, "grams", src, MIN_GRAMS, MAX_GRAMS, required=True)
    elif kind is CheckoutKind.PAID:
        fields["amount"] = _number(obj, "amount", src, 0.0, 1e9, required=True)
        fields["txn_id"] = _string(obj, "txn_id", src, 64)
    elif kind is CheckoutKind.ASSISTANCE:
        fields["reason"] = _string(obj, "reason", src, 200)
    return CheckoutEvent(store_id=store_id, source=src, received_ts=received_ts,
                      device_ts=device_ts, seq=seq, kiosk=src, session=session, kind=kind,
                      **fields)


def _string(obj: dict[str, Any], key: str, src: str, max_len: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not str or not 0 < len(value) <= max_len:
        raise PayloadError(f"{key} is not a string of 1-{max_len} characters: {value!r:.40}",
                           source=src)
    return value


def _number(obj: dict[str, Any], key: str, src: str, lo: float, hi: float,
            required: bool = False) -> float | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{key} is missing", source=src)
        return None
    tv = type(value)
    if tv is float:
        if not _isfinite(value):
            raise PayloadError(f"{key} is not a finite number: {value}", source=src)
    elif tv is not int:
        raise PayloadError(f"{key} is not a number: {value!r:.40}", source=src)
    if not lo <= value <= hi:
        raise PayloadError(f"{key} {value!r:.40} is outside {lo:g}..{hi:g}", source=src)
    return float(value)


def _check_gtin(code: str, src: str) -> None:
    if len(code) not in _GTIN_LENGTHS or not (code.isascii() and code.isdigit()):
        raise PayloadError(f"barcode is not a GTIN of 8, 12, 13 or 14 digits: {code!r:.40}",
                           source=src)
    expected = gs1_check_digit(code[:-1])
    if int(code[-1]) != expected:
        raise PayloadError(f"barcode {code} has a wrong check digit (expected {expected})",
                           source=src)


def encode(session: str, kind: CheckoutKind | str, *, seq: int | None = None,
           ts_ms: int | None = None, barcode: str | None = None, sku: str | None = None,
           qty: int | None = None, expected_grams: float | None = None,
           unit_price: float | None = None, grams: float | None = None,
           amount: float | None = None, txn_id: str | None = None,
           reason: str | None = None) -> bytes:
    """The payload a kiosk publishes; keys left None are left out. UsageError for a kind that
    does not exist or a value JSON cannot carry (NaN)."""
    if kind not in _KINDS:
        raise UsageError(f"unknown checkout event kind {kind!r}")
    obj: dict[str, object] = {"session": session, "kind": str(kind)}
    for key, value in (("seq", seq), ("ts", ts_ms), ("barcode", barcode), ("sku", sku),
                       ("qty", qty), ("expected_grams", expected_grams),
                       ("unit_price", unit_price), ("grams", grams), ("amount", amount),
                       ("txn_id", txn_id), ("reason", reason)):
        if value is not None:
            obj[key] = value
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise UsageError(f"cannot encode checkout event {obj!r:.200}: {exc}") from exc
