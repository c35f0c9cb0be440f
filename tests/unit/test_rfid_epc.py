"""EPCs (GS1 EPC Tag Data Standard): the TDS's own worked examples, rejected inputs, and round
trips between hex, tag URI and pure identity URI."""

from __future__ import annotations

import pytest
from biip.checksums import gs1_standard_check_digit
from hypothesis import given
from hypothesis import strategies as st

from devices.rfid import epc
from devices.rfid.epc import (
    SGTIN_96,
    SGTIN_198,
    SSCC_96,
    Epc,
    decode,
    encode_sgtin96,
    from_gtin,
    from_pure_identity_uri,
    from_sscc,
    from_tag_uri,
)
from rules.trackers.presence import PresenceParams, PresenceTracker
from storeedge.errors import PayloadError, UsageError
from storeedge.events import TagRead

# GS1 EPC Tag Data Standard, Annex E "Example of a Specific Trade Item (SGTIN)" and the encoding
# examples of section 14 (the same rows are machine-checked by GS1's Tag Data Translation
# test suites): (GS1 element string, pure identity URI, tag URI, hex).
TDS_EXAMPLES = [
    ("(01)80614141123458(21)6789", "urn:epc:id:sgtin:0614141.812345.6789",
     "urn:epc:tag:sgtin-96:3.0614141.812345.6789", "3074257BF7194E4000001A85"),
    # SGTIN-198 with an alphanumeric serial whose '/' is escaped in URIs. The TDS prints the
    # 198 bits as 50 hex digits; a tag's EPC bank holds them padded to 13 words (52 digits).
    ("(01)70614141123451(21)32a/b", "urn:epc:id:sgtin:0614141.712345.32a%2Fb",
     "urn:epc:tag:sgtin-198:3.0614141.712345.32a%2Fb",
     "3674257BF6B7A659B2C2BF1000000000000000000000000000"),
    ("(00)106141412345678908", "urn:epc:id:sscc:0614141.1234567890",
     "urn:epc:tag:sscc-96:3.0614141.1234567890", "3174257BF4499602D2000000"),
]


@pytest.mark.parametrize(("element_string", "pure", "tag", "hex_"), TDS_EXAMPLES)
def test_tds_examples_all_ways(element_string: str, pure: str, tag: str, hex_: str) -> None:
    decoded = decode(hex_)
    assert decoded is not None
    assert (decoded.tag_uri, decoded.pure_identity_uri, decoded.element_string) == (
        tag, pure, element_string)
    assert decode(hex_.lower()) == decoded
    assert from_tag_uri(tag) == decoded
    assert from_pure_identity_uri(pure, filter=3) == decoded
    # Encoding gives the EPC bank's whole words: the TDS's digits, zero-padded.
    assert decoded.hex == hex_.ljust(-(-len(hex_) // 4) * 4, "0")
    assert decode(decoded.hex) == decoded


def test_tds_keys() -> None:
    sgtin = decode("3074257BF7194E4000001A85")
    assert sgtin is not None and (sgtin.gtin, sgtin.sscc, sgtin.filter) == (
        "80614141123458", None, 3)
    sscc = decode("3174257BF4499602D2000000")
    assert sscc is not None and (sscc.sscc, sscc.gtin) == ("106141412345678908", None)
    assert from_sscc("106141412345678908", company_prefix_digits=7, filter=3) == sscc
    assert encode_sgtin96("80614141123458", 6789, company_prefix_digits=7, filter=3) == \
        "3074257BF7194E4000001A85"
    assert from_gtin("70614141123451", "32a/b", company_prefix_digits=7, filter=3).scheme == \
        SGTIN_198


def test_pure_identity_picks_the_scheme_the_serial_needs() -> None:
    assert from_pure_identity_uri("urn:epc:id:sgtin:0614141.812345.6789").scheme == SGTIN_96
    assert from_pure_identity_uri("urn:epc:id:sgtin:0614141.812345.06789").scheme == SGTIN_198
    assert from_pure_identity_uri(f"urn:epc:id:sgtin:0614141.812345.{2**38}").scheme == SGTIN_198
    assert from_pure_identity_uri("urn:epc:id:sgtin:0614141.812345.a.b").serial == "a.b"


def _with_serial_char(hex_: str, index: int, char: str) -> str:
    """``hex_`` (an SGTIN-198 of 50 digits) with serial character ``index`` set to ``char``."""
    shift = len(hex_) * 4 - (58 + 7 * (index + 1))  # the serial starts after 58 bits
    return f"{int(hex_, 16) | ord(char) << shift:0{len(hex_)}X}"


@pytest.mark.parametrize("hex_", [
    "E2801160600002084F5DAB5A",  # a chip's factory EPC, no GS1 key
    "7EDA9038051002710002C0AE",  # a tag of the R700 example in test_rfid_impinj
    "3374257BF7194E4000001A85",  # SGLN-96 header: a scheme not decoded here
    "30",  # too short for its header's scheme
    "3074257BF7194E4000001A8500000000",  # SGTIN-96 header, 128 bits
    "307C257BF7194E4000001A85",  # partition 7 is reserved
    "30" + "1" + "F" * 21,  # company prefix field overflows its digits
    "3174257BF4499602D2000001",  # SSCC-96 reserved bits not zero
    "3674257BF6B7A659B2C2BF1000000000000000000000000001",  # SGTIN-198 padding not zero
    _with_serial_char("3674257BF6B7A659B2C2BF1000000000000000000000000000", 6, "A"),  # after NUL
    "3674257BF6" + "00" * 21,  # SGTIN-198 with an empty serial
])
def test_other_epcs_decode_to_none(hex_: str) -> None:
    assert decode(hex_) is None


def test_an_undecodable_epc_is_still_tracked_by_its_hex() -> None:
    # Presence keys on the hex; only the SKU is missing for a tag we cannot decode.
    factory = "E2801160600002084F5DAB5A"
    gtins = {"80614141123458": "sku-1"}

    def sku_of(hex_: str) -> str | None:
        tag = decode(hex_)
        return gtins.get(tag.gtin) if tag is not None and tag.gtin else None

    tracker = PresenceTracker(PresenceParams(), sku_of)
    sscc = "3174257BF4499602D2000000"
    changes = [tracker.observe(TagRead(store_id="s", source="r", received_ts=1.0, epc=e), "dock")
               for e in (factory, sscc, "3074257BF7194E4000001A85")]
    assert [(c.epc, c.change, c.sku) for [c] in changes] == [
        (factory, "arrived", None), (sscc, "arrived", None),
        ("3074257BF7194E4000001A85", "arrived", "sku-1")]


@pytest.mark.parametrize("text", ["", "30ZZ", "30 74", "\uff13\uff10"])
def test_not_hex_is_payload_error(text: str) -> None:
    with pytest.raises(PayloadError, match="EPC is not hex"):
        decode(text)


@pytest.mark.parametrize(("uri", "message"), [
    ("urn:epc:tag:sgtin-96:3.0614141.812345.06789", "SGTIN-96 serial must be a number"),
    ("urn:epc:tag:sgtin-96:3.0614141.812345.274877906944", "SGTIN-96 serial must be"),
    ("urn:epc:tag:sgtin-96:8.0614141.812345.6789", "filter must be 0..7, got '8'"),
    ("urn:epc:tag:sgtin-96:3.0614141.81234.6789", "item reference must be 6 digits"),
    ("urn:epc:tag:sgtin-96:3.06141.81234567.6789", "company prefix must be 6 to 12 digits"),
    ("urn:epc:tag:sgtin-96:3.0614141.812345", "SGTIN URI needs CompanyPrefix.ItemRef.Serial"),
    ("urn:epc:tag:sgtin-198:3.0614141.712345.a/b", "'/' must be escaped as %2F"),
    ("urn:epc:tag:sgtin-198:3.0614141.712345.a%20b", "bad escape '%20'"),
    ("urn:epc:tag:sgtin-198:3.0614141.712345." + "x" * 21, "1 to 20 characters, got 21"),
    ("urn:epc:tag:sgtin-198:3.0614141.712345.a#b", "outside GS1 set 82: '#'"),
    ("urn:epc:tag:sscc-96:3.0614141.123456789", "serial reference must be 10 digits"),
    ("urn:epc:tag:sgln-96:3.0614141.12345.0", "not an SGTIN-96, SGTIN-198 or SSCC-96 tag URI"),
    ("urn:epc:id:sgtin:0614141.812345", "SGTIN URI needs"),
    ("urn:epc:id:sscc:0614141.1234567890.1", "SSCC URI needs CompanyPrefix.SerialRef"),
    ("urn:epc:id:grai:0614141.12345.400", "not an SGTIN or SSCC pure identity URI"),
])
def test_bad_uris_name_the_field(uri: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("(", r"\(").replace(".", r"\.")):
        if ":tag:" in uri:
            from_tag_uri(uri)
        else:
            from_pure_identity_uri(uri)


def test_misuse_is_usage_error() -> None:
    with pytest.raises(UsageError, match="wrong check digit"):
        from_gtin("80614141123450", 1, company_prefix_digits=7)
    with pytest.raises(UsageError, match=r"6\.\.12 digits"):
        from_gtin("80614141123458", 1, company_prefix_digits=5)
    with pytest.raises(UsageError, match="SGTIN-96 serial"):
        from_gtin("80614141123458", "A1", company_prefix_digits=7, scheme=SGTIN_96)
    with pytest.raises(UsageError, match="wrong check digit"):
        from_sscc("106141412345678909", company_prefix_digits=7)
    with pytest.raises(UsageError, match="cannot carry an SSCC"):
        from_pure_identity_uri("urn:epc:id:sscc:0614141.1234567890", scheme=SGTIN_96)
    with pytest.raises(UsageError, match="an SSCC has no serial"):
        Epc(SSCC_96, 0, "0614141", "1234567890", "1")


# Properties

CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


@st.composite
def epcs(draw: st.DrawFn) -> Epc:
    scheme = draw(st.sampled_from([SGTIN_96, SGTIN_198, SSCC_96]))
    cp_digits = draw(st.integers(6, 12))
    total = 17 if scheme == SSCC_96 else 13
    digits = draw(st.text("0123456789", min_size=total, max_size=total))
    if scheme == SGTIN_96:
        serial = str(draw(st.integers(0, 2**38 - 1)))
    elif scheme == SGTIN_198:
        serial = draw(st.text(CSET82, min_size=1, max_size=20))
    else:
        serial = ""
    return Epc(scheme, draw(st.integers(0, 7)), digits[:cp_digits], digits[cp_digits:], serial)


@given(epcs())
def test_round_trips(e: Epc) -> None:
    assert decode(e.hex) == e
    assert from_tag_uri(e.tag_uri) == e
    assert from_pure_identity_uri(e.pure_identity_uri, filter=e.filter, scheme=e.scheme) == e
    key = e.gtin or e.sscc
    assert key is not None and key[-1] == str(gs1_standard_check_digit(key[:-1]))
    assert len(e.hex) % 4 == 0  # whole 16-bit words, as a reader reports them


@given(epcs())
def test_keys_round_trip(e: Epc) -> None:
    digits = len(e.company_prefix)
    if e.sscc is not None:
        assert from_sscc(e.sscc, company_prefix_digits=digits, filter=e.filter) == e
    else:
        assert e.gtin is not None
        assert from_gtin(e.gtin, e.serial, company_prefix_digits=digits, filter=e.filter,
                         scheme=e.scheme) == e


@given(st.text("0123456789ABCDEF", min_size=1, max_size=64))
def test_any_hex_decodes_or_is_none(text: str) -> None:
    e = decode(text)
    if e is not None:
        assert decode(e.hex) == e


@given(st.text(max_size=80))
def test_any_text_as_uri_parses_or_raises_payload_error(text: str) -> None:
    for parse in (epc.from_tag_uri, epc.from_pure_identity_uri):
        try:
            e = parse("urn:epc:tag:sgtin-198:" + text if parse is from_tag_uri else text)
        except PayloadError:
            continue
        assert decode(e.hex) == e
