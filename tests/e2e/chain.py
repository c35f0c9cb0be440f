"""A small chain for end-to-end HQ tests: per store a Mosquitto bridged to the HQ broker with the
generated bridge config, and a real agent (``storeedge agent``) selling into the shared Tryton and
writing to the shared VictoriaMetrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.tryton.server import TrytonServer
from edge_agent.services import Service, free_port, start_mosquitto
from hq.bridge import HqBroker, bridge_config
from tests.fixtures.tryton import ADMIN_PASSWORD

POS_TOKEN = "pos-token-0123456789"
STAFF_TOKEN = "staff-token-0123456789"
ENV = {"STOREEDGE_TEST_POS": POS_TOKEN, "STOREEDGE_TEST_STAFF": STAFF_TOKEN,
       "STOREEDGE_ERP_PASSWORD": ADMIN_PASSWORD, "PYTHONUNBUFFERED": "1"}


@dataclass
class Store:
    id: str
    workdir: Path
    broker: Service
    http_port: int
    config: Path
    agent: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start_agent(self) -> None:
        with open(self.workdir / "agent.log", "ab") as out:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "--log-format", "text", "agent",
                 "--config", str(self.config)], stdout=out, stderr=subprocess.STDOUT,
                cwd=self.workdir, env={**os.environ, **ENV}, start_new_session=True)

    def kill_agent(self) -> None:
        """As a crash or a power cut of the agent's process: no goodbye, the will fires."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait()

    def stop(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_agent()
        self.broker.stop()

    def sell(self, txn_id: str, lines: list[tuple[str, int, float]], ts_ms: int,
             within: float = 60.0) -> None:
        """POST a transaction as the register does, once the agent knows the ERP's catalog
        (until then it refuses the SKUs as unknown)."""
        deadline = time.monotonic() + within
        while True:
            resp = httpx.post(f"{self.url}/api/pos/transactions", timeout=10,
                              headers={"Authorization": f"Bearer {POS_TOKEN}"},
                              json={"txn_id": txn_id, "ts": ts_ms, "lines": [
                                  {"sku": s, "qty": q, "unit_price": p} for s, q, p in lines]})
            if resp.status_code == 201:
                return
            if resp.status_code != 422 or time.monotonic() > deadline:
                raise AssertionError(f"store {self.id}: {resp.status_code} {resp.text}")
            time.sleep(0.2)


    def weigh(self, lane: str, grams: float, seconds: float = 2.0) -> None:
        """The wireless shelf's JSON on ``store/{sid}/dev/shelf-a1/weight``, at 5 Hz for long
        enough that the lane settles."""
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            for seq in range(int(seconds * 5)):
                body = {"lane": lane, "grams": grams, "seq": seq, "ts": int(time.time() * 1000)}
                client.publish(f"store/{self.id}/dev/shelf-a1/weight", json.dumps(body),
                               qos=1).wait_for_publish(10)
                time.sleep(0.2)
        finally:
            client.disconnect()
            client.loop_stop()


def start_store(workdir: Path, sid: str, *, hq_broker_port: int, tsdb_url: str,
                erp: TrytonServer) -> Store:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    broker = start_mosquitto(workdir, port, extra_conf=bridge_config(
        sid, HqBroker("127.0.0.1", hq_broker_port, keepalive=5)))
    http_port = free_port()
    config = workdir / "store.yaml"
    config.write_text(yaml.safe_dump({
        "store": {"id": sid, "name": f"Store {sid}"},
        "broker": {"host": "127.0.0.1", "port": port, "keepalive": 5},
        "journal": {"path": str(workdir / "journal.db")},
        "http": {"host": "127.0.0.1", "port": http_port, "tokens": [
            {"name": "pos-1", "role": "pos", "token_env": "STOREEDGE_TEST_POS"},
            {"name": "li-wei", "role": "staff", "token_env": "STOREEDGE_TEST_STAFF"}]},
        "erp": {"kind": "tryton", "url": erp.url, "database": erp.database,
                "username": "admin", "password_env": "STOREEDGE_ERP_PASSWORD",
                "warehouse": "WH", "customer": "Walk-in customer"},
        "timeseries": {"enabled": True, "url": tsdb_url, "sample_seconds": 1},
        "lanes": [{"id": "A1-1", "sku": "COLA-330", "capacity": 24}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-a1", "lanes": ["A1-1"]}],
    }, sort_keys=False))
    store = Store(sid, workdir, broker, http_port, config)
    store.start_agent()
    return store
