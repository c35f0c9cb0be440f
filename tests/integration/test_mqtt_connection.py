"""``MqttConnection`` against a real Mosquitto: batches in at QoS 0 and 1, QoS 1 out, persistent
sessions, reconnects after a broker restart, the retained last will."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.mqtt.client import BatchNotCommitted, MqttConnection, backoff_delay
from devices.mqtt.protocol import Batch, Will
from edge_agent.services import Service, free_port, mosquitto_path, spawn, start_mosquitto
from storeedge.errors import BrokerUnavailable, UsageError
from tests.waiting import until


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


async def test_batch_not_committed_is_not_acknowledged_and_comes_again(
        mosquitto: Service, store_id: str, paho_client: PahoClient,
        opened: list[MqttConnection]) -> None:
    """The agent's journal cannot write: the batch's PUBACKs are withheld, the link reconnects
    by itself and the broker sends the batch again (4.4), marked DUP (3.3.1.1)."""
    topic = f"store/{store_id}/dev/s/weight"
    committed: list[tuple[str, bytes, bool]] = []
    refusals = 2

    def on_batch(batch: Batch) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise BatchNotCommitted("journal: disk I/O error")
        committed.extend((t, p, batch.dup(i)) for i, (t, p) in enumerate(batch))

    conn = make(mosquitto.port, opened, client_id=f"{store_id}-nc", subscriptions=[(topic, 1)],
                on_batch=on_batch)
    assert await conn.wait_connected(10)
    await asyncio.to_thread(paho_client.publish_all, [(topic, b"1"), (topic, b"2")], 1)
    await until(lambda: len({p for _, p, _ in committed}) == 2, within=15)
    assert conn.not_committed == 2 and conn.reconnects == 2
    assert "not committed" in (conn.last_error or "")
    assert [p for _, p, _ in committed] == [b"1", b"2"]
    assert committed[0][2]  # sent before and not acknowledged: DUP (3.3.1.1)
    # Acknowledged now: a new connection of the same session gets only what comes next.
    await conn.aclose()
    await asyncio.to_thread(paho_client.publish_all, [(topic, b"3")], 1)
    sink = Sink()
    again = make(mosquitto.port, opened, client_id=f"{store_id}-nc", on_batch=sink)
    await sink.wait_for(1)
    assert sink.messages == [(topic, b"3")] and again.session_present


async def test_a_message_the_handler_fails_on_is_rejected_and_the_rest_flows(
        mosquitto: Service, store_id: str, paho_client: PahoClient,
        opened: list[MqttConnection]) -> None:
    """A handler bug on one message neither holds back the others nor leaves QoS 1 ids
    unacknowledged (which would stall ingest at the broker's in-flight window)."""
    topic = f"store/{store_id}/dev/s/weight"
    handled: list[bytes] = []

    def on_batch(batch: Batch) -> None:
        if any(p == b"poison" for _, p in batch):
            raise ValueError("cannot handle poison")
        handled.extend(p for _, p in batch)

    cid = f"{store_id}-poison"
    conn = make(mosquitto.port, opened, client_id=cid, subscriptions=[(topic, 1)],
                on_batch=on_batch)
    assert await conn.wait_connected(10)
    sent = [b"%d" % i for i in range(300)]
    await asyncio.to_thread(paho_client.publish_all,
                            [(topic, p) for p in sent[:150] + [b"poison"] + sent[150:]], 1)
    await until(lambda: len(handled) == 300, within=20)
    assert handled == sent
    assert conn.rejected == 1 and conn.reconnects == 0
    # Everything was acknowledged, the poison included: the session has nothing to send again.
    await conn.aclose()
    await asyncio.to_thread(paho_client.publish_all, [(topic, b"after")], 1)
    sink = Sink()
    make(mosquitto.port, opened, client_id=cid, on_batch=sink)
    await sink.wait_for(1)
    assert sink.messages == [(topic, b"after")]


async def test_oversized_retained_message_is_skipped_acknowledged_and_ingest_goes_on(
        mosquitto: Service, store_id: str, paho_client: PahoClient,
        opened: list[MqttConnection], caplog: pytest.LogCaptureFixture) -> None:
    """A 20 MB retained QoS 1 message on a device topic, queued for a persistent session: the
    client skips it without holding it, acknowledges it, and reads on; it is not sent again."""
    topic = f"store/{store_id}/dev/cam/image"
    cid = f"{store_id}-big"
    first = make(mosquitto.port, opened, client_id=cid, subscriptions=[(topic, 1)])
    assert await first.wait_connected(10)
    await first.aclose()
    big = bytes(20 * 1024 * 1024)
    await asyncio.to_thread(paho_client.client.publish(topic, big, qos=1, retain=True)
                            .wait_for_publish, 30)
    await asyncio.to_thread(paho_client.publish_all, [(topic, bytes(2 * 1024 * 1024)),
                                                      (topic, b"after")], 1)
    sink = Sink()
    conn = make(mosquitto.port, opened, client_id=cid, on_batch=sink)
    await sink.wait_for(1, within=30)
    assert sink.messages == [(topic, b"after")]
    assert conn.oversized == 2 and conn.reconnects == 0
    assert conn.healthy
    logged = [r for r in caplog.records if "exceeds the 1048576-byte limit" in r.getMessage()]
    assert len(logged) == 1  # rate-limited: the second one is counted, not logged
    assert conn._conn is not None and conn._conn.decoder.pending < 1024
    await conn.aclose()
    # Clear the retained message (an empty retained PUBLISH, 3.3.1.3), then come back: the
    # session holds nothing unacknowledged, so only the clearing message and what follows come.
    await asyncio.to_thread(paho_client.client.publish(topic, b"", qos=1, retain=True)
                            .wait_for_publish, 10)
    await asyncio.to_thread(paho_client.publish_all, [(topic, b"later")], 1)
    sink = Sink()
    again = make(mosquitto.port, opened, client_id=cid, on_batch=sink)
    await sink.wait_for(2, within=15)
    assert sink.messages == [(topic, b""), (topic, b"later")]
    assert again.oversized == 0


async def test_keepalive_holds_while_a_slow_handler_works_through_a_backlog(
        mosquitto: Service, store_id: str, paho_client: PahoClient,
        opened: list[MqttConnection]) -> None:
    """QoS 0 sends no PUBACK, so during a backlog only PINGREQs keep the connection: with a 1 s
    keep alive the broker drops a client silent for 1.5 s (3.1.2.10). A backlog already read
    from the socket is handed over without the loop ever waiting, which starved a ping task."""
    topic = f"store/{store_id}/dev/s/weight"
    sink = Sink()

    def slow(batch: Batch) -> None:
        # Agent work holding the event loop: long at first, so the backlog piles up unread.
        time.sleep(0.9 if not sink.batches else 0.1)
        sink(batch)

    conn = make(mosquitto.port, opened, client_id=f"{store_id}-slow", clean_session=True,
                keepalive=1, subscriptions=[(topic, 0)], on_batch=slow)
    assert await conn.wait_connected(10)
    link = conn._conn
    sent = [(topic, b"%05d" % i + bytes(90)) for i in range(3000)]  # ~4 s of reads
    await asyncio.to_thread(paho_client.publish_all, sent, 0)
    await sink.wait_for(len(sent), within=30)
    # Still the same connection: one message more arrives on it.
    await asyncio.to_thread(paho_client.publish_all, [(topic, b"after")], 0)
    await sink.wait_for(len(sent) + 1)
    assert sink.messages == [*sent, (topic, b"after")]
    assert conn._conn is link and conn.reconnects == 0


async def test_a_broker_that_accepts_and_drops_us_is_retried_ever_more_slowly(
        mosquitto: Service, store_id: str, opened: list[MqttConnection],
        caplog: pytest.LogCaptureFixture) -> None:
    # Mosquitto closes the connection of a client that subscribes to an invalid filter
    # (4.7.1.2: "#" must be last), right after accepting it with CONNACK.
    caplog.set_level(logging.WARNING, logger="devices.mqtt.client")
    conn = make(mosquitto.port, opened, client_id=f"{store_id}-flap",
                subscriptions=[(f"store/{store_id}/#/x", 1)],
                reconnect_initial=0.05, reconnect_max=0.4)
    await until(lambda: conn.reconnects >= 6, within=15)
    assert not conn.connected.is_set()
    assert conn.attempt == conn.reconnects  # never reset: it never stayed up
    lines = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert 1 <= len(lines) < conn.reconnects  # logged, and rate-limited
    assert "broker closed the connection" in lines[0] and "(attempt 1)" in lines[0]


@pytest.mark.parametrize("attempt", range(1, 12))
def test_reconnect_delay_is_jittered_growing_and_capped(attempt: int) -> None:
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, 0.5, 30.0) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100  # jittered: clients restarted together do not retry together


def mosquitto_plugin(name: str) -> Path | None:
    return next((p for p in Path("/usr/lib").glob(f"**/{name}")), None)


async def test_refused_subscription_leaves_the_link_unhealthy(
        tmp_path: Path, store_id: str, opened: list[MqttConnection],
        caplog: pytest.LogCaptureFixture) -> None:
    """Mosquitto's dynamic security plugin refuses a SUBSCRIBE its ACL denies (SUBACK 0x80,
    3.9.3): the link says so in its log and its health."""
    plugin = mosquitto_plugin("mosquitto_dynamic_security.so")
    if plugin is None:
        pytest.skip("Mosquitto's dynamic security plugin is not installed")
    denied = f"hq/{store_id}/#"
    (tmp_path / "dynsec.json").write_text(json.dumps({
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True,
                             "subscribe": True, "unsubscribe": True},
        "clients": [], "groups": [{"groupname": "anon", "roles": [{"rolename": "anon"}]}],
        "roles": [{"rolename": "anon", "acls": [
            {"acltype": "subscribePattern", "topic": denied, "priority": 0, "allow": False}]}],
        "anonymousGroup": "anon"}))
    port = free_port()
    # "user root": started as root, Mosquitto would drop to its own user, which cannot read the
    # test's private directory; as anyone else, the line is ignored.
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nuser root\nallow_anonymous true\nplugin {plugin}\n"
        f"plugin_opt_config_file {tmp_path / 'dynsec.json'}\nlog_dest stdout\n")
    broker = spawn("mosquitto", [str(mosquitto_path()), "-c", str(tmp_path / "mosquitto.conf")],
                   tmp_path, port)
    try:
        ok = (f"store/{store_id}/dev/+/+", 1)
        conn = make(port, opened, client_id=f"{store_id}-acl", subscriptions=[ok, (denied, 1)])
        assert await conn.wait_connected(10)
        assert conn.refused_subscriptions == [(denied, 1)]
        assert not conn.healthy and conn.stats()["refused_subscriptions"] == [denied]
        assert any("refused subscriptions" in r.getMessage() and denied in r.getMessage()
                   for r in caplog.records if r.levelno == logging.ERROR)
        await conn.aclose()
    finally:
        broker.stop()


def test_qos2_subscriptions_are_refused_naming_the_key() -> None:
    with pytest.raises(UsageError, match=r"subscriptions\[1\]: 'b/#' at QoS 2"):
        MqttConnection("127.0.0.1", 1883, client_id="x", subscriptions=[("a", 1), ("b/#", 2)])


async def test_qos0_publish_refused_while_the_broker_does_not_read(
        own_broker: list[Service], store_id: str, opened: list[MqttConnection]) -> None:
    """A hung broker (SIGSTOP) stops reading: unsent bytes stop growing at the write buffer's
    limit instead of taking the agent's memory."""
    broker = own_broker[0]
    conn = make(broker.port, opened, client_id=f"{store_id}-hung",
                max_write_buffer=1024 * 1024)
    assert await conn.wait_connected(10)
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        chunk = bytes(64 * 1024)
        accepted = 0
        for _ in range(2000):  # 128 MB if nothing pushed back
            if not conn.publish(f"store/{store_id}/cam", chunk, qos=0):
                break
            accepted += 1
            await asyncio.sleep(0)
        assert accepted < 2000
        assert conn._conn is not None
        assert conn._conn.transport.get_write_buffer_size() <= 1024 * 1024 + len(chunk)
    finally:
        broker.proc.send_signal(signal.SIGCONT)


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
    sock = conn._conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
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
        link = conn._conn
        assert link is not None
        write = link.write

        def counting(data: bytes) -> None:
            nonlocal writes
            writes += 1
            write(data)

        link.write = counting  # type: ignore[method-assign]
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
