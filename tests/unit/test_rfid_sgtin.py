"""SGTIN-96 against the GS1 EPC Tag Data Standard's worked example and property round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.rfid.sgtin import check_digit, decode_sgtin96, encode_sgtin96
from storeedge.errors import PayloadError, UsageError

# GS1 EPC Tag Data Standard (TDS 1.x, Annex "Encoding and decoding examples", SGTIN-96):
# urn:epc:tag:sgtin-96:3.0614141.812345.6789 <-> 3074257BF7194E4000001A85, whose GTIN is
# (01)80614141123458. The same pair is machine-readable in GS1's Tag Data Translation file
# https://ref.gs1.org/standards/tdt/2.0.0/SGTIN-96.xml (partition 5 = 7-digit company prefix).
TDS_HEX = "3074257BF7194E4000001A85"


def test_tds_example_decodes() -> None:
    s = decode_sgtin96(TDS_HEX)
    assert s is not None
    assert (s.filter, s.company_prefix, s.item_reference, s.serial) == (3, "0614141", "812345",
                                                                         6789)
    assert s.gtin == "80614141123458"
    assert s.uri == "urn:epc:id:sgtin:0614141.812345.6789"
    assert decode_sgtin96(TDS_HEX.lower()) == s


def test_tds_example_encodes() -> None:
    assert encode_sgtin96("80614141123458", 6789, company_prefix_digits=7, filter=3) == TDS_HEX


def test_check_digit_of_gs1_example() -> None:
    # GS1 General Specifications, check digit calculation: GTIN-13 629104150021 -> 3.
    assert check_digit("629104150021") == "3"


@pytest.mark.parametrize("epc", [
    "E2801160600002084F5DAB5A",  # a chip's factory EPC (TID-derived), not SGTIN
    "3174257BF7194E4000001A85",  # SSCC-96 header 0x31
    "30",  # too short
    "3074257BF7194E4000001A8500",  # too long for SGTIN-96
    "307C257BF7194E4000001A85",  # partition 7 is reserved
    "30" + "1" + "F" * 21,  # company prefix field overflows its digits
])
def test_not_sgtin96_is_none(epc: str) -> None:
    assert decode_sgtin96(epc) is None


# The last: full-width digits, which int(..., 16) would take.
@pytest.mark.parametrize("epc", ["", "30ZZ", "30 74", "\uff13\uff10"])
def test_not_hex_is_payload_error(epc: str) -> None:
    with pytest.raises(PayloadError, match="not hex"):
        decode_sgtin96(epc)


@pytest.mark.parametrize(("gtin", "digits"), [("80614141123450", 7), ("806141411234", 7),
                                               ("80614141123458", 5), ("8061414112345X", 7)])
def test_encode_refuses_bad_input(gtin: str, digits: int) -> None:
    with pytest.raises(UsageError):
        encode_sgtin96(gtin, 1, company_prefix_digits=digits)


@st.composite
def gtins(draw: st.DrawFn) -> tuple[str, int]:
    digits = draw(st.integers(6, 12))
    body = draw(st.text("0123456789", min_size=13, max_size=13))
    return body + check_digit(body), digits


@given(gtins(), st.integers(0, 2**38 - 1), st.integers(0, 7))
def test_round_trip(gtin_digits: tuple[str, int], serial: int, filter_: int) -> None:
    gtin, digits = gtin_digits
    epc = encode_sgtin96(gtin, serial, company_prefix_digits=digits, filter=filter_)
    s = decode_sgtin96(epc)
    assert s is not None
    assert (s.gtin, s.serial, s.filter, len(s.company_prefix)) == (gtin, serial, filter_, digits)


@given(st.text(max_size=30))
def test_any_text_gives_sgtin_none_or_payload_error(text: str) -> None:
    try:
        decode_sgtin96(text)
    except PayloadError:
        pass
