"""A wired smart shelf controller on a real pseudo-terminal, speaking Modbus RTU with our codec.

It answers Read Input Registers for the lane weights and the status word and Write Single Register
for the tare command, as documented in ``devices.shelf_modbus.protocol``. Fault injection: gaussian
noise on the weights, corrupted responses, and unplugging and re-plugging the adapter, by hand or
from a ``firmware_sim.faults.Faults`` (noise, drift, stuck, corrupt_rate; the store's
``plug_schedule`` calls ``unplug``/``replug``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import threading
from collections.abc import Callable
from pathlib import Path

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
from firmware_sim.faults import ByteFilter, Faults, ScenarioClock, ValueFilter
from firmware_sim.pty_port import PtyPort
from storeedge.errors import UsageError

log = logging.getLogger(__name__)


class ModbusShelfSim:
    """A shelf controller: Modbus address ``slave``, ``lane_count`` lanes, behind ``link_path``.

    ``start()`` plugs it in and answers requests on a thread; ``stop()`` unplugs it and joins the
    thread. Safe to drive from another thread (the test's event loop).
    """

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
        self.device_id = device_id
        self.slave = slave
        self.lane_count = lane_count
        self.noise_grams = noise_grams
        self.status = StatusBits(0)
        self.port = PtyPort(link_path)
        self.requests = 0
        self.responses = 0
        self._parser = RequestParser()
        self._load = [0.0] * lane_count
        self._offset = [0.0] * lane_count
        self._corrupt = 0
        self._random = random.Random(seed)
        self.faults = faults or Faults()
        self._values = ValueFilter(self.faults, elapsed or ScenarioClock(), self._random)
        self._bytes = ByteFilter(self.faults, self._random)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1

    @property
    def link_path(self) -> Path:
        return self.port.link_path

    @property
    def frame_errors(self) -> int:
        """Bad request frames seen (CRC, unknown function, garbage)."""
        return self._parser.errors

    # The physical world

    def set_grams(self, lane_index: int, grams: float) -> None:
        """Put ``grams`` of load on a lane (gross: the lane reads it minus its tare offset)."""
        with self._lock:
            self._load[lane_index] = grams

    def net_grams(self, lane_index: int) -> float:
        """What the lane reads without noise."""
        with self._lock:
            return self._load[lane_index] - self._offset[lane_index]

    def corrupt_next(self, n: int) -> None:
        """Flip a byte in each of the next ``n`` responses, so the master sees a bad CRC."""
        with self._lock:
            self._corrupt += n

    # Plugging

    def start(self) -> None:
        """Plug the adapter in and start answering."""
        if self._thread is not None:
            raise UsageError(f"{self.device_id}: simulator already started")
        self.port.open()
        self._parser.reset()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._serve, name=f"modbus-shelf-{self.device_id}", daemon=True
        )
        self._thread.start()
        log.info("shelf sim %s plugged in at %s", self.device_id, self.link_path)

    def stop(self) -> None:
        """Stop answering and unplug (idempotent)."""
        if self._thread is None:
            return
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._thread = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.port.close()
        log.info("shelf sim %s unplugged", self.device_id)

    def unplug(self) -> None:
        """Pull the adapter out: the agent's port hangs up and its path disappears."""
        self.stop()

    def replug(self) -> None:
        """Plug the adapter back in: a new pty behind the same path."""
        self.start()

    # Serving

    def _serve(self) -> None:
        master = self.port.master_fd
        while True:
            ready, _, _ = select.select([master, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                data = os.read(master, 4096)
            except OSError as exc:
                log.warning("shelf sim %s: read failed: %s", self.device_id, exc)
                return
            for request in self._parser.feed(data):
                self.requests += 1
                reply = self._answer(request)
                if reply is not None:
                    self._send(master, reply)

    def _send(self, master: int, frame: bytes) -> None:
        with self._lock:
            forced = self._corrupt > 0
            if forced:
                self._corrupt -= 1
            frame = self._bytes.apply(frame, force=forced)
        with contextlib.suppress(OSError):  # unplugged while answering
            os.write(master, frame)
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
