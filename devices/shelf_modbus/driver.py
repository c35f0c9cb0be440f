"""Polls one wired shelf controller over Modbus RTU and reconnects by itself.

pymodbus moves the bytes and does its own RTU framing: an implementation independent of our codec,
against which the simulator's codec gets checked. The registers are decoded with our protocol
helpers. pymodbus' own reconnect task is switched off (``reconnect_delay=0``): the driver opens a
fresh client after each loss, so every loss is seen, reported and backed off in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient

from devices.reconnect import ReconnectingDriver
from devices.shelf_modbus.protocol import TARE_ALL, TARE_REGISTER, decode_lane_weights
from storeedge.errors import DeviceUnavailable, PeerError, UsageError
from storeedge.events import DeviceStatus, ShelfWeight

log = logging.getLogger(__name__)


class ShelfModbusSettings(Protocol):
    """What the driver reads of its config: ``edge_agent.config.ShelfModbusDevice`` has it all.

    A protocol rather than an import, as devices never import the agent (DESIGN.md).
    """

    @property
    def id(self) -> str: ...
    @property
    def port(self) -> str: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def slave(self) -> int: ...
    @property
    def poll_hz(self) -> float: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def lanes(self) -> Sequence[str]: ...


class ShelfModbusDriver(ReconnectingDriver[ShelfModbusSettings]):
    """Reads every lane of one controller ``poll_hz`` times a second until cancelled.

    Each good poll calls ``on_readings`` with one ShelfWeight per lane; all of a poll's readings
    share one ``seq`` (a per-device poll counter). ``on_status`` gets DeviceStatus on every change:
    online after the first good poll, offline (with the reason) when the port vanishes or the
    device misses ``max_failures`` polls in a row. Then the port is closed and reopened after a
    random, growing delay capped at ``reconnect_max`` seconds.

    Counters: ``polls_ok``, ``polls_failed``, ``reconnects`` (times the port was opened again).
    """

    kind = "shelf"
    _log = log

    def __init__(
        self,
        device: ShelfModbusSettings,
        store_id: str,
        on_readings: Callable[[list[ShelfWeight]], None],
        on_status: Callable[[DeviceStatus], None],
        clock: Callable[[], float] = time.time,
        *,
        max_failures: int = 3,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        super().__init__(device, store_id, on_status, clock, target=device.port,
                         reconnect_initial=reconnect_initial, reconnect_max=reconnect_max)
        self.polls_ok = 0
        self.polls_failed = 0
        self._on_readings = on_readings
        self._max_failures = max_failures
        self._client: AsyncModbusSerialClient | None = None
        self._seq = 0

    async def tare(self, lane: str | None = None) -> None:
        """Ask the controller to zero one lane, or every lane when ``lane`` is None.

        Raises DeviceUnavailable when the port is not open or the device does not answer, and
        PeerError when it refuses.
        """
        if lane is None:
            value = TARE_ALL
        elif lane in self.device.lanes:
            value = self.device.lanes.index(lane) + 1
        else:
            raise UsageError(f"shelf {self.device.id} has no lane {lane!r}")
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnavailable(f"{self.device.id}: port {self.device.port} is not open")
        try:
            reply = await client.write_register(TARE_REGISTER, value, device_id=self.device.slave)
        except Exception as exc:  # whatever pymodbus or pyserial raise: the device is not there
            raise DeviceUnavailable(f"{self.device.id}: tare not answered: {exc}") from exc
        if reply.isError():
            raise PeerError(f"tare refused (exception code {reply.exception_code})",
                            source=self.device.id)
        log.info("shelf %s: tared %s", self.device.id, lane or "every lane")

    async def _session(self) -> str:
        """Open the port and poll until it is lost; return why."""
        dev = self.device
        client = AsyncModbusSerialClient(
            dev.port,
            framer=FramerType.RTU,
            baudrate=dev.baudrate,
            timeout=dev.timeout_seconds,
            retries=0,  # a missed poll is retried by the next poll, with fresh weights
            reconnect_delay=0,
            name=dev.id,
        )
        self._client = client
        try:
            try:
                opened = await client.connect()
            except Exception as exc:  # pyserial errors that pymodbus lets through
                return f"cannot open {dev.port}: {exc}"
            if not opened:
                return f"cannot open {dev.port}"
            self._opened()
            log.info("shelf %s: port %s open", dev.id, dev.port)
            return await self._poll(client)
        finally:
            self._close()

    async def _poll(self, client: AsyncModbusSerialClient) -> str:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.device.poll_hz
        failures = 0
        next_at = loop.time()
        while True:
            if not client.connected:
                return f"port {self.device.port} lost"
            try:
                weights = await self._read(client)
            except (DeviceUnavailable, PeerError) as exc:
                self.polls_failed += 1
                failures += 1
                if failures == 1:
                    log.warning("shelf %s: poll failed: %s", self.device.id, exc)
                if failures >= self._max_failures:
                    return f"no valid answer to {failures} polls: {exc}"
            else:
                failures = 0
                self.polls_ok += 1
                self._seq += 1
                now = self._clock()
                self._set_online(True)
                self._on_readings([
                    ShelfWeight(store_id=self.store_id, source=self.device.id, received_ts=now,
                                seq=self._seq, lane=lane, grams=grams)
                    for lane, grams in weights
                ])
            next_at += period
            delay = next_at - loop.time()
            if delay < 0:  # fell behind (timeouts): poll now, do not burst to catch up
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    async def _read(self, client: AsyncModbusSerialClient) -> list[tuple[str, float]]:
        dev = self.device
        try:
            reply = await client.read_input_registers(
                0, count=2 * len(dev.lanes), device_id=dev.slave
            )
        except Exception as exc:  # whatever pymodbus or pyserial raise: the device is not there
            raise DeviceUnavailable(f"{dev.id}: no answer: {exc}") from exc
        if reply.isError():
            raise PeerError(f"read refused (exception code {reply.exception_code})", source=dev.id)
        return decode_lane_weights(reply.registers, dev.lanes)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a vanished port may fail; it is closed either way
                log.debug("shelf %s: close failed: %s", self.device.id, exc)
