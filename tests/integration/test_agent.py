"""The agent in-process against a real Mosquitto: readings in over MQTT, alerts out over MQTT,
POS over HTTP, bad input rejected while the rest flows, state resumed after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import httpx

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.services import free_port

UNIT = 100.0


def config(store_id: str, broker_port: int, tmp_path: Path, http_port: int) -> StoreConfig:
    return StoreConfig.model_validate({
        "store": {"id": store_id},
        "broker": {"port": broker_port, "client_id": f"agent-{store_id}"},
        "journal": {"path": str(tmp_path / "journal.db"), "snapshot_seconds": 0.2},
        "http": {"port": http_port},
        "inventory": {"settle_seconds": 0},
        "catalog": [{"sku": "COLA", "unit_grams": UNIT, "low_stock": 3}],
        "lanes": [{"id": "A1", "sku": "COLA", "capacity": 10},
                  {"id": "A2", "sku": "COLA", "capacity": 10}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1", "A2"]}],
    })


@asynccontextmanager
async def running(cfg: StoreConfig) -> AsyncIterator[StoreAgent]:
    agent = StoreAgent(cfg)
    task = asyncio.create_task(agent.run())
    url = f"http://127.0.0.1:{cfg.http.port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                health = (await client.get(url + "/readyz")).json()
                if health["broker"]["connected"]:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    try:
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 20)


async def weigh(mqtt: aiomqtt.Client, store_id: str, lane: str, units: float) -> None:
    payload = json.dumps({"lane": lane, "grams": units * UNIT})
    await mqtt.publish(f"store/{store_id}/dev/shelf-1/weight", payload, qos=1)


async def next_alert(messages: AsyncIterator[aiomqtt.Message], timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        async for message in messages:
            return json.loads(message.payload)
    raise AssertionError("no alert")


async def wait_until(check, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_readings_to_alerts_pos_and_restart(mosquitto, store_id, tmp_path):
    cfg = config(store_id, mosquitto.port, tmp_path, free_port())
    url = f"http://127.0.0.1:{cfg.http.port}"
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
        await mqtt.subscribe(f"store/{store_id}/alerts", qos=1)
        messages = mqtt.messages
        async with running(cfg) as agent, httpx.AsyncClient(base_url=url) as http:
            for units in (10, 9, 8, 5):
                await weigh(mqtt, store_id, "A1", units)
            await mqtt.publish(f"store/{store_id}/dev/shelf-1/weight", b"{not json", qos=1)
            await mqtt.publish(f"store/{store_id}/dev/shelf-1/weight",
                               b'{"lane": "Z9", "grams": 1}', qos=1)
            await mqtt.publish(f"store/{store_id}/dev/ghost/weight",
                               b'{"lane": "A1", "grams": 1}', qos=1)
            await weigh(mqtt, store_id, "A1", 3)
            alert = await next_alert(messages)
            assert (alert["rule"], alert["subject"], alert["state"]) == ("low_stock", "A1", "open")
            assert alert["detail"]["bring"] == 7
            await weigh(mqtt, store_id, "A1", 2)  # lower still: the same alert, re-notified
            worse = await next_alert(messages)
            assert (worse["alert_id"], worse["state"]) == (alert["alert_id"], "open")
            assert worse["detail"]["transition"] == "worsened"
            assert worse["detail"]["bring"] == 8
            await wait_until(lambda: agent.scales["A1"].units == 2)
            assert agent.counters["rejected_bad_payload"] == 2  # not JSON; a lane not its own
            assert agent.counters["readings_shelf_mqtt"] == agent.counters["readings"] == 6
            assert agent.counters["rejected_unknown_device"] == 1
            lanes = {lane["id"]: lane for lane in (await http.get("/api/lanes")).json()}
            assert lanes["A1"]["units"] == 2
            devices = (await http.get("/api/devices")).json()
            assert devices["shelf-1"]["state"] == "online"
            assert devices["shelf-1"]["readings"] == 6 and devices["shelf-1"]["bad"] == 2

            txn = {"txn_id": "T-1", "ts": 1764160000123,
                   "lines": [{"sku": "COLA", "qty": 2, "unit_price": 3.5}]}
            assert (await http.post("/api/pos/transactions", json=txn)).status_code == 201
            again = await http.post("/api/pos/transactions", json=txn)
            assert again.status_code == 200 and again.json()["duplicate"] is True
            bad = {**txn, "txn_id": "T-2", "lines": [{"sku": "NOPE", "qty": 1, "unit_price": 1.0}]}
            resp = await http.post("/api/pos/transactions", json=bad)
            assert resp.status_code == 422 and "lines.0.sku" in resp.text
            opened = [a for a in (await http.get("/api/alerts")).json()]
            assert [a["alert_id"] for a in opened] == [alert["alert_id"]]

        # Restarted on the same journal: the open alert and the count are still there, a
        # reading at the same low count raises nothing new, a restock clears the old alert.
        async with running(cfg) as agent, httpx.AsyncClient(base_url=url) as http:
            assert agent.scales["A1"].units == 2
            assert agent.journal.sale_count() == 1
            assert [a.alert_id for a in agent.alerts()] == [alert["alert_id"]]
            # A start publishes each recent alert's latest transition again (it might have
            # been journaled but not yet published when the last process died).
            replayed = await next_alert(messages)
            assert (replayed["alert_id"], replayed["state"]) == (alert["alert_id"], "open")
            await weigh(mqtt, store_id, "A1", 2)
            await weigh(mqtt, store_id, "A1", 10)
            cleared = await next_alert(messages)
            assert (cleared["alert_id"], cleared["state"]) == (alert["alert_id"], "cleared")
            assert (await http.get("/api/alerts")).json() == []


async def test_rules_reload_on_file_change_keeps_open_alerts_and_refuses_a_bad_file(
        mosquitto, store_id, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("rules:\n  low_stock: {severity: warning}\n")
    data = config(store_id, mosquitto.port, tmp_path, free_port()).model_dump()
    data["rules"] = {"file": "rules.yaml"}
    cfg = StoreConfig.model_validate({**data, "source": tmp_path / "store.yaml"})
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
        await mqtt.subscribe(f"store/{store_id}/alerts", qos=1)
        async with running(cfg) as agent:
            for units in (10, 3):
                await weigh(mqtt, store_id, "A1", units)
            opened = await next_alert(mqtt.messages)
            assert opened["state"] == "open"

            rules_file.write_text("rules:\n  low_stock: {severity: loud}\n")  # a mistake
            assert agent.reload_rules() is False
            assert [a.alert_id for a in agent.alerts()] == [opened["alert_id"]]

            rules_file.write_text("rules:\n  low_stock: {severity: critical}\n")
            os.utime(rules_file, (time.time() + 5, time.time() + 5))
            agent.tick(time.time())  # notices the changed file
            assert [a.alert_id for a in agent.alerts()] == [opened["alert_id"]]
            await weigh(mqtt, store_id, "A2", 10)
            await weigh(mqtt, store_id, "A2", 1)
            later = await next_alert(mqtt.messages)
            while later["subject"] != "A2":
                later = await next_alert(mqtt.messages)
            assert (later["rule"], later["severity"]) in {("low_stock", "critical"),
                                                        ("out_of_stock", "critical")}

            rules_file.write_text("rules:\n  low_stock: {enabled: false}\n")
            assert agent.reload_rules() is True
            assert all(a.rule != "low_stock" for a in agent.alerts())
