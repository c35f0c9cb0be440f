"""Several shelf controllers on one RS-485 port: one driver task owns the port and polls them in
turn, over a real pty with two simulated controllers of different register maps on it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from devices.shelf_modbus.config import ShelfModbusDevice
from devices.shelf_modbus.driver import ShelfModbusDriver
from devices.shelf_modbus.register_map import named_map
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.services import Service, free_port
from firmware_sim.modbus_shelf import ModbusShelfSim, ShelfController
from storeedge.events import DeviceStatus, ShelfWeight
from tests.waiting import port_is_free, until


class Recorder:
    def __init__(self) -> None:
        self.grams: dict[str, float] = {}
        self.seen: dict[str, set[float]] = {}  # every weight each lane reported
        self.polls: dict[str, list[int]] = {}
        self.statuses: list[DeviceStatus] = []

    def readings(self, batch: list[ShelfWeight]) -> None:
        for w in batch:
            self.grams[w.lane] = w.grams
            self.seen.setdefault(w.lane, set()).add(w.grams)
        self.polls.setdefault(batch[0].source, []).append(batch[0].seq or 0)

    def online(self, device_id: str) -> bool | None:
        states = [s.online for s in self.statuses if s.source == device_id]
        return states[-1] if states else None


def polled_more_than(rec: Recorder, device_id: str, n: int) -> bool:
    return len(rec.polls.get(device_id, ())) > n


def failed_more_than(drv: ShelfModbusDriver, n: int) -> bool:
    return drv.polls_failed > n


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[ModbusShelfSim, ShelfController]]:
    sim = ModbusShelfSim("bus-1", 1, 2, tmp_path / "rs485.tty", seed=1)
    other = sim.add(2, 2, register_map=named_map("float32-kg-cdab"))
    yield sim, other
    sim.stop()


def shelves(port: Path) -> list[ShelfModbusDevice]:
    common = {"type": "shelf_modbus", "port": str(port), "poll_hz": 20, "timeout_seconds": 0.1}
    return [ShelfModbusDevice.model_validate({**common, "id": "shelf-a", "slave": 1,
                                              "lanes": ["A1", "A2"]}),
            ShelfModbusDevice.model_validate({**common, "id": "shelf-b", "slave": 2,
                                              "lanes": ["B1", "B2"],
                                              "register_map": "float32-kg-cdab"})]


@pytest.fixture
async def driver(bus: tuple[ModbusShelfSim, ShelfController], store_id: str
                 ) -> AsyncIterator[tuple[ShelfModbusDriver, Recorder]]:
    sim, _ = bus
    rec = Recorder()
    ticks = itertools.count()
    drv = ShelfModbusDriver(shelves(sim.link_path), store_id, rec.readings, rec.statuses.append,
                            clock=lambda: 1000.0 + next(ticks), offline_poll_seconds=0.2,
                            reconnect_initial=0.05, reconnect_max=0.3)
    task = asyncio.create_task(drv.run(), name="rs485")
    yield drv, rec
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert port_is_free(sim.link_path)


async def test_two_controllers_on_one_port_polled_in_turn(
        bus: tuple[ModbusShelfSim, ShelfController],
        driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    sim, other = bus
    drv, rec = driver
    sim.start()
    sim.set_grams(0, 1234.5)
    other.set_grams(1, 1500.0)
    await until(lambda: rec.grams == {"A1": 1234.5, "A2": 0.0, "B1": 0.0, "B2": 1500.0})
    # Both answer at their own rate through the one port: no frame was garbled by an
    # interleaved transaction, and no poll of either went unanswered.
    await until(lambda: min(len(p) for p in rec.polls.values()) >= 10)
    assert sim.frame_errors == 0 and drv.polls_failed == 0
    assert sorted(rec.polls) == ["shelf-a", "shelf-b"]
    for seqs in rec.polls.values():
        assert seqs == list(range(1, len(seqs) + 1))
    assert (rec.online("shelf-a"), rec.online("shelf-b")) == (True, True)

    # A tare of each goes through the port's task between polls: 06 and 16 respectively.
    sim.set_grams(1, 200.0)
    other.set_grams(0, 250.0)  # 0.25 kg: exact in a float32
    await until(lambda: rec.grams["A2"] == 200.0 and rec.grams["B1"] == 250.0)
    await asyncio.gather(drv.tare("shelf-a", "A2"), drv.tare("shelf-b"))
    await until(lambda: rec.grams == {"A1": 1234.5, "A2": 0.0, "B1": 0.0, "B2": 0.0})
    assert (sim.shelf.tares, other.tares) == (1, 2)  # the float layout tares lane by lane
    assert sim.frame_errors == 0


async def test_one_silent_controller_does_not_take_the_other_offline(
        bus: tuple[ModbusShelfSim, ShelfController],
        driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    sim, other = bus
    drv, rec = driver
    sim.start()
    await until(lambda: rec.online("shelf-a") and rec.online("shelf-b"))
    other.answering = False
    await until(lambda: rec.online("shelf-b") is False)
    assert "no valid answer to 3 polls" in (rec.statuses[-1].error or "")
    polls = len(rec.polls["shelf-a"])
    sim.set_grams(0, 42.0)
    await until(lambda: rec.grams["A1"] == 42.0 and len(rec.polls["shelf-a"]) > polls + 10)
    assert rec.online("shelf-a") is True and drv.reconnects == 0  # the port stayed open
    other.answering = True
    await until(lambda: rec.online("shelf-b") is True)


async def test_a_status_fault_withholds_that_controllers_weights(
        bus: tuple[ModbusShelfSim, ShelfController],
        driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    sim, other = bus
    _, rec = driver
    sim.start()
    await until(lambda: rec.online("shelf-a") and rec.online("shelf-b"))
    other.fault = True
    await until(lambda: rec.online("shelf-b") is False)
    assert rec.statuses[-1].error == "status 0x0001: fault"  # bit 0 in the float layout
    other.set_grams(0, 1000.0)
    sim.set_grams(0, 5.0)
    await until(lambda: rec.grams["A1"] == 5.0)
    polls = len(rec.polls["shelf-a"])
    await until(lambda: len(rec.polls["shelf-a"]) > polls + 5)
    assert rec.grams["B1"] == 0.0  # a faulty load cell's weight never went out
    other.fault = False
    await until(lambda: rec.grams["B1"] == 1000.0)
    assert rec.online("shelf-b") is True


async def test_unplugging_the_port_takes_both_offline_and_both_come_back(
        bus: tuple[ModbusShelfSim, ShelfController],
        driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    sim, _ = bus
    drv, rec = driver
    sim.start()
    await until(lambda: rec.online("shelf-a") and rec.online("shelf-b"))
    sim.unplug()
    await until(lambda: rec.online("shelf-a") is False and rec.online("shelf-b") is False)
    sim.replug()
    await until(lambda: rec.online("shelf-a") and rec.online("shelf-b"))
    assert drv.reconnects >= 1


async def test_the_agent_runs_two_shelves_of_one_port(
        bus: tuple[ModbusShelfSim, ShelfController], mosquitto: Service, store_id: str,
        tmp_path: Path) -> None:
    """A store config with two controllers on one port: one task opens it (a second open of
    the tty would be refused) and both shelves' lanes are counted."""
    sim, other = bus
    port = free_port()
    devices = [d.model_dump(exclude={"register_map"}) for d in shelves(sim.link_path)]
    devices[1]["register_map"] = "float32-kg-cdab"
    cfg = StoreConfig.model_validate({
        "store": {"id": store_id},
        "broker": {"port": mosquitto.port, "client_id": f"agent-{store_id}"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"port": port},
        "inventory": {"settle_seconds": 0},
        "catalog": [{"sku": "COLA", "unit_grams": 350.0}],
        "lanes": [{"id": lane, "sku": "COLA", "capacity": 20} for lane in ("A1", "A2", "B1", "B2")],
        "devices": devices,
    })
    for i in range(2):
        sim.set_grams(i, 350.0 * (i + 1))
        other.set_grams(i, 350.0 * (i + 3))
    sim.start()
    agent = StoreAgent(cfg)
    task = asyncio.create_task(agent.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async def units() -> dict[str, int | None]:
                try:
                    lanes = (await http.get("/api/lanes")).json()
                except httpx.HTTPError:
                    return {}
                return {lane["id"]: lane["units"] for lane in lanes}

            async with asyncio.timeout(15):
                while await units() != {"A1": 1, "A2": 2, "B1": 3, "B2": 4}:
                    await asyncio.sleep(0.05)
            devices_state = (await http.get("/api/devices")).json()
        assert {d: devices_state[d]["state"] for d in ("shelf-a", "shelf-b")} == {
            "shelf-a": "online", "shelf-b": "online"}
        assert sim.frame_errors == 0
    finally:
        agent.stop()
        await asyncio.wait_for(task, 20)


async def test_a_late_answer_is_never_taken_for_another_controllers(
        bus: tuple[ModbusShelfSim, ShelfController],
        driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    """RTU has no transaction ids: an answer arriving after its request timed out lands while
    the master waits for the next controller's answer. It must be refused, not decoded as the
    other controller's weights, and the port's task must go on."""
    sim, other = bus
    drv, rec = driver
    sim.set_grams(0, 1234.5)
    other.set_grams(0, 500.0)
    sim.start()
    await until(lambda: rec.grams.get("B1") == 500.0 and rec.grams.get("A1") == 1234.5)
    failed = drv.polls_failed
    for _ in range(5):
        sim.answer_late(0.15)  # past the driver's 0.1 s timeout
        await until(partial(failed_more_than, drv, drv.polls_failed))
    await until(lambda: drv.polls_failed >= failed + 5 and rec.grams["A1"] == 1234.5)
    assert rec.seen["B1"] == {500.0}  # B1 never showed A's registers read as floats
    sim.set_grams(0, 42.0)
    await until(lambda: rec.grams["A1"] == 42.0)  # still polling


async def test_cancelling_the_busy_port_task_always_ends_it(
        bus: tuple[ModbusShelfSim, ShelfController], store_id: str) -> None:
    """A cancellation that lands just as an answer arrives (asyncio.wait_for before Python 3.12
    loses it) must still end the task: cancelled mid-poll again and again, it always ends."""
    sim, _ = bus
    sim.start()
    for attempt in range(15):
        rec = Recorder()
        drv = ShelfModbusDriver(shelves(sim.link_path), store_id, rec.readings,
                                rec.statuses.append)
        task = asyncio.create_task(drv.run())
        await until(partial(polled_more_than, rec, "shelf-b", 3 + attempt % 4))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, f"attempt {attempt}: the port task ignored its cancellation"
        assert port_is_free(sim.link_path)
