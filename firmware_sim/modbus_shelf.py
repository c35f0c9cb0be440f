"""Wired smart shelf controllers on a real pseudo-terminal, speaking Modbus RTU with our codec.

A ``ShelfController`` is one controller (one slave address): its lanes' loads, tare offsets and
status, served through its register map (``devices.shelf_modbus.register_map``: our own layout by
default, or any other vendor's) for reads with 03 or 04 and tare writes with 06 or 16.
``ModbusShelfSim`` is the RS-485 adapter they hang on: one pty, one or more controllers (``add``),
as several shelves share one bus in a store. Fault injection: gaussian noise on the weights,
corrupted responses, and unplugging and re-plugging the adapter, by hand or from a
``firmware_sim.faults.Faults`` (noise, drift, stuck, corrupt_rate; the store's ``plug_schedule``
calls ``unplug``/``replug``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable

from devices.shelf_modbus.config import DEFAULT_MAP
from devices.shelf_modbus.protocol import (
    MAX_READ_COUNT,
    ExceptionCode,
    ExceptionResponse,
    Frame,
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    RequestParser,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)
from devices.shelf_modbus.register_map import RegisterMap, Write, named_map
from firmware_sim.faults import Faults, ScenarioClock, ValueFilter
from firmware_sim.pty_port import ServingPtySim
from storeedge.errors import UsageError

log = logging.getLogger(__name__)


class ShelfController:
    """One controller: Modbus address ``slave``, ``lane_count`` lanes, laid out as
    ``register_map`` says. Thread-safe: the port's thread serves it while a test sets loads."""

    def __init__(self, slave: int, lane_count: int, *, register_map: RegisterMap | None = None,
                 noise_grams: float = 0.0, rng: random.Random | None = None,
                 faults: Faults | None = None,
                 elapsed: Callable[[], float] | None = None) -> None:
        if not 1 <= slave <= 247:
            raise UsageError(f"slave must be 1..247, got {slave}")
        self.register_map = register_map or named_map(DEFAULT_MAP)
        try:
            self.register_map.check_lanes(lane_count)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self.slave = slave
        self.lane_count = lane_count
        self.noise_grams = noise_grams
        self.overload = self.fault = self.busy = False  # what the status word says
        self.answering = True  # False: powered off, silent on the bus
        self.tares = 0
        self._random = rng or random.Random()
        self._faults = faults or Faults()
        self._values = ValueFilter(self._faults, elapsed or ScenarioClock(), self._random)
        self._load = [0.0] * lane_count
        self._offset = [0.0] * lane_count
        self._lock = threading.Lock()

    # The physical world

    def set_grams(self, lane_index: int, grams: float) -> None:
        """Put ``grams`` of load on a lane (gross: the lane reads it minus its tare offset)."""
        with self._lock:
            self._load[lane_index] = grams

    def net_grams(self, lane_index: int) -> float:
        """What the lane reads without noise."""
        with self._lock:
            return self._load[lane_index] - self._offset[lane_index]

    # Serving

    def answer(self, request: Frame) -> Frame | None:
        """The response to a request for this slave (or a broadcast, acted on and never
        answered); None when it is for another controller."""
        if request.slave not in (self.slave, 0) or not self.answering:
            return None
        if isinstance(request, ReadHoldingRegistersRequest | ReadInputRegistersRequest):
            function = 3 if isinstance(request, ReadHoldingRegistersRequest) else 4
            reply = self._read(function, request.address, request.count)
        elif isinstance(request, WriteSingleRegisterRequest):
            reply = self._write(Write(6, request.address, (request.value,)))
        elif isinstance(request, WriteMultipleRegistersRequest):
            reply = self._write(Write(16, request.address, request.values))
        else:
            return None
        return reply if request.slave else None

    def _refuse(self, function: int, code: ExceptionCode) -> Frame:
        return ExceptionResponse(self.slave, function, code)

    def _read(self, function: int, address: int, count: int) -> Frame:
        if not 1 <= count <= MAX_READ_COUNT:
            return self._refuse(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        table = self._table(function, range(address, address + count))
        if not table:
            return self._refuse(function, ExceptionCode.ILLEGAL_FUNCTION)
        try:
            registers = tuple(table[a] for a in range(address, address + count))
        except KeyError:
            return self._refuse(function, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        if function == 3:
            return ReadHoldingRegistersResponse(self.slave, registers)
        return ReadInputRegistersResponse(self.slave, registers)

    def _table(self, function: int, wanted: range) -> dict[int, int]:
        """The registers this controller shows to ``function`` (weights only when asked for)."""
        m = self.register_map
        table: dict[int, int] = {}
        if function == m.function:
            start, count = m.weights_span(self.lane_count)
            if wanted.start < start + count and start < wanted.stop:
                table.update(enumerate(m.encode_weights(self._grams()), start))
            else:
                table.update(dict.fromkeys(range(start, start + count), 0))
        status = m.status_read()
        if status is not None and status[0] == function:
            table[status[1]] = m.encode_status(overload=self.overload, fault=self.fault,
                                               busy=self.busy)
        return table

    def _grams(self) -> list[float]:
        with self._lock:
            grams = [load - offset for load, offset in zip(self._load, self._offset, strict=True)]
        if self.noise_grams:
            grams = [g + self._random.gauss(0.0, self.noise_grams) for g in grams]
        if self._faults.any:
            grams = [self._values.apply(i, g) for i, g in enumerate(grams)]
        return grams

    def _write(self, write: Write) -> Frame:
        m = self.register_map
        if m.tare is None or write.function != m.tare.function:
            return self._refuse(write.function, ExceptionCode.ILLEGAL_FUNCTION)
        lanes = m.tare_lanes(write, self.lane_count)
        if lanes is None:
            targets = {w.address for w in m.tare_writes(None, self.lane_count)}
            code = (ExceptionCode.ILLEGAL_DATA_VALUE if write.address in targets
                    else ExceptionCode.ILLEGAL_DATA_ADDRESS)
            return self._refuse(write.function, code)
        with self._lock:
            for i in lanes:
                self._offset[i] = self._load[i]
            self.tares += 1
        log.info("shelf sim slave %d: tared lanes %s", self.slave, [i + 1 for i in lanes])
        if write.function == 6:
            return WriteSingleRegisterResponse(self.slave, write.address, write.values[0])
        return WriteMultipleRegistersResponse(self.slave, write.address, len(write.values))


class ModbusShelfSim(ServingPtySim):
    """An RS-485 adapter behind ``link_path`` with one controller (Modbus address ``slave``,
    ``lane_count`` lanes) and any more ``add`` hangs on the same bus.

    ``start()`` plugs it in and answers requests on a thread; ``stop()`` unplugs it and joins the
    thread. Safe to drive from another thread (the test's event loop). ``set_grams`` and
    ``net_grams`` act on the first controller.
    """

    kind = "shelf sim"
    _log = log

    def __init__(
        self,
        device_id: str,
        slave: int,
        lane_count: int,
        link_path: str | os.PathLike[str],
        *,
        register_map: RegisterMap | None = None,
        noise_grams: float = 0.0,
        seed: int | None = None,
        faults: Faults | None = None,
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        self._random = random.Random(seed)
        super().__init__(device_id, link_path, faults, self._random, RequestParser())
        self._elapsed = elapsed
        self.controllers: dict[int, ShelfController] = {}
        self.requests = 0
        self.responses = 0
        self._late: list[float] = []  # delays of the next responses, oldest first
        self.shelf = self.add(slave, lane_count, register_map=register_map,
                              noise_grams=noise_grams)

    def add(self, slave: int, lane_count: int, *, register_map: RegisterMap | None = None,
            noise_grams: float = 0.0) -> ShelfController:
        """Hang another controller on the same bus (before ``start``)."""
        if slave in self.controllers:
            raise UsageError(f"{self.device_id}: slave {slave} is already on this bus")
        controller = ShelfController(slave, lane_count, register_map=register_map,
                                     noise_grams=noise_grams, rng=self._random,
                                     faults=self.faults, elapsed=self._elapsed)
        self.controllers[slave] = controller
        return controller

    def answer_late(self, *seconds: float) -> None:
        """Send each of the next responses this late (past the master's timeout, it arrives
        while the master waits for its next request's answer)."""
        self._late += seconds

    def set_grams(self, lane_index: int, grams: float) -> None:
        self.shelf.set_grams(lane_index, grams)

    def net_grams(self, lane_index: int) -> float:
        return self.shelf.net_grams(lane_index)

    def _handle(self, master: int, request: Frame) -> None:
        self.requests += 1
        for controller in self.controllers.values():
            reply = controller.answer(request)
            if reply is None:
                continue
            if self._late:
                time.sleep(self._late.pop(0))
            if self._send(master, reply.encode()):
                self.responses += 1
