"""The real driver (pymodbus, pyserial) against the shelf simulator (our codec) on a real pty."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devices.shelf_modbus.driver import ShelfModbusDriver
from edge_agent.config import ShelfModbusDevice
from firmware_sim.modbus_shelf import ModbusShelfSim
from storeedge.events import DeviceStatus, ShelfWeight
from tests.waiting import port_is_free, until

LANES = ["A1-1", "A1-2", "A1-3"]



class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[ShelfWeight]] = []
        self.statuses: list[DeviceStatus] = []

    def grams(self) -> dict[str, float]:
        return {w.lane: w.grams for w in self.batches[-1]} if self.batches else {}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ModbusShelfSim]:
    shelf = ModbusShelfSim("shelf-1", 7, len(LANES), tmp_path / "shelf-1.tty", seed=1)
    yield shelf
    shelf.stop()


@pytest.fixture
async def driver(sim: ModbusShelfSim, store_id: str) -> AsyncIterator[tuple[ShelfModbusDriver,
                                                                               Recorder]]:
    device = ShelfModbusDevice(type="shelf_modbus", id="shelf-1", port=str(sim.link_path),
                               slave=7, poll_hz=20, timeout_seconds=0.2, lanes=LANES)
    rec = Recorder()
    ticks = itertools.count()
    drv = ShelfModbusDriver([device], store_id, rec.batches.append, rec.statuses.append,
                            clock=lambda: 1000.0 + next(ticks),
                            reconnect_initial=0.05, reconnect_max=0.3)
    task = asyncio.create_task(drv.run(), name="shelf-1")
    yield drv, rec
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task



async def test_reads_lane_weights(sim: ModbusShelfSim, driver: tuple[ShelfModbusDriver, Recorder],
                                  store_id: str) -> None:
    drv, rec = driver
    sim.start()
    for i, grams in enumerate([1234.5, 0.0, -2.3]):
        sim.set_grams(i, grams)
    await until(lambda: rec.grams() == {"A1-1": 1234.5, "A1-2": 0.0, "A1-3": -2.3})
    sim.set_grams(1, 98765.4)
    await until(lambda: rec.grams().get("A1-2") == 98765.4)

    batch = rec.batches[-1]
    assert [w.lane for w in batch] == LANES
    assert {(w.store_id, w.source) for w in batch} == {(store_id, "shelf-1")}
    assert len({(w.seq, w.received_ts) for w in batch}) == 1  # one poll, one seq, one time
    assert [b[0].seq for b in rec.batches] == list(range(1, len(rec.batches) + 1))
    assert batch[0].received_ts >= 1000.0
    # Driver started before the sim: offline (port missing) first, then online once it answers.
    assert [s.online for s in rec.statuses] == [False, True]
    assert "cannot open" in (rec.statuses[0].error or "")
    assert drv.polls_ok == len(rec.batches) and sim.frame_errors == 0


async def test_corrupt_responses_are_counted_and_polling_recovers(
        sim: ModbusShelfSim, driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    sim.set_grams(0, 500.0)
    await until(lambda: drv.online)
    sim.corrupt_next(2)
    ok_before = drv.polls_ok
    await until(lambda: drv.polls_failed >= 2 and drv.polls_ok > ok_before + 2)
    assert drv.polls_failed == 2
    assert [s.online for s in rec.statuses] == [False, True]  # two misses do not mean offline
    assert rec.grams()["A1-1"] == 500.0


async def test_silent_device_goes_offline_and_comes_back(
        sim: ModbusShelfSim, driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    sim.corrupt_next(4)  # four garbled answers in a row: as good as no answer
    await until(lambda: drv.online is False)
    assert "no valid answer to 3 polls" in (rec.statuses[-1].error or "")
    await until(lambda: drv.online)
    assert [s.online for s in rec.statuses] == [False, True, False, True]
    assert drv.reconnects >= 1


async def test_unplug_and_replug(sim: ModbusShelfSim,
                                 driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    sim.set_grams(2, 42.0)
    await until(lambda: drv.online)

    sim.unplug()
    assert not sim.link_path.exists()
    await until(lambda: drv.online is False)
    assert rec.statuses[-1].error
    await asyncio.sleep(0.3)  # a few failed reopen attempts, each backed off
    seen = len(rec.batches)

    sim.set_grams(2, 43.0)
    sim.replug()
    await until(lambda: drv.online and rec.grams().get("A1-3") == 43.0)
    assert len(rec.batches) > seen
    assert drv.reconnects == 1
    assert [s.online for s in rec.statuses] == [False, True, False, True]


async def test_tare_zeroes_one_lane(sim: ModbusShelfSim,
                                    driver: tuple[ShelfModbusDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    sim.set_grams(0, 100.0)
    sim.set_grams(1, 200.0)
    await until(lambda: rec.grams().get("A1-2") == 200.0)
    await drv.tare("shelf-1", "A1-2")
    await until(lambda: rec.grams() == {"A1-1": 100.0, "A1-2": 0.0, "A1-3": 0.0})
    sim.set_grams(1, 250.0)
    await until(lambda: rec.grams().get("A1-2") == 50.0)


async def test_cancel_closes_the_port(sim: ModbusShelfSim, store_id: str) -> None:
    device = ShelfModbusDevice(type="shelf_modbus", id="shelf-1", port=str(sim.link_path),
                               slave=7, poll_hz=20, timeout_seconds=0.2, lanes=LANES)
    statuses: list[DeviceStatus] = []
    drv = ShelfModbusDriver([device], store_id, lambda batch: None, statuses.append)
    sim.start()
    task = asyncio.create_task(drv.run())
    await until(lambda: drv.online)
    assert not port_is_free(sim.link_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert port_is_free(sim.link_path)
