"""GS1 check digits, element strings, the bracketed form and Digital Link URIs: golden examples
from GS1's documents and from independent parsers' documentation, then properties."""

from __future__ import annotations

import re
from datetime import date

import pytest
from biip.checksums import gs1_standard_check_digit
from biip.gs1_application_identifiers import _GS1_APPLICATION_IDENTIFIERS
from hypothesis import given
from hypothesis import strategies as st

from devices.scanner.gs1 import (
    GS,
    Element,
    check_digit,
    encode_element_string,
    has_valid_check_digit,
    parse_digital_link,
    parse_element_string,
    parse_hri,
    resolve_date,
    to_gtin14,
    to_hri,
)
from storeedge.errors import PayloadError, UsageError
from storeedge.ids import gs1_check_digit

YEAR = 2026

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


def parse(text: str) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((e.ai, e.data, e.value)
                 for e in parse_element_string(text, reference_year=YEAR).elements)


@pytest.mark.parametrize("key", GOLDEN_KEYS)
def test_golden_check_digits(key: str) -> None:
    assert check_digit(key[:-1]) == key[-1]
    assert has_valid_check_digit(key)
    wrong = key[:-1] + str((int(key[-1]) + 1) % 10)
    assert not has_valid_check_digit(wrong)


@given(st.from_regex(r"\A[0-9]{1,30}\Z"))
def test_our_check_digit_is_biips(body: str) -> None:
    # Ours spares the agent biip's import (its 19 MB company-prefix table) where only a check
    # digit is wanted; biip's is an independent implementation of the same rule.
    assert str(gs1_check_digit(body)) == check_digit(body) == str(gs1_standard_check_digit(body))


def test_normalise_to_gtin14() -> None:
    assert to_gtin14("96385074") == "00000096385074"  # EAN-8
    assert to_gtin14("036000241457") == "00036000241457"  # UPC-A
    assert to_gtin14("6291041500213") == "06291041500213"  # EAN-13
    assert to_gtin14("09501101020917") == "09501101020917"  # GTIN-14
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
    one = parse_element_string(DM_EXAMPLE_1, reference_year=YEAR)
    assert to_hri(one.elements) == "(01)03453120000011(17)191125(10)ABCD1234"
    assert parse(DM_EXAMPLE_2) == (("01", "09501101020917", None), ("17", "190508", "2019-05-08"),
                                   ("10", "ABCD1234", None), ("21", "10", None))
    assert [e.title for e in one.elements] == ["GTIN", "USE BY or EXPIRY", "BATCH/LOT"]
    # Our encoder places the separators as the guideline's encoded data does.
    assert encode_element_string((e.ai, e.data) for e in one.elements) == DM_EXAMPLE_1
    assert encode_element_string([("01", "09501101020917"), ("17", "190508"),
                                  ("10", "ABCD1234"), ("21", "10")]) == DM_EXAMPLE_2


def test_measures_prices_and_counts_of_other_parsers_documentation() -> None:
    # gs1_barcode_parser (pub.dev) README: GS1-128 with 01, 17, 10, 3932, 3103, 3922 and 421;
    # its documented result: 3932 PRICE 47.11 (currency 971), 3103 NET WEIGHT (kg) 0.525,
    # 3922 PRICE 47.11, 421 SHIP TO POST 49716. FNC1 after each variable-length field.
    text = ("0104012345678901" "17150129" "10ABC123" + GS + "39329714711" + GS + "3103000525"
            "39224711" + GS + "42149716")
    assert parse(text) == (
        ("01", "04012345678901", None), ("17", "150129", "2015-01-29"), ("10", "ABC123", None),
        ("3932", "9714711", "971 47.11"), ("3103", "000525", "0.525"),
        ("3922", "4711", "47.11"), ("421", "49716", None))
    # libgs1-cpp README: 01, 10, 21 (variable, FNC1-ended), 3102 (two decimals) and 11.
    assert parse("010061414199999610ABCDEF123456" + GS + "21654321FEDCBA" + GS +
                 "310200123411140823") == (
        ("01", "00614141999996", None), ("10", "ABCDEF123456", None),
        ("21", "654321FEDCBA", None), ("3102", "001234", "12.34"), ("11", "140823", "2014-08-23"))
    # biip's documentation: best before date and batch after a GTIN.
    assert to_hri(parse_element_string("010703206980498815210526100329",
                                       reference_year=YEAR).elements) == \
        "(01)07032069804988(15)210526(10)0329"


def test_any_ai_of_the_general_specifications() -> None:
    assert parse("371234" + GS + "9112345ABC" + GS + "99internal-ref" + GS + "2405-X/1") == (
        ("37", "1234", None), ("91", "12345ABC", None), ("99", "internal-ref", None),
        ("240", "5-X/1", None))
    # Day 00 is the month's last day (General Specifications 3.4.5): 2016 is a leap year.
    assert parse("16160200") == (("16", "160200", "2016-02-29"),)
    assert parse("7003" "2605271430") == (("7003", "2605271430", "2026-05-27T14:30"),)
    assert parse("7007" "260501260531") == (("7007", "260501260531", "2026-05-01/2026-05-31"),)
    assert parse("00106141412345678908") == (("00", "106141412345678908", None),)
    assert parse("3922" "1250" + GS + "3941" "0125") == (("3922", "1250", "12.50"),
                                                      ("3941", "0125", "12.5"))


def test_separator_tolerance() -> None:
    expected = parse(DM_EXAMPLE_2)
    assert parse(GS + DM_EXAMPLE_2) == expected  # FNC1 in first position as GS
    assert parse("0109501101020917" + GS + "17190508" + GS + "10ABCD1234" + GS + "2110") == \
        expected
    assert parse(DM_EXAMPLE_2 + GS) == expected
    # A scanner set to send another character for FNC1.
    got = parse_element_string(DM_EXAMPLE_2.replace(GS, "^"), reference_year=YEAR,
                               separator="^")
    assert tuple((e.ai, e.data, e.value) for e in got.elements) == expected


@pytest.mark.parametrize(
    ("text", "kept", "error"),
    [
        # A GTIN is never lost because a later AI could not be read.
        ("0109501101020917" "23ABC" + GS + "10LOT1", ["01", "10"],
         r"unknown AI at offset 16: '23AB'; 5 characters up to the next FNC1 skipped"),
        ("0109501101020917" "17191325" "10LOT1", ["01", "10"],
         r"AI \(17\) USE BY or EXPIRY '191325' is not a calendar date \(YYMMDD\)"),
        ("0109501101020917" "17190231" "10LOT1", ["01", "10"], r"not a calendar date"),
        ("0109501101020917" "10AB#C" + GS + "2110", ["01", "21"],
         r"AI \(10\) BATCH/LOT 'AB#C' has a character outside GS1 set 82: '#'"),
        ("0109501101020917" "10" + "A" * 21, ["01"],
         r"AI \(10\) BATCH/LOT is 21 characters, at most 20 \(a missing FNC1\?\)"),
        ("0109501101020917" "3103" "12x456", ["01"],
         r"AI \(3103\) NET WEIGHT \(kg\) '12x456' must be digits \(N4\+N6\)"),
        ("0109501101020918" "10LOT1", ["10"],
         r"AI \(01\) GTIN: Invalid GTIN check digit .* Expected 7, got 8"),
        ("10LOT1" + GS + "01095011010209", ["10"], r"AI \(01\) GTIN needs 14 characters, got 12"),
        ("0109501101020917" "10" + GS + "2110", ["01", "21"], r"AI \(10\) BATCH/LOT is empty"),
        ("0109501101020917" "9", ["01"], r"unknown AI at offset 16: '9'"),
    ],
)
def test_an_unreadable_ai_keeps_the_rest(text: str, kept: list[str], error: str) -> None:
    result = parse_element_string(text, reference_year=YEAR)
    assert [e.ai for e in result.elements] == kept
    [message] = result.errors
    assert re.search(error, message), message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty GS1 element string"),
        (GS, "empty GS1 element string"),
        ("0109501101020918", r"AI \(01\) GTIN: Invalid GTIN check digit"),
        ("23XX", r"unknown AI at offset 0: '23XX'"),
        ("17191325" + GS + "10",
         r"AI \(17\) .* not a calendar date \(YYMMDD\); AI \(10\) BATCH/LOT is empty"),
    ],
)
def test_nothing_readable_is_a_payload_error(text: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_element_string(text, reference_year=YEAR)


def test_human_readable_form() -> None:
    # GS1 DataMatrix Guideline 2.5, section 2.3, example 2 as printed under the symbol.
    hri = "(01)09501101020917(17)190508(10)ABCD1234(21)10"
    result = parse_hri(hri, reference_year=YEAR)
    assert to_hri(result.elements) == hri
    assert result.get("17") == Element("17", "190508", "USE BY or EXPIRY", "2019-05-08")
    assert parse_hri("(01) 09501101020917 (17) 190508 (10) ABCD1234 (21) 10",
                     reference_year=YEAR) == result
    # In the bracketed form an unknown AI's extent is known: everything else is kept.
    result = parse_hri("(01)09501101020917(23)XY(3103)000195", reference_year=YEAR)
    assert [(e.ai, e.value) for e in result.elements] == [("01", None), ("3103", "0.195")]
    assert result.errors == ("unknown AI (23)",)
    for bad, message in (("01)0950", "not a GS1 human-readable string"),
                         ("(01)09501101020918", r"AI \(01\) GTIN: Invalid GTIN check digit")):
        with pytest.raises(PayloadError, match=message):
            parse_hri(bad, reference_year=YEAR)


def test_digital_link() -> None:
    # GS1 Digital Link standard's example (as biip's documentation reproduces it).
    uri = "https://id.gs1.org/01/09520123456788/22/2A/10/ABC123/21/12345?17=180426"
    result = parse_digital_link(uri, reference_year=YEAR)
    assert result is not None
    assert [(e.ai, e.data, e.value) for e in result.elements] == [
        ("01", "09520123456788", None), ("22", "2A", None), ("10", "ABC123", None),
        ("21", "12345", None), ("17", "180426", "2018-04-26")]
    # A GTIN-13 in the path is zero-padded; an escaped '/' is data; query AIs with decimals;
    # non-GS1 query keys are ignored; an unknown or bad AI is reported and the rest kept.
    result = parse_digital_link("https://example.com/shop/01/9520123456788/10/A%2FB"
                                "?3103=000195&utm=x&17=189999&23=1", reference_year=YEAR)
    assert result is not None
    assert [(e.ai, e.data, e.value) for e in result.elements] == [
        ("01", "09520123456788", None), ("10", "A/B", None), ("3103", "000195", "0.195")]
    assert len(result.errors) == 2 and "AI (17)" in result.errors[0] and \
        result.errors[1] == "unknown AI (23)"
    # Not a Digital Link: an ordinary web address.
    assert parse_digital_link("https://example.com/p?id=1", reference_year=YEAR) is None
    assert parse_digital_link("mailto:a@b", reference_year=YEAR) is None
    with pytest.raises(PayloadError, match=r"AI \(01\) GTIN: Invalid GTIN check digit"):
        parse_digital_link("https://id.gs1.org/01/09520123456789", reference_year=YEAR)


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
    with pytest.raises(PayloadError, match=r"AI \(15\) date 151301 is not a calendar date"):
        resolve_date("151301", 2020, ai="15")


def test_encoder_refuses_misuse() -> None:
    with pytest.raises(UsageError, match=r"unknown AI \(23\)"):
        encode_element_string([("23", "x")])
    with pytest.raises(UsageError, match="Invalid GTIN check digit"):
        encode_element_string([("01", "09501101020918")])
    with pytest.raises(UsageError, match=r"AI \(21\) SERIAL is empty"):
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


@given(bodies, st.integers(0, 12), st.integers(1, 9))
def test_single_digit_errors_are_caught(body: str, position: int, delta: int) -> None:
    gtin = body + check_digit(body)
    position %= len(gtin)
    wrong = gtin[:position] + str((int(gtin[position]) + delta) % 10) + gtin[position + 1:]
    assert not has_valid_check_digit(wrong)


CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
# A sample of every kind of AI: keys with check digits, dates, measures with implied decimals,
# amounts with currency, counts, variable text, company-internal.
SAMPLE_AIS = ["00", "01", "10", "11", "15", "17", "21", "30", "37", "240", "3103", "3202",
              "3922", "3932", "8008", "90", "91", "99"]


@st.composite
def elements(draw: st.DrawFn) -> list[tuple[str, str]]:
    out = []
    for ai in draw(st.lists(st.sampled_from(SAMPLE_AIS), min_size=1, max_size=6, unique=True)):
        fmt = _GS1_APPLICATION_IDENTIFIERS[ai].format.split("+")[1:]
        if ai in ("00", "01"):
            n = 17 if ai == "00" else 13
            body = draw(st.text("0123456789", min_size=n, max_size=n))
            data = body + check_digit(body)
        elif ai in ("11", "15", "17"):
            data = draw(st.dates(date(2000, 1, 1), date(2074, 12, 31))).strftime("%y%m%d")
        elif ai == "8008":
            data = draw(st.dates(date(2000, 1, 1), date(2074, 12, 31))).strftime("%y%m%d") + "12"
        elif ai == "3932":
            data = "978" + draw(st.text("0123456789", min_size=1, max_size=15))
        elif fmt[0].startswith("N"):
            n = int(fmt[0].lstrip("N."))
            size = {"min_size": n, "max_size": n} if ".." not in fmt[0] else {
                "min_size": 1, "max_size": n}
            data = draw(st.text("0123456789", **size))
        else:
            data = draw(st.text(CSET82, min_size=1, max_size=int(fmt[0].lstrip("X."))))
        out.append((ai, data))
    return out


@given(elements())
def test_element_strings_round_trip(pairs: list[tuple[str, str]]) -> None:
    encoded = encode_element_string(pairs)
    result = parse_element_string(encoded, reference_year=YEAR)
    assert result.errors == ()
    assert [(e.ai, e.data) for e in result.elements] == pairs
    # The bracketed form is for people: a value that itself holds "(nn)" reads as another AI
    # there, so only the rest must survive it.
    if not any("(" in data for _, data in pairs):
        assert parse_hri(to_hri(result.elements), reference_year=YEAR).elements == result.elements


@given(elements(), st.integers(0, 5), st.sampled_from(["23", "1", "\x1d\x1d", "#"]))
def test_garbage_spliced_in_keeps_what_came_before(pairs: list[tuple[str, str]], at: int,
                                                   junk: str) -> None:
    at %= len(pairs) + 1
    head = encode_element_string(pairs[:at]) + GS if at else ""
    text = head + junk + GS + encode_element_string(pairs[at:]) if at < len(pairs) else \
        head + junk
    try:
        result = parse_element_string(text, reference_year=YEAR)
    except PayloadError:
        assert at == 0
        return
    assert [(e.ai, e.data) for e in result.elements][:at] == pairs[:at]


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_payload_error(text: str) -> None:
    try:
        result = parse_element_string(text, reference_year=YEAR)
    except PayloadError:
        return
    assert result.elements and all(e.ai in _GS1_APPLICATION_IDENTIFIERS for e in result.elements)
