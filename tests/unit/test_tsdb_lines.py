"""Line protocol encoding, against the examples of the InfluxDB v2 line protocol reference:
https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/
(source: influxdata/docs-v2, content/influxdb/v2/reference/syntax/line-protocol.md)."""

from __future__ import annotations

import math

import pytest

from cloud_bridge.tsdb import Points, encode_line, to_ns
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


POINTS = Points("s-01")


def test_sale_points_keep_the_device_time() -> None:
    lines = POINTS.sales([(_sale(device_ts=1764160000.5), 7.25)], ts=1764160200.0)
    assert lines == ["sale,sku=SKU\\ 1,store=s-01 qty=2i,amount=7.25 1764160000500000000"]


def test_sale_points_fall_back_to_ts() -> None:
    (line,) = POINTS.sales([(_sale(), 3.0)], ts=1764160200.25)
    assert line.endswith(" 1764160200250000000")
    assert "amount=3 " in line


def test_store_tags_on_every_point_and_strings_only_when_asked() -> None:
    points = Points("s-01", region="north", city="Beijing", strings=True)
    (line,) = points.sales([(_sale(device_ts=1764160000.0), 7.0)], ts=0.0)
    assert line == ('sale,city=Beijing,region=north,sku=SKU\\ 1,store=s-01 qty=2i,amount=7,'
                    'txn_id="T-9" 1764160000000000000')
    (line,) = points.alerts([_alert()])
    assert ',city=Beijing,' in line and ',region=north,' in line
    assert 'alert_id="a-1",message="only 1 left of \\"Cola\\""' in line
    assert points.agent(1.0, {"readings_total": 1}).startswith("agent,city=Beijing,region=north,")


def _alert(**kw: object) -> Alert:
    base = dict(store_id="s-01", source="rules", received_ts=1764160300.0,
                device_ts=1764160299.0, alert_id="a-1", rule="low_stock",
                severity=Severity.WARNING, subject="A1-3", message='only 1 left of "Cola"',
                state=AlertState.OPEN, sku="COLA", location="A1-3",
                detail={"transition": "opened", "opened_at": 1764160300.0})
    return Alert(**{**base, **kw})  # type: ignore[arg-type]


def test_alert_point_numbers_only_and_bounded_tags() -> None:
    assert POINTS.alerts([_alert()]) == [
        "alert,location=A1-3,rule=low_stock,severity=warning,sku=COLA,state=open,store=s-01,"
        "transition=opened count=1i,age_s=0 1764160299000000000"]


def test_alert_subject_never_a_tag() -> None:
    # A kiosk session, a tag's EPC or a day in the subject would make a series per value.
    suspect = _alert(rule="checkout_suspect", subject="kiosk-1/sess-8f3a", sku=None,
                     location="kiosk-1")
    (line,) = POINTS.alerts([suspect])
    assert "sess-8f3a" not in line and "subject" not in line
    assert ",location=kiosk-1," in line


def test_alert_age_is_the_time_since_opening() -> None:
    claimed = _alert(state=AlertState.CLAIMED, received_ts=1764160390.5, device_ts=None,
                     detail={"transition": "claimed", "opened_at": 1764160300.0})
    (line,) = POINTS.alerts([claimed])
    assert ",state=claimed," in line and ",transition=claimed " in line
    assert line.endswith(" count=1i,age_s=90.5 1764160390500000000")


def test_alerts_on_one_point_are_summed_not_lost() -> None:
    # Two tags of one SKU leaving one lane in one reader batch: same tags, same instant.
    a = _alert(rule="tag_misplaced", subject="tag:3034AA", alert_id="a-1")
    b = _alert(rule="tag_misplaced", subject="tag:3034BB", alert_id="a-2")
    c = _alert(rule="tag_misplaced", subject="tag:3034CC", alert_id="a-3", location="A1-4")
    lines = POINTS.alerts([a, b, c])
    assert len(lines) == 2
    assert " count=2i,age_s=0 " in lines[0] and ",location=A1-3," in lines[0]
    assert " count=1i,age_s=0 " in lines[1] and ",location=A1-4," in lines[1]


def test_lane_points() -> None:
    lines = POINTS.lanes([("A1-3", "COLA", 4, 1320.5), ("A1-4", "WATER", 0, 0)], 1764160000.0)
    assert lines == [
        "shelf_stock,lane=A1-3,sku=COLA,store=s-01 units=4i,grams=1320.5 1764160000000000000",
        "shelf_stock,lane=A1-4,sku=WATER,store=s-01 units=0i,grams=0 1764160000000000000",
    ]


def test_agent_point_leaves_unread_figures_out() -> None:
    assert POINTS.agent(1.0, {"readings_total": 10, "erp_backlog": None, "tsdb_backlog": 3}) == (
        "agent,store=s-01 readings_total=10i,tsdb_backlog=3i 1000000000"
    )


def test_device_points_one_hot_state() -> None:
    lines = POINTS.devices({
        "shelf-a1": {"type": "shelf_mqtt", "state": "offline", "readings": 7, "bad": 1},
        "fridge-1": {"type": "zigbee2mqtt", "state": "unknown", "readings": 0, "bad": 0},
    }, 1764160000.0)
    assert lines == [
        "device,device=shelf-a1,device_type=shelf_mqtt,store=s-01 "
        "online=0i,degraded=0i,offline=1i,readings=7i,bad=1i 1764160000000000000",
        "device,device=fridge-1,device_type=zigbee2mqtt,store=s-01 "
        "online=0i,degraded=0i,offline=0i,readings=0i,bad=0i 1764160000000000000",
    ]


def test_climate_point_at_its_receive_time() -> None:
    line = POINTS.climate("chill-1", {"device": "fridge-1", "ts": 1764160000.25,
                                      "temperature": 4.5, "humidity": None, "battery": 86})
    assert line == ("climate,device=fridge-1,store=s-01,zone=chill-1 temperature=4.5,battery=86 "
                    "1764160000250000000")


def test_only_the_transition_that_claims_counts_as_a_claim() -> None:
    opened = 1764160300.0
    claim = _alert(state=AlertState.CLAIMED, received_ts=opened + 40, device_ts=None,
                   detail={"transition": "claimed", "opened_at": opened,
                           "claimed_at": opened + 40})
    confirm = _alert(state=AlertState.CLAIMED, received_ts=opened + 70, device_ts=None,
                     detail={"transition": "confirmed", "opened_at": opened,
                             "claimed_at": opened + 40})
    first, again = POINTS.alerts([claim, confirm])
    assert " count=1i,age_s=40,claims=1i,claim_s=40 " in first
    assert " count=1i,age_s=70 " in again  # the scan confirmed a claim already made
