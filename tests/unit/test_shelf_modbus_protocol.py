"""The shelf's Modbus RTU codec: golden vectors from public documents, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.shelf_modbus.protocol import (
    ExceptionCode,
    ExceptionResponse,
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    RequestParser,
    ResponseParser,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
    crc16,
    decode_request,
    decode_response,
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
# - Modbus Application Protocol V1.1b3, 6.3 "Read Holding Registers": the request for registers
#   108-110 (address 0x006B, 3 registers), answered 0x022B, 0x0000, 0x0064; as an RTU frame to
#   slave 1 with its CRC in the Hamilton Sundstrand EXVG manual, 7.4.1 Table 6:
#   01 03 006B 0003 7417 and 01 03 06 022B 0000 0064 057A.
# - Modbus Application Protocol V1.1b3, 6.12 "Write Multiple registers": write 0x000A, 0x0102
#   to registers 2-3 (address 0x0001); as an RTU frame to slave 17 with its CRC in Simply Modbus,
#   "Preset Multiple Registers (FC=16)" (FC16.htm): 11 10 0001 0002 04 000A 0102 C6F0,
#   response 11 10 0001 0002 1298.
FC03_REQUEST = bytes.fromhex("01 03 00 6B 00 03 74 17")
FC03_RESPONSE = bytes.fromhex("01 03 06 02 2B 00 00 00 64 05 7A")
FC16_REQUEST = bytes.fromhex("11 10 00 01 00 02 04 00 0A 01 02 C6 F0")
FC16_RESPONSE = bytes.fromhex("11 10 00 01 00 02 12 98")
FC04_REQUEST = bytes.fromhex("11 04 00 08 00 01 B2 98")
FC04_RESPONSE = bytes.fromhex("11 04 02 00 0A F8 F4")
FC06_REQUEST = bytes.fromhex("11 06 00 01 00 03 9A 9B")
SOLINST_REQUEST = bytes.fromhex("01 04 00 00 00 0D 31 CF")
SOLINST_EXCEPTION = bytes.fromhex("01 84 02 C2 C1")


def test_crc_of_published_frames() -> None:
    for frame in (FC03_REQUEST, FC03_RESPONSE, FC16_REQUEST, FC16_RESPONSE, FC04_REQUEST,
                  FC04_RESPONSE, FC06_REQUEST, SOLINST_REQUEST, SOLINST_EXCEPTION):
        assert crc16(frame[:-2]).to_bytes(2, "little") == frame[-2:]
    # The CRC-16/MODBUS check value of the CRC catalogue: crc("123456789") == 0x4B37.
    assert crc16(b"123456789") == 0x4B37


def test_golden_read_holding_registers() -> None:
    assert ReadHoldingRegistersRequest(1, 0x6B, 3).encode() == FC03_REQUEST
    assert decode_request(FC03_REQUEST) == ReadHoldingRegistersRequest(1, 0x6B, 3)
    assert ReadHoldingRegistersResponse(1, (0x022B, 0, 0x64)).encode() == FC03_RESPONSE
    assert decode_response(FC03_RESPONSE) == ReadHoldingRegistersResponse(1, (0x022B, 0, 0x64))


def test_golden_write_multiple_registers() -> None:
    assert WriteMultipleRegistersRequest(17, 1, (0x000A, 0x0102)).encode() == FC16_REQUEST
    assert decode_request(FC16_REQUEST) == WriteMultipleRegistersRequest(17, 1, (0x0A, 0x102))
    assert WriteMultipleRegistersResponse(17, 1, 2).encode() == FC16_RESPONSE
    assert decode_response(FC16_RESPONSE) == WriteMultipleRegistersResponse(17, 1, 2)


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
        (b"\x11\x05\x00\x08\x00\x01\x07\x5a", "unknown function 0x05"),
        (FC16_REQUEST[:6] + b"\x06" + FC16_REQUEST[7:], "bad length: 2 registers in 6 bytes"),
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
        WriteMultipleRegistersRequest(1, 0, ()).encode()
    with pytest.raises(UsageError):
        WriteMultipleRegistersRequest(1, 0, (0,) * 124).encode()


# Properties

slaves = st.integers(0, 247)
u16 = st.integers(0, 0xFFFF)
registers = st.lists(u16, min_size=1, max_size=125).map(tuple)
requests = st.one_of(
    st.builds(ReadHoldingRegistersRequest, slaves, u16, u16),
    st.builds(ReadInputRegistersRequest, slaves, u16, u16),
    st.builds(WriteSingleRegisterRequest, slaves, u16, u16),
    st.builds(WriteMultipleRegistersRequest, slaves, u16,
              st.lists(u16, min_size=1, max_size=123).map(tuple)),
)
responses = st.one_of(
    st.builds(ReadHoldingRegistersResponse, slaves, registers),
    st.builds(ReadInputRegistersResponse, slaves, registers),
    st.builds(WriteSingleRegisterResponse, slaves, u16, u16),
    st.builds(WriteMultipleRegistersResponse, slaves, u16, st.integers(1, 123)),
    st.builds(ExceptionResponse, slaves, st.sampled_from([0x03, 0x04, 0x06, 0x10]),
              st.integers(1, 11)),
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
