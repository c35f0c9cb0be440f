"""Where a shelf controller keeps its lane weights, its status word and its tare command.

Vendors lay out the same three things differently: input (function 04) or holding (03)
registers, documented 0-based (the address on the wire, as the Modbus Application Protocol's
PDU has it) or 1-based (register 1 is address 0), 16- or 32-bit integers or IEEE 754 floats with
either word order, grams or kilograms. A ``RegisterMap`` says which; ``devices/shelf_modbus/maps/``
ships named ones (``storeedge-shelf``, our controller and its simulator; ``float32-kg-cdab``,
kilogram floats with the low word first in 1-based holding registers) and a store config may
name one or give its own inline (see ``config.ShelfModbusDevice``).

Pure conversions only (registers in, grams out, and the reverse for simulators): no I/O.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.shelf_modbus.protocol import MAX_READ_COUNT
from storeedge.errors import FrameError, UsageError

ValueType = Literal["uint16", "int16", "uint32", "int32", "float32"]
Order = Literal["big", "little"]
Bit = Annotated[int, Field(ge=0, le=15)]
Register = Annotated[int, Field(ge=0, le=0xFFFF)]

# struct format (big-endian) and width in registers of each value type
_FORMATS: dict[str, tuple[str, int]] = {
    "uint16": (">H", 1), "int16": (">h", 1), "uint32": (">I", 2), "int32": (">i", 2),
    "float32": (">f", 2),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightBlock(_Strict):
    """The lanes' net weights: lane i's value starts at ``address + i * stride``.

    ``stride`` None means the type's width (lanes packed back to back). ``word_order`` is which
    16-bit word of a 32-bit value comes first (big: the high word, Modbus's usual; little: the low
    word, "CDAB"); ``byte_order`` the bytes within each register (big is the protocol's own).
    Grams are ``raw * scale + offset``.
    """

    address: Register
    stride: Annotated[int, Field(ge=1, le=MAX_READ_COUNT)] | None = None
    type: ValueType
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> WeightBlock:
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"scale must be a finite non-zero number, got {self.scale}")
        if not math.isfinite(self.offset):
            raise ValueError(f"offset must be finite, got {self.offset}")
        if self.stride is not None and self.stride < self.width:
            raise ValueError(f"stride {self.stride} is less than a {self.type}'s "
                             f"{self.width} registers")
        return self

    @property
    def width(self) -> int:
        """Registers one value takes."""
        return _FORMATS[self.type][1]

    @property
    def step(self) -> int:
        return self.stride or self.width


class StatusRegister(_Strict):
    """A 16-bit status word; each named bit (0 = least significant) is optional. ``function``
    None reads it like the weights."""

    function: Literal[3, 4] | None = None
    address: Register
    overload: Bit | None = None
    fault: Bit | None = None  # a load cell or converter fault
    busy: Bit | None = None  # taring or calibrating: the weights are not settled


class TareCommand(_Strict):
    """How to zero lanes, with function 06 (write single register) or 16 (write multiple).

    ``lane_stride`` 0: one command register at ``address``; lane i is tared by writing its
    number (i + 1), every lane at once by writing ``all_value``. ``lane_stride`` n > 0: lane i has
    its own register at ``address + i * n`` and is tared by writing ``value`` to it; without an
    ``all_value``, taring every lane writes each lane's register in turn.
    """

    function: Literal[6, 16] = 6
    address: Register
    lane_stride: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    value: Register = 1
    all_value: Register | None = None

    @model_validator(mode="after")
    def _check(self) -> TareCommand:
        if self.all_value is not None and self.lane_stride:
            raise ValueError("all_value needs lane_stride 0 (one command register for every lane)")
        return self


@dataclass(frozen=True, slots=True)
class Write:
    """One write of a tare: ``function`` 6 or 16, at wire ``address``."""

    function: int
    address: int
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """The status word read, and what its named bits say."""

    word: int
    overload: bool
    fault: bool
    busy: bool

    @property
    def problem(self) -> str | None:
        """Why the weights cannot be trusted for good (not merely while taring), or None."""
        names = [name for name, on in (("overload", self.overload), ("fault", self.fault)) if on]
        return f"status 0x{self.word:04x}: {' and '.join(names)}" if names else None


class RegisterMap(_Strict):
    """A controller's register layout; every address is as its vendor documents it, 0- or
    1-based per ``addressing``."""

    function: Literal[3, 4] = 4
    addressing: Literal[0, 1] = 0
    weights: WeightBlock
    status: StatusRegister | None = None
    tare: TareCommand | None = None

    @model_validator(mode="after")
    def _check(self) -> RegisterMap:
        if self.addressing == 1:
            for key, part in (("weights", self.weights), ("status", self.status),
                              ("tare", self.tare)):
                if part is not None and part.address == 0:
                    raise ValueError(f"the {key} address 0 is not a register number with "
                                     "addressing 1 (they start at 1)")
        return self

    # Addresses on the wire

    def wire(self, address: int) -> int:
        """The PDU address of a register as the map documents it."""
        return address - self.addressing

    def weights_span(self, lanes: int) -> tuple[int, int]:
        """(wire address, register count) of one read covering ``lanes`` lanes."""
        w = self.weights
        return self.wire(w.address), (lanes - 1) * w.step + w.width

    def check_lanes(self, lanes: int) -> None:
        """ValueError unless ``lanes`` lanes fit one read and the address space."""
        address, count = self.weights_span(lanes)
        if count > MAX_READ_COUNT:
            raise ValueError(f"{lanes} lanes {self.weights.step} registers apart need {count} "
                             f"registers, more than one read's {MAX_READ_COUNT}")
        if address + count > 0x10000:
            raise ValueError(f"{lanes} lanes from address {self.weights.address} run past "
                             "register 65535")
        t = self.tare
        if t is not None and self.wire(t.address) + (lanes - 1) * t.lane_stride > 0xFFFF:
            raise ValueError(f"the tare registers of {lanes} lanes run past register 65535")

    # Weights

    def decode_weights(self, registers: Sequence[int], lanes: Sequence[str]
                       ) -> tuple[list[tuple[str, float]], list[str]]:
        """Each lane's net grams from the registers one read returned, and the lanes whose value
        is not a number (a float NaN or infinity), each as ``"lane ...: why"``.

        Raises FrameError when the device returned another number of registers than asked for.
        """
        w = self.weights
        want = self.weights_span(len(lanes))[1]
        if len(registers) != want:
            raise FrameError(f"bad length: {len(registers)} registers for {len(lanes)} lanes, "
                             f"asked for {want}")
        fmt, width = _FORMATS[w.type]
        weights: list[tuple[str, float]] = []
        problems: list[str] = []
        for i, lane in enumerate(lanes):
            words = registers[i * w.step:i * w.step + width]
            (raw,) = struct.unpack(fmt, _to_bytes(words, w.word_order, w.byte_order))
            if not math.isfinite(raw):
                problems.append(f"lane {lane}: weight is {raw}")
                continue
            # Rounded to 9 decimals, far below any load cell's resolution: a scale of 0.1 would
            # otherwise turn 12345 into 1234.5000000000002 g.
            weights.append((lane, round(raw * w.scale + w.offset, 9)))
        return weights, problems

    def encode_weights(self, grams: Sequence[float]) -> list[int]:
        """The registers of the weights block for these lane weights (gaps between lanes hold
        0): what a controller with this map shows. UsageError when a weight does not fit."""
        w = self.weights
        fmt, width = _FORMATS[w.type]
        out = [0] * ((len(grams) - 1) * w.step + width) if grams else []
        for i, g in enumerate(grams):
            raw: float | int = (g - w.offset) / w.scale
            if w.type != "float32":
                raw = round(raw)
            try:
                data = struct.pack(fmt, raw)
            except (struct.error, OverflowError):
                raise UsageError(f"{g} g does not fit a {w.type} of scale {w.scale:g}") from None
            out[i * w.step:i * w.step + width] = _from_bytes(data, w.word_order, w.byte_order)
        return out

    # Status and tare

    def status_read(self) -> tuple[int, int] | None:
        """(function, wire address) of the status word, or None without one."""
        s = self.status
        return None if s is None else (s.function or self.function, self.wire(s.address))

    def decode_status(self, word: int) -> Status:
        s = self.status
        if s is None:
            raise UsageError("this register map has no status register")

        def bit(n: int | None) -> bool:
            return n is not None and bool(word >> n & 1)

        return Status(word, bit(s.overload), bit(s.fault), bit(s.busy))

    def encode_status(self, *, overload: bool = False, fault: bool = False,
                      busy: bool = False) -> int:
        """The status word a controller with this map shows (for simulators)."""
        s = self.status
        if s is None:
            raise UsageError("this register map has no status register")
        word = 0
        for n, on in ((s.overload, overload), (s.fault, fault), (s.busy, busy)):
            if on and n is not None:
                word |= 1 << n
        return word

    def tare_writes(self, lane: int | None, lanes: int) -> list[Write]:
        """The writes that tare lane index ``lane``, or every lane when it is None."""
        t = self.tare
        if t is None:
            raise UsageError("this register map has no tare command")
        if lane is not None and not 0 <= lane < lanes:
            raise UsageError(f"lane index {lane} is not in 0..{lanes - 1}")
        base = self.wire(t.address)
        if lane is None and t.all_value is not None:
            return [Write(t.function, base, (t.all_value,))]
        which = range(lanes) if lane is None else (lane,)
        if t.lane_stride == 0:
            return [Write(t.function, base, (i + 1,)) for i in which]
        return [Write(t.function, base + i * t.lane_stride, (t.value,)) for i in which]

    def tare_lanes(self, write: Write, lanes: int) -> list[int] | None:
        """The lane indexes a write tares, or None when it is no tare of this map (for
        simulators: the reverse of ``tare_writes``). A write of several registers (function 16)
        tares each lane whose register it covers, when every register it covers is one."""
        t = self.tare
        if t is None or write.function != t.function or not write.values:
            return None
        base = self.wire(t.address)
        if t.lane_stride == 0:
            if write.address != base or len(write.values) != 1:
                return None
            value = write.values[0]
            if value == t.all_value:
                return list(range(lanes))
            return [value - 1] if 1 <= value <= lanes else None
        out = []
        for k, value in enumerate(write.values):
            lane, gap = divmod(write.address + k - base, t.lane_stride)
            if value != t.value or gap or not 0 <= lane < lanes:
                return None
            out.append(lane)
        return out


def _to_bytes(words: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    if word_order == "little":
        words = words[::-1]
    return b"".join(w.to_bytes(2, byte_order) for w in words)


def _from_bytes(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    words = [int.from_bytes(data[i:i + 2], byte_order) for i in range(0, len(data), 2)]
    return words[::-1] if word_order == "little" else words


# Shipped maps

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def shipped_maps() -> list[str]:
    """Names of the maps in devices/shelf_modbus/maps/."""
    folder = resources.files(__package__) / "maps"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def shipped_map(name: str) -> dict[str, object]:
    """The raw mapping of a shipped map (validate it as a RegisterMap); ValueError naming the
    maps there are when there is no such map."""
    folder = resources.files(__package__) / "maps"
    path = folder / f"{name}.yaml"
    if not _NAME.match(name) or not path.is_file():
        raise ValueError(f"no register map named {name!r}; shipped maps: "
                         f"{', '.join(shipped_maps())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise UsageError(f"shipped register map {name} is not a mapping")
    return data


def named_map(name: str) -> RegisterMap:
    """A shipped map, validated."""
    return RegisterMap.model_validate(shipped_map(name))
