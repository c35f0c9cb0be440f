"""Owns one RS-485 port and polls every shelf controller on it in turn; reconnects by itself.

One task per port: several controllers share a bus (each its own slave address), and a bus
carries one transaction at a time. Two clients opening the same tty would interleave their
requests and steal each other's responses, so every read and every tare of a port goes through
its one ``ShelfModbusDriver``.

pymodbus moves the bytes and does its own RTU framing: an implementation independent of our codec,
against which the simulator's codec gets checked. What the registers mean comes from each
controller's register map (``register_map``). pymodbus' own reconnect task is switched off
(``reconnect_delay=0``): the driver opens a fresh client after each loss, so every loss is seen,
reported and backed off in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient

from devices.reconnect import ReconnectingDriver
from devices.shelf_modbus.register_map import RegisterMap, Status, Write
from storeedge.errors import DeviceUnavailable, FrameError, PeerError, UsageError
from storeedge.events import DeviceStatus, ShelfWeight

log = logging.getLogger(__name__)


class ShelfModbusSettings(Protocol):
    """What the driver reads of a controller's config: ``config.ShelfModbusDevice`` has it all.

    A protocol rather than an import, as devices never import the agent (DESIGN.md).
    """

    @property
    def id(self) -> str: ...
    @property
    def port(self) -> str: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def parity(self) -> str: ...
    @property
    def stopbits(self) -> int: ...
    @property
    def slave(self) -> int: ...
    @property
    def poll_hz(self) -> float: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def register_map(self) -> RegisterMap: ...
    @property
    def lanes(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class _Port:
    """The port as the reconnect loop sees it: its path is its id in the log."""

    id: str


@dataclass
class _Shelf:
    """One controller on the port: its schedule, failures and what was last reported."""

    device: ShelfModbusSettings
    next_at: float = 0.0
    failures: int = 0
    online: bool | None = None
    error: str | None = None  # why it was last reported offline
    problem: str | None = None  # the last lanes with bad values logged, to log each once
    seq: int = 0


@dataclass
class _Command:
    shelf: _Shelf
    writes: list[Write]
    done: asyncio.Future[None] = field(repr=False)


class ShelfModbusDriver(ReconnectingDriver[_Port]):
    """Polls each controller on one port ``poll_hz`` times a second, in turn, until cancelled.

    ``devices`` all name the same port and line settings (the store config checks it). Each good
    poll calls ``on_readings`` with one ShelfWeight per lane; a poll's readings share one ``seq``
    (a per-controller poll counter). A lane whose value is not a number is left out and logged.
    ``on_status`` gets a DeviceStatus per controller on every change: online after its first
    good poll; offline (with the reason) when it misses ``max_failures`` polls in a row, or its
    status register reports an overload or fault (its readings are withheld until that clears;
    while it reports busy, taring, they are withheld without more ado). An offline controller is
    asked again every ``offline_poll_seconds`` and the others go on. When no controller answers,
    or the port vanishes, every one is offline and the port is closed and reopened after a
    random, growing delay capped at ``reconnect_max`` seconds.

    Counters: ``polls_ok``, ``polls_failed``, ``reconnects`` (times the port was opened again).
    """

    kind = "shelf port"
    _log = log

    def __init__(
        self,
        devices: Sequence[ShelfModbusSettings],
        store_id: str,
        on_readings: Callable[[list[ShelfWeight]], None],
        on_status: Callable[[DeviceStatus], None],
        clock: Callable[[], float] = time.time,
        *,
        max_failures: int = 3,
        offline_poll_seconds: float = 1.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        if not devices:
            raise UsageError("a shelf port driver needs at least one controller")
        first = devices[0]
        for dev in devices[1:]:
            if dev.port != first.port:
                raise UsageError(f"shelf {dev.id} is on {dev.port}, not {first.port}")
        super().__init__(_Port(first.port), store_id, on_status, clock, target=first.port,
                         reconnect_initial=reconnect_initial, reconnect_max=reconnect_max)
        self.polls_ok = 0
        self.polls_failed = 0
        self._shelves = [_Shelf(dev) for dev in devices]
        self._by_id = {s.device.id: s for s in self._shelves}
        self._on_readings = on_readings
        self._max_failures = max_failures
        self._offline_poll = offline_poll_seconds
        self._client: AsyncModbusSerialClient | None = None
        self._commands: list[_Command] = []
        self._wake = asyncio.Event()

    async def tare(self, device_id: str, lane: str | None = None) -> None:
        """Ask a controller to zero one lane, or every lane when ``lane`` is None; the port's
        task sends it between two polls.

        Raises UsageError for an unknown controller or lane or a map without a tare command,
        DeviceUnavailable when the port is not open or the controller does not answer, and
        PeerError when it refuses.
        """
        shelf = self._by_id.get(device_id)
        if shelf is None:
            raise UsageError(f"no shelf {device_id!r} on port {self.device.id}")
        dev = shelf.device
        if lane is not None and lane not in dev.lanes:
            raise UsageError(f"shelf {dev.id} has no lane {lane!r}")
        index = None if lane is None else list(dev.lanes).index(lane)
        writes = dev.register_map.tare_writes(index, len(dev.lanes))
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnavailable(f"{dev.id}: port {dev.port} is not open")
        command = _Command(shelf, writes, asyncio.get_running_loop().create_future())
        self._commands.append(command)
        self._wake.set()
        await command.done
        log.info("shelf %s: tared %s", dev.id, lane or "every lane")

    # The port's task

    async def _session(self) -> str:
        """Open the port and poll until it is lost; return why."""
        dev = self._shelves[0].device
        client = AsyncModbusSerialClient(
            dev.port,
            framer=FramerType.RTU,
            baudrate=dev.baudrate,
            parity=dev.parity,
            stopbits=dev.stopbits,
            timeout=dev.timeout_seconds,
            retries=0,  # a missed poll is retried by the next poll, with fresh weights
            reconnect_delay=0,
            name=dev.port,
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
            log.info("shelf port %s open (%d controllers)", dev.port, len(self._shelves))
            return await self._poll(client)
        finally:
            self._close()

    async def _poll(self, client: AsyncModbusSerialClient) -> str:
        loop = asyncio.get_running_loop()
        for shelf in self._shelves:
            shelf.next_at, shelf.failures = loop.time(), 0
        while True:
            if not client.connected:
                return f"port {self.device.id} lost"
            if self._commands:
                await self._send_command(client, self._commands.pop(0))
                continue
            shelf = min(self._shelves, key=_due)
            delay = shelf.next_at - loop.time()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()  # a tare to send
                continue
            await self._poll_shelf(client, shelf)
            period = 1.0 / shelf.device.poll_hz
            if shelf.online is False and shelf.failures:
                period = max(period, self._offline_poll)
            # Fell behind (timeouts): poll when due again, do not burst to catch up.
            shelf.next_at = max(shelf.next_at + period, loop.time())
            if all(s.failures >= self._max_failures for s in self._shelves):
                return f"no valid answer from any controller on {self.device.id}"

    async def _poll_shelf(self, client: AsyncModbusSerialClient, shelf: _Shelf) -> None:
        dev = shelf.device
        try:
            weights, problems = await self._read_weights(client, dev)
            status = await self._read_status(client, dev)
        except (DeviceUnavailable, PeerError) as exc:
            self.polls_failed += 1
            shelf.failures += 1
            if shelf.failures == 1:
                log.warning("shelf %s: poll failed: %s", dev.id, exc)
            if shelf.failures >= self._max_failures:
                self._report(shelf, False, f"no valid answer to {shelf.failures} polls: {exc}")
            return
        self.polls_ok += 1
        shelf.failures = 0
        if status is not None and status.problem:
            self._report(shelf, False, status.problem, again=status.problem != shelf.error)
            return
        self._report(shelf, True)
        self._set_online(True)
        if status is not None and status.busy:
            return
        problem = "; ".join(problems) or None
        if problem != shelf.problem and problem:
            log.warning("shelf %s: %s", dev.id, problem)
        shelf.problem = problem
        shelf.seq += 1
        now = self._clock()
        self._on_readings([
            ShelfWeight(store_id=self.store_id, source=dev.id, received_ts=now, seq=shelf.seq,
                        lane=lane, grams=grams)
            for lane, grams in weights
        ])

    async def _read_weights(self, client: AsyncModbusSerialClient, dev: ShelfModbusSettings
                            ) -> tuple[list[tuple[str, float]], list[str]]:
        m = dev.register_map
        address, count = m.weights_span(len(dev.lanes))
        registers = await _read(client, dev, m.function, address, count)
        try:
            return m.decode_weights(registers, dev.lanes)
        except PeerError as exc:
            raise PeerError(str(exc), source=dev.id) from None

    async def _read_status(self, client: AsyncModbusSerialClient,
                           dev: ShelfModbusSettings) -> Status | None:
        m = dev.register_map
        where = m.status_read()
        if where is None:
            return None
        [word] = await _read(client, dev, where[0], where[1], 1)
        return m.decode_status(word)

    async def _send_command(self, client: AsyncModbusSerialClient, command: _Command) -> None:
        if command.done.done():  # the caller gave up waiting
            return
        dev = command.shelf.device
        try:
            for write in command.writes:
                await _write(client, dev, write)
        except (DeviceUnavailable, PeerError) as exc:
            command.done.set_exception(exc)
        else:
            command.done.set_result(None)

    def _report(self, shelf: _Shelf, online: bool, error: str | None = None, *,
                again: bool = False) -> None:
        """Report a controller's state on a change (or ``again``, with a new reason)."""
        if shelf.online is online and not again:
            return
        shelf.online, shelf.error = online, error
        dev = shelf.device
        if online:
            log.info("shelf %s: online", dev.id)
        else:
            log.warning("shelf %s: offline: %s", dev.id, error)
        self._on_status(DeviceStatus(store_id=self.store_id, source=dev.id,
                                     received_ts=self._clock(), online=online, error=error))

    def _set_online(self, online: bool, error: str | None = None) -> None:
        """The port's state: online once any controller answered; a lost port takes every
        controller offline with it."""
        self._online = online
        if not online:
            for shelf in self._shelves:
                self._report(shelf, False, error)

    def _close(self) -> None:
        client, self._client = self._client, None
        commands, self._commands = self._commands, []
        for command in commands:
            if not command.done.done():
                command.done.set_exception(DeviceUnavailable(
                    f"{command.shelf.device.id}: port {self.device.id} closed"))
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a vanished port may fail; it is closed either way
                log.debug("shelf port %s: close failed: %s", self.device.id, exc)


def _due(shelf: _Shelf) -> float:
    return shelf.next_at


def _raise_if_cancelled() -> None:
    """Before Python 3.12, ``asyncio.wait_for`` (which pymodbus awaits each answer with) loses a
    cancellation that meets the answer or the timeout: it returns the answer or raises a
    TimeoutError instead, and the port's task would poll on forever. A cancelled task says so in
    ``cancelling()`` all the same, so every transaction checks it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _read(client: AsyncModbusSerialClient, dev: ShelfModbusSettings, function: int,
                address: int, count: int) -> list[int]:
    read = client.read_holding_registers if function == 3 else client.read_input_registers
    try:
        reply = await read(address, count=count, device_id=dev.slave)
    except Exception as exc:  # whatever pymodbus or pyserial raise: the device is not there
        _raise_if_cancelled()
        raise DeviceUnavailable(f"{dev.id}: no answer: {exc}") from exc
    _raise_if_cancelled()
    if reply.isError():
        raise PeerError(f"read of {count} registers at {address} with function {function} "
                        f"refused (exception code {reply.exception_code})", source=dev.id)
    # RTU has no transaction ids: an answer that came after its request timed out can be taken
    # for the next request's. Its size or sender gives it away.
    if len(reply.registers) != count or reply.dev_id != dev.slave:
        raise FrameError(f"bad length: {len(reply.registers)} registers from slave "
                         f"{reply.dev_id}, asked slave {dev.slave} for {count}", source=dev.id)
    return list(reply.registers)


async def _write(client: AsyncModbusSerialClient, dev: ShelfModbusSettings, write: Write) -> None:
    try:
        if write.function == 6:
            reply = await client.write_register(write.address, write.values[0],
                                                device_id=dev.slave)
        else:
            reply = await client.write_registers(write.address, list(write.values),
                                                 device_id=dev.slave)
    except Exception as exc:  # whatever pymodbus or pyserial raise: the device is not there
        _raise_if_cancelled()
        raise DeviceUnavailable(f"{dev.id}: tare not answered: {exc}") from exc
    _raise_if_cancelled()
    if reply.isError():
        raise PeerError(f"tare refused (exception code {reply.exception_code})", source=dev.id)
