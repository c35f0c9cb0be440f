"""The wireless shelf's JSON codec: good payloads, each way of being wrong, and fuzzing."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.shelf_mqtt.protocol import (
    decode_status,
    decode_weight,
    encode_status,
    encode_weight,
    status_topic,
    weight_topic,
)
from storeedge.errors import PayloadError, UsageError
from storeedge.events import ShelfWeight


def decode(payload: bytes) -> ShelfWeight:
    return decode_weight(payload, store_id="s1", device_id="shelf-7", received_ts=1000.5)


def test_documented_example() -> None:
    w = decode(b'{"lane": "A1-3", "grams": 1234.5, "seq": 17, "ts": 1764160000123}')
    assert (w.store_id, w.source, w.received_ts) == ("s1", "shelf-7", 1000.5)
    assert (w.lane, w.grams, w.seq) == ("A1-3", 1234.5, 17)
    assert w.device_ts == pytest.approx(1764160000.123)
    assert w.event_id


def test_optional_fields_and_int_grams() -> None:
    w = decode(b'{"lane": "B2", "grams": 250}')
    assert (w.lane, w.grams, w.seq, w.device_ts) == ("B2", 250.0, None, None)
    assert type(w.grams) is float
    w = decode(b'{"lane": "B2", "grams": -3.5, "seq": null, "ts": null, "extra": 1}')
    assert w.grams == -3.5


def test_whitespace_and_other_unicode_encodings_are_json() -> None:
    assert decode(b'  {"lane": "B2", "grams": 1}\n').lane == "B2"
    assert decode('{"lane": "B2", "grams": 1}'.encode("utf-16")).lane == "B2"


def test_encode_round_trip() -> None:
    payload = encode_weight("A1-3", 1234.5, seq=17, ts_ms=1764160000123)
    assert json.loads(payload) == {"lane": "A1-3", "grams": 1234.5, "seq": 17, "ts": 1764160000123}
    w = decode(payload)
    assert (w.lane, w.grams, w.seq) == ("A1-3", 1234.5, 17)
    assert json.loads(encode_weight("A1", 2.0)) == {"lane": "A1", "grams": 2.0}
    with pytest.raises(UsageError):
        encode_weight("A1", math.nan)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b'{"lane": "A1", "grams": 1', "not JSON"),
        (b'{"lane": "A1", "grams": 1} x', "not JSON"),
        (b'[1, 2]', "not a JSON object but list"),
        (b'"hello"', "not a JSON object but str"),
        (b'{"grams": 1}', "no lane"),
        (b'{"lane": 5, "grams": 1}', "lane is not a non-empty string: 5"),
        (b'{"lane": "", "grams": 1}', "lane is not a non-empty string"),
        (b'{"lane": "A1"}', "grams is missing"),
        (b'{"lane": "A1", "grams": "12"}', "grams is not a number: '12'"),
        (b'{"lane": "A1", "grams": true}', "grams is not a number: True"),
        (b'{"lane": "A1", "grams": NaN}', "grams is not a finite number: nan"),
        (b'{"lane": "A1", "grams": -Infinity}', "grams is not a finite number: -inf"),
        (b'{"lane": "A1", "grams": -1000.5}', "grams -1000.5 is absurd"),
        (b'{"lane": "A1", "grams": 1000001}', "grams 1000001 is absurd"),
        (b'{"lane": "A1", "grams": 1e400}', "grams is not a finite number: inf"),
        (b'{"lane": "A1", "grams": 1, "seq": 1.5}', "seq is not a non-negative integer: 1.5"),
        (b'{"lane": "A1", "grams": 1, "seq": -1}', "seq is not a non-negative integer: -1"),
        (b'{"lane": "A1", "grams": 1, "seq": "3"}', "seq is not a non-negative integer: '3'"),
        (b'{"lane": "A1", "grams": 1, "ts": "now"}', "ts is not a number of epoch ms: 'now'"),
        (b'{"lane": "A1", "grams": 1, "ts": false}', "ts is not a number of epoch ms: False"),
        (b'{"lane": "A1", "grams": 1, "ts": 1' + b"0" * 400 + b"}", "ts is not a plausible epoch"),
    ],
)
def test_bad_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match="^shelf-7: .*" + re.escape(message)) as info:
        decode(payload)
    assert info.value.source == "shelf-7"


def test_status() -> None:
    assert decode_status(b"online") is True
    assert decode_status(encode_status(False)) is False
    with pytest.raises(PayloadError, match="neither 'online' nor 'offline'"):
        decode_status(b"maybe")
    assert status_topic("s1", "d1") == "store/s1/dev/d1/status"
    assert weight_topic("s1", "d1") == "store/s1/dev/d1/weight"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)
near_valid = st.fixed_dictionaries(
    {"lane": st.one_of(st.text(max_size=6), json_values), "grams": json_values},
    optional={"seq": json_values, "ts": json_values},
)


@given(st.one_of(st.binary(max_size=200),
                 json_values.map(lambda v: json.dumps(v).encode()),
                 near_valid.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_give_a_reading_or_payload_error(payload: bytes) -> None:
    try:
        w = decode(payload)
    except PayloadError:
        return
    assert isinstance(w.lane, str) and w.lane
    assert math.isfinite(w.grams) and -1000 <= w.grams <= 1e6


def test_deep_nesting_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        decode(b"[" * 100_000)
