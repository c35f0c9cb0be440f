"""Modbus RTU for the wired smart shelf: a sans-I/O codec (bytes in, frames out, and the reverse).

No sockets, no clocks: the driver and the simulator move the bytes. Only what shelf controllers
speak is implemented (Modbus Application Protocol V1.1b3): 0x03 Read Holding Registers (6.3),
0x04 Read Input Registers (6.4), 0x06 Write Single Register (6.6), 0x10 Write Multiple Registers
(6.12) and exception responses (function | 0x80, section 7).

RTU frame (Modbus over Serial Line V1.02, 2.5.1): ``slave(1) function(1) data(n) crc(2)``; the
CRC is CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF) sent low byte first; every 16-bit field
inside is big-endian. Where a controller keeps its weights, status and tare command is its
register map (``register_map``), not the codec's business.

Parsing: real RTU delimits frames by 3.5 characters of line silence, which a byte stream does not
show. The parsers instead take the frame length from the function code (and byte count) and accept
a frame only when its CRC matches; on a mismatch they drop one byte and retry. A false header in
garbage cannot stall them: while a candidate frame is incomplete they also look further on for a
complete, CRC-valid frame and skip to it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from storeedge.errors import FrameError, UsageError

READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
WRITE_SINGLE_REGISTER = 0x06
WRITE_MULTIPLE_REGISTERS = 0x10
EXCEPTION_BIT = 0x80

MAX_READ_COUNT = 125  # registers per 03/04 request (6.3, 6.4)
MAX_WRITE_COUNT = 123  # registers per 0x10 request (6.12)
MAX_FRAME = 256


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes the shelf uses."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of ``data`` (sent on the wire low byte first)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def _u16(name: str, value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise UsageError(f"{name} must be 0..65535, got {value}")
    return value


def _slave(value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise UsageError(f"slave address must be 0..255, got {value}")
    return value


# Frames


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of every Modbus RTU frame; ``encode()`` gives the bytes with the CRC."""

    slave: int

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ReadInputRegistersRequest(Frame):
    """0x04 request: read ``count`` input registers from ``address``."""

    address: int
    count: int

    def encode(self) -> bytes:
        return _encode_read(READ_INPUT_REGISTERS, self.slave, self.address, self.count)


@dataclass(frozen=True, slots=True)
class ReadInputRegistersResponse(Frame):
    """0x04 response: the register values read, each 0..65535."""

    registers: tuple[int, ...]

    def encode(self) -> bytes:
        return _encode_registers(READ_INPUT_REGISTERS, self.slave, self.registers)


@dataclass(frozen=True, slots=True)
class ReadHoldingRegistersRequest(Frame):
    """0x03 request: read ``count`` holding registers from ``address``."""

    address: int
    count: int

    def encode(self) -> bytes:
        return _encode_read(READ_HOLDING_REGISTERS, self.slave, self.address, self.count)


@dataclass(frozen=True, slots=True)
class ReadHoldingRegistersResponse(Frame):
    """0x03 response: the register values read, each 0..65535."""

    registers: tuple[int, ...]

    def encode(self) -> bytes:
        return _encode_registers(READ_HOLDING_REGISTERS, self.slave, self.registers)


@dataclass(frozen=True, slots=True)
class WriteMultipleRegistersRequest(Frame):
    """0x10 request: write ``values`` to the holding registers from ``address`` on."""

    address: int
    values: tuple[int, ...]

    def encode(self) -> bytes:
        if not 1 <= len(self.values) <= MAX_WRITE_COUNT:
            raise UsageError(f"a write carries 1..{MAX_WRITE_COUNT} registers, "
                             f"got {len(self.values)}")
        data = b"".join(_u16("value", v).to_bytes(2, "big") for v in self.values)
        return _with_crc(
            bytes((_slave(self.slave), WRITE_MULTIPLE_REGISTERS))
            + _u16("address", self.address).to_bytes(2, "big")
            + len(self.values).to_bytes(2, "big") + bytes((len(data),)) + data
        )


@dataclass(frozen=True, slots=True)
class WriteMultipleRegistersResponse(Frame):
    """0x10 response: the address and the number of registers written."""

    address: int
    count: int

    def encode(self) -> bytes:
        return _encode_read(WRITE_MULTIPLE_REGISTERS, self.slave, self.address, self.count)


@dataclass(frozen=True, slots=True)
class WriteSingleRegisterRequest(Frame):
    """0x06 request: write ``value`` to holding register ``address``."""

    address: int
    value: int

    def encode(self) -> bytes:
        return _encode_write(self.slave, self.address, self.value)


@dataclass(frozen=True, slots=True)
class WriteSingleRegisterResponse(Frame):
    """0x06 response: the echo of the request once the register is written."""

    address: int
    value: int

    def encode(self) -> bytes:
        return _encode_write(self.slave, self.address, self.value)


@dataclass(frozen=True, slots=True)
class ExceptionResponse(Frame):
    """The slave refused a well-formed request: ``function`` is the request's (without 0x80)."""

    function: int
    code: int

    def encode(self) -> bytes:
        if self.function not in _KNOWN_FUNCTIONS:
            raise UsageError(f"unsupported function 0x{self.function:02x}")
        if not 0 <= self.code <= 0xFF:
            raise UsageError(f"exception code must be 0..255, got {self.code}")
        return _with_crc(bytes((_slave(self.slave), self.function | EXCEPTION_BIT, self.code)))


def _encode_read(function: int, slave: int, address: int, count: int) -> bytes:
    return _with_crc(
        bytes((_slave(slave), function))
        + _u16("address", address).to_bytes(2, "big")
        + _u16("count", count).to_bytes(2, "big")
    )


def _encode_registers(function: int, slave: int, registers: tuple[int, ...]) -> bytes:
    if not 1 <= len(registers) <= MAX_READ_COUNT:
        raise UsageError(f"a response carries 1..{MAX_READ_COUNT} registers, "
                         f"got {len(registers)}")
    data = b"".join(_u16("register", r).to_bytes(2, "big") for r in registers)
    return _with_crc(bytes((_slave(slave), function, len(data))) + data)


def _encode_write(slave: int, address: int, value: int) -> bytes:
    return _with_crc(
        bytes((_slave(slave), WRITE_SINGLE_REGISTER))
        + _u16("address", address).to_bytes(2, "big")
        + _u16("value", value).to_bytes(2, "big")
    )


_KNOWN_FUNCTIONS = (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS, WRITE_SINGLE_REGISTER,
                    WRITE_MULTIPLE_REGISTERS)
_READS = (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS)


# Whole-frame decoders


def _check_crc(frame: bytes | bytearray) -> None:
    if len(frame) < 4:
        raise FrameError(f"bad length: {len(frame)} bytes is shorter than any frame")
    got = int.from_bytes(frame[-2:], "little")
    want = crc16(frame[:-2])
    if got != want:
        raise FrameError(f"CRC mismatch: frame says 0x{got:04x}, bytes give 0x{want:04x}")


def _request_length(buf: bytes | bytearray, start: int) -> int:
    """Length of the request starting at ``start`` (0 when not yet known), FrameError if none."""
    function = buf[start + 1]
    if function == WRITE_MULTIPLE_REGISTERS:
        if len(buf) - start < 7:
            return 0
        count = int.from_bytes(buf[start + 4:start + 6], "big")
        size = buf[start + 6]
        if not 1 <= count <= MAX_WRITE_COUNT or size != 2 * count:
            raise FrameError(f"bad length: {count} registers in {size} bytes")
        return 9 + size
    if function in _KNOWN_FUNCTIONS:
        return 8
    raise FrameError(f"unknown function 0x{function:02x}")


def _response_length(buf: bytes | bytearray, start: int) -> int:
    function = buf[start + 1]
    if function in (WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS):
        return 8
    if function & EXCEPTION_BIT and function & ~EXCEPTION_BIT in _KNOWN_FUNCTIONS:
        return 5
    if function in _READS:
        if len(buf) - start < 3:
            return 0
        count = buf[start + 2]
        if count == 0 or count % 2 or count > 2 * MAX_READ_COUNT:
            raise FrameError(f"bad length: byte count {count} is not an even 2..250")
        return 5 + count
    raise FrameError(f"unknown function 0x{function:02x}")


Request = (ReadHoldingRegistersRequest | ReadInputRegistersRequest | WriteSingleRegisterRequest
           | WriteMultipleRegistersRequest)
Response = (ReadHoldingRegistersResponse | ReadInputRegistersResponse
            | WriteSingleRegisterResponse | WriteMultipleRegistersResponse | ExceptionResponse)


def decode_request(frame: bytes | bytearray) -> Request:
    """Decode one complete request frame; FrameError when it is not exactly one valid request."""
    if len(frame) >= 2:
        length = _request_length(frame, 0)
        if len(frame) != length:
            raise FrameError(f"bad length: {len(frame)} bytes, function needs {length}")
    _check_crc(frame)
    slave, function = frame[0], frame[1]
    a = int.from_bytes(frame[2:4], "big")
    b = int.from_bytes(frame[4:6], "big")
    if function == READ_HOLDING_REGISTERS:
        return ReadHoldingRegistersRequest(slave, a, b)
    if function == READ_INPUT_REGISTERS:
        return ReadInputRegistersRequest(slave, a, b)
    if function == WRITE_MULTIPLE_REGISTERS:
        return WriteMultipleRegistersRequest(slave, a, _registers(frame[7:-2]))
    return WriteSingleRegisterRequest(slave, a, b)


def decode_response(frame: bytes | bytearray) -> Response:
    """Decode one complete response frame; FrameError when it is not exactly one valid response."""
    if len(frame) >= 3:
        length = _response_length(frame, 0)
        if len(frame) != length:
            raise FrameError(f"bad length: {len(frame)} bytes, header says {length}")
    _check_crc(frame)
    slave, function = frame[0], frame[1]
    if function & EXCEPTION_BIT:
        return ExceptionResponse(slave, function & ~EXCEPTION_BIT, frame[2])
    a = int.from_bytes(frame[2:4], "big")
    b = int.from_bytes(frame[4:6], "big")
    if function == WRITE_SINGLE_REGISTER:
        return WriteSingleRegisterResponse(slave, a, b)
    if function == WRITE_MULTIPLE_REGISTERS:
        return WriteMultipleRegistersResponse(slave, a, b)
    if function == READ_HOLDING_REGISTERS:
        return ReadHoldingRegistersResponse(slave, _registers(frame[3:-2]))
    return ReadInputRegistersResponse(slave, _registers(frame[3:-2]))


def _registers(data: bytes | bytearray) -> tuple[int, ...]:
    return tuple(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))


# Incremental parsers


class _Parser:
    """Shared resynchronising parser; subclasses say how long a frame is and how to decode it."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames_ok = 0
        self.errors = 0
        self.bytes_dropped = 0
        self.last_error: FrameError | None = None

    @staticmethod
    def _length(buf: bytearray, start: int) -> int:
        raise NotImplementedError

    @staticmethod
    def _decode(frame: bytes) -> Frame:
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Add received bytes; return the frames they complete, oldest first.

        Never raises for bad input: each bad frame adds one to ``errors`` and is kept in
        ``last_error``; the dropped bytes add to ``bytes_dropped``.
        """
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        while len(buf) >= 2:
            state = self._frame_at(buf, 0)
            if isinstance(state, FrameError):
                self._drop(1, state)
                continue
            if state:
                frames.append(self._decode(bytes(buf[:state])))
                del buf[:state]
                self.frames_ok += 1
                continue
            # Incomplete: skip to a complete frame further on, if the stream already holds one.
            skip = next((i for i in range(1, len(buf) - 3) if self._frame_at(buf, i, True)), 0)
            if not skip:
                break
            self._drop(skip, FrameError(f"garbage: {skip} bytes before a valid frame"))
        return frames

    def reset(self) -> None:
        """Forget any partial frame (the I/O layer saw a line silence or reopened the port)."""
        self._buf.clear()

    def _frame_at(self, buf: bytearray, start: int, quiet: bool = False) -> int | FrameError:
        """Length of the valid frame at ``start``, 0 if incomplete, or the FrameError."""
        try:
            length = self._length(buf, start)
        except FrameError as exc:
            return 0 if quiet else exc
        if length == 0 or len(buf) - start < length:
            return 0
        body_end = start + length - 2
        if int.from_bytes(buf[body_end:body_end + 2], "little") != crc16(
            memoryview(buf)[start:body_end]
        ):
            return 0 if quiet else FrameError("CRC mismatch")
        return length

    def _drop(self, count: int, error: FrameError) -> None:
        del self._buf[:count]
        self.bytes_dropped += count
        self.errors += 1
        self.last_error = error


class RequestParser(_Parser):
    """Slave side: bytes from the master in, request frames out."""

    _length = staticmethod(_request_length)
    _decode = staticmethod(decode_request)  # type: ignore[assignment]


class ResponseParser(_Parser):
    """Master side: bytes from the slave in, response frames out."""

    _length = staticmethod(_response_length)
    _decode = staticmethod(decode_response)  # type: ignore[assignment]
