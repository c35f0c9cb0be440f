"""A wired smart shelf controller on a real pseudo-terminal, speaking Modbus RTU with our codec.

It answers Read Input Registers for the lane weights and the status word and Write Single Register
for the tare command, as documented in ``devices.shelf_modbus.protocol``. Fault injection: gaussian
noise on the weights, corrupted responses, and unplugging and re-plugging the adapter, by hand or
from a ``firmware_sim.faults.Faults`` (noise, drift, stuck, corrupt_rate; the store's
``plug_schedule`` calls ``unplug``/``replug``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable

from devices.shelf_modbus.protocol import (
    MAX_READ_COUNT,
    STATUS_REGISTER,
    TARE_ALL,
    TARE_REGISTER,
    ExceptionCode,
    ExceptionResponse,
    Frame,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    RequestParser,
    StatusBits,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
    encode_lane_weights,
)
from firmware_sim.faults import Faults, ScenarioClock, ValueFilter
from firmware_sim.pty_port import ServingPtySim
from storeedge.errors import UsageError

log = logging.getLogger(__name__)


class ModbusShelfSim(ServingPtySim):
    """A shelf controller: Modbus address ``slave``, ``lane_count`` lanes, behind ``link_path``.

    ``start()`` plugs it in and answers requests on a thread; ``stop()`` unplugs it and joins the
    thread. Safe to drive from another thread (the test's event loop).
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
        noise_grams: float = 0.0,
        seed: int | None = None,
        faults: Faults | None = None,
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        if not 1 <= lane_count <= MAX_READ_COUNT // 2:
            raise UsageError(f"lane_count must be 1..{MAX_READ_COUNT // 2}, got {lane_count}")
        self._random = random.Random(seed)
        super().__init__(device_id, link_path, faults, self._random, RequestParser())
        self.slave = slave
        self.lane_count = lane_count
        self.noise_grams = noise_grams
        self.status = StatusBits(0)
        self.requests = 0
        self.responses = 0
        self._load = [0.0] * lane_count
        self._offset = [0.0] * lane_count
        self._values = ValueFilter(self.faults, elapsed or ScenarioClock(), self._random)
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

    def _handle(self, master: int, request: Frame) -> None:
        self.requests += 1
        reply = self._answer(request)
        if reply is not None and self._send(master, reply):
            self.responses += 1

    def _answer(self, request: Frame) -> bytes | None:
        if request.slave not in (self.slave, 0):
            return None  # another controller on the bus
        if isinstance(request, ReadInputRegistersRequest):
            reply: Frame = self._read(request)
        elif isinstance(request, WriteSingleRegisterRequest):
            reply = self._write(request)
        else:
            return None
        # Broadcasts are acted on, never answered.
        return reply.encode() if request.slave else None

    def _read(self, req: ReadInputRegistersRequest) -> Frame:
        if not 1 <= req.count <= MAX_READ_COUNT:
            return ExceptionResponse(self.slave, 0x04, ExceptionCode.ILLEGAL_DATA_VALUE)
        if req.address == STATUS_REGISTER and req.count == 1:
            return ReadInputRegistersResponse(self.slave, (int(self.status),))
        if req.address + req.count > 2 * self.lane_count:
            return ExceptionResponse(self.slave, 0x04, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        with self._lock:
            grams = [load - offset for load, offset in zip(self._load, self._offset, strict=True)]
            if self.noise_grams:
                grams = [g + self._random.gauss(0.0, self.noise_grams) for g in grams]
        if self.faults.any:
            grams = [self._values.apply(i, g) for i, g in enumerate(grams)]
        registers = encode_lane_weights(grams)
        return ReadInputRegistersResponse(
            self.slave, tuple(registers[req.address:req.address + req.count])
        )

    def _write(self, req: WriteSingleRegisterRequest) -> Frame:
        if req.address != TARE_REGISTER:
            return ExceptionResponse(self.slave, 0x06, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        with self._lock:
            if req.value == TARE_ALL:
                self._offset = list(self._load)
            elif 1 <= req.value <= self.lane_count:
                self._offset[req.value - 1] = self._load[req.value - 1]
            else:
                return ExceptionResponse(self.slave, 0x06, ExceptionCode.ILLEGAL_DATA_VALUE)
        log.info("shelf sim %s: tare %#06x", self.device_id, req.value)
        return WriteSingleRegisterResponse(self.slave, req.address, req.value)
