"""The scanner's line codec: golden reads with AIM prefixes, framing, and fuzzing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.scanner.gs1 import check_digit
from devices.scanner.protocol import MAX_LINE, LineDecoder, decode_line, encode_line
from storeedge.errors import FrameError, PayloadError, PeerError, UsageError
from storeedge.events import Scan

TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z: GS1 dates resolve their century against 2026


def decode(line: bytes) -> Scan:
    return decode_line(line, store_id="s1", device_id="scan-1", received_ts=TS)


def fields(scan: Scan) -> tuple[str, str | None, str | None, str | None, str | None, str | None]:
    return (scan.code, scan.symbology, scan.gtin, scan.batch, scan.expiry, scan.serial)


# AIM symbology identifiers (ISO/IEC 15424 as listed in GS1 General Specifications 5.1.2, 5.4.6
# and in the GS1 DataMatrix Guideline): ]E0 EAN-13/UPC-A, ]E4 EAN-8, ]C1 GS1-128,
# ]d2 GS1 DataMatrix, ]Q3 GS1 QR Code. Data: GS1's check digit example 6291041500213 (gs1.org),
# Wikipedia's EAN-8 96385074 and UPC-A 036000241457, and example 2 of the GS1 DataMatrix
# Guideline 2.5 section 2.3, (01)09501101020917(17)190508(10)ABCD1234(21)10.
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"]E06291041500213",
         ("6291041500213", "ean-13", "06291041500213", None, None, None)),
        (b"]E00036000241457",
         ("0036000241457", "ean-13", "00036000241457", None, None, None)),
        (b"]I100012345600012", ("00012345600012", "itf", "00012345600012", None, None, None)),
        (b"]E112", ("12", "ean-addon-2", None, None, None, None)),
        (b"]E201234", ("01234", "ean-addon-5", None, None, None, None)),
        (b"]E496385074", ("96385074", "ean-8", "00000096385074", None, None, None)),
        (b"]E3629104150021312", ("629104150021312", "ean-13+addon", "06291041500213", None,
                                 None, None)),
        (b"]d201095011010209171719050810ABCD1234\x1d2110",
         ("01095011010209171719050810ABCD1234\x1d2110", "gs1-datamatrix", "09501101020917",
          "ABCD1234", "2019-05-08", "10")),
        (b"]C101095011010209171719050810ABCD1234\x1d2110",
         ("01095011010209171719050810ABCD1234\x1d2110", "gs1-128", "09501101020917",
          "ABCD1234", "2019-05-08", "10")),
        (b"]Q30109501101020917170402002110",  # day 00: the last day of February 2004
         ("0109501101020917170402002110", "gs1-qr", "09501101020917", None, "2004-02-29",
          "10")),
        # Without a prefix: digits of a GTIN length are a GTIN, a leading GS marks GS1 data.
        (b"6291041500213", ("6291041500213", None, "06291041500213", None, None, None)),
        (b"\x1d0109501101020917", ("\x1d0109501101020917", None, "09501101020917", None, None,
                                   None)),
        (b"]C0ABC-123", ("ABC-123", "code128", None, None, None, None)),
        (b"]Q1https://example.com/p?id=1\t2", ("https://example.com/p?id=1\t2", "qr", None,
                                                None, None, None)),
        (b"]X5whatever", ("whatever", "]X5", None, None, None, None)),
        (b"SKU-42", ("SKU-42", None, None, None, None, None)),
        (b"12345", ("12345", None, None, None, None, None)),
        ("Milch Ä".encode(), ("Milch Ä", None, None, None, None, None)),
    ],
)
def test_golden_lines(line: bytes, expected: tuple[str | None, ...]) -> None:
    scan = decode(line)
    assert fields(scan) == expected
    assert (scan.store_id, scan.source, scan.received_ts) == ("s1", "scan-1", TS)


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        (b"]E06291041500214", PayloadError, "scan-1: bad check digit in GTIN 6291041500214"),
        (b"6291041500214", PayloadError, "bad check digit"),
        (b"]E4963850", PayloadError, "ean-8 read under ]E4 is not 8 digits: '963850'"),
        # AIM identifiers are held to their lengths: ]E0 carries 13 digits, UPC-A included.
        (b"]E0036000241457", PayloadError, "ean-13 read under ]E0 is not 13 digits"),
        (b"]E0123", PayloadError, "ean-13 read under ]E0 is not 13 digits"),
        (b"]E06291041500X13", PayloadError, "ean-13 read under ]E0 is not 13 digits"),
        (b"]E3629104150021", PayloadError, "under ]E3 is not 15 or 18 digits"),
        (b"]E1123", PayloadError, "ean-addon-2 read under ]E1 is not 2 digits"),
        (b"]d2010950110102", PayloadError, r"AI \(01\) GTIN needs 14 characters, got 10"),
        (b"]d223XYZ", PayloadError, r"unknown AI at offset 0: '23XY'"),
        (b"(01)09501101020918", PayloadError, r"AI \(01\) GTIN: Invalid GTIN check digit"),
        (b"]Q1https://id.gs1.org/01/09501101020918", PayloadError, r"AI \(01\) GTIN: Invalid"),
        (b"]d2", FrameError, "empty code after ]d2"),
        (b"]E", FrameError, "bad AIM symbology identifier"),
        (b"]!0123", FrameError, "bad AIM symbology identifier"),
        (b"ab\x00c", FrameError, "control character 0x00 at offset 2"),
        (b"\xff\xfe", FrameError, "not UTF-8"),
    ],
)
def test_bad_lines(line: bytes, error: type[PeerError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        decode(line)
    assert type(info.value) is error
    assert info.value.source == "scan-1"


def test_gs1_scan_carries_every_ai_and_its_meaning() -> None:
    # GS1-128 with a weight (3103: three implied decimals), a price with currency (3932), a
    # best-before date with day 00 and a company-internal AI.
    scan = decode(b"]C10109501101020917" b"3103001250" b"15260200" b"3932978599\x1d"
                  b"91STORE-7\x1d" b"10LOT-42")
    assert (scan.gtin, scan.batch, scan.expiry, scan.serial) == ("09501101020917", "LOT-42",
                                                                 None, None)
    assert scan.ai == {"01": "09501101020917", "3103": "001250", "15": "260200",
                       "3932": "978599", "91": "STORE-7", "10": "LOT-42"}
    assert scan.ai_values == {"3103": "1.250", "15": "2026-02-28", "3932": "978 5.99"}
    assert scan.gs1_errors == ()
    assert scan.to_dict()["ai_values"]["3103"] == "1.250"


def test_unreadable_ai_keeps_the_scan() -> None:
    # AI 410 (ship to GLN) truncated and AI 17 not a date: the GTIN and the rest stand.
    scan = decode(b"]d20109501101020917" b"17191332" b"10LOT\x1d" b"410123")
    assert (scan.gtin, scan.batch, scan.expiry) == ("09501101020917", "LOT", None)
    assert scan.gs1_errors == (
        "AI (17) USE BY or EXPIRY '191332' is not a calendar date (YYMMDD)",
        "AI (410) SHIP TO LOC needs 13 characters, got 3: '123'")


def test_hri_and_digital_link_lines() -> None:
    hri = decode(b"(01)09501101020917(17)190508(10)ABCD1234(21)10")
    dl = decode(b"]Q1https://id.gs1.org/01/09501101020917/10/ABCD1234/21/10?17=190508")
    for scan in (hri, dl):
        assert (scan.gtin, scan.batch, scan.expiry, scan.serial) == (
            "09501101020917", "ABCD1234", "2019-05-08", "10")
    assert dl.symbology == "qr" and dl.code.startswith("https://")
    # An ordinary web address in a QR code is an opaque code, not an error.
    web = decode(b"]Q1https://example.com/promo?id=7")
    assert (web.gtin, web.ai, web.gs1_errors) == (None, None, ())


def test_scanner_settings_for_fnc1() -> None:
    data = b"0109501101020917" b"10ABCD1234^2110"
    # A scanner sending '^' for FNC1, with no AIM prefix and no leading FNC1.
    scan = decode_line(data, store_id="s1", device_id="scan-1", received_ts=TS, separator="^",
                       gs1_without_prefix=True)
    assert (scan.gtin, scan.batch, scan.serial) == ("09501101020917", "ABCD1234", "10")
    # Without the setting the same line is an opaque code; with a leading FNC1 it is GS1.
    assert decode_line(data, store_id="s1", device_id="scan-1", received_ts=TS,
                       separator="^").ai is None
    assert decode_line(b"^" + data, store_id="s1", device_id="scan-1", received_ts=TS,
                       separator="^").serial == "10"
    dec = LineDecoder(store_id="s1", device_id="scan-1", separator="^", gs1_without_prefix=True)
    [fed] = dec.feed(data + b"\r\n", TS)
    assert isinstance(fed, Scan) and fed.serial == "10"
    with pytest.raises(UsageError, match="FNC1 separator"):
        LineDecoder(store_id="s1", device_id="scan-1", separator="]")


def new_decoder(max_line: int = MAX_LINE) -> LineDecoder:
    return LineDecoder(store_id="s1", device_id="scan-1", max_line=max_line)


def test_terminators_cr_crlf_lf_and_empty_lines() -> None:
    dec = new_decoder()
    out = dec.feed(b"]E06291041500213\r]E496385074\r\n\r\n\rSKU-1\nSKU-2\r", TS)
    assert [s.code for s in out if isinstance(s, Scan)] == ["6291041500213", "96385074",
                                                             "SKU-1", "SKU-2"]
    assert (dec.good, dec.bad, dec.pending) == (4, 0, 0)
    assert dec.feed(b"SKU-3", TS) == [] and dec.pending == 5
    [scan] = dec.feed(b"\r\n", TS + 1)
    assert isinstance(scan, Scan) and scan.code == "SKU-3" and scan.received_ts == TS + 1


def test_over_long_line_is_rejected_and_resynchronised() -> None:
    dec = new_decoder(max_line=16)
    out = dec.feed(b"A" * 16 + b"\r\n" + b"B" * 40 + b"\r\nSKU-9\r\n", TS)
    assert [type(x) for x in out] == [Scan, FrameError, Scan]
    assert "line longer than 16 bytes" in str(out[1])
    assert [x.code for x in out if isinstance(x, Scan)] == ["A" * 16, "SKU-9"]
    assert (dec.good, dec.bad) == (2, 1)
    # The limit holds while the line is still coming: memory stays bounded.
    dec.feed(b"C" * 10_000, TS)
    assert dec.pending == 0 and dec.bad == 2


def test_bad_line_in_the_middle_does_not_stop_the_rest() -> None:
    dec = new_decoder()
    out = dec.feed(b"]E06291041500213\r\n]E06291041500214\r\n]E496385074\r\n", TS)
    assert [type(x) for x in out] == [Scan, PayloadError, Scan]
    assert (dec.good, dec.bad) == (2, 1)


def test_reset_drops_a_partial_line() -> None:
    dec = new_decoder()
    dec.feed(b"]E0629104", TS)
    dec.reset()
    [scan] = dec.feed(b"SKU-1\r\n", TS)
    assert isinstance(scan, Scan) and scan.code == "SKU-1"


def test_encode_line() -> None:
    assert encode_line("6291041500213", "]E0") == b"]E06291041500213\r\n"
    assert encode_line("SKU", terminator=b"\r") == b"SKU\r"
    for bad in (lambda: encode_line("x", "E0"), lambda: encode_line("a\rb"),
                lambda: encode_line("x", terminator=b";")):
        with pytest.raises(UsageError):
            bad()
    with pytest.raises(UsageError):
        new_decoder(max_line=0)


# Properties


def comparable(items: list[Scan | PeerError]) -> list[object]:
    """Results without what differs by construction (event ids)."""
    return [dataclasses.replace(x, event_id="") if isinstance(x, Scan)
            else (type(x), str(x)) for x in items]


noisy_bytes = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from(
        [b"\r", b"\n", b"\r\n", b"]E0", b"]d2", b"01", b"\x1d", b"17", b"6291041500213"])),
    max_size=30,
).map(b"".join)


@given(noisy_bytes)
def test_any_bytes_give_scans_or_typed_errors_the_same_however_cut(data: bytes) -> None:
    whole = new_decoder(max_line=64)
    at_once = whole.feed(data, TS)
    for item in at_once:
        assert isinstance(item, (Scan, FrameError, PayloadError))
    single = new_decoder(max_line=64)
    one_by_one = [x for i in range(len(data)) for x in single.feed(data[i:i + 1], TS)]
    assert comparable(one_by_one) == comparable(at_once)
    assert (whole.good, whole.bad) == (single.good, single.bad)
    assert whole.good + whole.bad == len(at_once)
    assert whole.pending <= 64


codes = st.one_of(
    st.sampled_from([7, 11, 12]).flatmap(
        lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
    ).map(lambda body: body + check_digit(body)),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    .map(lambda text: "X-" + text),  # an opaque code: never a GTIN, never an AIM prefix
)


@given(st.lists(codes, min_size=1, max_size=10), st.sampled_from([b"\r", b"\r\n", b"\n"]),
       st.integers(1, 7))
def test_encoded_lines_decode_back(batch: list[str], terminator: bytes, chunk: int) -> None:
    stream = b"".join(encode_line(c, terminator=terminator) for c in batch)
    dec = new_decoder()
    out = [x for i in range(0, len(stream), chunk) for x in dec.feed(stream[i:i + chunk], TS)]
    assert all(isinstance(x, Scan) for x in out)
    assert [x.code for x in out if isinstance(x, Scan)] == batch
    assert all(x.gtin == x.code.rjust(14, "0") for x in out
               if isinstance(x, Scan) and not x.code.startswith("X-"))


gs1_like = st.text(alphabet="0123456789()/?=&%:.ABCxyz#\x1d^", max_size=60)


@given(st.sampled_from(["", "]C1", "]d2", "]Q1", "]Q3", "]E0", "]E3", "]I1", "(01)", "(17)",
                        "https://id.gs1.org/01/", "https://x.example/01/09501101020917/"]),
       gs1_like, st.booleans())
def test_gs1_shaped_lines_give_a_scan_or_a_peer_error(prefix: str, text: str,
                                                      without_prefix: bool) -> None:
    line = (prefix + text).encode()
    try:
        scan = decode_line(line, store_id="s1", device_id="scan-1", received_ts=TS,
                           separator="^" if without_prefix else "\x1d",
                           gs1_without_prefix=without_prefix)
    except PeerError as exc:
        assert exc.source == "scan-1"
        return
    assert scan.gtin is None or (len(scan.gtin) == 14 and check_digit(scan.gtin[:-1]) ==
                                 scan.gtin[-1])
    if scan.ai is not None:
        assert scan.ai.get("01") == scan.gtin
