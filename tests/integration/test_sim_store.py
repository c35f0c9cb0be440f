"""The full scenario's simulated store against a real Mosquitto, real pseudo-terminals and an
in-test HTTP endpoint standing in for the agent's POS API. Checked only through the wire: every
device kind talks, the planted incidents happen in the traffic, and the truth file adds up."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import serial

from devices.checkout.config import CheckoutDevice
from devices.checkout.protocol import decode_event
from devices.rfid import epc as epc_codec
from devices.rfid import m100, zebra
from devices.rfid.config import RfidZebraDevice
from devices.scanner.protocol import decode_line
from devices.shelf_modbus.protocol import ReadInputRegistersRequest, decode_response
from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from devices.zigbee2mqtt.protocol import decode as decode_climate
from edge_agent.services import Service
from firmware_sim.faults import Faults
from firmware_sim.mqtt_shelf import MqttShelfSim
from firmware_sim.scenario import Incident, Scenario, load_scenario
from firmware_sim.store import run_store
from storeedge.errors import FrameError

SECONDS = 15.0
UNPLUG_AT, REPLUG_AT = 4.0, 8.0


class PosEndpoint:
    """``POST /api/pos/transactions`` answered 201, every body kept."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.bodies.append(json.loads(body))
                self.send_response(201 if self.path == "/api/pos/transactions" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class SerialProbe:
    """A thread that keeps a pty device open (reopening after an unplug), pokes it with
    ``request`` every ``period`` and records each good answer's time; what the agent's driver
    would do, minus the driver."""

    def __init__(self, path: Path, request: bytes | None,
                 answer: Callable[[bytes], list[Any]], period: float = 0.1) -> None:
        self.path, self.request, self.answer, self.period = path, request, answer, period
        self.seen: list[tuple[float, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with serial.Serial(str(self.path), timeout=self.period) as port:
                    while not self._stop.is_set():
                        if self.request:
                            port.write(self.request)
                        data = port.read(4096)
                        for item in self.answer(data):
                            self.seen.append((time.monotonic(), item))
            except (serial.SerialException, OSError):
                self._stop.wait(0.05)  # unplugged: try again, as a driver does
            except FrameError:
                self.errors += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def pos() -> Iterator[PosEndpoint]:
    endpoint = PosEndpoint()
    yield endpoint
    endpoint.close()


def scenario_for(store_id: str) -> Scenario:
    """The full scenario in this test's own topics, its incidents early enough for a short run."""
    s = load_scenario("full")
    fridges = tuple(dataclasses.replace(f, name=f"{store_id}/{f.id}") for f in s.fridges)
    kiosk = s.kiosks[0].id
    incidents = (
        Incident("scan_avoidance", 2.0, device=kiosk, sku="CHIPS-70"),
        Incident("unplug", UNPLUG_AT, device="shelf-a2", until=REPLUG_AT),
        Incident("tag_walkout", 5.0, sku="WINE-750"),
    )
    # Restocks soon after a lane runs low, so the scanner has work within the run.
    return dataclasses.replace(s, store_id=store_id, fridges=fridges, incidents=incidents,
                               shopper_every_seconds=0.5, restock_after_seconds=(0.5, 1.5))


def modbus_probe(path: Path, slave: int, lanes: int) -> SerialProbe:
    def answer(data: bytes) -> list[Any]:
        return [decode_response(data)] if data else []
    return SerialProbe(path, ReadInputRegistersRequest(slave, 0, 2 * lanes).encode(), answer)


def m100_probe(path: Path) -> SerialProbe:
    parser = m100.FrameParser()

    def answer(data: bytes) -> list[Any]:
        return list(parser.feed(data))
    return SerialProbe(path, m100.single_inventory(), answer)


def scanner_probe(path: Path, store_id: str) -> SerialProbe:
    buf = bytearray()

    def answer(data: bytes) -> list[Any]:
        buf.extend(data)
        out = []
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            out.append(decode_line(line.rstrip(b"\r"), store_id=store_id, device_id="scanner-1",
                                   received_ts=time.time()))
        return out
    return SerialProbe(path, None, answer)


async def test_full_store_talks_on_every_wire(mosquitto: Service, store_id: str,
                                              pos: PosEndpoint, tmp_path: Path) -> None:
    scenario = scenario_for(store_id)
    dev = tmp_path / "dev"
    truth_path = tmp_path / "truth.json"
    messages: list[tuple[float, str, bytes]] = []

    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
        await mqtt.subscribe(f"store/{store_id}/#", qos=1)
        await mqtt.subscribe(f"zigbee2mqtt/{store_id}/#", qos=1)

        async def listen() -> None:
            async for msg in mqtt.messages:
                messages.append((time.monotonic(), str(msg.topic), bytes(msg.payload)))  # type: ignore[arg-type]

        listener = asyncio.create_task(listen())
        started = time.monotonic()
        store = asyncio.create_task(run_store(
            scenario, broker=("127.0.0.1", mosquitto.port), agent_url=pos.url, dev_dir=dev,
            truth_out=truth_path, seconds=SECONDS))
        probes: dict[str, SerialProbe] = {}
        try:
            async with asyncio.timeout(5):
                while not (dev / "shelf-a1.tty").exists():
                    await asyncio.sleep(0.02)
            probes = {
                "shelf-a1": modbus_probe(dev / "shelf-a1.tty", 1, 3),
                "shelf-a2": modbus_probe(dev / "shelf-a2.tty", 2, 2),
                "rfid-razor": m100_probe(dev / "rfid-razor.tty"),
                "scanner-1": scanner_probe(dev / "scanner-1.tty", store_id),
            }
            assert await mjpeg_frames(await camera_url(dev), 2) == 2
            truth = await asyncio.wait_for(store, SECONDS + 60)
        finally:
            for probe in probes.values():
                probe.close()
            listener.cancel()
            if not store.done():
                store.cancel()
            await asyncio.gather(listener, store, return_exceptions=True)

    assert json.loads(truth_path.read_text()) == truth
    by_topic: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
    for at, topic, payload in messages:
        by_topic[topic].append((at - started, payload))
    dev_topic = f"store/{store_id}/dev"

    # Every device kind produced traffic.
    assert by_topic[f"{dev_topic}/shelf-b1/weight"] and by_topic[f"{dev_topic}/shelf-c1/weight"]
    for name in ("shelf-a1", "shelf-a2", "rfid-razor", "scanner-1"):
        assert probes[name].seen, name
    fridge = Zigbee2MqttDevice(type="zigbee2mqtt", id="fridge-dairy",
                               name=f"{store_id}/fridge-dairy", zone="dairy")
    climate = [e for _, p in by_topic[fridge.state_topic]
               for e in decode_climate(p, device=fridge, store_id=store_id, received_ts=0)]
    lo, hi = scenario.fridges[0].temp_range
    assert climate and all(lo - 1 <= c.temperature <= hi + 1 for c in climate)  # type: ignore[operator]
    assert all(s.gtin for _, s in probes["scanner-1"].seen)

    portal = RfidZebraDevice(type="rfid_zebra", id="rfid-portal")
    reads = [(at, r) for at, p in by_topic[f"{dev_topic}/rfid-portal/tags"]
             for r in zebra.decode(p, device=portal, store_id=store_id, received_ts=0)]
    assert reads
    serial_epcs = {n.epc for _, n in probes["rfid-razor"].seen if isinstance(n, m100.TagNotice)}
    assert {epc_codec.decode(e).gtin for e in serial_epcs} == {"06901951234565"}  # type: ignore[union-attr]

    planted = {p["kind"]: p for p in truth["planted"]}  # type: ignore[union-attr]

    # A tagged unit walked out: read at the exit antenna, then never again; no sale has it.
    walkout = planted["tag_walkout"]
    epc = walkout["epc"]
    assert epc_codec.decode(epc).gtin == "06902083881405"  # type: ignore[union-attr]
    its_reads = [(at, r.antenna) for at, r in reads if r.epc == epc]
    at_exit = [at for at, antenna in its_reads if antenna == 3]
    assert at_exit and its_reads[-1][1] == 3
    assert not any(antenna == 2 for _, antenna in its_reads)  # never at the checkout
    assert max(at for at, _ in reads) > at_exit[-1] + 2  # the reader went on reading others

    # The unplugged shelf: its port went away and came back.
    unplug = planted["unplug"]
    assert unplug["device"] == "shelf-a2"
    assert unplug["unplugged_at"] == pytest.approx(UNPLUG_AT, abs=0.5)
    assert unplug["replugged_at"] == pytest.approx(REPLUG_AT, abs=0.5)
    answered = [at - started for at, _ in probes["shelf-a2"].seen]
    assert any(at < UNPLUG_AT for at in answered) and any(at > REPLUG_AT for at in answered)
    assert not any(UNPLUG_AT + 0.3 < at < REPLUG_AT - 0.3 for at in answered)

    # Scan avoidance: the session bagged more than it scanned, and paid only for what it scanned.
    avoid = planted["scan_avoidance"]
    kiosk = CheckoutDevice(type="checkout", id=avoid["kiosk"])
    events = [decode_event(p, kiosk_id=kiosk.id, store_id=store_id, received_ts=0)
              for _, p in by_topic[f"{dev_topic}/{kiosk.id}/session"]]
    session = [e for e in events if e.session == avoid["session"]]
    kinds = [str(e.kind) for e in session]
    assert kinds[0] == "started" and kinds[-1] == "paid"
    scanned = [e for e in session if str(e.kind) == "item_scanned"]
    expected = sum((e.expected_grams or 0) * (e.qty or 1) for e in scanned)
    bagged = max(e.grams for e in session if str(e.kind) == "bagging_weight")  # type: ignore[type-var]
    chips = scenario.sku("CHIPS-70")
    assert bagged == pytest.approx(expected + chips.unit_grams, abs=10)
    assert chips.barcode not in {e.barcode for e in scanned}

    # The truth adds up: POS bodies received plus paid kiosk sessions, unit by unit.
    sold: Counter[str] = Counter()
    for body in pos.bodies:
        for line in body["lines"]:
            sold[line["sku"]] += line["qty"]
    by_barcode = {s.barcode: s.sku for s in scenario.catalog}
    paid_sessions = {e.session for e in events if str(e.kind) == "paid"}
    for e in events:
        if str(e.kind) == "item_scanned" and e.session in paid_sessions:
            sold[e.sku or by_barcode[e.barcode]] += e.qty or 1  # type: ignore[index]
    assert truth["sales_units"] == dict(sold) and sum(sold.values()) > 0
    assert truth["transactions"] == len(pos.bodies) + len(paid_sessions)
    assert truth["unposted"] == 0
    readings = truth["readings"]
    assert set(readings) == {"shelf_modbus", "shelf_mqtt", "rfid_zebra", "rfid_serial",  # type: ignore[arg-type]
                             "scanner", "checkout", "camera", "zigbee2mqtt"}
    assert all(readings.values())  # type: ignore[union-attr]
    assert not list(dev.glob("*.tty"))  # every port unplugged at the end


async def camera_url(dev: Path) -> str:
    async with asyncio.timeout(5):
        while not (dev / "cam-1.url").exists():
            await asyncio.sleep(0.02)
    return (dev / "cam-1.url").read_text()


async def mjpeg_frames(url: str, count: int) -> int:
    """Read ``count`` JPEG parts off an MJPEG stream; returns how many were JPEGs."""
    jpegs = 0
    buf = b""
    async with httpx.AsyncClient(timeout=5) as http, http.stream("GET", url) as resp:
        assert resp.headers["content-type"].startswith("multipart/x-mixed-replace")
        async for chunk in resp.aiter_bytes():
            buf += chunk
            while b"\r\n\r\n" in buf and jpegs < count:
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                jpegs += rest[:2] == b"\xff\xd8"
                buf = rest[length:]
            if jpegs >= count:
                return jpegs
    return jpegs


async def test_wireless_shelf_faults_and_power_cut(mosquitto: Service, store_id: str) -> None:
    faults = Faults(duplicate_rate=1.0, clock_skew_s=-60.0)
    shelf = MqttShelfSim(store_id, "shelf-w1", ["A1"], port=mosquitto.port,
                         heartbeat_seconds=60, faults=faults)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        await c.subscribe(f"store/{store_id}/dev/shelf-w1/#", qos=1)
        got: list[tuple[str, bytes]] = []

        async def until(n: int) -> None:
            async with asyncio.timeout(5):
                async for msg in c.messages:
                    got.append((str(msg.topic), bytes(msg.payload)))  # type: ignore[arg-type]
                    if len(got) >= n:
                        return
        try:
            shelf.start()
            shelf.set_grams("A1", 700.0)
            await until(3)  # online, then the weight twice
            weights = [json.loads(p) for t, p in got if t.endswith("/weight")]
            assert [w["seq"] for w in weights] == [1, 1]
            assert weights[0]["ts"] / 1000 == pytest.approx(time.time() - 60, abs=2)

            await asyncio.to_thread(shelf.unplug)
            await until(4)
            assert got[-1] == (f"store/{store_id}/dev/shelf-w1/status", b"offline")  # the will
            await asyncio.to_thread(shelf.replug)
            shelf.set_grams("A1", 350.0)
            await until(7)
            assert got[4][1] == b"online"
            assert [json.loads(p)["grams"] for t, p in got[5:]] == [350.0, 350.0]
        finally:
            shelf.stop()


@pytest.mark.timeout(120)
async def test_a_sold_out_lane_stays_empty_and_the_shelves_stand_still_at_the_end(
        mosquitto: Service, store_id: str, pos: PosEndpoint, tmp_path: Path) -> None:
    """chain-01's planted sell_out: the lane's every unit is bought and paid at the POS, and
    nobody restocks it. When the run ends the staff go home with the shoppers, so what the
    shelves last said is what the truth says is on them."""
    s = load_scenario("chain-01")
    scenario = dataclasses.replace(
        s, store_id=store_id, incidents=(Incident("sell_out", 2.0, lane="B1-1", sku="CHIPS-70"),),
        shopper_every_seconds=0.3, restock_after_seconds=(0.5, 3.0))
    grams: dict[str, list[float]] = defaultdict(list)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
        await mqtt.subscribe(f"store/{store_id}/dev/shelf-b1/weight", qos=1)

        async def listen() -> None:
            async for msg in mqtt.messages:
                body = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
                grams[body["lane"]].append(body["grams"])

        listener = asyncio.create_task(listen())
        store = asyncio.create_task(run_store(
            scenario, broker=("127.0.0.1", mosquitto.port), agent_url=pos.url,
            dev_dir=tmp_path / "dev", truth_out=None, seconds=12.0))
        try:
            truth = await asyncio.wait_for(store, 90)
            await asyncio.sleep(1.0)  # the last weights on their way
        finally:
            listener.cancel()
            if not store.done():
                store.cancel()
            await asyncio.gather(listener, store, return_exceptions=True)

    planted = [p for p in truth["planted"] if p["kind"] == "sell_out"]  # type: ignore[union-attr]
    assert len(planted) == 1 and planted[0]["lane"] == "B1-1" and planted[0]["qty"] > 0
    chips = [sum(line["qty"] for line in body["lines"] if line["sku"] == "CHIPS-70")
             for body in pos.bodies]
    assert planted[0]["qty"] in chips  # one receipt took the whole lane
    lane_units = truth["lane_units"]
    assert isinstance(lane_units, dict) and lane_units["B1-1"] == 0
    emptied = next(i for i, g in enumerate(grams["B1-1"]) if abs(g) < 5)  # load-cell noise
    assert all(abs(g) < 5 for g in grams["B1-1"][emptied:])  # never restocked
    # Other lanes were restocked during the run, and stood still once it ended.
    assert lane_units["B1-2"] * 118 == pytest.approx(grams["B1-2"][-1], abs=5)
    assert max(grams["B1-2"]) == pytest.approx(8 * 118, abs=5)
