"""The M100/R200-family UHF module serial protocol (MagicRF M100, JRD-4035, YRM100, R200): a
sans-I/O codec.

Frame, every multi-byte field big-endian::

    0xBB | type(1) | command(1) | length(2) | payload(length) | checksum(1) | 0x7E

``type`` is 0x00 for a command (host -> module), 0x01 a response, 0x02 a notice (a tag
inventoried). ``checksum`` is the low byte of the sum of type..payload. Some R200 firmware frames
the same content between 0xAA and 0xDD instead: ``Framing.AADD``.

Commands used: 0x03 get module info (payload: 0x00 hardware, 0x01 software, 0x02 manufacturer),
0x22 single inventory, 0x27 multiple inventory (payload: reserved 0x22, count big-endian), 0x28
stop multiple inventory. A tag notice (type 0x02, command 0x22) carries
``RSSI(1, signed dBm) | PC(2) | EPC(length - 5) | CRC(2)``; an error is a response with command
0xFF and a one-byte code (0x15: the inventory found no tag).

Parsing resynchronises on garbage: a candidate frame is accepted only when its end byte and
checksum match, else one byte is dropped and the search goes on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from storeedge.errors import FrameError, UsageError
from storeedge.events import TagRead


class Framing(enum.StrEnum):
    """Start and end bytes: ``bb7e`` (M100) or ``aadd`` (some R200 firmware)."""

    BB7E = "bb7e"
    AADD = "aadd"


_DELIMITERS = {Framing.BB7E: (0xBB, 0x7E), Framing.AADD: (0xAA, 0xDD)}


class FrameType(enum.IntEnum):
    COMMAND = 0x00
    RESPONSE = 0x01
    NOTICE = 0x02


class Command(enum.IntEnum):
    GET_MODULE_INFO = 0x03
    SINGLE_INVENTORY = 0x22
    MULTI_INVENTORY = 0x27
    STOP_MULTI_INVENTORY = 0x28
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """Error codes of the module's 0xFF responses that the driver tells apart."""

    COMMAND_ERROR = 0x17
    FHSS_FAIL = 0x20
    NO_TAG = 0x15


MAX_PAYLOAD = 512  # above any real frame (EPC notices are <= 67 bytes): larger is garbage
_HEADER = 5  # start, type, command, length(2)
_OVERHEAD = 7


@dataclass(frozen=True, slots=True)
class Frame:
    """Any frame: what the module or host sent, without interpretation."""

    type: int
    command: int
    payload: bytes = b""

    def encode(self, framing: Framing = Framing.BB7E) -> bytes:
        """The frame's bytes with checksum and delimiters."""
        if not 0 <= self.type <= 0xFF or not 0 <= self.command <= 0xFF:
            raise UsageError(f"type and command must be bytes, got {self.type}, {self.command}")
        if len(self.payload) > MAX_PAYLOAD:
            raise UsageError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        start, end = _DELIMITERS[framing]
        body = bytes((self.type, self.command)) + len(self.payload).to_bytes(2, "big") + \
            self.payload
        return bytes((start,)) + body + bytes((sum(body) & 0xFF, end))


@dataclass(frozen=True, slots=True)
class TagNotice:
    """A tag the module inventoried: RSSI in dBm, PC word, EPC in upper-case hex, tag CRC."""

    rssi: int
    pc: int
    epc: str
    crc: int

    def frame(self) -> Frame:
        epc = bytes.fromhex(self.epc)
        payload = bytes((self.rssi & 0xFF,)) + self.pc.to_bytes(2, "big") + epc + \
            self.crc.to_bytes(2, "big")
        return Frame(FrameType.NOTICE, Command.SINGLE_INVENTORY, payload)

    def encode(self, framing: Framing = Framing.BB7E) -> bytes:
        return self.frame().encode(framing)


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """The module refused or found nothing: ``code`` (0x15 = no tag in the field)."""

    code: int

    @property
    def no_tag(self) -> bool:
        return self.code == ErrorCode.NO_TAG

    def encode(self, framing: Framing = Framing.BB7E) -> bytes:
        return Frame(FrameType.RESPONSE, Command.ERROR, bytes((self.code,))).encode(framing)


Decoded = Frame | TagNotice | ErrorResponse


def single_inventory(framing: Framing = Framing.BB7E) -> bytes:
    """Command 0x22: inventory once; tags answer as notices, no tag as error 0x15."""
    return Frame(FrameType.COMMAND, Command.SINGLE_INVENTORY).encode(framing)


def multi_inventory(count: int, framing: Framing = Framing.BB7E) -> bytes:
    """Command 0x27: inventory ``count`` (0..65535) times in a row."""
    if not 0 <= count <= 0xFFFF:
        raise UsageError(f"count must be 0..65535, got {count}")
    return Frame(FrameType.COMMAND, Command.MULTI_INVENTORY,
                 b"\x22" + count.to_bytes(2, "big")).encode(framing)


def stop_inventory(framing: Framing = Framing.BB7E) -> bytes:
    """Command 0x28: stop a multiple inventory."""
    return Frame(FrameType.COMMAND, Command.STOP_MULTI_INVENTORY).encode(framing)


def get_module_info(what: int = 0, framing: Framing = Framing.BB7E) -> bytes:
    """Command 0x03: 0 hardware version, 1 software version, 2 manufacturer."""
    if what not in (0, 1, 2):
        raise UsageError(f"module info selector must be 0, 1 or 2, got {what}")
    return Frame(FrameType.COMMAND, Command.GET_MODULE_INFO, bytes((what,))).encode(framing)


def interpret(frame: Frame) -> Decoded:
    """A frame typed: a tag notice, an error response, or the frame itself.

    FrameError when a notice or error frame is too short for what it must carry."""
    if frame.type == FrameType.NOTICE and frame.command == Command.SINGLE_INVENTORY:
        p = frame.payload
        if len(p) < 7 or (len(p) - 5) % 2:
            raise FrameError(f"bad length: tag notice payload of {len(p)} bytes does not hold "
                             "RSSI, PC, an EPC of whole words and CRC")
        rssi = p[0] - 256 if p[0] & 0x80 else p[0]
        return TagNotice(rssi, int.from_bytes(p[1:3], "big"), p[3:-2].hex().upper(),
                         int.from_bytes(p[-2:], "big"))
    if frame.command == Command.ERROR and frame.type == FrameType.RESPONSE:
        if len(frame.payload) != 1:
            raise FrameError(f"bad length: error response of {len(frame.payload)} bytes")
        return ErrorResponse(frame.payload[0])
    return frame


def decode_frame(data: bytes, framing: Framing = Framing.BB7E) -> Decoded:
    """Decode exactly one complete frame; FrameError naming what is wrong."""
    start, end = _DELIMITERS[framing]
    if len(data) < _OVERHEAD:
        raise FrameError(f"bad length: {len(data)} bytes is shorter than any frame")
    if data[0] != start or data[-1] != end:
        raise FrameError(f"bad delimiters 0x{data[0]:02x}..0x{data[-1]:02x}, want "
                         f"0x{start:02x}..0x{end:02x}")
    length = int.from_bytes(data[3:5], "big")
    if len(data) != length + _OVERHEAD:
        raise FrameError(f"bad length: {len(data)} bytes, length field says {length}")
    if sum(data[1:-2]) & 0xFF != data[-2]:
        raise FrameError(f"checksum mismatch: frame says 0x{data[-2]:02x}, bytes give "
                         f"0x{sum(data[1:-2]) & 0xFF:02x}")
    return interpret(Frame(data[1], data[2], bytes(data[5:-2])))


class FrameParser:
    """Incremental parser: bytes in as they arrive (one at a time is fine), frames out.

    Never raises for bad input: each rejected candidate adds to ``errors`` (kept in
    ``last_error``) and dropped bytes add to ``bytes_dropped``.
    """

    def __init__(self, framing: Framing = Framing.BB7E) -> None:
        self.framing = Framing(framing)
        self._start, self._end = _DELIMITERS[self.framing]
        self._buf = bytearray()
        self.frames_ok = 0
        self.errors = 0
        self.bytes_dropped = 0
        self.last_error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (the port was reopened)."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray) -> list[Decoded]:
        """Add received bytes; return the frames they complete, oldest first."""
        buf = self._buf
        buf += data
        out: list[Decoded] = []
        while buf:
            if buf[0] != self._start:
                skip = buf.find(self._start)
                self._drop(len(buf) if skip < 0 else skip, "garbage before a frame start")
                continue
            if len(buf) < _HEADER:
                break
            length = (buf[3] << 8) | buf[4]
            if buf[1] > FrameType.NOTICE or length > MAX_PAYLOAD:
                self._drop(1, f"false frame start (type 0x{buf[1]:02x}, length {length})")
                continue
            size = length + _OVERHEAD
            if len(buf) < size:
                # A false start with a long length field must not hold up real frames behind it.
                skip = self._next_complete(1)
                if not skip:
                    break
                self._drop(skip, "incomplete frame start before a valid frame")
                continue
            if buf[size - 1] != self._end or sum(buf[1:size - 2]) & 0xFF != buf[size - 2]:
                self._drop(1, "checksum or end byte mismatch")
                continue
            frame = Frame(buf[1], buf[2], bytes(buf[5:size - 2]))
            del buf[:size]
            try:
                out.append(interpret(frame))
            except FrameError as exc:
                self._error(exc)
                continue
            self.frames_ok += 1
        return out

    def _next_complete(self, start: int) -> int:
        """Offset of the next complete, checksum-valid frame at or after ``start``, else 0."""
        buf = self._buf
        at = buf.find(self._start, start)
        while at >= 0 and len(buf) - at >= _OVERHEAD:
            size = ((buf[at + 3] << 8) | buf[at + 4]) + _OVERHEAD
            if (buf[at + 1] <= FrameType.NOTICE and at + size <= len(buf)
                    and buf[at + size - 1] == self._end
                    and sum(buf[at + 1:at + size - 2]) & 0xFF == buf[at + size - 2]):
                return at
            at = buf.find(self._start, at + 1)
        return 0

    def _drop(self, count: int, why: str) -> None:
        del self._buf[:count]
        self.bytes_dropped += count
        self._error(FrameError(f"{why}: dropped {count} bytes"))

    def _error(self, exc: FrameError) -> None:
        self.errors += 1
        self.last_error = exc


def to_tag_read(notice: TagNotice, *, source: str, store_id: str, received_ts: float,
                antenna: int | None = None, seq: int | None = None) -> TagRead:
    """The TagRead event for one tag notice (the module has no clock: no ``device_ts``)."""
    return TagRead(store_id=store_id, source=source, received_ts=received_ts, seq=seq,
                   epc=notice.epc, antenna=antenna, rssi=float(notice.rssi))
