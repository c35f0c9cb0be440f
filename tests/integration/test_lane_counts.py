"""Lane counts through the real agent and a real Mosquitto, watched on the alert stream: noisy
weights count exactly, a foreign item that stays is reported, and the weight that follows its
removal clears the report."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import aiomqtt

from edge_agent.config import StoreConfig
from edge_agent.services import free_port
from tests.integration.test_agent import running

UNIT = 100.0


def config(store_id: str, broker_port: int, tmp_path) -> StoreConfig:
    return StoreConfig.model_validate({
        "store": {"id": store_id},
        "broker": {"port": broker_port, "client_id": f"agent-{store_id}"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"port": free_port()},
        "inventory": {"settle_seconds": 0, "ambiguous_seconds": 0.5},
        "catalog": [{"sku": "COLA", "unit_grams": UNIT, "low_stock": 3}],
        "lanes": [{"id": "A1", "sku": "COLA", "capacity": 10}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1"]}],
    })


async def weigh(mqtt: aiomqtt.Client, store_id: str, grams: float) -> None:
    await mqtt.publish(f"store/{store_id}/dev/shelf-1/weight",
                       json.dumps({"lane": "A1", "grams": round(grams, 1)}), qos=1)


async def alert(messages: AsyncIterator[aiomqtt.Message], rule: str, transition: str,
                within: float = 10.0) -> dict:
    """The next alert of ``rule``, which must make ``transition`` (other rules' alerts pass)."""
    async with asyncio.timeout(within):
        async for message in messages:
            body = json.loads(message.payload)
            if body["rule"] == rule:
                assert body["detail"]["transition"] == transition, body
                return body
    raise AssertionError("the alert stream ended")


async def test_noisy_weights_count_exactly_and_a_foreign_item_is_reported_until_removed(
        mosquitto, store_id, tmp_path):
    rng = random.Random(7)

    def noisy(units: int) -> float:
        return units * UNIT + rng.uniform(-0.2, 0.2) * UNIT

    async with running(config(store_id, mosquitto.port, tmp_path)), \
            aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
        await mqtt.subscribe(f"store/{store_id}/alerts", qos=1)
        messages = mqtt.messages
        for units in range(10, 3, -1):
            await weigh(mqtt, store_id, noisy(units))
        await weigh(mqtt, store_id, 3 * UNIT - 19.0)
        opened = await alert(messages, "low_stock", "opened")
        assert opened["detail"]["units"] == 3
        await weigh(mqtt, store_id, 2 * UNIT + 19.0)
        assert (await alert(messages, "low_stock", "worsened"))["detail"]["units"] == 2

        # A 50 g foreign item beside the two units: no whole number of units, reported only
        # once it has stayed for ambiguous_seconds (the shelf keeps reporting its weight).
        async def keep_weighing() -> None:
            while True:
                await weigh(mqtt, store_id, 2 * UNIT + 50.0 + rng.uniform(-3, 3))
                await asyncio.sleep(0.2)

        shelf = asyncio.create_task(keep_weighing())
        try:
            misplaced = await alert(messages, "misplaced", "opened")
        finally:
            shelf.cancel()
            await asyncio.gather(shelf, return_exceptions=True)
        assert misplaced["subject"] == "lane:A1"
        await weigh(mqtt, store_id, noisy(2))  # taken away: a whole number of units again
        cleared = await alert(messages, "misplaced", "cleared")
        assert cleared["subject"] == "lane:A1"
        await weigh(mqtt, store_id, 1 * UNIT - 18.0)  # and the count went on exactly
        assert (await alert(messages, "low_stock", "worsened"))["detail"]["units"] == 1
