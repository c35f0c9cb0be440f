"""The generated bridge between two real Mosquittos: a store's summarised topics and retained
state reach the HQ broker, its readings do not, and the agent's and the bridge's last wills
arrive when they die."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.cli import main
from edge_agent.services import Service, free_port, start_mosquitto
from hq.bridge import HqBroker, bridge_config
from storeedge.errors import UsageError
from tests.integration.hq_chain import publish

pytestmark = pytest.mark.timeout(90)


class Watcher:
    """A paho subscriber on its own thread, recording (topic, payload, retain)."""

    def __init__(self, port: int, pattern: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2)
        c.on_connect = lambda client, *_: client.subscribe(pattern, 1)
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert subscribed.wait(10)
        self.client = c

    def _on_message(self, client: object, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def wait_for(self, topic: str, payload: bytes, within: float = 15.0) -> tuple[str, bytes, bool]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if m[0] == topic and m[1] == payload:
                        return m
            time.sleep(0.02)
        raise AssertionError(f"{topic} {payload!r} never arrived; got {self.messages}")

    def topics(self) -> set[str]:
        with self.lock:
            return {m[0] for m in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_store_broker(workdir: Path, bridge: str) -> Service:
    return start_mosquitto(workdir, free_port(), extra_conf=bridge)


@pytest.fixture
def hq_broker(tmp_path: Path) -> Iterator[Service]:
    from edge_agent.services import start_mosquitto

    service = start_mosquitto(tmp_path / "hq")
    yield service
    service.stop()


def test_bridge_config_from_the_store_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.yaml"
    store.write_text("store:\n  id: sh-pudong-07\n")
    assert main(["hq", "bridge-config", "--store", str(store), "--hq-host", "hq.example",
                 "--hq-cafile", "/etc/mosquitto/ca.crt"]) == 0
    conf = capsys.readouterr().out
    assert "address hq.example:8883\n" in conf
    assert "remote_username bridge-sh-pudong-07\n" in conf
    assert "bridge_cafile /etc/mosquitto/ca.crt\n" in conf
    assert "topic store/sh-pudong-07/alerts out 1\n" in conf
    assert "topic store/sh-pudong-07/state/# out 1\n" in conf
    assert "notification_topic store/sh-pudong-07/state/bridge\n" in conf


def test_a_store_file_without_an_id_is_named(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.yaml"
    store.write_text("store:\n  name: no id\n")
    assert main(["hq", "bridge-config", "--store", str(store), "--hq-host", "hq"]) == 2
    assert f"{store}:1: store.id:" in capsys.readouterr().err


def test_a_store_id_that_cannot_be_a_topic_level_is_refused() -> None:
    with pytest.raises(UsageError, match="topic level"):
        bridge_config("a/b", HqBroker("hq"))


def test_summarised_topics_and_retained_state_reach_hq(tmp_path: Path,
                                                       hq_broker: Service) -> None:
    sid = "bridge-01"
    store = start_store_broker(tmp_path / "store", bridge_config(
        sid, HqBroker("127.0.0.1", hq_broker.port, keepalive=5)))
    live = Watcher(hq_broker.port, "store/#")
    try:
        live.wait_for(f"store/{sid}/state/bridge", b"1")
        publish(store.port, [
            (f"store/{sid}/dev/shelf-1/weight", b'{"lane":"A1","grams":1}', False),
            (f"store/{sid}/state/agent", b"online", True),
            (f"store/{sid}/state/alerts/al-1", b'{"alert_id":"al-1"}', True),
            (f"store/{sid}/alerts", b'{"alert_id":"al-1","state":"open"}', False),
        ])
        live.wait_for(f"store/{sid}/alerts", b'{"alert_id":"al-1","state":"open"}')
        # Published before the alert on the same connection: had it been bridged, it would be here.
        assert f"store/{sid}/dev/shelf-1/weight" not in live.topics()

        late = Watcher(hq_broker.port, f"store/{sid}/state/#")
        try:
            assert late.wait_for(f"store/{sid}/state/agent", b"online")[2] is True
            assert late.wait_for(f"store/{sid}/state/alerts/al-1", b'{"alert_id":"al-1"}')[2]
        finally:
            late.close()

        # The agent dies without a goodbye: its last will crosses the bridge.
        agent = subprocess.Popen([sys.executable, "-c", AGENT_WITH_WILL, str(store.port), sid])
        try:
            live.wait_for(f"store/{sid}/state/agent", b"online-from-agent")
        finally:
            agent.send_signal(signal.SIGKILL)
            agent.wait()
        live.wait_for(f"store/{sid}/state/agent", b"offline")

        # The store's broker dies: the bridge's own will on HQ says the link is gone.
        store.proc.kill()
        store.proc.wait()
        live.wait_for(f"store/{sid}/state/bridge", b"0", within=20)
    finally:
        live.close()
        store.stop()


AGENT_WITH_WILL = """
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, sid = int(sys.argv[1]), sys.argv[2]
c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{sid}")
c.will_set(f"store/{sid}/state/agent", b"offline", qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
c.publish(f"store/{sid}/state/agent", b"online-from-agent", qos=1, retain=True).wait_for_publish(10)
time.sleep(600)
"""
