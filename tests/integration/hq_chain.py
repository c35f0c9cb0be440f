"""Helpers for HQ tests: an HQ config file, the HQ service as its own process, time series
written the way the stores' agents write them (cloud_bridge.tsdb's points over the InfluxDB write
API) and retained state published the way the bridge delivers it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.services import Service, free_port, spawn

HQ_TOKEN = "hq-token-for-tests-0123456789"
T = TypeVar("T")


def write_hq_config(path: Path, stores: list[dict], *, broker_port: int, tsdb_url: str,
                    port: int, erp: dict | None = None, http: dict | None = None) -> Path:
    config = {
        "chain": {"name": "Test chain", "timezone": "UTC"},
        # Tests call from one address, some with wrong tokens on purpose: many attempts.
        "http": {"host": "127.0.0.1", "port": port, "sign_in_attempts": 100, **(http or {})},
        "users": [{"name": "ops", "token_env": "STOREEDGE_TEST_HQ_TOKEN"}],
        "broker": {"host": "127.0.0.1", "port": broker_port, "client_id": f"hq-{port}"},
        "timeseries": {"url": tsdb_url, "timeout_seconds": 2, "refresh_seconds": 0.5},
        "stores": stores,
    }
    if erp:
        config["erp"] = erp
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def hq_service(workdir: Path, config: Path, port: int,
               env: dict[str, str] | None = None) -> Iterator[Service]:
    service = spawn("hq", [sys.executable, "-m", "edge_agent.cli", "--log-format", "text",
                           "hq", "--config", str(config)], workdir, port,
                    env={"STOREEDGE_TEST_HQ_TOKEN": HQ_TOKEN, **(env or {})})
    try:
        yield service
    finally:
        service.stop()


def hq_client(port: int, token: str | None = HQ_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=15)


def write_lines(tsdb_url: str, lines: list[str]) -> None:
    with httpx.Client(timeout=10) as client:
        resp = client.post(f"{tsdb_url}/api/v2/write",
                           params={"org": "storeedge", "bucket": "storeedge", "precision": "ns"},
                           content="\n".join(lines).encode())
        resp.raise_for_status()
        client.get(f"{tsdb_url}/internal/force_flush").raise_for_status()


def publish(port: int, items: list[tuple[str, bytes, bool]]) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for info in [c.publish(t, p, qos=1, retain=r) for t, p, r in items]:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def poll(fetch: Callable[[], T], check: Callable[[T], object], within: float = 15.0) -> T:
    """Call ``fetch()`` until ``check(result)`` holds; return the result (or fail with it)."""
    deadline = time.monotonic() + within
    while True:
        result = fetch()
        if check(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held; last result: {result}")
        time.sleep(0.1)


__all__ = ["HQ_TOKEN", "free_port", "hq_client", "hq_service", "poll", "publish",
           "write_hq_config", "write_lines"]
