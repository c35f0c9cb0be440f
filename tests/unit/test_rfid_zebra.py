"""Zebra IoT Connector tag data events: documented shapes, batching, and fuzzing."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.rfid import zebra
from devices.rfid.config import RfidZebraDevice, tags_topic
from storeedge.errors import PayloadError

DEV = RfidZebraDevice(type="rfid_zebra", id="fx9600-1", antennas={1: "A1", 2: "A2"},
                      location="backroom")
T0 = 1_700_000_000.0

# A CUSTOM-mode tag data event as the IoT Connector documentation shows it (Zebra IoT Connector
# docs, "Tag data events"/TagStorage metadata: https://zebradevs.github.io/rfid-ziotc-docs/):
# metadata members named as enabled by the mode, time with a +0000 offset.
DOC_CUSTOM = (b'{"data":{"CRC":"3d2d","PC":"3000","antenna":1,"channel":922.75,"eventNum":5,'
              b'"format":"epc","idHex":"e2801160600002084f5dab5a","peakRssi":-52,"phase":0,'
              b'"reads":1},"timestamp":"2021-03-31T12:44:01.484+0000","type":"CUSTOM"}')
# dataEVT of FXR90/RFD40 firmware (techdocs.zebra.com, RFD40/90 MQTT API reference, dataEVT).
DOC_DATAEVT = (b'{"type":"BALANCED_PERFORMANCE","timestamp":"2019-08-24T14:15:22Z","data":'
               b'{"tagData":[{"EPCid":"BEDD11112222333344445555","EPC":"BEDD11112222333344445555",'
               b'"channel":911.75,"eventNum":1,"peakRssi":-39,"phase":0,"seenCount":1}]}}')


# The IoT Connector's tag data event with every optional member the CUSTOM mode's tag metadata
# can enable (IoT Connector data interface schema: TID, USER, XPC, reads, accessResults...; MAC
# and HOSTNAME metadata name the reader), with the TDS's SGTIN-96 example as the EPC.
DOC_FULL = (b'{"type":"CUSTOM","timestamp":"2021-03-31T12:44:01.484+0000","data":{'
            b'"CRC":"b06a","PC":"3000","TID":"E2801160200070F17A910998","USER":"0000ABCD",'
            b'"antenna":1,"channel":911.75,"eventNum":7,"format":"epc",'
            b'"idHex":"3074257bf7194e4000001a85","peakRssi":-39,"phase":0,"reads":4,'
            b'"XPC":"","MAC":"84:24:8D:EE:2F:C6","hostName":"FX9600EE2FC6",'
            b'"userDefined":null,"accessResults":["SUCCESS"]}}')


def decode(payload: bytes) -> list:
    return zebra.decode(payload, device=DEV, store_id="s1", received_ts=T0)


def test_documented_custom_event() -> None:
    [read] = decode(DOC_CUSTOM)
    assert (read.epc, read.antenna, read.rssi, read.seq) == ("E2801160600002084F5DAB5A", 1,
                                                             -52.0, 5)
    assert read.device_ts == pytest.approx(1617194641.484)
    assert (read.source, read.store_id, read.received_ts) == ("fx9600-1", "s1", T0)
    assert DEV.location_of(read.antenna) == "A1"
    assert DEV.location_of(7) == "backroom"
    assert tags_topic("s1", DEV.id) == "store/s1/dev/fx9600-1/tags"


def test_documented_dataevt_batch() -> None:
    [read] = decode(DOC_DATAEVT)
    assert (read.epc, read.rssi, read.seq, read.antenna) == ("BEDD11112222333344445555", -39.0,
                                                             1, None)
    assert read.device_ts == pytest.approx(1566656122.0)


def test_optional_fields_are_kept() -> None:
    [read] = decode(DOC_FULL)
    assert (read.epc, read.seq, read.reads, read.reader_mac, read.reader_host) == (
        "3074257BF7194E4000001A85", 7, 4, "84:24:8D:EE:2F:C6", "FX9600EE2FC6")
    assert (read.tid, read.access_results) == ("E2801160200070F17A910998", ("SUCCESS",))
    assert read.event_ts == read.device_ts == pytest.approx(1617194641.484)
    assert read.to_dict()["access_results"] == ["SUCCESS"]
    # dataEVT firmware counts reads as seenCount.
    [batched] = decode(DOC_DATAEVT)
    assert batched.reads == 1
    # Other spellings of a MAC are normalised.
    obj = json.loads(DOC_FULL)
    obj["data"]["MAC"] = "84-24-8d-ee-2f-c6"
    assert decode(json.dumps(obj).encode())[0].reader_mac == "84:24:8D:EE:2F:C6"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("MAC", "84:24:8D:EE:2F", "MAC is not a MAC address"),
    ("MAC", 842488, "MAC is not a MAC address"),
    ("TID", "E28011602", "TID is not hex of whole bytes"),
    ("reads", -1, "reads is not a non-negative integer"),
    ("reads", 1.5, "reads is not a non-negative integer"),
    ("accessResults", "SUCCESS", "accessResults is not an array of strings"),
    ("accessResults", [1], "accessResults is not an array of strings"),
    ("hostName", 7, "hostName is not a string"),
])
def test_bad_optional_fields_name_the_field(field: str, value: object, message: str) -> None:
    obj = json.loads(DOC_FULL)
    obj["data"][field] = value
    good = zebra.encode("3074257BF7194E4000001A86", antenna=2, event_num=8)
    result = zebra.decode_all(json.dumps(obj).encode() + good, device=DEV, store_id="s1",
                              received_ts=T0)
    [error] = result.errors
    assert message in str(error)
    assert [r.epc for r in result.reads] == ["3074257BF7194E4000001A86"]  # the rest flows on


def test_simple_mode_minimal_event() -> None:
    [read] = decode(b'{"data":{"idHex":"3074257bf7194e4000001a85"},"type":"SIMPLE"}')
    assert (read.epc, read.antenna, read.rssi, read.device_ts) == (
        "3074257BF7194E4000001A85", None, None, None)


def test_concatenated_objects_and_arrays_all_decode() -> None:
    one = zebra.encode("3074257BF7194E4000001A85", antenna=1, rssi=-50, event_num=1,
                       ts="2021-03-31T12:44:01.484+0000")
    two = zebra.encode("3074257BF7194E4000001A86", antenna=2, rssi=-60, event_num=2)
    assert [r.seq for r in decode(one + two)] == [1, 2]
    assert [r.seq for r in decode(one + b"\n" + two + b"\n")] == [1, 2]
    assert [r.seq for r in decode(b"[" + one + b"," + two + b"]")] == [1, 2]


def test_bad_object_is_rejected_alone(caplog: pytest.LogCaptureFixture) -> None:
    good = zebra.encode("3074257BF7194E4000001A85", antenna=1, event_num=1)
    bad = b'{"data":{"idHex":"xyz"}}'
    result = zebra.decode_all(good + bad + good + b"{trunc", device=DEV, store_id="s1",
                              received_ts=T0)
    assert [r.epc for r in result.reads] == ["3074257BF7194E4000001A85"] * 2
    assert len(result.errors) == 2
    assert str(result.errors[0]) == \
        "fx9600-1: idHex is not an EPC of whole 16-bit words in hex: 'xyz'"
    assert "not JSON" in str(result.errors[1])
    with caplog.at_level(logging.WARNING):
        assert len(decode(good + bad)) == 1
    assert "dropped 1 bad tag reports" in caplog.text


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "payload is empty"),
    (b"\xff", "not UTF-8"),
    (b"nope", "not JSON"),
    (b"42", "not a JSON object"),
    (b'{"type":"SIMPLE"}', "no data object"),
    (b'{"data":{}}', "idHex is not a hex string"),
    (b'{"data":{"idHex":"3074"},"timestamp":"yesterday"}', "not an ISO 8601 time"),
    (b'{"data":{"idHex":"3074"},"timestamp":"2021-03-31T12:44:01"}', "no time zone"),
    (b'{"data":{"idHex":"3074","antenna":"1"}}', "antenna is not a port number"),
    (b'{"data":{"idHex":"3074","antenna":true}}', "antenna is not a port number"),
    (b'{"data":{"idHex":"3074","peakRssi":-500}}', "peakRssi is not a number"),
    (b'{"data":{"idHex":"3074","peakRssi":NaN}}', "peakRssi is not a number"),
    (b'{"data":{"idHex":"3074","eventNum":-1}}', "eventNum is not a non-negative"),
    (b'{"data":{"tagData":{}}}', "tagData is not an array"),
    (b'{"data":{"idHex":"307"}}', "whole 16-bit words"),
])
def test_bad_payloads_name_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode(payload)


def test_many_bad_objects_say_how_many() -> None:
    with pytest.raises(PayloadError, match="2 bad tag reports"):
        decode(b"1 2")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["data", "idHex", "antenna", "peakRssi", "eventNum", "timestamp",
                         "tagData", "EPC", "type", "reads", "seenCount", "MAC", "hostName",
                         "TID", "accessResults"]) | st.text(max_size=4), inner,
        max_size=5),
    max_leaves=12)


@given(json_values)
def test_any_json_decodes_or_raises_payload_error(value: object) -> None:
    payload = json.dumps(value).encode()
    try:
        reads = decode(payload)
    except PayloadError:
        return
    assert all(r.epc == r.epc.upper() for r in reads)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    try:
        decode(payload)
    except PayloadError:
        pass


macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))


@given(st.lists(st.tuples(st.binary(min_size=2, max_size=62).filter(lambda b: len(b) % 2 == 0),
                          st.integers(0, 16), st.integers(-100, 0), st.integers(0, 2**31)),
                min_size=1, max_size=5), macs, st.text(max_size=20))
def test_encode_decode_round_trip(tags: list[tuple[bytes, int, int, int]], mac: str,
                                  host: str) -> None:
    payload = b"".join(zebra.encode(epc.hex(), antenna=a, rssi=r, event_num=n, mac=mac,
                                    host_name=host, ts="2024-01-02T03:04:05.678+0000")
                       for epc, a, r, n in tags)
    reads = decode(payload)
    assert [(r.epc, r.antenna, r.rssi, r.seq, r.reads, r.reader_mac, r.reader_host)
            for r in reads] == [(epc.hex().upper(), a, float(r), n, 1, mac, host)
                                for epc, a, r, n in tags]
