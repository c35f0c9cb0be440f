"""GS1 check digits and element strings: golden examples from GS1's documents, then properties."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.scanner.gs1 import (
    AI_SPECS,
    GS,
    Element,
    check_digit,
    encode_element_string,
    has_valid_check_digit,
    parse_element_string,
    resolve_date,
    to_gtin14,
    to_hri,
)
from storeedge.errors import PayloadError, UsageError

# Check digits worked out in public documents:
# - GS1, "How to calculate a check digit manually" (gs1.org/how-calculate-check-digit-manually):
#   GTIN-13 629104150021 -> 3.
# - GS1 Sweden, "Så beräknas kontrollsiffran": GTIN-13 730001100001 -> 7.
# - GS1 India, "How to calculate the Check Digit": 890400021003 -> 7.
# - GS1 UK, "How to calculate your check digit": 501234567890 -> 0.
# - Wikipedia, "Check digit" (UPC-A of a box of tissues): 036000241457.
# - Wikipedia, "EAN-8" (the article's example symbol): 96385074.
GOLDEN_KEYS = ["6291041500213", "7300011000017", "8904000210037", "5012345678900",
               "036000241457", "96385074"]

# GS1 DataMatrix Guideline, release 2.5, section 2.3 (human readable interpretation), examples 1
# and 2, as encoded data: FNC1 in first position is the ]d2 identifier, the inner FNC1 a GS.
DM_EXAMPLE_1 = "01034531200000111719112510ABCD1234"
DM_EXAMPLE_2 = "01095011010209171719050810ABCD1234" + GS + "2110"


@pytest.mark.parametrize("key", GOLDEN_KEYS)
def test_golden_check_digits(key: str) -> None:
    assert check_digit(key[:-1]) == key[-1]
    assert has_valid_check_digit(key)
    wrong = key[:-1] + str((int(key[-1]) + 1) % 10)
    assert not has_valid_check_digit(wrong)


def test_normalise_to_gtin14() -> None:
    assert to_gtin14("96385074") == "00000096385074"  # EAN-8
    assert to_gtin14("036000241457") == "00036000241457"  # UPC-A
    assert to_gtin14("6291041500213") == "06291041500213"  # EAN-13
    assert to_gtin14("09501101020917") == "09501101020917"  # GTIN-14
    # The same item as UPC-A and as EAN-13 (leading zero) is one GTIN.
    assert to_gtin14("0036000241457") == to_gtin14("036000241457")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("6291041500214", "bad check digit in GTIN 6291041500214: expected 3, got 4"),
        ("629104150021", "bad check digit"),  # 12 digits: read as a UPC-A, whose check fails
        ("62910415002", "not 8, 12, 13 or 14 digits"),
        ("629104150021X", "not 8, 12, 13 or 14 digits"),
        ("\uff16" * 13, "not 8, 12, 13 or 14 digits"),  # fullwidth digits: isdigit() is True
    ],
)
def test_bad_gtins(code: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        to_gtin14(code)


def test_golden_element_strings() -> None:
    one = parse_element_string(DM_EXAMPLE_1)
    assert to_hri(one) == "(01)03453120000011(17)191125(10)ABCD1234"
    two = parse_element_string(DM_EXAMPLE_2)
    assert two == (Element("01", "09501101020917"), Element("17", "190508"),
                   Element("10", "ABCD1234"), Element("21", "10"))
    assert to_hri(two) == "(01)09501101020917(17)190508(10)ABCD1234(21)10"
    # Our encoder places the separators as the guideline's encoded data does.
    assert encode_element_string((e.ai, e.data) for e in one) == DM_EXAMPLE_1
    assert encode_element_string((e.ai, e.data) for e in two) == DM_EXAMPLE_2


def test_separator_tolerance() -> None:
    expected = parse_element_string(DM_EXAMPLE_2)
    assert parse_element_string(GS + DM_EXAMPLE_2) == expected  # FNC1 in first position as GS
    # A GS after a predefined-length field is superfluous but harmless.
    assert parse_element_string(
        "0109501101020917" + GS + "17190508" + GS + "10ABCD1234" + GS + "2110") == expected
    assert parse_element_string(DM_EXAMPLE_2 + GS) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0109501101020918", r"AI \(01\) bad check digit in GTIN 09501101020918: expected 7"),
        ("010950110102091", r"AI \(01\) GTIN truncated: needs 14 characters"),
        ("01095011010209" + GS + "17", r"AI \(01\) GTIN truncated"),
        ("0109501101020917171905", r"AI \(17\) expiration date truncated"),
        ("0109501101020917410950110102091", r"unknown AI \('41'\) at offset 16"),
        ("01095011010209171", r"truncated AI at offset 16"),
        ("10" + "A" * 21, r"AI \(10\) batch/lot is 21 characters, at most 20"),
        ("10ABC2110", None),  # no separator: one batch "ABC2110", which is valid
        ("10" + GS + "2110", r"AI \(10\) batch/lot is empty"),
        ("10AB#C", r"AI \(10\) batch/lot has a character outside GS1 set 82: '#'"),
        ("17191325", r"AI \(17\) date 191325 is not a calendar date"),
        ("17190231", r"not a calendar date"),
        ("", r"empty GS1 element string"),
        (GS, r"empty GS1 element string"),
        (GS + GS + "2110", r"unknown AI"),
    ],
)
def test_bad_element_strings(text: str, message: str | None) -> None:
    if message is None:
        assert parse_element_string(text) == (Element("10", "ABC2110"),)
        return
    with pytest.raises(PayloadError, match=message):
        parse_element_string(text)


def test_dates() -> None:
    # GS1 General Specifications 3.4.5, note on AI (17): day 00 is the month's last day,
    # "130200" is 2013 February 28 and "160200" is 2016 February 29.
    assert resolve_date("130200", 2020) == date(2013, 2, 28)
    assert resolve_date("160200", 2020) == date(2016, 2, 29)
    assert resolve_date("190508", 2026) == date(2019, 5, 8)
    # Century (General Specifications 7.12): from 49 years back to 50 years ahead.
    assert resolve_date("751231", 2025) == date(2075, 12, 31)
    assert resolve_date("760101", 2025) == date(1976, 1, 1)
    assert resolve_date("760101", 2026) == date(2076, 1, 1)
    assert resolve_date("010101", 2099) == date(2101, 1, 1)
    with pytest.raises(PayloadError, match="not a calendar date in 2015"):
        resolve_date("150229", 2020)


def test_encoder_refuses_misuse() -> None:
    with pytest.raises(UsageError, match="unknown AI"):
        encode_element_string([("99", "x")])
    with pytest.raises(UsageError, match="bad check digit"):
        encode_element_string([("01", "09501101020918")])
    with pytest.raises(UsageError, match=r"1\.\.20 characters"):
        encode_element_string([("21", "")])
    with pytest.raises(UsageError):
        encode_element_string([])
    with pytest.raises(UsageError):
        check_digit("12a")


# Properties

bodies = st.sampled_from([7, 11, 12, 13]).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n))


@given(bodies)
def test_generated_gtins_validate(body: str) -> None:
    gtin = body + check_digit(body)
    assert has_valid_check_digit(gtin)
    assert to_gtin14(gtin) == gtin.rjust(14, "0")
    assert has_valid_check_digit(to_gtin14(gtin))


@given(bodies, st.integers(0, 12), st.integers(1, 9))
def test_single_digit_errors_are_caught(body: str, position: int, delta: int) -> None:
    gtin = body + check_digit(body)
    position %= len(gtin)
    wrong = gtin[:position] + str((int(gtin[position]) + delta) % 10) + gtin[position + 1:]
    assert not has_valid_check_digit(wrong)


CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


@st.composite
def elements(draw: st.DrawFn) -> list[tuple[str, str]]:
    out = []
    for ai in draw(st.lists(st.sampled_from(sorted(AI_SPECS)), min_size=1, max_size=6)):
        spec = AI_SPECS[ai]
        if spec.kind == "gtin":
            body = draw(st.text(alphabet="0123456789", min_size=13, max_size=13))
            data = body + check_digit(body)
        elif spec.kind == "date":
            d = draw(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
            data = d.strftime("%y%m%d")
        else:
            data = draw(st.text(alphabet=CSET82, min_size=1, max_size=spec.length))
        out.append((ai, data))
    return out


@given(elements())
def test_element_strings_round_trip(pairs: list[tuple[str, str]]) -> None:
    encoded = encode_element_string(pairs)
    assert [(e.ai, e.data) for e in parse_element_string(encoded)] == pairs


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_payload_error(text: str) -> None:
    try:
        parsed = parse_element_string(text)
    except PayloadError:
        return
    assert parsed and all(e.ai in AI_SPECS for e in parsed)
