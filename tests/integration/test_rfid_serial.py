"""The serial RFID driver (pyserial-asyncio-fast) against the M100 simulator on a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devices.rfid.config import RfidSerialDevice
from devices.rfid.driver import RfidSerialDriver
from firmware_sim.faults import Faults
from firmware_sim.rfid import M100Sim
from storeedge.events import DeviceStatus, Event, TagRead
from tests.waiting import until

EPC1 = "3074257BF7194E4000001A85"
EPC2 = "E2801160600002084F5DAB5A"



class Recorder:
    def __init__(self) -> None:
        self.reads: list[TagRead] = []
        self.statuses: list[DeviceStatus] = []

    def on_events(self, events: list[Event]) -> None:
        for e in events:
            assert isinstance(e, TagRead)
            self.reads.append(e)

    def epcs_since(self, n: int) -> set[str]:
        return {r.epc for r in self.reads[n:]}


def online_changes(rec: Recorder) -> list[bool]:
    """The online states reported, without an offline that may come first: whether the driver
    tries the port before or after the simulator plugs in is a race the tests leave open."""
    states = [s.online for s in rec.statuses]
    return states[1:] if states[:1] == [False] else states


@pytest.fixture(params=["bb7e", "aadd"])
def framing(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim(tmp_path: Path, framing: str) -> Iterator[M100Sim]:
    module = M100Sim("m100-1", tmp_path / "m100-1.tty", framing=framing, rssi_noise_db=1.0,
                     seed=2)
    yield module
    module.stop()


@pytest.fixture
async def driver(sim: M100Sim, store_id: str, framing: str
                 ) -> AsyncIterator[tuple[RfidSerialDriver, Recorder]]:
    device = RfidSerialDevice(type="rfid_serial", id="m100-1", port=str(sim.link_path),
                              framing=framing, poll_hz=20, location="checkout-1")  # type: ignore[arg-type]
    rec = Recorder()
    drv = RfidSerialDriver(device, store_id, rec.on_events, rec.statuses.append,
                           max_silent_polls=3, reconnect_initial=0.05, reconnect_max=0.3)
    task = asyncio.create_task(drv.run(), name="m100-1")
    yield drv, rec
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_inventories_tags(sim: M100Sim, driver: tuple[RfidSerialDriver, Recorder],
                                store_id: str) -> None:
    drv, rec = driver
    sim.place(EPC1, 1, rssi=-55.0)
    sim.start()
    await until(lambda: len(rec.reads) >= 5)
    read = rec.reads[-1]
    assert (read.epc, read.source, read.store_id, read.antenna) == (EPC1, "m100-1", store_id, None)
    assert read.rssi is not None and -62 <= read.rssi <= -48
    assert [r.seq for r in rec.reads] == list(range(1, len(rec.reads) + 1))
    assert drv.device.location_of(read.antenna) == "checkout-1"

    sim.place(EPC2, 1, rssi=-60.0)
    n = len(rec.reads)
    await until(lambda: rec.epcs_since(n) == {EPC1, EPC2})
    sim.remove(EPC1)
    sim.remove(EPC2)
    good = drv.good
    await until(lambda: drv.good > good + 3)  # "no tag" answers keep it online
    n = len(rec.reads)
    await asyncio.sleep(0.2)
    assert len(rec.reads) <= n + 2  # at most the polls already answered
    assert online_changes(rec) == [True]
    assert drv.bad == 0


async def test_corrupt_frames_are_counted_and_reading_goes_on(
        sim: M100Sim, driver: tuple[RfidSerialDriver, Recorder]) -> None:
    drv, rec = driver
    sim.place(EPC1, 1)
    sim.start()
    await until(lambda: drv.online)
    sim.corrupt_next(2)
    await until(lambda: drv.bad >= 2)
    n = len(rec.reads)
    await until(lambda: len(rec.reads) > n + 3)
    assert {r.epc for r in rec.reads} == {EPC1}
    assert online_changes(rec) == [True]  # bad frames alone do not mean offline


async def test_silent_module_goes_offline_and_back(
        sim: M100Sim, driver: tuple[RfidSerialDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    sim.mute()
    await until(lambda: drv.online is False)
    assert "no valid answer to 3 polls" in (rec.statuses[-1].error or "")
    sim.mute(False)
    await until(lambda: drv.online)
    assert drv.reconnects >= 1


async def test_unplug_and_replug(sim: M100Sim, driver: tuple[RfidSerialDriver, Recorder]) -> None:
    drv, rec = driver
    await until(lambda: rec.statuses)  # the port is not there yet
    assert "cannot open" in (rec.statuses[0].error or "")
    sim.place(EPC1, 1)
    sim.start()
    await until(lambda: drv.online)
    await asyncio.to_thread(sim.unplug)
    await until(lambda: drv.online is False)
    assert "lost" in (rec.statuses[-1].error or "") or "closed" in (rec.statuses[-1].error or "")
    n = len(rec.reads)
    await asyncio.to_thread(sim.replug)
    await until(lambda: drv.online and len(rec.reads) > n)
    assert online_changes(rec) == [True, False, True]
    assert drv.reconnects >= 1


def test_faults_corrupt_rate_reaches_the_wire(tmp_path: Path) -> None:
    module = M100Sim("m", tmp_path / "m.tty", faults=Faults(corrupt_rate=1.0), seed=1)
    assert module._bytes.apply(b"\xbb\x00") != b"\xbb\x00"
