"""Shelf register maps: the shipped layouts against hand-worked register values, every value type
and order both ways, tare commands, and config mistakes that name their key."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from devices.shelf_modbus.config import ShelfModbusDevice
from devices.shelf_modbus.register_map import (
    RegisterMap,
    Write,
    named_map,
    shipped_maps,
)
from edge_agent.config import load_config
from storeedge.errors import ConfigError, FrameError, UsageError

OURS = named_map("storeedge-shelf")
CDAB = named_map("float32-kg-cdab")
LANES = ["A1-1", "A1-2"]


def test_shipped_maps() -> None:
    assert shipped_maps() == ["float32-kg-cdab", "storeedge-shelf"]
    assert (OURS.function, OURS.weights_span(2), OURS.status_read()) == (4, (0, 4), (4, 0x100))
    # 1-based holding registers 40001.. are wire addresses 0..; the status word 40101 is 100.
    assert (CDAB.function, CDAB.weights_span(3), CDAB.status_read()) == (3, (0, 6), (3, 100))


def test_our_layout_int32_decigrams_high_word_first() -> None:
    # 1234.5 g = 12345 dg = 0x00003039; -1.5 g = -15 dg = 0xFFFFFFF1.
    registers = OURS.encode_weights([1234.5, -1.5])
    assert registers == [0x0000, 0x3039, 0xFFFF, 0xFFF1]
    assert OURS.decode_weights(registers, LANES) == ([("A1-1", 1234.5), ("A1-2", -1.5)], [])
    with pytest.raises(FrameError, match="3 registers for 2 lanes, asked for 4"):
        OURS.decode_weights(registers[:3], LANES)
    with pytest.raises(UsageError, match="does not fit a int32"):
        OURS.encode_weights([3e8])


def test_float32_kilograms_low_word_first() -> None:
    # IEEE 754: 1.5 = 0x3FC00000, -0.25 = 0xBE800000; low word first ("CDAB").
    registers = CDAB.encode_weights([1500.0, -250.0])
    assert registers == [0x0000, 0x3FC0, 0x0000, 0xBE80]
    assert CDAB.decode_weights(registers, LANES) == ([("A1-1", 1500.0), ("A1-2", -250.0)], [])
    # A NaN (0x7FC00000) is one lane's bad value: named, and the other lane kept.
    weights, problems = CDAB.decode_weights([0x0000, 0x7FC0, 0x0000, 0x3FC0], LANES)
    assert weights == [("A1-2", 1500.0)]
    assert problems == ["lane A1-1: weight is nan"]


@pytest.mark.parametrize(("value_type", "words", "byte_order", "word_order", "raw"), [
    ("uint16", [0x1234], "big", "big", 0x1234),
    ("uint16", [0x3412], "little", "big", 0x1234),
    ("int16", [0xFFFE], "big", "big", -2),
    ("uint32", [0x0001, 0x0002], "big", "big", 0x0001_0002),
    ("uint32", [0x0002, 0x0001], "big", "little", 0x0001_0002),
    ("int32", [0xFFFF, 0xFEFF], "little", "big", -2),  # FFFF FFFE, bytes swapped in a word
    ("float32", [0x4049, 0x0FDB], "big", "big", struct.unpack(">f", b"\x40\x49\x0f\xdb")[0]),
    ("float32", [0x4940, 0xDB0F], "little", "big", struct.unpack(">f", b"\x40\x49\x0f\xdb")[0]),
])
def test_every_type_and_order(value_type: str, words: list[int], byte_order: str,
                              word_order: str, raw: float) -> None:
    m = RegisterMap.model_validate({"weights": {
        "address": 0, "type": value_type, "byte_order": byte_order, "word_order": word_order,
        "scale": 2.0, "offset": -1.0}})
    weights, problems = m.decode_weights(words, ["L"])
    [(lane, grams)] = weights
    assert lane == "L" and problems == []
    assert grams == pytest.approx(raw * 2.0 - 1.0, rel=1e-6)
    assert m.encode_weights([grams]) == words


def test_status_bits() -> None:
    assert OURS.decode_status(0).problem is None
    status = OURS.decode_status(0b110)
    assert (status.overload, status.fault, status.busy) == (False, True, True)
    assert status.problem == "status 0x0006: fault"
    assert CDAB.encode_status(overload=True, busy=True) == 0b110  # bit 1 overload, bit 2 taring
    assert CDAB.decode_status(0b011).problem == "status 0x0003: overload and fault"


def test_tare_commands() -> None:
    # Ours: one command register 0x0200 written (06) with the lane number, 0xFFFF for all.
    assert OURS.tare_writes(1, 3) == [Write(6, 0x200, (2,))]
    assert OURS.tare_writes(None, 3) == [Write(6, 0x200, (0xFFFF,))]
    # The float layout: each lane its own register 40201+i, written 1 with function 16.
    assert CDAB.tare_writes(2, 3) == [Write(16, 202, (1,))]
    assert CDAB.tare_writes(None, 2) == [Write(16, 200, (1,)), Write(16, 201, (1,))]
    for m in (OURS, CDAB):
        for lane in (None, 0, 1, 2):
            for write in m.tare_writes(lane, 3):
                assert m.tare_lanes(write, 3) == ([0, 1, 2] if write.values == (0xFFFF,)
                                                  else [write.address - m.wire(m.tare.address)
                                                        if m.tare.lane_stride
                                                        else write.values[0] - 1])
    assert OURS.tare_lanes(Write(6, 0x200, (4,)), 3) is None
    assert OURS.tare_lanes(Write(16, 0x200, (1,)), 3) is None
    with pytest.raises(UsageError, match="lane index 3"):
        OURS.tare_writes(3, 3)
    bare = RegisterMap.model_validate({"weights": {"address": 0, "type": "int32"}})
    with pytest.raises(UsageError, match="no tare command"):
        bare.tare_writes(None, 1)


map_params = st.fixed_dictionaries({
    "type": st.sampled_from(["uint16", "int16", "uint32", "int32", "float32"]),
    "word_order": st.sampled_from(["big", "little"]),
    "byte_order": st.sampled_from(["big", "little"]),
    "scale": st.sampled_from([0.01, 0.1, 1.0, 1000.0, -2.0]),
    "offset": st.sampled_from([0.0, -5.0, 12.5]),
    "stride": st.sampled_from([None, 2, 3]),
    "address": st.integers(0, 1000),
})


@given(map_params, st.lists(st.integers(0, 30_000), min_size=1, max_size=20))
def test_any_layout_round_trips(params: dict[str, object], raws: list[int]) -> None:
    m = RegisterMap.model_validate({"function": 3, "weights": params})
    lanes = [f"L{i}" for i in range(len(raws))]
    scale, offset = float(params["scale"]), float(params["offset"])  # type: ignore[arg-type]
    grams = [r * scale + offset for r in raws]
    registers = m.encode_weights(grams)
    assert len(registers) == m.weights_span(len(lanes))[1]
    assert all(0 <= r <= 0xFFFF for r in registers)
    weights, problems = m.decode_weights(registers, lanes)
    assert problems == []
    assert [lane for lane, _ in weights] == lanes
    for (_, got), want in zip(weights, grams, strict=True):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-3)


# Config mistakes name the key

BASE = """\
store:
  id: bj-1
catalog:
  - {sku: COLA, unit_grams: 350}
lanes:
  - {id: A1, sku: COLA}
  - {id: A2, sku: COLA}
devices:
  - type: shelf_modbus
    id: s1
    port: /dev/ttyUSB0
    lanes: [A1]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "store.yaml"
    path.write_text(text)
    return path


def test_a_map_by_name_or_inline(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.devices[0].register_map == OURS
    cfg = load_config(write(tmp_path, BASE + "    register_map: float32-kg-cdab\n"))
    assert cfg.devices[0].register_map == CDAB
    inline = BASE + """\
    register_map:
      function: 3
      addressing: 1
      weights: {address: 40001, type: uint16, scale: 0.5}
      tare: {function: 16, address: 40100}
"""
    m = load_config(write(tmp_path, inline)).devices[0].register_map
    assert (m.function, m.weights_span(1), m.tare_writes(0, 1)) == (
        3, (40000, 1), [Write(16, 40099, (1,))])


SECOND = """\
  - type: {type}
    id: s2
    port: /dev/ttyUSB0
    lanes: [A2]
"""


@pytest.mark.parametrize(("extra", "key", "words"), [
    ("    register_map: nope\n", "devices.0.register_map",
     "no register map named 'nope'; shipped maps: float32-kg-cdab, storeedge-shelf"),
    ("    register_map: {weights: {address: 0, type: int64}}\n",
     "devices.0.register_map.weights.type", "'float32'"),
    ("    register_map: {function: 5, weights: {address: 0, type: int32}}\n",
     "devices.0.register_map.function", "3 or 4"),
    ("    register_map: {weights: {address: 0, type: int32, word_order: middle}}\n",
     "devices.0.register_map.weights.word_order", "'big' or 'little'"),
    ("    register_map: {weights: {address: 0, type: int32, scale: 0}}\n",
     "devices.0.register_map.weights", "scale must be a finite non-zero number"),
    ("    register_map: {weights: {address: 0, type: int32, stride: 1}}\n",
     "devices.0.register_map.weights", "stride 1 is less than a int32's 2 registers"),
    ("    register_map: {addressing: 1, weights: {address: 0, type: int32}}\n",
     "devices.0.register_map", "address 0 is not a register number with addressing 1"),
    ("    register_map: {weights: {address: 0, type: int32},"
     " tare: {function: 5, address: 9}}\n", "devices.0.register_map.tare.function", "6 or 16"),
    ("    register_map: {weights: {address: 0, type: int32},"
     " tare: {address: 9, lane_stride: 2, all_value: 1}}\n", "devices.0.register_map.tare",
     "all_value needs lane_stride 0"),
    ("    register_map: {weights: {address: 0, type: int32, stride: 126}}\n",
     "devices.0.register_map.weights.stride", "less than or equal to 125"),
    ("    register_map: {weights: {address: 65535, type: int32}}\n", "devices.0.lanes",
     "run past register 65535"),
    ("    parity: X\n", "devices.0.parity", "'N', 'E' or 'O'"),
    (SECOND.format(type="shelf_modbus"), "devices.1.slave",
     "'s1' on /dev/ttyUSB0 has slave address 1 already"),
    (SECOND.format(type="shelf_modbus") + "    slave: 2\n    baudrate: 9600\n",
     "devices.1.baudrate", "9600 differs from 19200 of 's1' on the same port"),
    (SECOND.format(type="scanner").replace("    lanes: [A2]\n", ""), "devices.1.port",
     "/dev/ttyUSB0 is used by 's1' already"),
])
def test_config_errors_name_the_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE + extra))
    assert info.value.key == key, info.value
    assert words in info.value.problem


def test_too_many_lanes_for_one_read(tmp_path: Path) -> None:
    lanes = [f"L{i}" for i in range(50)]
    text = (BASE.replace("  - {id: A2, sku: COLA}\n", "".join(
        f"  - {{id: {lane}, sku: COLA}}\n" for lane in lanes))
        .replace("lanes: [A1]", f"lanes: [{', '.join(lanes)}]")
        + "    register_map: {weights: {address: 0, type: int32, stride: 3}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == "devices.0.lanes"
    assert "50 lanes 3 registers apart need 149 registers" in info.value.problem


def test_two_shelves_share_a_port(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE + SECOND.format(type="shelf_modbus")
                            + "    slave: 2\n    register_map: float32-kg-cdab\n"))
    assert [(d.port, d.slave) for d in cfg.devices] == [("/dev/ttyUSB0", 1), ("/dev/ttyUSB0", 2)]


json_values = st.one_of(st.none(), st.booleans(), st.integers(-70_000, 70_000),
                        st.floats(allow_nan=True), st.text(max_size=8),
                        st.sampled_from(["big", "little", "int32", "float32", "lane_number"]))
block = st.dictionaries(st.sampled_from(["address", "stride", "type", "word_order", "byte_order",
                                         "scale", "offset", "function", "overload", "fault",
                                         "busy", "lane_stride", "value", "all_value", "x"]),
                        json_values, max_size=6)


@given(st.dictionaries(st.sampled_from(["function", "addressing", "weights", "status", "tare"]),
                       st.one_of(json_values, block), max_size=5),
       st.integers(1, 60))
def test_any_inline_map_is_accepted_or_refused_naming_a_key(raw: dict[str, object],
                                                             lanes: int) -> None:
    try:
        dev = ShelfModbusDevice.model_validate({
            "type": "shelf_modbus", "id": "s", "port": "/dev/x", "register_map": raw,
            "lanes": [f"L{i}" for i in range(lanes)]})
    except ValidationError as exc:
        for err in exc.errors():
            assert err["loc"][0] in ("register_map", "lanes")
        return
    # Accepted: a read of every lane fits one request and the address space.
    address, count = dev.register_map.weights_span(lanes)
    assert 0 <= address and address + count <= 0x10000 and count <= 125
