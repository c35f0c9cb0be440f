"""Line protocol encoding, against the examples of the InfluxDB v2 line protocol reference:
https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/
(source: influxdata/docs-v2, content/influxdb/v2/reference/syntax/line-protocol.md)."""

from __future__ import annotations

import math

import pytest

from cloud_bridge.tsdb import agent_point, alert_point, encode_line, lane_points, sale_points, to_ns
from storeedge.errors import UsageError
from storeedge.events import Alert, AlertState, Sale, Severity

# (measurement, tags, fields, timestamp) -> the line as the reference prints it.
DOC_EXAMPLES = [
    # "Syntax" / "Example"
    (("myMeasurement", {"tag1": "value1", "tag2": "value2"}, {"fieldKey": "fieldValue"},
      1556813561098000000),
     'myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000'),
    # "Special Characters": measurement name with spaces
    (("my Measurement", {}, {"fieldKey": "string value"}, None),
     'my\\ Measurement fieldKey="string value"'),
    # "Special Characters": double quotes in a string field value
    (("myMeasurement", {}, {"fieldKey": '"string" within a string'}, None),
     'myMeasurement fieldKey="\\"string\\" within a string"'),
    # "Special Characters": tag keys and values with spaces
    (("myMeasurement", {"tag Key1": "tag Value1", "tag Key2": "tag Value2"}, {"fieldKey": 100.0},
      None),
     "myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=100"),
    # "Special Characters": emojis
    (("myMeasurement", {"tagKey": "🍭"}, {"fieldKey": "Launch 🚀"}, 1556813561098000000),
     'myMeasurement,tagKey=🍭 fieldKey="Launch 🚀" 1556813561098000000'),
    # "Float field value examples"
    (("myMeasurement", {}, {"fieldKey": 1.0}, None), "myMeasurement fieldKey=1"),
    (("myMeasurement", {}, {"fieldKey": -1.234456e78}, None),
     "myMeasurement fieldKey=-1.234456e+78"),
    # "Integer field value examples"
    (("myMeasurement", {}, {"fieldKey": 12485903}, None), "myMeasurement fieldKey=12485903i"),
    (("myMeasurement", {}, {"fieldKey": -12485903}, None), "myMeasurement fieldKey=-12485903i"),
    (("myMeasurement", {}, {"fieldKey": 9223372036854775807}, None),
     "myMeasurement fieldKey=9223372036854775807i"),
    # "Boolean field value examples"
    (("myMeasurement", {}, {"fieldKey": True}, None), "myMeasurement fieldKey=true"),
    (("myMeasurement", {}, {"fieldKey": False}, None), "myMeasurement fieldKey=false"),
    # "Unix timestamp example"
    (("myMeasurementName", {}, {"fieldKey": "fieldValue"}, 1556813561098000000),
     'myMeasurementName fieldKey="fieldValue" 1556813561098000000'),
]


@pytest.mark.parametrize(("point", "line"), DOC_EXAMPLES, ids=[e[1][:40] for e in DOC_EXAMPLES])
def test_documented_examples(point: tuple, line: str) -> None:
    assert encode_line(*point) == line


def test_escape_table() -> None:
    # "Special Characters": measurement escapes comma and space; tag key, tag value and field
    # key escape comma, equals sign and space; string field values escape quote and backslash.
    # "Escaping backslashes": "\\" is read as one backslash, so a literal one is doubled and a
    # trailing backslash cannot swallow the separator after it.
    line = encode_line("m,1 x=y", {"k,=\\ ": "v,= \\"}, {"f,= ": 'say "\\hi"'}, 1)
    assert line == 'm\\,1\\ x=y,k\\,\\=\\\\\\ =v\\,\\=\\ \\\\ f\\,\\=\\ ="say \\"\\\\hi\\""' + " 1"


def test_newlines_never_split_a_point() -> None:
    # "Line protocol does not support the newline character \n in tag or field values."
    line = encode_line("m", {"t": "a\nb"}, {"msg": "two\r\nlines"}, 1)
    assert "\n" not in line and "\r" not in line
    assert line == 'm,t=a\\ b msg="two  lines" 1'


def test_tags_sorted_and_empty_tags_left_out() -> None:
    # "Tag values cannot be empty; instead, omit the tag from the tag set."
    assert encode_line("m", {"b": "2", "a": "1", "c": "", "d": None}, {"v": 1}) == "m,a=1,b=2 v=1i"


def test_non_finite_floats_and_none_fields_left_out() -> None:
    assert encode_line("m", {}, {"a": math.nan, "b": math.inf, "c": None, "d": 2.5}) == "m d=2.5"
    with pytest.raises(UsageError):
        encode_line("m", {"t": "x"}, {"a": math.nan})


def test_ns_timestamps_exact_to_the_microsecond() -> None:
    assert to_ns(1764160000.123) == 1764160000123000000
    assert to_ns(1764160000.123456) == 1764160000123456000
    assert to_ns(0.0) == 0


def _sale(**kw: object) -> Sale:
    base = dict(store_id="s-01", source="pos-1", received_ts=1764160100.0, sku="SKU 1",
                qty=2, txn_id="T-9")
    return Sale(**{**base, **kw})  # type: ignore[arg-type]


def test_sale_points_keep_the_device_time() -> None:
    lines = sale_points(_sale(device_ts=1764160000.5), 7.25, ts=1764160200.0)
    assert lines == ['sale,sku=SKU\\ 1,store=s-01 qty=2i,amount=7.25,txn_id="T-9" '
                     "1764160000500000000"]


def test_sale_points_fall_back_to_ts() -> None:
    (line,) = sale_points(_sale(), 3.0, ts=1764160200.25)
    assert line.endswith(" 1764160200250000000")
    assert "amount=3," in line


def test_alert_point() -> None:
    alert = Alert(store_id="s-01", source="rules", received_ts=1764160300.0,
                  device_ts=1764160299.0, alert_id="a-1", rule="low_stock",
                  severity=Severity.WARNING, subject="A1-3", message='only 1 left of "Cola"',
                  state=AlertState.OPEN)
    assert alert_point(alert) == (
        "alert,rule=low_stock,severity=warning,state=open,store=s-01,subject=A1-3 "
        'count=1i,alert_id="a-1",message="only 1 left of \\"Cola\\"" 1764160299000000000'
    )


def test_lane_points() -> None:
    lines = lane_points("s-01", [("A1-3", "COLA", 4, 1320.5), ("A1-4", "WATER", 0, 0)],
                        1764160000.0)
    assert lines == [
        "shelf_stock,lane=A1-3,sku=COLA,store=s-01 units=4i,grams=1320.5 1764160000000000000",
        "shelf_stock,lane=A1-4,sku=WATER,store=s-01 units=0i,grams=0 1764160000000000000",
    ]


def test_agent_point() -> None:
    assert agent_point("s-01", 1.0, readings_total=10, erp_backlog=0, tsdb_backlog=3) == (
        "agent,store=s-01 readings_total=10i,erp_backlog=0i,tsdb_backlog=3i 1000000000"
    )
