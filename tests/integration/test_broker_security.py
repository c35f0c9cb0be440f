"""The broker config ``storeedge broker-config`` writes, enforced by a real Mosquitto over TLS.

What a client must not get is checked with a sentinel, not a sleep: Mosquitto routes a QoS 1
PUBLISH to every subscriber's queue before it sends the PUBACK, and delivers one subscriber's
queue in order. So once a forbidden publish was acknowledged, a sentinel published after it
reaches the watcher after the forbidden message would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import httpx
import pytest

from devices.shelf_mqtt.protocol import decode_weight
from edge_agent.broker_security import (
    HQ_SERVICE_USER,
    BrokerFiles,
    bridge_user,
    current_user,
    write_hq_broker_config,
)
from edge_agent.certs import write_store_certs
from edge_agent.config import StoreConfig
from edge_agent.services import free_port, mosquitto_path, spawn, start_mosquitto
from firmware_sim.login import BrokerLogin
from firmware_sim.mqtt_shelf import MqttShelfSim
from storeedge.errors import BrokerUnavailable
from tests.fixtures.mosquitto import SecureBroker, two_stores
from tests.integration.test_agent import running

_ids = itertools.count()


@asynccontextmanager
async def connect(broker: SecureBroker, user: str | None, password: str | None = None,
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[aiomqtt.Client]:
    if user is not None and password is None:
        password = broker.files.passwords[user]
    client = aiomqtt.Client("127.0.0.1", broker.port, identifier=f"t-{user}-{next(_ids)}",
                            username=user, password=password,
                            tls_context=tls or broker.tls(), timeout=10)
    async with client:
        yield client


def code(reason: object) -> int:
    """A CONNACK or SUBACK code, as paho gives it (a ReasonCode) or as a plain int."""
    value = getattr(reason, "value", reason)
    assert isinstance(value, int)
    return value


async def received_until(client: aiomqtt.Client, sentinel: str,
                         within: float = 10.0) -> list[tuple[str, bytes]]:
    """Every message up to and including the one on topic ``sentinel``."""
    seen: list[tuple[str, bytes]] = []
    async with asyncio.timeout(within):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            seen.append((message.topic.value, message.payload))
            if message.topic.value == sentinel:
                return seen
    raise AssertionError("the message stream ended")


async def test_wrong_password_and_anonymous_are_refused(secure_mosquitto: SecureBroker) -> None:
    agent = secure_mosquitto.files.user("sa", "agent")
    with pytest.raises(aiomqtt.MqttCodeError) as wrong:
        async with connect(secure_mosquitto, agent, "not-the-password"):
            pass
    with pytest.raises(aiomqtt.MqttCodeError) as anonymous:
        async with connect(secure_mosquitto, None):
            pass
    # 3.1.1 section 3.2.2.3: 4 bad user name or password, 5 not authorized.
    assert code(wrong.value.rc) in (4, 5, 134, 135)
    assert code(anonymous.value.rc) in (4, 5, 134, 135)
    # The right password on the same listener gets in: the refusals were about credentials.
    async with connect(secure_mosquitto, agent) as client:
        await client.publish("store/sa/state/probe", b"1", qos=1)


async def test_plain_tcp_and_an_unknown_ca_are_refused(secure_mosquitto: SecureBroker,
                                                       tmp_path: Path) -> None:
    agent = secure_mosquitto.files.user("sa", "agent")
    password = secure_mosquitto.files.passwords[agent]
    plain = aiomqtt.Client("127.0.0.1", secure_mosquitto.port, username=agent,
                           password=password, timeout=3)
    with pytest.raises(aiomqtt.MqttError):
        async with plain:
            pass
    other_ca = ssl.create_default_context()  # the system's CAs never signed the store's broker
    with pytest.raises((aiomqtt.MqttError, ssl.SSLError)):
        async with connect(secure_mosquitto, agent, tls=other_ca):
            pass


async def test_a_device_cannot_publish_alerts_state_or_another_devices_readings(
        secure_mosquitto: SecureBroker) -> None:
    files = secure_mosquitto.files
    async with connect(secure_mosquitto, files.user("sa", "agent")) as agent, \
            connect(secure_mosquitto, files.user("sa", "device", "sa-s1")) as shelf:
        await agent.subscribe("store/sa/#", qos=1)
        for topic in ("store/sa/alerts", "store/sa/state/agent", "store/sa/dev/sa-s2/weight",
                      "store/sb/dev/sb-s1/weight", "store/sa/pos/txn"):
            await shelf.publish(topic, b'{"forged": true}', qos=1)
        await shelf.publish("store/sa/dev/sa-s1/weight", b"sentinel", qos=1)
        seen = await received_until(agent, "store/sa/dev/sa-s1/weight")
    assert seen == [("store/sa/dev/sa-s1/weight", b"sentinel")]


async def test_a_store_neither_reads_nor_writes_another_stores_subtree(
        secure_mosquitto: SecureBroker) -> None:
    files = secure_mosquitto.files
    async with connect(secure_mosquitto, files.user("sa", "agent")) as agent_a, \
            connect(secure_mosquitto, files.user("sb", "agent")) as agent_b:
        # Mosquitto grants a 3.1.1 subscription the ACL forbids and filters on delivery.
        await agent_a.subscribe([("store/sb/#", 1), ("store/sa/state/sentinel", 1)])
        await agent_b.subscribe("store/sb/#", qos=1)
        # Written by store a into store b: acknowledged (3.1.1 has no way to say no), dropped.
        await agent_a.publish("store/sb/alerts", b'{"forged": true}', qos=1)
        await agent_a.publish("store/sb/state/agent", b"offline", qos=1, retain=True)
        # Store b's own traffic: store a must not read it.
        await agent_b.publish("store/sb/alerts", b'{"real": true}', qos=1)
        await agent_b.publish("store/sb/state/sentinel", b"b", qos=1)
        await agent_a.publish("store/sa/state/sentinel", b"a", qos=1)
        seen_b = await received_until(agent_b, "store/sb/state/sentinel")
        seen_a = await received_until(agent_a, "store/sa/state/sentinel")
    assert seen_b == [("store/sb/alerts", b'{"real": true}'), ("store/sb/state/sentinel", b"b")]
    assert seen_a == [("store/sa/state/sentinel", b"a")]


async def test_hq_bridge_reads_only_the_summarised_topics(secure_mosquitto: SecureBroker) -> None:
    files = secure_mosquitto.files
    async with connect(secure_mosquitto, files.user("sa", "agent")) as agent, \
            connect(secure_mosquitto, files.user("sa", "hq")) as hq:
        await hq.subscribe([("store/sa/alerts", 1), ("store/sa/state/#", 1),
                            ("store/sa/dev/#", 1), ("store/sb/alerts", 1)])
        await hq.publish("store/sa/alerts", b'{"forged": true}', qos=1)  # read-only: dropped
        await agent.publish("store/sa/dev/sa-s1/weight", b'{"grams": 1}', qos=1)
        async with connect(secure_mosquitto, files.user("sb", "agent")) as agent_b:
            await agent_b.publish("store/sb/alerts", b'{"store": "b"}', qos=1)
        await agent.publish("store/sa/alerts", b'{"rule": "low_stock"}', qos=1)
        await agent.publish("store/sa/state/hq-sentinel", b"1", qos=1)
        seen = await received_until(hq, "store/sa/state/hq-sentinel")
    assert seen == [("store/sa/alerts", b'{"rule": "low_stock"}'),
                    ("store/sa/state/hq-sentinel", b"1")]


async def test_retained_state_survives_a_broker_restart(tmp_path: Path) -> None:
    """Mosquitto keeps its persistence file in the workdir we give it (it used to drop to its
    own user, which could not write there, and lost retained state on restart)."""
    broker = start_mosquitto(tmp_path)
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, timeout=10) as client:
            await client.publish("store/sx/state/agent", b"online", qos=1, retain=True)
    finally:
        broker.stop()
    broker = start_mosquitto(tmp_path, broker.port)
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, timeout=10) as client:
            await client.subscribe("store/sx/state/agent", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(client.messages))
        assert (message.payload, message.retain) == (b"online", True)
    finally:
        broker.stop()
    assert "Permission denied" not in broker.log_path.read_text()


async def test_client_certificates_when_required(tmp_path: Path) -> None:
    store = two_stores()[:1]
    agent = "sa-agent"
    certs = write_store_certs(tmp_path / "certs", "sa", clients=[agent])
    service = start_mosquitto(tmp_path, stores=store, certs=certs, client_certs=True)
    try:
        files = service.extra["broker"]
        assert isinstance(files, BrokerFiles)
        broker = SecureBroker(service, certs, files)
        with pytest.raises((aiomqtt.MqttError, ssl.SSLError)):
            async with connect(broker, agent):  # the right password, no certificate
                pass
        with_cert = broker.tls()
        with_cert.load_cert_chain(*certs.clients[agent])
        async with connect(broker, agent, tls=with_cert) as client:
            await client.subscribe("store/sa/state/cert", qos=1)
            await client.publish("store/sa/state/cert", b"ok", qos=1)
            assert await received_until(client, "store/sa/state/cert") == [
                ("store/sa/state/cert", b"ok")]
    finally:
        service.stop()


async def test_a_simulated_shelf_signs_in_as_its_device_user(
        secure_mosquitto: SecureBroker) -> None:
    files = secure_mosquitto.files
    user = files.user("sa", "device", "sa-s1")
    login = BrokerLogin(user, files.passwords[user], str(secure_mosquitto.certs.ca_cert))
    anonymous = MqttShelfSim("sa", "sa-s1", ["L1"], port=secure_mosquitto.port, qos=1,
                             login=BrokerLogin(ca_file=login.ca_file))
    with pytest.raises(BrokerUnavailable):
        await asyncio.to_thread(anonymous.start, 3.0)
    shelf = MqttShelfSim("sa", "sa-s1", ["L1"], port=secure_mosquitto.port, qos=1, login=login)
    async with connect(secure_mosquitto, files.user("sa", "agent")) as agent:
        await agent.subscribe("store/sa/dev/sa-s1/weight", qos=1)
        await asyncio.to_thread(shelf.start)
        try:
            shelf.set_grams("L1", 700.0)
            grams = None
            while grams != 700.0:  # a heartbeat of the empty lane may come first
                [(_, payload)] = await received_until(agent, "store/sa/dev/sa-s1/weight")
                grams = decode_weight(payload, store_id="sa", device_id="sa-s1",
                                      received_ts=time.time()).grams
        finally:
            await asyncio.to_thread(shelf.stop)


async def test_a_simulated_shelf_publishing_from_many_threads_keeps_its_tls_connection(
        secure_mosquitto: SecureBroker) -> None:
    """Lanes set from several threads, heartbeats from another, while the network thread reads
    the PUBACKs: every weight arrives. (paho used to write a publish on the caller's thread: two
    threads in one TLS connection, corrupt records, a dropped connection, lost weights, and once
    a simulator dead in libc.)"""
    files = secure_mosquitto.files
    user = files.user("sa", "device", "sa-s1")
    lanes = ["L1", "L2", "L3", "L4"]
    per_lane = 5000
    shelf = MqttShelfSim("sa", "sa-s1", lanes, port=secure_mosquitto.port, qos=1,
                         heartbeat_seconds=0.005, login=BrokerLogin(
                             user, files.passwords[user], str(secure_mosquitto.certs.ca_cert)))

    def set_lane(lane: str) -> None:
        for i in range(1, per_lane + 1):
            shelf.set_grams(lane, float(i))

    async with connect(secure_mosquitto, files.user("sa", "agent")) as agent:
        await agent.subscribe("store/sa/dev/sa-s1/weight", qos=1)
        await asyncio.to_thread(shelf.start)
        try:
            await asyncio.gather(*(asyncio.to_thread(set_lane, lane) for lane in lanes))
            missing = {lane: {float(i) for i in range(1, per_lane + 1)} for lane in lanes}
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    async for message in agent.messages:
                        assert isinstance(message.payload, bytes)
                        w = decode_weight(message.payload, store_id="sa", device_id="sa-s1",
                                          received_ts=time.time())
                        missing[w.lane].discard(w.grams)
                        if not any(missing.values()):
                            break
            assert {lane: len(m) for lane, m in missing.items()} == dict.fromkeys(lanes, 0)
        finally:
            await asyncio.to_thread(shelf.stop)


async def test_the_agent_works_over_tls_as_its_user_and_never_shows_the_password(
        secure_mosquitto: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    files = secure_mosquitto.files
    password = files.passwords["sa-agent"]
    monkeypatch.setenv("T_MQTT_PASSWORD", password)
    http_port = free_port()
    config = StoreConfig.model_validate({
        "store": {"id": "sa"},
        "broker": {"port": secure_mosquitto.port, "username": "sa-agent", "tls": True,
                   "ca_file": str(secure_mosquitto.certs.ca_cert),
                   "password_env": "T_MQTT_PASSWORD"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"port": http_port},
        "inventory": {"settle_seconds": 0},
        "catalog": [{"sku": "COLA", "unit_grams": 350, "low_stock": 2}],
        "lanes": [{"id": "L1", "sku": "COLA", "capacity": 10}],
        "devices": [{"type": "shelf_mqtt", "id": "sa-s1", "lanes": ["L1"]}],
    })
    assert repr(config.broker.password()) == "SecretStr('**********')"
    url = f"http://127.0.0.1:{http_port}"
    with caplog.at_level(logging.DEBUG):
        async with running(config), \
                connect(secure_mosquitto, files.user("sa", "hq")) as hq, \
                connect(secure_mosquitto, files.user("sa", "device", "sa-s1")) as shelf:
            await hq.subscribe("store/sa/alerts", qos=1)
            for grams in (3500.0, 350.0):  # ten cans, then one: low stock
                await shelf.publish("store/sa/dev/sa-s1/weight",
                                    json.dumps({"lane": "L1", "grams": grams}), qos=1)
            [(_, alert)] = await received_until(hq, "store/sa/alerts")
            async with httpx.AsyncClient(base_url=url) as client:
                shown = [(await client.get(path)).text for path in ("/readyz", "/metrics")]
    assert json.loads(alert)["rule"] == "low_stock"
    assert json.loads(shown[0])["broker"]["connected"] is True
    for text in (*shown, caplog.text):
        assert password not in text


async def test_the_hq_broker_lets_each_bridge_write_its_own_store_only(tmp_path: Path) -> None:
    certs = write_store_certs(tmp_path / "certs", "hq")
    port = free_port()
    files = write_hq_broker_config(["sa", "sb"], tmp_path, port=port, host="127.0.0.1",
                                   certs=certs, run_as=current_user())
    service = spawn("mosquitto", [mosquitto_path() or "mosquitto", "-c", str(files.conf)],
                    tmp_path, port)
    broker = SecureBroker(service, certs, files)
    try:
        with pytest.raises(aiomqtt.MqttCodeError):
            async with connect(broker, None):
                pass
        async with connect(broker, HQ_SERVICE_USER) as hq, \
                connect(broker, bridge_user("sa")) as bridge_a:
            await hq.subscribe("store/#", qos=1)
            await bridge_a.publish("store/sb/alerts", b'{"forged": true}', qos=1)  # dropped
            await hq.publish("store/sa/alerts", b'{"from": "hq"}', qos=1)  # read-only: dropped
            await bridge_a.publish("store/sa/alerts", b'{"rule": "low_stock"}', qos=1)
            await bridge_a.publish("store/sa/state/sentinel", b"1", qos=1)
            seen = await received_until(hq, "store/sa/state/sentinel")
    finally:
        service.stop()
    assert seen == [("store/sa/alerts", b'{"rule": "low_stock"}'),
                    ("store/sa/state/sentinel", b"1")]
