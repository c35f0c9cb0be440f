"""The shelf's Modbus RTU codec: golden vectors from public documents, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.shelf_modbus.protocol import (
    ExceptionCode,
    ExceptionResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    RequestParser,
    ResponseParser,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
    crc16,
    decode_lane_weights,
    decode_request,
    decode_response,
    encode_lane_weights,
)
from storeedge.errors import FrameError, UsageError

# Worked examples with their CRCs, as published:
# - Simply Modbus, "Read Input Registers (FC=04)", https://simplymodbus.ca/FC04.htm:
#   slave 17 reads input register 30009 (address 8): request 11 04 0008 0001 B298,
#   response 11 04 02 000A F8F4.
# - Simply Modbus, "Preset Single Register (FC=06)" (FC06.htm): slave 17 writes 3 to holding
#   register 40002 (address 1): 11 06 0001 0003 9A9B, echoed as the response.
# - Solinst 301 Modbus user guide, section 4.5 "Modbus exception code",
#   https://solinst.com/.../4-5-0-modbus-exception-code.php: request 01 04 0000 000D 31CF
#   answered by exception 01 84 02 C2C1 (illegal data address).
FC04_REQUEST = bytes.fromhex("11 04 00 08 00 01 B2 98")
FC04_RESPONSE = bytes.fromhex("11 04 02 00 0A F8 F4")
FC06_REQUEST = bytes.fromhex("11 06 00 01 00 03 9A 9B")
SOLINST_REQUEST = bytes.fromhex("01 04 00 00 00 0D 31 CF")
SOLINST_EXCEPTION = bytes.fromhex("01 84 02 C2 C1")


def test_crc_of_published_frames() -> None:
    for frame in (FC04_REQUEST, FC04_RESPONSE, FC06_REQUEST, SOLINST_REQUEST, SOLINST_EXCEPTION):
        assert crc16(frame[:-2]).to_bytes(2, "little") == frame[-2:]
    # The CRC-16/MODBUS check value of the CRC catalogue: crc("123456789") == 0x4B37.
    assert crc16(b"123456789") == 0x4B37


def test_golden_read_input_registers() -> None:
    assert ReadInputRegistersRequest(17, 8, 1).encode() == FC04_REQUEST
    assert decode_request(FC04_REQUEST) == ReadInputRegistersRequest(17, 8, 1)
    assert ReadInputRegistersResponse(17, (10,)).encode() == FC04_RESPONSE
    assert decode_response(FC04_RESPONSE) == ReadInputRegistersResponse(17, (10,))


def test_golden_write_single_register() -> None:
    assert WriteSingleRegisterRequest(17, 1, 3).encode() == FC06_REQUEST
    assert decode_request(FC06_REQUEST) == WriteSingleRegisterRequest(17, 1, 3)
    assert decode_response(FC06_REQUEST) == WriteSingleRegisterResponse(17, 1, 3)


def test_golden_exception_response() -> None:
    assert ReadInputRegistersRequest(1, 0, 13).encode() == SOLINST_REQUEST
    exc = ExceptionResponse(1, 0x04, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    assert exc.encode() == SOLINST_EXCEPTION
    assert decode_response(SOLINST_EXCEPTION) == exc


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (FC04_REQUEST[:-1] + b"\x00", "CRC mismatch"),
        (b"\x11\x03\x00\x08\x00\x01\x07\x5a", "unknown function 0x03"),
        (FC04_REQUEST + b"\x00", "bad length"),
        (b"\x11", "bad length"),
    ],
)
def test_decode_request_rejects(frame: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_request(frame)


def test_decode_response_rejects_odd_byte_count() -> None:
    body = b"\x11\x04\x03\x00\x0a\x00"
    with pytest.raises(FrameError, match="bad length: byte count 3"):
        decode_response(body + crc16(body).to_bytes(2, "little"))


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(UsageError):
        ReadInputRegistersRequest(1, 0x10000, 1).encode()
    with pytest.raises(UsageError):
        ReadInputRegistersResponse(1, ()).encode()
    with pytest.raises(UsageError):
        ReadInputRegistersResponse(1, (70000,)).encode()
    with pytest.raises(UsageError):
        encode_lane_weights([3e8])


def test_lane_weights_register_map() -> None:
    # Lane 0: 1234.5 g = 12345 dg = 0x00003039; lane 1: -1.5 g = -15 dg = 0xFFFFFFF1.
    registers = encode_lane_weights([1234.5, -1.5])
    assert registers == [0x0000, 0x3039, 0xFFFF, 0xFFF1]
    assert decode_lane_weights(registers, ["A1-1", "A1-2"]) == [("A1-1", 1234.5), ("A1-2", -1.5)]
    with pytest.raises(FrameError, match="3 registers for 2 lanes"):
        decode_lane_weights(registers[:3], ["A1-1", "A1-2"])


# Properties

slaves = st.integers(0, 247)
u16 = st.integers(0, 0xFFFF)
requests = st.one_of(
    st.builds(ReadInputRegistersRequest, slaves, u16, u16),
    st.builds(WriteSingleRegisterRequest, slaves, u16, u16),
)
responses = st.one_of(
    st.builds(ReadInputRegistersResponse, slaves,
              st.lists(u16, min_size=1, max_size=125).map(tuple)),
    st.builds(WriteSingleRegisterResponse, slaves, u16, u16),
    st.builds(ExceptionResponse, slaves, st.sampled_from([0x04, 0x06]), st.integers(1, 11)),
)


def _byte_at_a_time(parser: RequestParser | ResponseParser, data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        out += parser.feed(data[i:i + 1])
    return out


@given(st.lists(requests, max_size=5))
def test_requests_round_trip_whole_and_byte_by_byte(frames: list[object]) -> None:
    stream = b"".join(f.encode() for f in frames)  # type: ignore[attr-defined]
    assert RequestParser().feed(stream) == frames
    parser = RequestParser()
    assert _byte_at_a_time(parser, stream) == frames
    assert parser.errors == 0 and parser.pending == 0


@given(st.lists(responses, max_size=5))
def test_responses_round_trip_whole_and_byte_by_byte(frames: list[object]) -> None:
    stream = b"".join(f.encode() for f in frames)  # type: ignore[attr-defined]
    assert ResponseParser().feed(stream) == frames
    parser = ResponseParser()
    assert _byte_at_a_time(parser, stream) == frames
    assert parser.errors == 0 and parser.pending == 0


@given(st.binary(max_size=600), st.integers(1, 17))
def test_garbage_never_raises(garbage: bytes, chunk: int) -> None:
    for parser in (RequestParser(), ResponseParser()):
        frames = []
        for i in range(0, len(garbage), chunk):
            frames += parser.feed(garbage[i:i + chunk])
        # Every byte is accounted for: in a frame found, dropped as counted garbage, or pending.
        used = sum(len(f.encode()) for f in frames)
        assert used + parser.bytes_dropped + parser.pending == len(garbage)
        assert parser.errors >= (1 if parser.bytes_dropped else 0)
        assert parser.pending < 256


@given(st.binary(min_size=1, max_size=300), requests)
def test_request_found_after_garbage(garbage: bytes, frame: object) -> None:
    parser = RequestParser()
    found = _byte_at_a_time(parser, garbage + frame.encode())  # type: ignore[attr-defined]
    assert found[-1:] == [frame]


@given(st.binary(min_size=1, max_size=300), responses)
def test_response_found_after_garbage(garbage: bytes, frame: object) -> None:
    parser = ResponseParser()
    # Whole and byte by byte: a false header in the garbage must not swallow the real frame.
    assert ResponseParser().feed(garbage + frame.encode())[-1:] == [frame]  # type: ignore[attr-defined]
    assert _byte_at_a_time(parser, garbage + frame.encode())[-1:] == [frame]  # type: ignore[attr-defined]


def test_corrupted_frame_is_counted_and_the_next_one_found() -> None:
    bad = bytearray(FC04_RESPONSE)
    bad[3] ^= 0xFF
    parser = ResponseParser()
    assert parser.feed(bytes(bad) + FC04_RESPONSE) == [decode_response(FC04_RESPONSE)]
    assert parser.errors >= 1
    assert isinstance(parser.last_error, FrameError)


@given(st.lists(st.integers(-2_000_000_000, 2_000_000_000), min_size=1, max_size=60))
def test_lane_weights_round_trip(decigrams: list[int]) -> None:
    grams = [d / 10 for d in decigrams]
    lanes = [f"L{i}" for i in range(len(grams))]
    registers = encode_lane_weights(grams)
    assert decode_lane_weights(registers, lanes) == list(zip(lanes, grams, strict=True))
