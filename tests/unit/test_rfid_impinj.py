"""Impinj IoT device interface tagInventory events: documented shape and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.rfid import impinj
from devices.rfid.config import RfidImpinjDevice
from storeedge.errors import PayloadError

DEV = RfidImpinjDevice(type="rfid_impinj", id="r700-1", antennas={1: "door"})

# Shape of the Impinj IoT device interface event (Impinj reader configuration REST API, OpenAPI
# "TagInventoryEvent": epc base64, epcHex, antennaPort, antennaName, peakRssiCdbm, lastSeenTime;
# https://support.impinj.com/hc/en-us/articles/32123172324755). Here the epc is the GS1 TDS
# SGTIN-96 example 3074257BF7194E4000001A85, base64 "MHQle/cZTkAAABqF".
DOC_EVENT = (b'{"timestamp":"2024-08-06T12:00:00.123Z","hostname":"impinj-14-46-36",'
             b'"eventType":"tagInventory","tagInventoryEvent":{"epc":"MHQle/cZTkAAABqF",'
             b'"epcHex":"3074257BF7194E4000001A85","antennaPort":1,"antennaName":"Antenna 1",'
             b'"peakRssiCdbm":-5325,"lastSeenTime":"2024-08-06T12:00:00.120Z"}}')


# An R700 tag inventory event with the optional members the reader sends when its event
# configuration enables them (tid/tidHex, pc, frequency, transmitPowerCdbm, phaseAngle), in the
# shape a public R700 integration documents (reelyActive barnowl-impinj, lib/testlistener.js).
# Its EPC is no GS1 scheme (header 0x7E): a tag tracked by its hex alone.
R700_FULL = (b'{"timestamp":"2024-08-06T12:00:00.123Z","hostname":"impinj-01-23-45",'
             b'"eventType":"tagInventory","tagInventoryEvent":{"epc":"ftqQOAUQAnEAAsCu",'
             b'"epcHex":"7EDA9038051002710002C0AE","tid":"4oARcCAAFM2bWgjs",'
             b'"tidHex":"E2801170200014CD9B5A08EC","pc":"NAA=","antennaPort":1,'
             b'"antennaName":"ANTENNA-NAME","peakRssiCdbm":-7000,"frequency":927250,'
             b'"transmitPowerCdbm":3000,"lastSeenTime":"2024-08-06T12:00:00.120Z",'
             b'"phaseAngle":69.0}}')
# The same kind of event as some modes and firmware send it: no eventType, the event object
# alone, reported 2.5 s after the tag was last seen.
NO_TYPE_EVENT = (b'{"timestamp":"2024-08-06T12:00:02.620Z","hostname":"impinj-14-46-36",'
                 b'"tagInventoryEvent":{"epcHex":"3074257BF7194E4000001A85","antennaPort":2,'
                 b'"peakRssiCdbm":-6150,"tidHex":"E2801160200070F17A910998",'
                 b'"lastSeenTime":"2024-08-06T12:00:00.120Z"}}')


def decode(payload: bytes) -> list:
    return impinj.decode(payload, device=DEV, store_id="s1", received_ts=5.0)


def test_documented_event() -> None:
    [read] = decode(DOC_EVENT)
    assert (read.epc, read.antenna, read.rssi) == ("3074257BF7194E4000001A85", 1, -53.25)
    assert read.device_ts == pytest.approx(1722945600.120)
    assert DEV.location_of(read.antenna) == "door"


def test_optional_members() -> None:
    [read] = decode(R700_FULL)
    assert (read.epc, read.tid, read.reader_host, read.rssi) == (
        "7EDA9038051002710002C0AE", "E2801170200014CD9B5A08EC", "impinj-01-23-45", -70.0)
    obj = json.loads(R700_FULL)
    del obj["tagInventoryEvent"]["tidHex"]  # the base64 tid alone gives the same TID
    assert decode(json.dumps(obj).encode())[0].tid == "E2801170200014CD9B5A08EC"
    # The webhook posts events as a JSON array: each decodes.
    assert len(decode(b"[" + R700_FULL + b"," + NO_TYPE_EVENT + b"]")) == 2


def test_event_without_event_type_is_read_by_its_object() -> None:
    [read] = decode(NO_TYPE_EVENT)
    assert (read.epc, read.antenna, read.rssi, read.tid, read.reader_host) == (
        "3074257BF7194E4000001A85", 2, -61.5, "E2801160200070F17A910998", "impinj-14-46-36")
    # Both times: when the tag was last seen, and when the reader reported it.
    assert read.device_ts == pytest.approx(1722945600.120)
    assert read.event_ts == pytest.approx(1722945602.620)
    [typed] = decode(DOC_EVENT)
    assert typed.event_ts == pytest.approx(1722945600.123)
    assert typed.device_ts == pytest.approx(1722945600.120)


@pytest.mark.parametrize("payload", [
    b'{"timestamp":"2024-08-06T12:00:00Z","inventoryStatusEvent":{"inventoryStatus":"running"}}',
    b'{"timestamp":"2024-08-06T12:00:00Z","antennaConnectedEvent":{"antennaPort":1}}',
    b'{"timestamp":"2024-08-06T12:00:00Z","diagnosticEvent":{"type":"info"}}',
])
def test_other_event_objects_without_event_type_are_not_reads(payload: bytes) -> None:
    assert decode(payload) == []


def test_base64_epc_alone() -> None:
    obj = json.loads(DOC_EVENT)
    del obj["tagInventoryEvent"]["epcHex"], obj["tagInventoryEvent"]["lastSeenTime"]
    [read] = decode(json.dumps(obj).encode())
    assert read.epc == "3074257BF7194E4000001A85"
    assert read.device_ts == pytest.approx(1722945600.123)


def test_other_event_types_are_not_reads() -> None:
    status = b'{"timestamp":"2024-08-06T12:00:00Z","eventType":"inventoryStatus",' \
             b'"inventoryStatusEvent":{"inventoryStatus":"running"}}'
    assert decode(status) == []
    assert len(decode(status + b"\n" + DOC_EVENT + b"\n")) == 1  # the HTTP stream's NDJSON


@pytest.mark.parametrize(("payload", "message"), [
    (b'{"eventType":1}', "eventType is not a string"),
    (b'{"timestamp":"2024-08-06T12:00:00Z"}', "neither an eventType nor an event object"),
    (b'{"tagInventoryEvent":[]}', "tagInventoryEvent is not a JSON object"),
    (b'{"tagInventoryEvent":{"epcHex":"3074","tidHex":"E28"}}', "tidHex is not hex"),
    (b'{"tagInventoryEvent":{"epcHex":"3074","tid":"!!"}}', "tid is not base64"),
    (b'{"tagInventoryEvent":{"epcHex":"3074","lastSeenTime":"noon"}}',
     "lastSeenTime is not an ISO 8601 time"),
    (b'{"timestamp":5,"hostname":7,"tagInventoryEvent":{"epcHex":"3074"}}',
     "hostname is not a string"),
    (b'{"eventType":"tagInventory"}', "no tagInventoryEvent"),
    (b'{"eventType":"tagInventory","tagInventoryEvent":{}}', "neither epcHex nor"),
    (b'{"eventType":"tagInventory","tagInventoryEvent":{"epc":"!!"}}', "not base64"),
    (b'{"eventType":"tagInventory","tagInventoryEvent":{"epcHex":"30G4"}}', "epcHex"),
    (b'{"eventType":"tagInventory","tagInventoryEvent":{"epcHex":"3074","antennaPort":-1}}',
     "antennaPort"),
    (b'{"eventType":"tagInventory","tagInventoryEvent":{"epcHex":"3074",'
     b'"peakRssiCdbm":"-50"}}', "peakRssiCdbm"),
])
def test_bad_events_name_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode(payload)


@given(st.binary(min_size=2, max_size=62).filter(lambda b: len(b) % 2 == 0),
       st.integers(1, 32), st.integers(-9000, 0), st.booleans(), st.integers(0, 59),
       st.binary(min_size=4, max_size=12))
def test_round_trip(epc: bytes, antenna: int, cdbm: int, event_type: bool, lag_s: int,
                    tid: bytes) -> None:
    payload = impinj.encode(epc.hex(), antenna=antenna, rssi=cdbm / 100,
                            ts=f"2024-08-06T12:01:{lag_s:02d}Z",
                            last_seen="2024-08-06T12:01:00Z", tid=tid.hex(),
                            event_type=event_type)
    [read] = decode(payload)
    assert (read.epc, read.antenna, read.rssi, read.tid) == (epc.hex().upper(), antenna,
                                                             cdbm / 100, tid.hex().upper())
    assert read.event_ts - read.device_ts == lag_s


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    try:
        decode(payload)
    except PayloadError:
        pass


@given(st.dictionaries(st.sampled_from(["eventType", "tagInventoryEvent", "timestamp",
                                        "hostname", "inventoryStatusEvent"]),
                       st.none() | st.text(max_size=12) | st.integers() |
                       st.dictionaries(st.sampled_from(["epc", "epcHex", "antennaPort",
                                                        "peakRssiCdbm", "lastSeenTime",
                                                        "tidHex"]),
                                       st.none() | st.text(max_size=30) | st.integers() |
                                       st.floats())))
def test_any_event_object_decodes_or_raises_payload_error(obj: dict) -> None:
    try:
        decode(json.dumps(obj).encode())
    except PayloadError:
        pass
