"""``MqttConnection`` against a real Mosquitto: batches in at QoS 0 and 1, QoS 1 out, persistent
sessions, reconnects after a broker restart, the retained last will."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.mqtt.client import MqttConnection
from devices.mqtt.protocol import Will
from edge_agent.services import Service, free_port, start_mosquitto
from storeedge.errors import BrokerUnavailable


class PahoClient:
    """A paho client on its own thread: publisher and subscriber for the other side."""

    def __init__(self, port: int, client_id: str = "", subscribe: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)

        def on_connect(client: paho.Client, *_: object) -> None:
            if subscribe:
                client.subscribe(subscribe, 1)
            else:
                self.ready.set()

        def on_subscribe(*_: object) -> None:
            self.ready.set()

        def on_message(client: object, userdata: object, msg: paho.MQTTMessage) -> None:
            with self.lock:
                self.messages.append((msg.topic, msg.payload, msg.qos, bool(msg.retain)))

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self.ready.wait(10)
        self.client = c

    def publish_all(self, items: list[tuple[str, bytes]], qos: int) -> None:
        infos = [self.client.publish(t, p, qos=qos) for t, p in items]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def paho_client(mosquitto: Service) -> Iterator[PahoClient]:
    c = PahoClient(mosquitto.port)
    yield c
    c.close()


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bytes]]] = []
        self.changed = asyncio.Event()

    def __call__(self, batch: list[tuple[str, bytes]]) -> None:
        self.batches.append(batch)
        self.changed.set()

    @property
    def messages(self) -> list[tuple[str, bytes]]:
        return [m for b in self.batches for m in b]

    async def wait_for(self, n: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.messages) < n:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def opened() -> AsyncIterator[list[MqttConnection]]:
    """Connections a test opens; all closed after it, whatever happened."""
    conns: list[MqttConnection] = []
    yield conns
    for c in conns:
        await c.aclose()


def make(port: int, conns: list[MqttConnection], **kw: object) -> MqttConnection:
    kw.setdefault("reconnect_initial", 0.1)
    kw.setdefault("reconnect_max", 0.5)
    conn = MqttConnection("127.0.0.1", port, **kw)  # type: ignore[arg-type]
    conns.append(conn)
    conn.start()
    return conn


@pytest.mark.parametrize("qos", [0, 1])
async def test_receives_batches(mosquitto: Service, store_id: str, paho_client: PahoClient,
                                opened: list[MqttConnection], qos: int) -> None:
    sink = Sink()
    conn = make(mosquitto.port, opened, client_id=f"{store_id}-rx", clean_session=True,
                subscriptions=[(f"store/{store_id}/dev/+/+", 1)], on_batch=sink)
    assert await conn.wait_connected(10)
    sent = [(f"store/{store_id}/dev/shelf-{i % 3}/weight", b'{"n":%d}' % i) for i in range(2000)]
    await asyncio.to_thread(paho_client.publish_all, sent, qos)
    await sink.wait_for(len(sent))
    assert sink.messages == sent
    # Many messages per read when they arrive faster than they are handled (paho's pace
    # decides how many here; bench/ingest.py measures the flood case).
    assert max(len(b) for b in sink.batches) > 1
    assert conn.received == len(sent)


async def test_qos1_not_acked_when_the_batch_fails_then_redelivered(
        mosquitto: Service, store_id: str, paho_client: PahoClient,
        opened: list[MqttConnection]) -> None:
    seen: list[tuple[str, bytes]] = []
    failing = True

    def on_batch(batch: list[tuple[str, bytes]]) -> None:
        seen.extend(batch)
        if failing:
            raise RuntimeError("agent bug")

    cid = f"{store_id}-fail"
    conn = make(mosquitto.port, opened, client_id=cid, subscriptions=[(f"store/{store_id}/x", 1)],
                on_batch=on_batch)
    assert await conn.wait_connected(10)
    await asyncio.to_thread(paho_client.publish_all, [(f"store/{store_id}/x", b"1")], 1)
    async with asyncio.timeout(10):
        while not seen:
            await asyncio.sleep(0.01)
    await conn.aclose()
    failing = False
    seen.clear()
    conn2 = make(mosquitto.port, opened, client_id=cid, on_batch=on_batch)
    assert await conn2.wait_connected(10)
    async with asyncio.timeout(10):
        while not seen:
            await asyncio.sleep(0.01)
    assert seen == [(f"store/{store_id}/x", b"1")]


async def test_publishes_qos1_to_a_paho_subscriber(mosquitto: Service, store_id: str,
                                                   opened: list[MqttConnection]) -> None:
    sub = PahoClient(mosquitto.port, subscribe=f"store/{store_id}/alerts")
    try:
        conn = make(mosquitto.port, opened, client_id=f"{store_id}-tx")
        assert await conn.wait_connected(10)
        for i in range(500):
            assert conn.publish(f"store/{store_id}/alerts", b"a%d" % i, qos=1)
        assert conn.publish(f"store/{store_id}/alerts", b"q0", qos=0)
        assert await conn.drain(10)
        assert conn.inflight == 0
        async with asyncio.timeout(10):
            while len(sub.messages) < 501:
                await asyncio.sleep(0.02)
        got = [(p, q) for _, p, q, _ in sub.messages]
        assert got == [(b"a%d" % i, 1) for i in range(500)] + [(b"q0", 0)]
    finally:
        sub.close()


async def test_persistent_session_gets_what_was_published_while_away(
        mosquitto: Service, store_id: str, paho_client: PahoClient,
        opened: list[MqttConnection]) -> None:
    cid = f"{store_id}-persist"
    topic = f"store/{store_id}/dev/s/weight"
    first = make(mosquitto.port, opened, client_id=cid, clean_session=False,
                 subscriptions=[(topic, 1)], on_batch=Sink())
    assert await first.wait_connected(10)
    await first.aclose()
    await asyncio.to_thread(paho_client.publish_all, [(topic, b"%d" % i) for i in range(100)], 1)
    sink = Sink()
    again = make(mosquitto.port, opened, client_id=cid, clean_session=False, on_batch=sink)
    assert await again.wait_connected(10)
    assert again.session_present
    await sink.wait_for(100)
    assert sink.messages == [(topic, b"%d" % i) for i in range(100)]


async def test_refused_connection_raises_broker_unavailable(mosquitto: Service) -> None:
    # 3.1.3.1: an empty client id with a persistent session is refused (return code 2).
    conn = MqttConnection("127.0.0.1", mosquitto.port, client_id="", clean_session=False)
    with pytest.raises(BrokerUnavailable, match="identifier rejected"):
        await conn.connect()
    with pytest.raises(BrokerUnavailable, match="cannot reach"):
        await MqttConnection("127.0.0.1", free_port(), client_id="x").connect()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[list[Service]]:
    """A Mosquitto of this test's own, restartable on the same port; stopped after."""
    brokers = [start_mosquitto(tmp_path / "broker")]
    yield brokers
    for b in brokers:
        b.stop()


async def test_reconnects_after_broker_restart_and_resends_in_flight(
        own_broker: list[Service], store_id: str, tmp_path: Path,
        opened: list[MqttConnection]) -> None:
    broker = own_broker[0]
    port = broker.port
    topic = f"store/{store_id}/dev/s/weight"
    connects: list[bool] = []
    sink = Sink()
    conn = make(port, opened, client_id=f"{store_id}-re", subscriptions=[(topic, 1)],
                on_batch=sink, on_connect=connects.append)
    assert await conn.wait_connected(10)
    await asyncio.to_thread(broker.stop)
    async with asyncio.timeout(10):
        while conn.connected.is_set():
            await asyncio.sleep(0.02)
    # Accepted while the broker is down; sent once it is back.
    # Retained, so the subscriber below sees it however the reconnect races its subscription.
    assert conn.publish(f"store/{store_id}/alerts", b"while-down", qos=1, retain=True)
    assert not conn.publish(f"store/{store_id}/alerts", b"qos0-dropped", qos=0)
    await asyncio.sleep(0.5)  # a few failed attempts
    own_broker.append(await asyncio.to_thread(start_mosquitto, tmp_path / "broker", port))
    sub = await asyncio.to_thread(PahoClient, port, "", f"store/{store_id}/alerts")
    try:
        assert await conn.wait_connected(15)
        assert await conn.drain(10)
        assert len(connects) == 2
        async with asyncio.timeout(10):
            while not sub.messages:
                await asyncio.sleep(0.02)
        assert sub.messages[0][1] == b"while-down"
        pub = await asyncio.to_thread(PahoClient, port)
        await asyncio.to_thread(pub.publish_all, [(topic, b"after")], 1)
        pub.close()
        await sink.wait_for(1)
        assert sink.messages == [(topic, b"after")]
    finally:
        sub.close()


async def test_retained_will_seen_when_the_connection_drops(
        mosquitto: Service, store_id: str, opened: list[MqttConnection]) -> None:
    state = f"store/{store_id}/state/agent"
    conn = make(mosquitto.port, opened, client_id=f"{store_id}-will", keepalive=5,
                will=Will(state, b"offline", qos=1, retain=True))
    assert await conn.wait_connected(10)
    conn.publish(state, b"online", qos=1, retain=True)
    assert await conn.drain(5)
    # Drop the TCP connection without DISCONNECT, as a crash or a pulled cable would.
    sock = conn._conn.writer.get_extra_info("socket")  # type: ignore[union-attr]
    sock.shutdown(socket.SHUT_RDWR)
    await conn.aclose()
    await asyncio.sleep(0.2)
    late = await asyncio.to_thread(PahoClient, mosquitto.port, "", state)
    try:
        async with asyncio.timeout(10):
            while not late.messages:
                await asyncio.sleep(0.02)
        assert late.messages[0] == (state, b"offline", 1, True)
    finally:
        late.close()


async def retained(port: int, topic: str) -> list[bytes]:
    """What a client subscribing now gets on ``topic``: the broker's retained message(s)."""
    late = await asyncio.to_thread(PahoClient, port, "", topic)
    try:
        async with asyncio.timeout(10):
            while not late.messages:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a second message would be a duplicate: give it time to show
        return [m[1] for m in late.messages]
    finally:
        late.close()


async def test_clean_close_publishes_final_state_and_no_will(
        mosquitto: Service, store_id: str, opened: list[MqttConnection]) -> None:
    state = f"store/{store_id}/state/agent"
    conn = make(mosquitto.port, opened, client_id=f"{store_id}-final",
                will=Will(state, b"crashed", qos=1, retain=True))
    assert await conn.wait_connected(10)
    await conn.aclose(final=(state, b"offline"))
    assert await retained(mosquitto.port, state) == [b"offline"]


async def test_mqtt_link_close_leaves_the_final_retained_state(
        mosquitto: Service, store_id: str) -> None:
    """The agent calls ``MqttLink.aclose(final)`` on its way out: the broker keeps the final
    retained state, not the last will."""
    from edge_agent.mqtt import MqttLink

    state = f"store/{store_id}/state/agent"
    got: list[list[tuple[str, bytes]]] = []
    connected: list[bool] = []
    link = MqttLink(host="127.0.0.1", port=mosquitto.port, client_id=f"{store_id}-link",
                    subscriptions=[f"store/{store_id}/dev/+/+"], on_batch=got.append,
                    will=(state, b"crashed"), online=(state, b"online"),
                    on_connected=lambda: connected.append(True))
    link.start()
    try:
        assert await link.wait_connected(10)
        assert connected == [True] and link.connected.is_set()
        assert link.publish(f"store/{store_id}/alerts", b"x", qos=1)
    finally:
        await link.aclose(final=(state, b"offline"))
    assert await retained(mosquitto.port, state) == [b"offline"]


async def test_publish_many_sends_every_message_in_order_in_one_write(
        mosquitto: Service, store_id: str) -> None:
    topic = f"store/{store_id}/alerts"
    late = await asyncio.to_thread(PahoClient, mosquitto.port, "", topic)
    conn = MqttConnection("127.0.0.1", mosquitto.port, client_id=f"{store_id}-many",
                          clean_session=True)
    conn.start()
    try:
        assert await conn.wait_connected(10)
        writes = 0
        write = conn._write

        def counting(c, data):
            nonlocal writes
            writes += 1
            write(c, data)

        conn._write = counting  # type: ignore[method-assign]
        sent = conn.publish_many([(topic, f"m{i}".encode(), False) for i in range(50)])
        assert sent == 50 and writes == 1
        assert await conn.drain(10)
        async with asyncio.timeout(10):
            while len(late.messages) < 50:
                await asyncio.sleep(0.02)
        assert [m[1] for m in late.messages] == [f"m{i}".encode() for i in range(50)]
    finally:
        await conn.aclose()
        late.close()
