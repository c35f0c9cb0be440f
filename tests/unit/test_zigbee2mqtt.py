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
    # An Aqara WSDCGQ11LM as Zigbee2MQTT 1.6 logged its publish (exposes battery, temperature,
    # humidity, pressure, voltage, linkquality per its zigbee2mqtt.io device page); pressure and
    # voltage are read past.
    c = climate(b'{"temperature":22.75,"linkquality":97,"humidity":55.43,"pressure":1000.6,'
                b'"battery":86,"voltage":2995}')
    assert (c.temperature, c.humidity, c.battery, c.linkquality) == (22.75, 55.43, 86.0, 97)


def test_unknown_keys_nulls_and_last_seen() -> None:
    c = climate(b'{"temperature": -18.5, "battery": null, "battery_low": false, '
                b'"update": {"state": "idle"}, "last_seen": 1764160000123}')
    assert (c.temperature, c.battery, c.device_ts) == (-18.5, None, 1764160000.123)
    c = climate(b'{"temperature": 4, "last_seen": "2025-11-26T12:26:40.123+01:00"}')
    assert c.temperature == 4.0 and type(c.temperature) is float
    assert c.device_ts == pytest.approx(1764156400.123)
    c = climate(b'{"humidity": 61, "last_seen": "2025-11-26T11:26:40Z"}')
    assert c.device_ts == 1764156400.0


def test_no_climate_value_gives_no_event() -> None:
    assert decode(b'{"update": {"state": "available"}, "voltage": 3000}', device=DEVICE,
                  store_id="s1", received_ts=1.0) == []


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
        (b'{"humidity": 101}', "humidity 101 is outside 0..100"),
        (b'{"battery": -1}', "battery -1 is outside 0..100"),
        (b'{"linkquality": 97.5}', "linkquality is not an integer"),
        (b'{"linkquality": 256}', "linkquality 256 is outside 0..255"),
        (b'{"temperature": 4, "last_seen": "yesterday"}', "last_seen is not ISO 8601"),
        (b'{"temperature": 4, "last_seen": "2025-11-26T11:26:40"}', "has no UTC offset"),
        (b'{"temperature": 4, "last_seen": -5}', "not a plausible epoch ms"),
        (b'{"temperature": 4, "last_seen": 1.5}', "neither epoch ms nor ISO 8601"),
        (b"[" * 100_000, "state payload is not JSON"),
    ],
)
def test_bad_payloads(payload: bytes, message: str) -> None:
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


@given(st.dictionaries(st.sampled_from(["temperature", "humidity", "battery", "linkquality",
                                        "last_seen", "voltage", "other"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                 st.text(max_size=30), st.lists(st.integers(), max_size=2))))
def test_any_json_object_gives_climate_or_payload_error(obj: dict[str, object]) -> None:
    payload = json.dumps(obj).encode()
    try:
        events = decode(payload, device=DEVICE, store_id="s1", received_ts=1.0)
    except PayloadError:
        return
    assert len(events) <= 1
    for event in events:
        assert isinstance(event, Climate)
        assert event.temperature is None or -100 <= event.temperature <= 150


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
