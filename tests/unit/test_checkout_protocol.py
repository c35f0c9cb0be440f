"""The kiosk session codec: the documented examples, each way of being wrong, and fuzzing."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.checkout.config import CheckoutDevice
from devices.checkout.protocol import (
    decode,
    encode,
    session_topic,
)
from storeedge.errors import PayloadError, UsageError
from storeedge.events import CheckoutEvent, CheckoutKind
from storeedge.ids import gs1_check_digit

DEVICE = CheckoutDevice(type="checkout", id="K1")


def one(payload: bytes) -> CheckoutEvent:
    events = decode(payload, device=DEVICE, store_id="s1", received_ts=1000.5)
    assert len(events) == 1
    return events[0]


# The four examples of the interface spec in devices/checkout/protocol.py's docstring.


def test_spec_example_started() -> None:
    e = one(b'{"session": "K1-000123", "kind": "started", "seq": 1, "ts": 1764160000123}')
    assert (e.store_id, e.source, e.kiosk, e.received_ts) == ("s1", "K1", "K1", 1000.5)
    assert (e.session, e.kind, e.seq) == ("K1-000123", CheckoutKind.STARTED, 1)
    assert e.device_ts == pytest.approx(1764160000.123)


def test_spec_example_item_scanned() -> None:
    e = one(b'{"session": "K1-000123", "kind": "item_scanned", "seq": 2, "ts": 1764160004200, '
            b'"barcode": "4006381333931", "qty": 2, "expected_grams": 410.0, '
            b'"unit_price": 1.99}')
    assert e.kind is CheckoutKind.ITEM_SCANNED
    assert (e.barcode, e.sku, e.qty, e.expected_grams, e.unit_price) == (
        "4006381333931", None, 2, 410.0, 1.99)


def test_spec_example_bagging_weight() -> None:
    e = one(b'{"session": "K1-000123", "kind": "bagging_weight", "seq": 3, '
            b'"ts": 1764160006010, "grams": 818.5}')
    assert (e.kind, e.grams, e.seq) == (CheckoutKind.BAGGING_WEIGHT, 818.5, 3)


def test_spec_example_paid() -> None:
    e = one(b'{"session": "K1-000123", "kind": "paid", "seq": 4, "ts": 1764160030000, '
            b'"amount": 3.98, "txn_id": "T-88412"}')
    assert isinstance(e, CheckoutEvent)
    assert (e.kind, e.amount, e.txn_id) == (CheckoutKind.PAID, 3.98, "T-88412")


def test_optional_keys_and_defaults() -> None:
    e = one(b'{"session": "S", "kind": "voided", "sku": "MILK-1L", "extra": [1]}')
    assert (e.kind, e.sku, e.barcode, e.qty, e.expected_grams, e.unit_price, e.seq,
            e.device_ts) == (CheckoutKind.VOIDED, "MILK-1L", None, 1, None, None, None, None)
    e = one(b'{"session": "S", "kind": "assistance", "reason": "age check"}')
    assert isinstance(e, CheckoutEvent) and e.reason == "age check"
    e = one(b'{"session": "S", "kind": "paid", "amount": 0}')
    assert isinstance(e, CheckoutEvent) and (e.amount, e.txn_id) == (0.0, None)
    assert type(e.amount) is float
    assert one(b'{"session": "S", "kind": "cancelled"}').kind is CheckoutKind.CANCELLED


@pytest.mark.parametrize("gtin", [
    "6291041500213",  # GS1's check digit calculator page, gs1.org (and GS1 Hong Kong's)
    "7300011000017",  # GS1 Sweden, "Så beräknas kontrollsiffran"
    "8904000210037",  # GS1 India, "How to calculate the Check Digit"
    "4006381333931",  # Wikipedia, "International Article Number" (the EAN-13 example)
    "96385074",  # Wikipedia, "EAN-8" (GTIN-8)
    "036000291452",  # Wikipedia, "Universal Product Code" (UPC-A, GTIN-12)
    "10614141000415",  # GTIN-14 on GS1 US's example company prefix 0614141
])
def test_gs1_check_digits(gtin: str) -> None:
    assert gs1_check_digit(gtin[:-1]) == int(gtin[-1])
    e = one(json.dumps({"session": "S", "kind": "item_scanned", "barcode": gtin}).encode())
    assert e.barcode == gtin


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b'{"session": "S", "kind": "started"', "not JSON"),
        (b"[1]", "not a JSON object but list"),
        (b'{"kind": "started"}', "has no session"),
        (b'{"session": "", "kind": "started"}', "session is not a string of 1-64"),
        (b'{"session": 7, "kind": "started"}', "session is not a string of 1-64 characters: 7"),
        (b'{"session": "S"}', "kind is missing"),
        (b'{"session": "S", "kind": "refund"}', "kind is not one of started, item_scanned"),
        (b'{"session": "S", "kind": "started", "seq": -1}', "seq is not a non-negative"),
        (b'{"session": "S", "kind": "started", "seq": true}', "seq is not a non-negative"),
        (b'{"session": "S", "kind": "started", "ts": "now"}', "ts is not a number of epoch ms"),
        (b'{"session": "S", "kind": "started", "ts": 1e20}', "ts is not a number of epoch ms"),
        (b'{"session": "S", "kind": "item_scanned"}', "item_scanned has neither barcode nor sku"),
        (b'{"session": "S", "kind": "voided", "qty": 2}', "voided has neither barcode nor sku"),
        (b'{"session": "S", "kind": "item_scanned", "barcode": "4006381333932"}',
         "barcode 4006381333932 has a wrong check digit (expected 1)"),
        (b'{"session": "S", "kind": "item_scanned", "barcode": "40063813339"}',
         "barcode is not a GTIN of 8, 12, 13 or 14 digits"),
        (b'{"session": "S", "kind": "item_scanned", "barcode": "400638133393x"}',
         "barcode is not a GTIN"),
        (b'{"session": "S", "kind": "item_scanned", "sku": "A", "qty": 0}',
         "qty is not an integer 1..999: 0"),
        (b'{"session": "S", "kind": "item_scanned", "sku": "A", "qty": 1.0}',
         "qty is not an integer"),
        (b'{"session": "S", "kind": "item_scanned", "sku": "A", "expected_grams": -1}',
         "expected_grams -1 is outside 0..100000"),
        (b'{"session": "S", "kind": "item_scanned", "sku": "A", "unit_price": "1.99"}',
         "unit_price is not a number: '1.99'"),
        (b'{"session": "S", "kind": "bagging_weight"}', "grams is missing"),
        (b'{"session": "S", "kind": "bagging_weight", "grams": NaN}',
         "grams is not a finite number"),
        (b'{"session": "S", "kind": "bagging_weight", "grams": -501}', "grams -501 is outside"),
        (b'{"session": "S", "kind": "paid"}', "amount is missing"),
        (b'{"session": "S", "kind": "paid", "amount": 1, "txn_id": ""}', "txn_id is not a"),
        (b'{"session": "S", "kind": "assistance", "reason": 5}', "reason is not a string"),
    ],
)
def test_bad_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match="^K1: .*" + re.escape(message)) as info:
        one(payload)
    assert info.value.source == "K1"


def test_topic_and_encode() -> None:
    assert session_topic("s1", "K1") == "store/s1/dev/K1/session"
    assert json.loads(encode("K1-1", CheckoutKind.PAID, seq=4, amount=3.98)) == {
        "session": "K1-1", "kind": "paid", "seq": 4, "amount": 3.98}
    with pytest.raises(UsageError, match="unknown checkout event kind"):
        encode("K1-1", "refund")
    with pytest.raises(UsageError, match="cannot encode"):
        encode("K1-1", "bagging_weight", grams=float("nan"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)
near_valid = st.fixed_dictionaries(
    {"session": st.one_of(st.text(max_size=8), json_values),
     "kind": st.sampled_from([k.value for k in CheckoutKind]) | json_values},
    optional={key: json_values | st.integers(-5, 2000) | st.text(max_size=14)
              for key in ("seq", "ts", "barcode", "sku", "qty", "expected_grams",
                          "unit_price", "grams", "amount", "txn_id", "reason")},
)


@given(st.one_of(st.binary(max_size=200),
                 json_values.map(lambda v: json.dumps(v).encode()),
                 near_valid.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_give_an_event_or_payload_error(payload: bytes) -> None:
    try:
        e = one(payload)
    except PayloadError:
        return
    assert isinstance(e.kind, CheckoutKind) and e.session
    if e.kind in (CheckoutKind.ITEM_SCANNED, CheckoutKind.VOIDED):
        assert (e.barcode or e.sku) and 1 <= e.qty <= 999
    if e.kind is CheckoutKind.BAGGING_WEIGHT:
        assert e.grams is not None and -500 <= e.grams <= 100_000


gtins = st.from_regex(r"\A[0-9]{12}\Z").map(lambda b: b + str(gs1_check_digit(b)))
finite = st.floats(0, 100_000, allow_nan=False)
events = st.one_of(
    st.builds(dict, kind=st.just("item_scanned"), barcode=gtins, qty=st.integers(1, 999),
              expected_grams=finite, unit_price=finite),
    st.builds(dict, kind=st.just("voided"), sku=st.text(min_size=1, max_size=64)),
    st.builds(dict, kind=st.just("bagging_weight"), grams=st.floats(-500, 100_000)),
    st.builds(dict, kind=st.just("paid"), amount=finite,
              txn_id=st.none() | st.text(min_size=1, max_size=64)),
    st.builds(dict, kind=st.just("assistance"), reason=st.text(min_size=1, max_size=200)),
    st.builds(dict, kind=st.sampled_from(["started", "cancelled"])),
)


@given(events, st.text(min_size=1, max_size=64), st.none() | st.integers(0, 2**40),
       st.none() | st.integers(0, 10**13))
def test_encode_decode_round_trip(fields: dict[str, object], session: str, seq: int | None,
                                  ts_ms: int | None) -> None:
    kind = str(fields.pop("kind"))
    e = one(encode(session, kind, seq=seq, ts_ms=ts_ms, **fields))  # type: ignore[arg-type]
    assert (e.session, e.kind, e.seq) == (session, kind, seq)
    assert e.device_ts == (None if ts_ms is None else ts_ms / 1000)
    for key, value in fields.items():
        assert getattr(e, key) == value, key


def test_deep_nesting_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        one(b"[" * 100_000)
