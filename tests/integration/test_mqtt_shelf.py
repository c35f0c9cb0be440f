"""The wireless shelf simulator against a real Mosquitto, read back with our codec."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiomqtt
import pytest

from devices.shelf_mqtt.protocol import decode_status, decode_weight, status_topic, weight_topic
from edge_agent.services import Service
from firmware_sim.mqtt_shelf import MqttShelfSim
from storeedge.events import ShelfWeight


@pytest.fixture
def sim(mosquitto: Service, store_id: str) -> Iterator[MqttShelfSim]:
    shelf = MqttShelfSim(store_id, "shelf-w1", ["A1", "A2"], port=mosquitto.port,
                         heartbeat_seconds=0.2)
    yield shelf
    shelf.stop()


@pytest.fixture
async def client(mosquitto: Service) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        yield c


async def next_message(c: aiomqtt.Client, within: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(within):
        return await anext(aiter(c.messages))


async def next_weight(c: aiomqtt.Client, store_id: str) -> ShelfWeight:
    msg = await next_message(c)
    assert isinstance(msg.payload, bytes)
    return decode_weight(msg.payload, store_id=store_id, device_id="shelf-w1",
                         received_ts=time.time())


async def test_weights_on_change_and_heartbeat(sim: MqttShelfSim, client: aiomqtt.Client,
                                               store_id: str) -> None:
    await client.subscribe(weight_topic(store_id, "shelf-w1"))
    sim.start()
    sim.set_grams("A2", 1234.5)
    w = await next_weight(client, store_id)
    assert (w.lane, w.grams, w.seq) == ("A2", 1234.5, 1)
    assert w.device_ts == pytest.approx(time.time(), abs=5)

    # Heartbeats carry every lane, with the seq counting on.
    seen: dict[str, float] = {}
    seqs = [w.seq]
    while len(seen) < 2:
        w = await next_weight(client, store_id)
        seen[w.lane] = w.grams
        seqs.append(w.seq)
    assert seen == {"A1": 0.0, "A2": 1234.5}
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_status_retained_and_last_will(sim: MqttShelfSim, mosquitto: Service,
                                             store_id: str) -> None:
    topic = status_topic(store_id, "shelf-w1")
    sim.start()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as watcher:
        await watcher.subscribe(topic, qos=1)
        msg = await next_message(watcher)
        assert msg.retain and decode_status(bytes(msg.payload)) is True  # type: ignore[arg-type]

        sim.crash()  # no DISCONNECT: only the broker's last will can say it is gone
        msg = await next_message(watcher)
        assert decode_status(bytes(msg.payload)) is False  # type: ignore[arg-type]

    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
        await late.subscribe(topic)
        msg = await next_message(late)
        assert msg.retain and decode_status(bytes(msg.payload)) is False  # type: ignore[arg-type]


async def test_clean_stop_says_offline(sim: MqttShelfSim, client: aiomqtt.Client,
                                       store_id: str) -> None:
    sim.start()
    sim.stop()
    await client.subscribe(status_topic(store_id, "shelf-w1"))
    msg = await next_message(client)
    assert msg.retain and decode_status(bytes(msg.payload)) is False  # type: ignore[arg-type]
