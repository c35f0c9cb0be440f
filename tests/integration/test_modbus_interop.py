"""Interoperability with independent Modbus implementations, both ways, over real ptys.

- Our driver (its register maps) against controllers served by pymodbus's own server, whose
  register values pymodbus encodes itself: two slaves on one line, our layout and the float32
  kilogram one.
- Debian's ``mbpoll`` (libmodbus, C; installed by scripts/setup.sh) as the master reading and
  taring our simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import subprocess
import threading
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.shelf_modbus.config import ShelfModbusDevice
from devices.shelf_modbus.driver import ShelfModbusDriver
from devices.shelf_modbus.register_map import named_map
from firmware_sim.modbus_shelf import ModbusShelfSim, ShelfController
from storeedge.events import DeviceStatus, ShelfWeight
from tests.waiting import until

to_registers = ModbusClientMixin.convert_to_registers
DATATYPE = ModbusClientMixin.DATATYPE


class PtyPair:
    """Two pseudo-terminals joined like a null-modem cable: bytes written to one end's tty are
    read from the other's. Each end is a real tty path that pyserial or libmodbus opens."""

    def __init__(self, folder: Path) -> None:
        self.paths: list[Path] = []
        self._fds: list[int] = []
        masters = []
        for name in ("a", "b"):
            master, slave = os.openpty()
            tty.setraw(slave)
            path = folder / f"{name}.tty"
            path.symlink_to(os.ttyname(slave))
            self.paths.append(path)
            self._fds += (master, slave)  # our own slave fd keeps the master readable
            masters.append(master)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, args=masters, daemon=True)
        self._thread.start()

    def _pump(self, a: int, b: int) -> None:
        while True:
            ready, _, _ = select.select([a, b, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for fd in ready:
                os.write(b if fd == a else a, os.read(fd, 4096))

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (*self._fds, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[PtyPair]:
    p = PtyPair(tmp_path)
    yield p
    p.close()


def controllers(port: Path) -> list[ShelfModbusDevice]:
    common = {"type": "shelf_modbus", "port": str(port), "poll_hz": 20, "timeout_seconds": 0.3}
    return [ShelfModbusDevice.model_validate({**common, "id": "ours", "slave": 1,
                                              "lanes": ["A1", "A2"]}),
            ShelfModbusDevice.model_validate({**common, "id": "vendor", "slave": 2,
                                              "lanes": ["B1", "B2"],
                                              "register_map": "float32-kg-cdab"})]


@pytest.fixture
async def pymodbus_server(pair: PtyPair) -> AsyncIterator[ModbusSerialServer]:
    # pymodbus encodes the values: int32 decigrams high word first for slave 1; float32
    # kilograms, its words swapped to low word first, for slave 2.
    ours = [*to_registers(12345, DATATYPE.INT32), *to_registers(-15, DATATYPE.INT32)]
    vendor = [*to_registers(1.5, DATATYPE.FLOAT32, word_order="little"),
              *to_registers(-0.25, DATATYPE.FLOAT32, word_order="little")]
    registers = DataType.REGISTERS
    devices = [
        SimDevice(1, [SimData(0, values=ours, datatype=registers),
                      SimData(0x100, values=[0], datatype=registers),
                      SimData(0x200, values=[0], datatype=registers)]),
        # 1-based 40001.., 40101, 40201.. are wire addresses 0.., 100, 200..
        SimDevice(2, [SimData(0, values=vendor, datatype=registers),
                      SimData(100, values=[0], datatype=registers),
                      SimData(200, values=[0, 0], datatype=registers)]),
    ]
    server = ModbusSerialServer(devices, framer=FramerType.RTU, port=str(pair.paths[1]),
                                baudrate=19200)
    task = asyncio.create_task(server.serve_forever())
    yield server
    await server.shutdown()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_our_driver_reads_and_tares_pymodbus_served_controllers(
        pair: PtyPair, pymodbus_server: ModbusSerialServer, store_id: str) -> None:
    grams: dict[str, float] = {}
    statuses: list[DeviceStatus] = []

    def readings(batch: list[ShelfWeight]) -> None:
        grams.update((w.lane, w.grams) for w in batch)

    drv = ShelfModbusDriver(controllers(pair.paths[0]), store_id, readings, statuses.append,
                            reconnect_initial=0.05, reconnect_max=0.3)
    task = asyncio.create_task(drv.run())
    try:
        await until(lambda: grams == {"A1": 1234.5, "A2": -1.5, "B1": 1500.0, "B2": -250.0},
                    within=10)
        assert drv.polls_failed == 0
        ctx = pymodbus_server.context
        # Tares land in the server's registers: ours with 06 (lane number 2 at 0x0200), the
        # vendor's with 16 (1 at 40201 and 40202, lane by lane).
        await drv.tare("ours", "A2")
        assert await ctx.async_getValues(1, 3, 0x200, 1) == [2]
        await drv.tare("vendor")
        assert await ctx.async_getValues(2, 3, 200, 2) == [1, 1]
        # The vendor's status word says load-cell fault (bit 0): that controller goes offline
        # with the reason, ours goes on.
        await ctx.async_setValues(2, 16, 100, [0x0001])
        await until(lambda: any(s.source == "vendor" and not s.online for s in statuses))
        assert [s.error for s in statuses if s.source == "vendor"][-1] == "status 0x0001: fault"
        await ctx.async_setValues(1, 16, 0, to_registers(5000, DATATYPE.INT32))
        await until(lambda: grams["A1"] == 500.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# mbpoll as the master


def mbpoll(port: Path, *options: str, write: tuple[int, ...] = ()) -> str:
    exe = shutil.which("mbpoll")
    assert exe, "mbpoll is missing: scripts/setup.sh installs it (Debian package mbpoll)"
    result = subprocess.run(
        [exe, "-m", "rtu", "-b", "19200", "-P", "none", "-o", "1", "-1", *options, str(port),
         *map(str, write)],
        capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def values(output: str) -> dict[int, str]:
    """mbpoll's ``[reference]: value`` lines."""
    out = {}
    for line in output.splitlines():
        if line.startswith("[") and "]:" in line:
            ref, _, value = line.partition("]:")
            out[int(ref[1:])] = value.strip()
    return out


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[ModbusShelfSim, ShelfController]]:
    sim = ModbusShelfSim("bus-1", 7, 3, tmp_path / "rs485.tty", seed=1)
    vendor = sim.add(9, 2, register_map=named_map("float32-kg-cdab"))
    sim.start()
    yield sim, vendor
    sim.stop()


def test_mbpoll_reads_and_tares_our_simulator(
        bus: tuple[ModbusShelfSim, ShelfController]) -> None:
    sim, vendor = bus
    for lane, grams in enumerate((1234.5, 0.0, -2.3)):
        sim.set_grams(lane, grams)
    vendor.set_grams(1, 1500.0)
    port = sim.link_path
    # Our layout: input registers, 32-bit integers high word first (-B), PDU addresses (-0).
    ours = values(mbpoll(port, "-a", "7", "-t", "3:int", "-B", "-0", "-r", "0", "-c", "3"))
    assert ours == {0: "12345", 2: "0", 4: "-23"}  # decigrams
    # The status word at input register 0x0100 (256).
    sim.shelf.overload = True
    assert values(mbpoll(port, "-a", "7", "-t", "3", "-0", "-r", "256")) == {256: "1"}
    # The vendor layout: holding registers 1-based, float32 low word first (mbpoll's default).
    assert values(mbpoll(port, "-a", "9", "-t", "4:float", "-r", "1", "-c", "2")) == {
        1: "0", 3: "1.5"}
    # Taring: lane 1 of ours with 06 (one value: lane number 1 at 0x0200), both lanes of the
    # vendor's with 16 (two values: 1 at 40201 and 40202).
    mbpoll(port, "-a", "7", "-t", "4", "-0", "-r", "512", write=(1,))
    mbpoll(port, "-a", "9", "-t", "4", "-r", "201", write=(1, 1))
    assert [sim.net_grams(i) for i in range(3)] == [0.0, 0.0, -2.3]
    assert [vendor.net_grams(i) for i in range(2)] == [0.0, 0.0]
    # A request our simulator must refuse, refused as the protocol says (illegal address).
    exe = shutil.which("mbpoll")
    assert exe
    refused = subprocess.run([exe, "-m", "rtu", "-b", "19200", "-P", "none", "-o", "1", "-1",
                              "-a", "7", "-t", "3", "-0", "-r", "1000", str(port)],
                             capture_output=True, text=True, timeout=20, check=False)
    assert "Illegal data address" in refused.stdout + refused.stderr
    assert sim.frame_errors == 0
