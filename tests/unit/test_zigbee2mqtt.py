"""Zigbee2MQTT sensor JSON and availability: documented payloads, each way of being wrong,
fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from devices.zigbee2mqtt.protocol import (
    decode,
    decode_availability,
    decode_availability_status,
    encode_availability,
    encode_state,
)
from firmware_sim.fridge import FridgeProfile
from storeedge.errors import PayloadError, UsageError
from storeedge.events import Climate

DEVICE = Zigbee2MqttDevice(type="zigbee2mqtt", id="fridge-1", name="dairy/fridge-1",
                           zone="dairy-fridge-1")


def climate(payload: bytes) -> Climate:
    [event] = decode(payload, device=DEVICE, store_id="s1", received_ts=1000.5)
    assert isinstance(event, Climate)
    return event


def test_documented_payloads() -> None:
    # Zigbee2MQTT docs, "MQTT Topics and Messages" (guide/usage/mqtt_topics_and_messages):
    # the example message of a Xiaomi WSDCGQ01LM temperature & humidity sensor.
    c = climate(b'{\n"temperature": 27.34,\n"humidity": 44.72\n}')
    assert (c.temperature, c.humidity, c.battery, c.linkquality) == (27.34, 44.72, None, None)
    assert (c.store_id, c.source, c.received_ts, c.device_ts) == ("s1", "fridge-1", 1000.5, None)
    assert c.rejected == ()
    # An Aqara WSDCGQ11LM as Zigbee2MQTT 1.6 logged its publish (exposes battery, temperature,
    # humidity, pressure, voltage, linkquality per its zigbee2mqtt.io device page; pressure in
    # hPa, voltage in mV).
    c = climate(b'{"temperature":22.75,"linkquality":97,"humidity":55.43,"pressure":1000.6,'
                b'"battery":86,"voltage":2995}')
    assert (c.temperature, c.humidity, c.battery, c.linkquality) == (22.75, 55.43, 86.0, 97)
    assert (c.pressure, c.voltage, c.rejected) == (1000.6, pytest.approx(2.995), ())
    # A SONOFF SNZB-04P door contact, its state built from its device page's exposes (contact:
    # true when closed; battery_low, tamper; battery in %, voltage in mV, linkquality 0..255).
    c = climate(b'{"battery":100,"battery_low":false,"contact":false,"linkquality":132,'
                b'"tamper":false,"voltage":3100}')
    assert (c.contact, c.battery, c.voltage, c.linkquality) == (False, 100.0, 3.1, 132)
    assert c.temperature is None
    # A device whose page gives its voltage in V (e.g. IT Commander ITCMDR_Contact).
    volts = DEVICE.model_copy(update={"voltage_unit": "V"})
    [c] = decode(b'{"contact":true,"voltage":3.05}', device=volts, store_id="s1",
                 received_ts=1.0)
    assert (c.contact, c.voltage) == (True, 3.05)


def test_unknown_keys_nulls_and_last_seen() -> None:
    c = climate(b'{"temperature": -18.5, "battery": null, "battery_low": false, '
                b'"update": {"state": "idle"}, "last_seen": 1764160000123}')
    assert (c.temperature, c.battery, c.device_ts) == (-18.5, None, 1764160000.123)
    c = climate(b'{"temperature": 4, "last_seen": "2025-11-26T12:26:40.123+01:00"}')
    assert c.temperature == 4.0 and type(c.temperature) is float
    assert c.device_ts == pytest.approx(1764156400.123)
    c = climate(b'{"humidity": 61, "last_seen": "2025-11-26T11:26:40Z"}')
    assert c.device_ts == 1764156400.0


def test_no_value_of_ours_gives_no_event() -> None:
    assert decode(b'{"update": {"state": "available"}, "battery_low": true}', device=DEVICE,
                  store_id="s1", received_ts=1.0) == []


@pytest.mark.parametrize(
    ("side", "rejected"),
    [
        # Mistyped and absurd side fields as devices and older Zigbee2MQTT versions send them.
        ('"battery": "87"', "battery is not a number: '87'"),
        ('"battery": 255', "battery 255 is outside 0..100"),
        ('"linkquality": 300', "linkquality 300 is outside 0..255"),
        ('"linkquality": "97"', "linkquality is not an integer: '97'"),
        ('"linkquality": 97.5', "linkquality is not an integer: 97.5"),
        ('"humidity": 120', "humidity 120 is outside 0..100"),
        ('"humidity": -1.5', "humidity -1.5 is outside 0..100"),
        ('"pressure": 100060', "pressure 100060 is outside 300..1100 hPa"),
        ('"pressure": "1000.6"', "pressure is not a number: '1000.6'"),
        ('"voltage": 3.0', "voltage 3.0 is outside 500..10000 mV (a device that reports volts "
                           "needs voltage_unit: V)"),
        ('"voltage": true', "voltage is not a number: True"),
        ('"last_seen": "yesterday"', "last_seen is not ISO 8601: 'yesterday'"),
        ('"last_seen": "2025-11-26T11:26:40"', "last_seen has no UTC offset"),
        ('"last_seen": -5', "last_seen -5 is not a plausible epoch ms"),
        ('"last_seen": 1.5', "last_seen is neither epoch ms nor ISO 8601: 1.5"),
    ],
)
def test_a_bad_side_field_is_named_and_loses_nothing_else(side: str, rejected: str) -> None:
    for main in ('"temperature": 3.5', '"contact": false'):
        c = climate(("{" + main + ", " + side + ', "battery_low": false}').encode())
        [problem] = c.rejected
        assert problem.startswith(rejected)
        assert (c.temperature, c.contact) == ((3.5, None) if "temperature" in main
                                              else (None, False))
        key = side.split('"')[1]
        if key != "last_seen":
            assert getattr(c, key) is None
        else:
            assert c.device_ts is None


def test_several_bad_fields_each_named() -> None:
    c = climate(b'{"temperature": 5.25, "battery": "low", "linkquality": 300, "humidity": 48,'
                b' "voltage": 2900}')
    assert (c.temperature, c.humidity, c.voltage) == (5.25, 48.0, 2.9)
    assert c.rejected == ("battery is not a number: 'low'", "linkquality 300 is outside 0..255")
    # A bad temperature is rejected like any field; the side fields that came with it stay.
    c = climate(b'{"temperature": 400, "humidity": 48}')
    assert (c.temperature, c.humidity) == (None, 48.0)
    assert c.rejected == ("temperature 400 is outside -100..150",)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "state payload is not JSON"),
        (b"\xff", "state payload is not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'{"temperature": "4.2"}', "temperature is not a number: '4.2'"),
        (b'{"temperature": true}', "temperature is not a number: True"),
        (b'{"temperature": 1e999}', "temperature inf is outside -100..150"),
        (b'{"temperature": NaN}', "temperature nan is outside"),
        (b'{"temperature": 400}', "temperature 400 is outside -100..150"),
        (b'{"temperature": 1' + b"0" * 400 + b"}", "is outside -100..150"),
        (b'{"contact": "open"}', "contact is not true or false: 'open'"),
        (b'{"humidity": 101}', "humidity 101 is outside 0..100"),
        (b'{"battery": -1}', "battery -1 is outside 0..100"),
        (b'{"temperature": 400, "battery": "x"}',
         "temperature 400 is outside -100..150; battery is not a number: 'x'"),
        (b"[" * 100_000, "state payload is not JSON"),
    ],
)
def test_bad_payloads(payload: bytes, message: str) -> None:
    # Nothing of the message is good: it is rejected whole, naming each bad field.
    with pytest.raises(PayloadError, match=message) as info:
        decode(payload, device=DEVICE, store_id="s1", received_ts=1.0)
    assert info.value.source == "fridge-1"


def test_availability_both_forms() -> None:
    # Zigbee2MQTT docs, "Device-Availability": the state is published retained on
    # zigbee2mqtt/[FRIENDLY_NAME]/availability as {"state":"online"} / {"state":"offline"}, or as
    # plain online / offline with legacy_availability_payload.
    assert decode_availability(b'{"state":"online"}') is True
    assert decode_availability(b'{"state": "offline"}') is False
    assert decode_availability(b"online") is True
    assert decode_availability(b"offline\n") is False
    for bad in (b"", b"on", b'{"state":"ONLINE"}', b'{"status":"online"}', b"[]", b"\xff"):
        with pytest.raises(PayloadError, match="neither online nor offline"):
            decode_availability(bad)
    status = decode_availability_status(b'{"state":"offline"}', device=DEVICE, store_id="s1",
                                        received_ts=2.0)
    assert (status.source, status.online, status.received_ts) == ("fridge-1", False, 2.0)
    assert status.error
    with pytest.raises(PayloadError, match="fridge-1: "):
        decode_availability_status(b"?", device=DEVICE, store_id="s1", received_ts=2.0)


def test_encoders_round_trip() -> None:
    payload = encode_state(temperature=3.9, humidity=61.2, battery=87, linkquality=120,
                           voltage=2950, last_seen_ms=1764160000123)
    assert json.loads(payload) == {"battery": 87, "humidity": 61.2, "last_seen": 1764160000123,
                                   "linkquality": 120, "temperature": 3.9, "voltage": 2950}
    c = climate(payload)
    assert (c.temperature, c.humidity, c.battery, c.linkquality) == (3.9, 61.2, 87.0, 120)
    assert c.voltage == pytest.approx(2.95)
    c = climate(encode_state(contact=True, pressure=1013.25))
    assert (c.contact, c.pressure) == (True, 1013.25)
    for online in (True, False):
        for legacy in (True, False):
            assert decode_availability(encode_availability(online, legacy=legacy)) is online
    with pytest.raises(UsageError):
        encode_state(temperature=float("nan"))


def test_config_topics() -> None:
    assert DEVICE.state_topic == "zigbee2mqtt/dairy/fridge-1"
    assert DEVICE.availability_topic == "zigbee2mqtt/dairy/fridge-1/availability"
    other = Zigbee2MqttDevice(type="zigbee2mqtt", id="f2", name="f2", zone="z",
                              base_topic="z2m", topic="custom/f2")
    assert (other.state_topic, other.availability_topic) == ("custom/f2", "custom/f2/availability")
    assert Zigbee2MqttDevice(type="zigbee2mqtt", id="f3", name="f3", zone="z",
                             base_topic="z2m").state_topic == "z2m/f3"
    for bad in ({"name": "a/+"}, {"name": "/a"}, {"name": ""}, {"zone": ""},
                {"base_topic": "z#"}, {"topic": "a/#"}, {"extra": 1}):
        with pytest.raises(ValidationError):
            Zigbee2MqttDevice.model_validate({"type": "zigbee2mqtt", "id": "f", "name": "f",
                                              "zone": "z", **bad})


def test_fridge_profile() -> None:
    profile = FridgeProfile(setpoint=4.0, ambient=22.0, open_tau=300.0, recover_tau=600.0)
    profile.open_door(at=1000.0, seconds=300.0)
    assert profile.temperature(999.0) == 4.0
    peak = profile.temperature(1300.0)
    assert peak == pytest.approx(4.0 + 18.0 * (1 - 1 / 2.718281828), rel=1e-6)
    assert 4.0 < profile.temperature(1900.0) < peak  # recovering after the door closed
    assert profile.temperature(1300.0 + 6000.0) == pytest.approx(4.0, abs=0.01)
    profile.fail(at=10_000.0, per_hour=2.0)
    assert profile.temperature(10_000.0 + 3 * 3600) == pytest.approx(10.0, abs=0.01)
    with pytest.raises(UsageError):
        profile.open_door(at=0.0, seconds=0.0)


FIELDS = ["temperature", "contact", "humidity", "pressure", "battery", "voltage",
          "linkquality", "last_seen"]
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                        st.text(max_size=30), st.lists(st.integers(), max_size=2))


@given(st.dictionaries(st.sampled_from([*FIELDS, "other"]), JSON_VALUES))
def test_any_json_object_gives_climate_or_payload_error(obj: dict[str, object]) -> None:
    payload = json.dumps(obj).encode()
    try:
        events = decode(payload, device=DEVICE, store_id="s1", received_ts=1.0)
    except PayloadError as exc:
        # Rejected whole only when no value of ours was good (a device time alone is no
        # value); every one present is named.
        named = [f for f in FIELDS[:-1] if obj.get(f) is not None]
        assert all(f in str(exc) for f in named)
        assert any(str(exc).startswith(f"fridge-1: {f} ") for f in FIELDS)
        return
    assert len(events) <= 1
    for event in events:
        assert isinstance(event, Climate)
        assert event.temperature is None or -100 <= event.temperature <= 150
        assert event.linkquality is None or 0 <= event.linkquality <= 255
        # Every field present was either kept or named as rejected, never both.
        for f in FIELDS:
            kept = (event.device_ts if f == "last_seen" else getattr(event, f)) is not None
            named = any(r.startswith(f + " ") for r in event.rejected)
            assert (kept or named) == (obj.get(f) is not None) and not (kept and named)


@given(temperature=st.floats(-100, 150), contact=st.none() | st.booleans(),
       side=st.dictionaries(st.sampled_from(FIELDS[2:]), JSON_VALUES, min_size=1))
def test_side_fields_never_cost_the_temperature_or_contact(
        temperature: float, contact: bool | None, side: dict[str, object]) -> None:
    obj = {**side, "temperature": temperature, "contact": contact}
    c = climate(json.dumps(obj).encode())
    assert (c.temperature, c.contact) == (temperature, contact)
    assert len(c.rejected) <= len(side)


@given(st.binary(max_size=200))
def test_any_bytes_give_events_or_payload_error(payload: bytes) -> None:
    try:
        decode(payload, device=DEVICE, store_id="s1", received_ts=1.0)
    except PayloadError:
        pass
    try:
        decode_availability(payload)
    except PayloadError:
        pass
