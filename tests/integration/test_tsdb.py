"""The time-series sink against a real VictoriaMetrics through the InfluxDB v2 write API.

Every test tags its points with its own ``store`` so tests never see each other's points.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiomqtt
import httpx
import pytest

from cloud_bridge.tsdb import Points, TimeSeriesSink, encode_line, to_ns
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.services import Service, free_port, start_victoria_metrics
from storeedge.events import Alert, AlertState, Sale, Severity
from tests.fixtures.victoria import export, rows_received, samples, victoria_url, wait_for_count

T0 = 1764160000.0  # a fixed past time: points never depend on the clock of the test run


def make_sink(path: Path, url: str, **kw: object) -> TimeSeriesSink:
    options: dict = dict(batch_size=5_000, flush_seconds=0.05, buffer_max_points=1_000_000,
                         timeout_seconds=5.0, retry_initial_seconds=0.05,
                         retry_max_seconds=0.3)
    options.update(kw)
    return TimeSeriesSink(path, url, "storeedge", "storeedge", None, **options)


async def until(predicate: Callable[[], bool], seconds: float) -> None:
    """Poll ``predicate`` until it holds; fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


def is_empty(sink: TimeSeriesSink) -> Callable[[], bool]:
    return lambda: sink.stats()["buffered"] == 0


def has_failed(sink: TimeSeriesSink) -> Callable[[], bool]:
    return lambda: sink.stats()["last_error"] is not None


async def drain(sink: TimeSeriesSink, seconds: float = 30.0) -> None:
    """Run the sink until its buffer is empty, then cancel it."""
    task = asyncio.create_task(sink.run())
    try:
        await until(is_empty(sink), seconds)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def numbered(store: str, n: int, start: int = 0) -> list[str]:
    """n shelf_stock points whose units count their index, 1 ms apart."""
    return [encode_line("shelf_stock", {"store": store, "lane": "L1", "sku": "S1"},
                        {"units": i, "grams": i * 0.5}, to_ns(T0) + i * 1_000_000)
            for i in range(start, start + n)]


def units_landed(vm: Service, store: str) -> list[tuple[int, float]]:
    (series,) = samples(vm, f'shelf_stock_units{{store="{store}"}}').values()
    return series


async def test_points_land_with_tags_fields_and_device_time(
        victoria: Service, store_id: str, tmp_path: Path) -> None:
    backfilled = T0 - 86_400.0  # a day old, as after an outage: it keeps its own time
    sale = Sale(store_id=store_id, source="pos-1", received_ts=T0, device_ts=backfilled,
                sku="COLA", qty=3, txn_id="T-1")
    alert = Alert(store_id=store_id, source="rules", received_ts=T0 + 1.5, alert_id="a-1",
                  rule="checkout_suspect", severity=Severity.WARNING,
                  subject="kiosk-1/session-0f3a9", message='120 g "not scanned"',
                  state=AlertState.OPEN, location="kiosk-1",
                  detail={"transition": "opened", "opened_at": T0 + 1.5})
    odd_lane = 'A 1,=\\"🍭'  # every character line protocol escapes, and a trailing quote
    points = Points(store_id, region="north", city="Beijing")
    sink = make_sink(tmp_path / "buf.db", victoria_url(victoria))
    sink.add(points.sales([(sale, 4.5)], ts=T0))
    sink.add(points.alerts([alert]))
    sink.add(points.lanes([("A1-3", "COLA", 7, 2310.5), (odd_lane, "W\\", 0, 0.0)], T0 + 2.123))
    sink.add([points.agent(T0 + 3, {"readings_total": 42, "erp_backlog": 0, "tsdb_backlog": 5}),
              *points.devices({"shelf-1": {"type": "shelf_mqtt", "state": "degraded",
                                           "readings": 9, "bad": 2}}, T0 + 3),
              points.climate("chill-1", {"device": "fridge-1", "ts": T0 + 2.5,
                                         "temperature": 4.5, "humidity": 61.0,
                                         "battery": 86})])
    await drain(sink)
    assert sink.stats()["written"] == 7

    got = samples(victoria, f'{{store="{store_id}"}}')

    def tags(**kw: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({"store": store_id, "region": "north", "city": "Beijing",
                             **kw}.items()))

    sold = tags(sku="COLA")
    assert got[("sale_qty", sold)] == [(int(backfilled * 1000), 3)]
    assert got[("sale_amount", sold)] == [(int(backfilled * 1000), 4.5)]
    alerted = tags(location="kiosk-1", rule="checkout_suspect", severity="warning",
                   state="open", transition="opened")
    assert got[("alert_count", alerted)] == [(int((T0 + 1.5) * 1000), 1)]
    assert got[("alert_age_s", alerted)] == [(int((T0 + 1.5) * 1000), 0)]
    lane = tags(lane="A1-3", sku="COLA")
    assert got[("shelf_stock_units", lane)] == [(int(T0 * 1000) + 2123, 7)]
    assert got[("shelf_stock_grams", lane)] == [(int(T0 * 1000) + 2123, 2310.5)]
    odd = tags(lane=odd_lane, sku="W\\")
    assert got[("shelf_stock_units", odd)] == [(int(T0 * 1000) + 2123, 0)]
    assert got[("agent_readings_total", tags())] == [(int(T0 * 1000) + 3000, 42)]
    assert got[("agent_tsdb_backlog", tags())] == [(int(T0 * 1000) + 3000, 5)]
    device = tags(device="shelf-1", device_type="shelf_mqtt")
    assert got[("device_degraded", device)] == [(int(T0 * 1000) + 3000, 1)]
    assert got[("device_offline", device)] == [(int(T0 * 1000) + 3000, 0)]
    climate = tags(device="fridge-1", zone="chill-1")
    assert got[("climate_temperature", climate)] == [(int(T0 * 1000) + 2500, 4.5)]
    # Numbers only: no series of zeros from strings, no series per kiosk session.
    assert not [name for name, _ in got if name.endswith(("_txn_id", "_alert_id", "_message"))]
    assert not [labels for _, labels in got if "subject" in dict(labels)]


@pytest.mark.timeout(90)
async def test_a_running_agent_writes_its_health_devices_and_climate(
        victoria: Service, mosquitto: Service, store_id: str, tmp_path: Path) -> None:
    cfg = StoreConfig.model_validate({
        "store": {"id": store_id, "region": "north", "city": "Beijing"},
        "broker": {"port": mosquitto.port, "client_id": f"agent-{store_id}"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"port": free_port()},
        "timeseries": {"enabled": True, "url": victoria_url(victoria), "sample_seconds": 0.2,
                       "flush_seconds": 0.1},
        "catalog": [{"sku": "COLA", "unit_grams": 100.0, "low_stock": 3}],
        "lanes": [{"id": "A1", "sku": "COLA", "capacity": 10}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1"]},
                    {"type": "zigbee2mqtt", "id": "fridge-1", "name": f"{store_id}-fridge",
                     "zone": "chill-1"}],
    })
    agent = StoreAgent(cfg)
    task = asyncio.create_task(agent.run())
    tags = f'store="{store_id}",region="north",city="Beijing"'

    async def landed(match: str, count: int) -> None:
        async with asyncio.timeout(30):
            while sum(len(s["values"]) for s in await asyncio.to_thread(
                    export, victoria, match)) < count:
                await asyncio.sleep(0.2)

    try:
        # The agent point keeps coming with no device saying anything: HQ sees the store live.
        await landed(f"agent_readings_total{{{tags}}}", 3)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
            await mqtt.publish(f"zigbee2mqtt/{store_id}-fridge",
                               json.dumps({"temperature": 7.5, "humidity": 61}), qos=1)
        await landed(f'climate_temperature{{{tags},zone="chill-1",device="fridge-1"}}', 1)
        await landed(f'device_online{{{tags},device="fridge-1",device_type="zigbee2mqtt"}}', 1)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 20)
    got = samples(victoria, f'{{{tags}}}')
    (climate,) = [v for (name, _), v in got.items() if name == "climate_temperature"]
    assert [value for _, value in climate] == [7.5]  # each sample once, not once per tick
    shelf = dict(t for t in next(labels for (name, labels) in got
                                 if name == "device_offline" and ("device", "shelf-1") in labels))
    assert shelf["device_type"] == "shelf_mqtt"


async def test_server_down_keeps_points_then_drains_exactly_once(
        store_id: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    buffer = tmp_path / "buf.db"
    sink = make_sink(buffer, url)
    sink.add(numbered(store_id, 1_000))
    task = asyncio.create_task(sink.run())
    await until(has_failed(sink), 10)
    await asyncio.sleep(0.5)  # several failed rounds
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sink.stats()["buffered"] == 1_000
    assert "Connection" in sink.stats()["last_error"]
    sink.close()

    # A new sink on the same file resumes; the server comes up on the port it already tries.
    sink = make_sink(buffer, url)
    assert sink.stats()["buffered"] == 1_000
    task = asyncio.create_task(sink.run())
    await asyncio.sleep(0.3)
    vm = await asyncio.to_thread(start_victoria_metrics, tmp_path / "vm", port)
    try:
        await until(is_empty(sink), 20)
        assert sink.stats()["last_error"] is None
        assert rows_received(vm) == 1_000  # sent once, not once per retry

        # Down again: new points wait on disk; VM restarts on the same data dir and port.
        vm.stop()
        sink.add(numbered(store_id, 500, start=1_000))
        await asyncio.sleep(0.5)
        assert sink.stats()["buffered"] == 500
        vm = await asyncio.to_thread(start_victoria_metrics, tmp_path / "vm", port)
        await until(is_empty(sink), 20)
        assert sink.stats()["written"] == 1_500
        got = units_landed(vm, store_id)
        assert got == [(int(T0 * 1000) + i, i) for i in range(1_500)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        vm.stop()


CHILD = textwrap.dedent("""
    import asyncio, sys
    from cloud_bridge.tsdb import TimeSeriesSink, encode_line, to_ns
    path, url, store, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sink = TimeSeriesSink(path, url, "storeedge", "storeedge", None, batch_size=100,
                          flush_seconds=0.01, buffer_max_points=10**6)
    for start in range(0, n, 1000):
        sink.add([encode_line("shelf_stock", {"store": store, "lane": "L1", "sku": "S1"},
                              {"units": i, "grams": i * 0.5}, to_ns(%r) + i * 1_000_000)
                  for i in range(start, start + 1000)])
    print("added", flush=True)
    asyncio.run(sink.run())
""") % T0


def test_killed_sink_process_resumes_on_its_buffer(
        victoria: Service, store_id: str, tmp_path: Path) -> None:
    n = 20_000
    buffer = tmp_path / "buf.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(buffer), victoria_url(victoria), store_id, str(n)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "added"
        deadline = time.monotonic() + 20
        while _rows(buffer) > n - 2_000:  # let it deliver some, then kill it mid-drain
            assert time.monotonic() < deadline, "the child sink delivers nothing"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    sink = make_sink(buffer, victoria_url(victoria))
    left = sink.stats()["buffered"]
    assert 0 < left < n
    asyncio.run(drain(sink))
    assert sink.stats()["written"] == left
    assert units_landed(victoria, store_id) == [(int(T0 * 1000) + i, i) for i in range(n)]


def _rows(buffer: Path) -> int:
    with sqlite3.connect(buffer, timeout=5) as db:
        return db.execute("SELECT COUNT(*) FROM points").fetchone()[0]


class StrictProxy:
    """An InfluxDB-strict front for VictoriaMetrics, which itself skips bad lines and answers
    204. Like InfluxDB, it answers 400 and writes nothing when any line of the body is
    malformed; ``fail_next`` answers that many requests with ``fail_status`` instead."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fail_next = 0
        self.fail_status = 503
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, reply = proxy.handle(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def handle(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        if self.fail_next:
            self.fail_next -= 1
            return self.fail_status, b'{"code":"unavailable","message":"try later"}'
        for line in body.decode().split("\n"):
            if not _well_formed(line):
                msg = {"code": "invalid", "message": f"unable to parse '{line}': missing fields"}
                return 400, json.dumps(msg).encode()
        resp = httpx.post(self.upstream + path, content=body, timeout=10)
        return resp.status_code, resp.content

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _well_formed(line: str) -> bool:
    parts = re.split(r"(?<!\\) ", line)
    if len(parts) not in (2, 3) or not parts[1]:
        return False
    if len(parts) == 3 and not parts[2].lstrip("-").isdigit():
        return False
    return all("=" in field for field in re.split(r"(?<!\\),", parts[1]))


@pytest.fixture
def strict(victoria: Service) -> Iterator[StrictProxy]:
    proxy = StrictProxy(victoria_url(victoria))
    yield proxy
    proxy.close()


async def test_bad_line_is_dropped_alone(
        victoria: Service, strict: StrictProxy, store_id: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    lines = numbered(store_id, 100)
    lines.insert(37, f"shelf_stock,store={store_id},lane=L1 units")
    sink = make_sink(tmp_path / "buf.db", strict.url)
    sink.add(lines)
    with caplog.at_level(logging.ERROR, logger="cloud_bridge.tsdb"):
        await drain(sink)
    stats = sink.stats()
    assert (stats["written"], stats["rejected"], stats["dropped"]) == (100, 1, 0)
    assert "rejected a line" in caplog.text and "HTTP 400" in caplog.text
    assert strict.requests <= 2 * 8  # bisection: a few requests, not one per line
    assert units_landed(victoria, store_id) == [(int(T0 * 1000) + i, i) for i in range(100)]


@pytest.mark.parametrize("status", [503, 401])
async def test_server_errors_keep_the_batch_and_retry(
        victoria: Service, strict: StrictProxy, store_id: str, tmp_path: Path,
        status: int) -> None:
    strict.fail_next, strict.fail_status = 3, status
    sink = make_sink(tmp_path / "buf.db", strict.url)
    sink.add(numbered(store_id, 50))
    task = asyncio.create_task(sink.run())
    try:
        await until(has_failed(sink), 10)
        assert f"HTTP {status}" in sink.stats()["last_error"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await drain(sink)
    stats = sink.stats()
    assert (stats["written"], stats["rejected"], stats["dropped"]) == (50, 0, 0)
    assert units_landed(victoria, store_id) == [(int(T0 * 1000) + i, i) for i in range(50)]


async def test_full_buffer_drops_the_oldest(
        victoria: Service, store_id: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    sink = make_sink(tmp_path / "buf.db", victoria_url(victoria), buffer_max_points=1_000)
    with caplog.at_level(logging.WARNING, logger="cloud_bridge.tsdb"):
        for start in range(0, 1_500, 300):
            sink.add(numbered(store_id, 300, start=start))
    stats = sink.stats()
    assert (stats["buffered"], stats["dropped"]) == (1_000, 500)
    assert "buffer full" in caplog.text
    await drain(sink)
    assert units_landed(victoria, store_id) == [(int(T0 * 1000) + i, i)
                                                for i in range(500, 1_500)]


async def test_throughput_in_batches_of_5000(
        victoria: Service, store_id: str, tmp_path: Path,
        record_property: pytest.RecordProperty) -> None:
    n = 200_000
    lines = [encode_line("shelf_stock", {"store": store_id, "lane": f"L{i % 100}", "sku": "S1"},
                         {"units": i, "grams": i * 0.5}, to_ns(T0) + (i // 100) * 1_000_000)
             for i in range(n)]
    sink = make_sink(tmp_path / "buf.db", victoria_url(victoria), batch_size=5_000)
    for start in range(0, n, 5_000):
        sink.add(lines[start:start + 5_000])
    began = time.perf_counter()
    await drain(sink, 60)
    rate = n / (time.perf_counter() - began)
    record_property("points_per_second", round(rate))
    print(f"\ntime-series sink: {rate:,.0f} points/s into VictoriaMetrics "
          f"(batches of 5,000)", file=sys.stderr)
    assert wait_for_count(victoria, f'shelf_stock_units{{store="{store_id}"}}', n) == n
    assert rate > 20_000  # a floor against regressions; the agent needs a few hundred/s


async def test_a_server_that_never_answers_times_out_and_keeps_the_batch(
        store_id: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        sink = make_sink(tmp_path / "buf.db", url, timeout_seconds=0.3)
        sink.add(numbered(store_id, 10))
        task = asyncio.create_task(sink.run())
        try:
            await until(has_failed(sink), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    stats = sink.stats()
    assert "timed out" in stats["last_error"].lower()
    assert (stats["buffered"], stats["written"]) == (10, 0)
