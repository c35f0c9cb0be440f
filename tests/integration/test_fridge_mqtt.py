"""The fridge simulator through a real Mosquitto, read back with the Zigbee2MQTT codec."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from devices.zigbee2mqtt.protocol import decode, decode_availability
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.services import Service, free_port
from firmware_sim.faults import Faults
from firmware_sim.fridge import QUIRKS, FridgeProfile, FridgeSim
from storeedge.events import Climate
from tests.waiting import until


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def device(store_id: str) -> Zigbee2MqttDevice:
    # The store id in the friendly name keeps each test's topics apart.
    return Zigbee2MqttDevice(type="zigbee2mqtt", id="fridge-1", name=f"{store_id}/dairy-1",
                             zone="dairy-fridge-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_764_160_000.0)


@pytest.fixture
def sim(mosquitto: Service, device: Zigbee2MqttDevice, clock: FakeClock) -> Iterator[FridgeSim]:
    fridge = FridgeSim(device.name, port=mosquitto.port, profile=FridgeProfile(setpoint=4.0),
                       noise=0.1, interval_seconds=0.05, last_seen=True, seed=7, clock=clock,
                       faults=Faults(clock_skew_s=-30.0))
    yield fridge
    fridge.stop()


@pytest.fixture
async def client(mosquitto: Service) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        yield c


async def next_payload(c: aiomqtt.Client, within: float = 5.0) -> bytes:
    async with asyncio.timeout(within):
        msg = await anext(aiter(c.messages))
    assert isinstance(msg.payload, bytes)
    return msg.payload


async def next_climate(c: aiomqtt.Client, device: Zigbee2MqttDevice, store_id: str) -> Climate:
    [event] = decode(await next_payload(c), device=device, store_id=store_id,
                     received_ts=time.time())
    assert isinstance(event, Climate)
    return event


async def climate_sampled_at(c: aiomqtt.Client, device: Zigbee2MqttDevice, store_id: str,
                             clock: FakeClock) -> Climate:
    """The first reading sampled at the clock's present time (last_seen tells, skewed by 30 s):
    readings sampled before the test moved the clock may still be queued."""
    async with asyncio.timeout(5.0):
        while True:
            event = await next_climate(c, device, store_id)
            if event.device_ts == clock.now - 30.0:
                return event


async def test_setpoint_door_excursion_and_failure(sim: FridgeSim, client: aiomqtt.Client,
                                                   device: Zigbee2MqttDevice, clock: FakeClock,
                                                   store_id: str) -> None:
    await client.subscribe(device.state_topic, qos=1)
    sim.start()
    c = await next_climate(client, device, store_id)
    assert c.temperature == pytest.approx(4.0, abs=0.5)
    assert (c.battery, c.linkquality, c.source) == (90.0, 120, "fridge-1")
    assert c.humidity == pytest.approx(60.0, abs=0.5)
    assert c.device_ts == clock.now - 30.0  # the sensor's clock runs 30 s behind

    sim.profile.open_door(at=clock.now, seconds=600.0)
    clock.now += 300.0
    c = await climate_sampled_at(client, device, store_id, clock)
    assert c.temperature == pytest.approx(4.0 + 18.0 * 0.632, abs=0.5)

    clock.now += 7200.0  # door long closed: back at the setpoint
    c = await climate_sampled_at(client, device, store_id, clock)
    assert c.temperature == pytest.approx(4.0, abs=0.5)

    sim.profile.fail(at=clock.now, per_hour=1.5)
    clock.now += 4 * 3600.0
    c = await climate_sampled_at(client, device, store_id, clock)
    assert c.temperature == pytest.approx(10.0, abs=0.5)


async def test_availability_is_retained(sim: FridgeSim, mosquitto: Service,
                                        device: Zigbee2MqttDevice) -> None:
    sim.start()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
        await late.subscribe(device.availability_topic, qos=1)
        assert decode_availability(await next_payload(late)) is True
        sim.set_available(False)
        assert decode_availability(await next_payload(late)) is False
    sim.stop()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as later:
        await later.subscribe(device.availability_topic)
        assert decode_availability(await next_payload(later)) is False


async def test_faults_duplicate_and_drift(mosquitto: Service, device: Zigbee2MqttDevice,
                                          clock: FakeClock, client: aiomqtt.Client) -> None:
    elapsed = FakeClock(0.0)
    fridge = FridgeSim(device.name, port=mosquitto.port, interval_seconds=0.05, clock=clock,
                       faults=Faults(duplicate_rate=1.0, drift_per_s=0.01), elapsed=elapsed)
    await client.subscribe(device.state_topic, qos=1)
    try:
        fridge.start()
        first, second = await next_payload(client), await next_payload(client)
        assert first == second  # every state message goes out twice
        elapsed.now = 600.0  # ten minutes into the scenario: drifted 6 degrees
        async with asyncio.timeout(5.0):
            while True:
                [event] = decode(await next_payload(client), device=device, store_id="s",
                                 received_ts=0.0)
                assert isinstance(event, Climate) and event.temperature is not None
                if event.temperature > 5.0:
                    break
        assert event.temperature == pytest.approx(10.0, abs=0.01)
    finally:
        fridge.stop()


async def test_agent_keeps_the_temperature_of_quirky_messages(mosquitto: Service, store_id: str,
                                                              tmp_path: Path) -> None:
    """A sensor whose every message has one mistyped or absurd side field, read by the agent:
    each temperature arrives, each bad field is counted as a bad field, no message is lost."""
    port = free_port()
    cfg = StoreConfig.model_validate({
        "store": {"id": store_id},
        "broker": {"port": mosquitto.port, "client_id": f"agent-{store_id}"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"port": port},
        "zones": [{"id": "dairy", "min_c": 0, "max_c": 6}],
        "devices": [{"type": "zigbee2mqtt", "id": "fridge-1", "name": f"{store_id}/dairy-1",
                     "zone": "dairy"}],
    })
    fridge = FridgeSim(f"{store_id}/dairy-1", port=mosquitto.port, interval_seconds=0.02,
                       profile=FridgeProfile(setpoint=3.25), quirks=True, seed=3)
    agent = StoreAgent(cfg)
    task = asyncio.create_task(agent.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await until(agent.mqtt.connected.is_set, within=10.0)
            fridge.start()
            await until(lambda: agent.counters["rejected_bad_field"] >= 2 * len(QUIRKS),
                        within=10.0)
            assert agent.pipeline.climate["dairy"]["temperature"] == 3.25
            assert agent.counters["rejected_bad_payload"] == 0
            metrics = (await http.get("/metrics")).text
        bad = [line for line in metrics.splitlines()
               if line.startswith("storeedge_rejected_total") and 'reason="bad_field"' in line]
        assert bad and float(bad[0].split()[-1]) >= 2 * len(QUIRKS)
    finally:
        fridge.stop()
        agent.stop()
        await asyncio.wait_for(task, 20)
