"""The M100/R200 serial frame codec against frames from the modules' protocol documents."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.rfid import m100
from devices.rfid.m100 import ErrorResponse, Frame, FrameParser, Framing, TagNotice
from storeedge.errors import FrameError, UsageError

# Golden frames from the M100 "UHF RFID module user protocol" as reproduced for the JRD-4035
# (M5Stack Unit UHF RFID, Unit-RFID-UHF-Protocol-EN) and YRM100 modules:
SINGLE_INVENTORY = bytes.fromhex("BB 00 22 00 00 22 7E")
MULTI_INVENTORY_10000 = bytes.fromhex("BB 00 27 00 03 22 27 10 83 7E")
STOP = bytes.fromhex("BB 00 28 00 00 28 7E")
STOP_OK = bytes.fromhex("BB 01 28 00 01 00 2A 7E")
GET_HARDWARE_VERSION = bytes.fromhex("BB 00 03 00 01 00 04 7E")
# Tag notice: RSSI 0xC9 (-55 dBm), PC 0x3400, EPC 30751FEB705C5904E3D50D70, CRC 0x3A76.
TAG_NOTICE = bytes.fromhex("BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 "
                           "EF 7E")
NO_TAG = bytes.fromhex("BB 01 FF 00 01 15 16 7E")
# "M100 26dBm V1.0". One transcription of the document gives checksum 0x22 here; the bytes sum to
# 0x92, as another transcription has it, so 0x92 it is.
HARDWARE_VERSION = bytes.fromhex("BB 01 03 00 10 00 4D 31 30 30 20 32 36 64 42 6D 20 56 31 2E 30 "
                                 "92 7E")
# R200 firmware framing 0xAA..0xDD, captured from a module ("UHF 26dBm V1.1").
R200_VERSION = bytes.fromhex("AA 01 03 00 0F 00 55 48 46 20 32 36 64 42 6D 20 56 31 2E 31 97 DD")
R200_SINGLE_INVENTORY = bytes.fromhex("AA 00 22 00 00 22 DD")


def test_command_encoders_match_the_document() -> None:
    assert m100.single_inventory() == SINGLE_INVENTORY
    assert m100.multi_inventory(10000) == MULTI_INVENTORY_10000
    assert m100.stop_inventory() == STOP
    assert m100.get_module_info(0) == GET_HARDWARE_VERSION
    assert m100.single_inventory(Framing.AADD) == R200_SINGLE_INVENTORY


def test_tag_notice_decodes() -> None:
    notice = m100.decode_frame(TAG_NOTICE)
    assert notice == TagNotice(rssi=-55, pc=0x3400, epc="30751FEB705C5904E3D50D70", crc=0x3A76)
    assert notice.encode() == TAG_NOTICE
    read = m100.to_tag_read(notice, source="m100-1", store_id="s1", received_ts=9.0, seq=3)
    assert (read.epc, read.rssi, read.seq, read.device_ts) == (notice.epc, -55.0, 3, None)


def test_responses_decode() -> None:
    assert m100.decode_frame(NO_TAG) == ErrorResponse(0x15)
    assert m100.decode_frame(NO_TAG).no_tag
    assert ErrorResponse(0x15).encode() == NO_TAG
    assert m100.decode_frame(STOP_OK) == Frame(1, 0x28, b"\x00")
    info = m100.decode_frame(HARDWARE_VERSION)
    assert info == Frame(1, 0x03, b"\x00M100 26dBm V1.0")
    r200 = m100.decode_frame(R200_VERSION, Framing.AADD)
    assert r200 == Frame(1, 0x03, b"\x00UHF 26dBm V1.1")
    assert r200.encode(Framing.AADD) == R200_VERSION


@pytest.mark.parametrize(("data", "message"), [
    (TAG_NOTICE[:-2] + b"\x00\x7e", "checksum mismatch"),
    (TAG_NOTICE[:5] + TAG_NOTICE[6:], "bad length"),
    (b"\xbb\x00\x22", "shorter than any frame"),
    (R200_VERSION, "bad delimiters"),
    (Frame(2, 0x22, b"\xc9\x34\x00\x30").encode(), "tag notice payload"),
    (Frame(1, 0xFF, b"").encode(), "error response of 0 bytes"),
])
def test_bad_frames_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        m100.decode_frame(data)


def test_misuse_is_usage_error() -> None:
    with pytest.raises(UsageError):
        m100.multi_inventory(70000)
    with pytest.raises(UsageError):
        Frame(0, 0x22, bytes(600)).encode()


def feed_bytewise(parser: FrameParser, data: bytes) -> list[m100.Decoded]:
    out: list[m100.Decoded] = []
    for i in range(len(data)):
        out += parser.feed(data[i:i + 1])
    return out


STREAM = TAG_NOTICE + NO_TAG + STOP_OK + HARDWARE_VERSION


def test_parser_one_byte_at_a_time() -> None:
    parser = FrameParser()
    frames = feed_bytewise(parser, STREAM)
    assert [type(f).__name__ for f in frames] == ["TagNotice", "ErrorResponse", "Frame", "Frame"]
    assert (parser.frames_ok, parser.errors, parser.pending) == (4, 0, 0)


def test_parser_resyncs_after_garbage_and_corruption() -> None:
    corrupt = bytearray(TAG_NOTICE)
    corrupt[10] ^= 0xFF
    data = b"\x00\xbb\x7e\xbb\x02" + bytes(corrupt) + NO_TAG + TAG_NOTICE
    parser = FrameParser()
    frames = feed_bytewise(parser, data)
    assert frames == [ErrorResponse(0x15), m100.decode_frame(TAG_NOTICE)]
    assert parser.errors > 0 and parser.pending == 0


def test_false_start_with_long_length_does_not_hold_up_frames() -> None:
    parser = FrameParser()
    frames = parser.feed(b"\xbb\x02\x22\x01\xf0" + NO_TAG)
    assert frames == [ErrorResponse(0x15)]


def test_aadd_parser_ignores_bb7e_frames() -> None:
    parser = FrameParser(Framing.AADD)
    assert parser.feed(SINGLE_INVENTORY + R200_SINGLE_INVENTORY) == [Frame(0, 0x22)]


@given(st.binary(max_size=300))
def test_parser_survives_any_bytes(data: bytes) -> None:
    parser = FrameParser()
    whole = parser.feed(data)
    bytewise = feed_bytewise(FrameParser(), data)
    assert whole == bytewise
    for frame in whole:
        assert isinstance(frame, Frame | TagNotice | ErrorResponse)


@given(st.binary(max_size=40))
def test_decode_frame_raises_only_frame_error(data: bytes) -> None:
    try:
        m100.decode_frame(data)
    except FrameError:
        pass


notices = st.builds(TagNotice, st.integers(-128, 127), st.integers(0, 0xFFFF),
                    st.binary(min_size=2, max_size=62).filter(lambda b: len(b) % 2 == 0)
                    .map(lambda b: b.hex().upper()), st.integers(0, 0xFFFF))


@given(st.lists(notices | st.builds(ErrorResponse, st.integers(0, 255)), max_size=6),
       st.binary(max_size=20), st.sampled_from(list(Framing)))
def test_round_trip_with_leading_garbage(frames: list, garbage: bytes, framing: Framing) -> None:
    data = b"".join(f.encode(framing) for f in frames)
    parser = FrameParser(framing)
    got = feed_bytewise(parser, garbage + data)
    # Garbage can look like the start of a frame and swallow nothing that follows: the real
    # frames all come out, in order, possibly after frames the garbage itself happened to form.
    assert got[len(got) - len(frames):] == frames
