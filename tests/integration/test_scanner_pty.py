"""The real scanner driver (pyserial-asyncio-fast) against the scanner simulator on a real pty."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devices.scanner.config import ScannerDevice
from devices.scanner.driver import ScannerDriver
from firmware_sim.scanner import ScannerSim
from storeedge.events import DeviceStatus, Event, Scan
from tests.waiting import port_is_free, until


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.statuses: list[DeviceStatus] = []

    @property
    def scans(self) -> list[Scan]:
        return [e for batch in self.batches for e in batch if isinstance(e, Scan)]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ScannerSim]:
    scanner = ScannerSim("scan-1", tmp_path / "scan-1.tty", seed=1)
    yield scanner
    scanner.stop()


def make_device(sim: ScannerSim) -> ScannerDevice:
    return ScannerDevice(type="scanner", id="scan-1", port=str(sim.link_path),
                         location="receiving")


@pytest.fixture
async def driver(sim: ScannerSim, store_id: str) -> AsyncIterator[tuple[ScannerDriver, Recorder]]:
    rec = Recorder()
    ticks = itertools.count()
    drv = ScannerDriver(make_device(sim), store_id, rec.batches.append, rec.statuses.append,
                        clock=lambda: 1_767_225_600.0 + next(ticks),
                        reconnect_initial=0.05, reconnect_max=0.3)
    task = asyncio.create_task(drv.run(), name="scanner scan-1")
    await until(lambda: drv.online is False)  # the scanner is not plugged in yet
    yield drv, rec
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task



async def test_scans_flow_with_gs1_fields(sim: ScannerSim, driver: tuple[ScannerDriver, Recorder],
                                          store_id: str) -> None:
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    sim.scan("6291041500213", "]E0")
    sim.scan_gs1([("01", "09501101020917"), ("17", "190508"), ("10", "ABCD1234"), ("21", "10")])
    sim.scan("SKU-42")
    await until(lambda: len(rec.scans) == 3)
    ean, gs1, plain = rec.scans
    assert (ean.symbology, ean.gtin) == ("ean-13", "06291041500213")
    assert (gs1.symbology, gs1.gtin, gs1.batch, gs1.expiry, gs1.serial) == (
        "gs1-datamatrix", "09501101020917", "ABCD1234", "2019-05-08", "10")
    assert (plain.code, plain.gtin) == ("SKU-42", None)
    assert {(s.store_id, s.source) for s in rec.scans} == {(store_id, "scan-1")}
    assert (drv.good, drv.bad) == (3, 0)
    # Driver started before the scanner was plugged in: offline first, then online.
    assert [s.online for s in rec.statuses] == [False, True]
    assert "cannot open" in (rec.statuses[0].error or "")


async def test_gs1_as_scanners_are_set_up_in_the_field(sim: ScannerSim, store_id: str) -> None:
    # A scanner set to send '^' for FNC1 and no AIM prefix; GS1 data with a weight, a
    # company-internal AI, and then a code with an AI no GS1 table has, and a Digital Link.
    device = ScannerDevice(type="scanner", id="scan-1", port=str(sim.link_path),
                           gs1_separator="^", gs1_without_prefix=True)
    rec = Recorder()
    drv = ScannerDriver(device, store_id, rec.batches.append, rec.statuses.append,
                        clock=lambda: 1_767_225_600.0, reconnect_initial=0.05)
    sim.start()
    task = asyncio.create_task(drv.run(), name="scanner scan-1")
    try:
        await until(lambda: drv.online)
        sim.scan_gs1([("01", "09501101020917"), ("3103", "000250"), ("91", "SHELF-7"),
                      ("10", "LOT-1")], aim=None, separator="^")
        sim.scan("0109501101020917" "23XY^10LOT-2")
        sim.scan("https://id.gs1.org/01/09501101020917/21/77", "]Q1")
        await until(lambda: len(rec.scans) == 3)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    weighed, unknown, link = rec.scans
    assert (weighed.gtin, weighed.batch, weighed.ai_values) == ("09501101020917", "LOT-1",
                                                                {"3103": "0.250"})
    assert weighed.ai is not None and weighed.ai["91"] == "SHELF-7"
    assert (unknown.gtin, unknown.batch) == ("09501101020917", "LOT-2")
    assert unknown.gs1_errors == ("unknown AI at offset 16: '23XY'; 4 characters up to the "
                                  "next FNC1 skipped",)
    assert (link.symbology, link.gtin, link.serial) == ("qr", "09501101020917", "77")
    assert (drv.good, drv.bad) == (3, 0)


async def test_corrupt_and_over_long_lines_are_counted(
        sim: ScannerSim, driver: tuple[ScannerDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    sim.corrupt_next(1)
    sim.scan("6291041500213", "]E0")
    sim.write_raw(b"X" * 2000 + b"\r\n")
    sim.scan("96385074", "]E4")
    await until(lambda: drv.good + drv.bad >= 3)
    assert (drv.good, drv.bad) == (1, 2)
    assert [s.code for s in rec.scans] == ["96385074"]
    assert [s.online for s in rec.statuses] == [False, True]


async def test_unplug_and_replug(sim: ScannerSim, driver: tuple[ScannerDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    sim.scan("SKU-1")
    await until(lambda: len(rec.scans) == 1)

    sim.unplug()
    assert not sim.link_path.exists()
    await until(lambda: drv.online is False)
    assert rec.statuses[-1].error
    sim.scan("lost while unplugged")
    assert sim.dropped == 1
    await asyncio.sleep(0.3)  # a few failed reopen attempts, each backed off

    sim.replug()
    await until(lambda: drv.online)
    sim.scan("SKU-2")
    await until(lambda: len(rec.scans) == 2)
    assert [s.code for s in rec.scans] == ["SKU-1", "SKU-2"]
    assert drv.reconnects == 1
    assert [s.online for s in rec.statuses] == [False, True, False, True]


async def test_partial_line_at_unplug_is_not_glued_to_the_next(
        sim: ScannerSim, driver: tuple[ScannerDriver, Recorder]) -> None:
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    sim.write_raw(b"]E0629104")  # the cable comes out mid-line
    await asyncio.sleep(0.05)
    sim.unplug()
    await until(lambda: drv.online is False)
    sim.replug()
    await until(lambda: drv.online)
    sim.scan("96385074", "]E4")
    await until(lambda: len(rec.scans) == 1)
    assert rec.scans[0].code == "96385074" and drv.bad == 0


async def test_cancel_closes_the_port(sim: ScannerSim, store_id: str) -> None:
    drv = ScannerDriver(make_device(sim), store_id, lambda batch: None, lambda status: None)
    sim.start()
    task = asyncio.create_task(drv.run())
    await until(lambda: drv.online)
    assert not port_is_free(sim.link_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert port_is_free(sim.link_path)


async def test_throughput(sim: ScannerSim, driver: tuple[ScannerDriver, Recorder]) -> None:
    """Far beyond a human with a scanner: a burst of 2,000 lines arrives whole and in order."""
    drv, rec = driver
    sim.start()
    await until(lambda: drv.online)
    n, batch = 2000, 50  # 50 short lines fit the pty's buffer with room to spare
    started = time.perf_counter()
    for first in range(0, n, batch):
        for i in range(first, first + batch):
            sim.scan(f"SKU-{i}")
        sent = first + batch
        await until(lambda: len(rec.scans) == sent)  # noqa: B023 (awaited in this iteration)
    elapsed = time.perf_counter() - started
    assert sim.dropped == 0
    assert [s.code for s in rec.scans] == [f"SKU-{i}" for i in range(n)]
    print(f"scanner: {n} lines in {elapsed:.3f}s = {n / elapsed:.0f} lines/s")
