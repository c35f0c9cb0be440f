"""GS1 identification keys and element strings: a pure codec, no I/O and no clock.

Check digits (GS1 General Specifications section 7.9, "Standard check digit calculations"): the
digits are weighted 3, 1, 3, 1, ... from the right-most digit before the check digit; the check
digit brings the weighted sum up to the next multiple of ten. One rule serves GTIN-8 (EAN-8),
GTIN-12 (UPC-A), GTIN-13 (EAN-13) and GTIN-14. Shorter GTINs become GTIN-14 by left-padding with
zeros, which leaves the check digit unchanged (the padding weighs nothing).

Element strings (GS1 General Specifications section 3 and 7.8): an Application Identifier (AI)
then its data, concatenated. An AI of predefined length needs no separator; a variable-length
field ends at FNC1, which scanners transmit as ASCII GS (0x1D), or at the end of the data. The
AIs known here:

    01  GTIN-14           n14, check digit verified
    10  batch or lot      x..20
    11  production date   n6 YYMMDD
    15  best before date  n6 YYMMDD
    16  sell by date      n6 YYMMDD
    17  expiration date   n6 YYMMDD
    21  serial number     x..20

Dates: day 00 means the last day of the month (section 3.4.5, note), and the century is chosen so
that the year falls from 49 years before to 50 years after a reference year (section 7.12).

Every malformed input raises ``PayloadError`` naming what is wrong; misuse of the encoders raises
``UsageError``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from storeedge.errors import PayloadError, UsageError

GS = "\x1d"  # FNC1 as a scanner transmits it between fields

GTIN_LENGTHS = (8, 12, 13, 14)

# GS1 AI encodable character set 82 (General Specifications figure 7.11-1).
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]*")
_DIGITS = re.compile(r"[0-9]*")


def _is_digits(text: str) -> bool:
    # str.isdigit() accepts non-ASCII digits such as '²'; a barcode carries ASCII only.
    return _DIGITS.fullmatch(text) is not None


def check_digit(body: str) -> str:
    """The GS1 mod-10 check digit for ``body`` (a key without its check digit)."""
    if not body or not _is_digits(body):
        raise UsageError(f"a check digit is computed over digits, got {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


def has_valid_check_digit(key: str) -> bool:
    """True when ``key`` (digits, check digit last) carries the right check digit."""
    return len(key) >= 2 and _is_digits(key) and check_digit(key[:-1]) == key[-1]


def to_gtin14(code: str) -> str:
    """Normalise an EAN-8, UPC-A, EAN-13 or GTIN-14 to its 14-digit GTIN.

    Raises PayloadError when ``code`` is not all digits, has another length, or fails its check
    digit.
    """
    if not _is_digits(code) or len(code) not in GTIN_LENGTHS:
        raise PayloadError(f"not a GTIN: {code[:40]!r} is not 8, 12, 13 or 14 digits")
    if not has_valid_check_digit(code):
        raise PayloadError(
            f"bad check digit in GTIN {code}: expected {check_digit(code[:-1])}, got {code[-1]}"
        )
    return code.rjust(14, "0")


# Application identifiers


@dataclass(frozen=True, slots=True)
class _AiSpec:
    title: str
    length: int  # the fixed data length, or the maximum of a variable-length field
    fixed: bool
    kind: str  # "gtin", "date" or "text"


AI_SPECS: dict[str, _AiSpec] = {
    "01": _AiSpec("GTIN", 14, True, "gtin"),
    "10": _AiSpec("batch/lot", 20, False, "text"),
    "11": _AiSpec("production date", 6, True, "date"),
    "15": _AiSpec("best before date", 6, True, "date"),
    "16": _AiSpec("sell by date", 6, True, "date"),
    "17": _AiSpec("expiration date", 6, True, "date"),
    "21": _AiSpec("serial number", 20, False, "text"),
}


@dataclass(frozen=True, slots=True)
class Element:
    """One AI and its data, exactly as carried in the barcode."""

    ai: str
    data: str


def parse_element_string(text: str) -> tuple[Element, ...]:
    """Split GS1 element strings into their elements, validating each field.

    ``text`` is the barcode data after the symbology identifier; a leading GS (FNC1 in first
    position, as some scanners send it) is skipped, and a superfluous GS after a predefined-length
    field is tolerated. Raises PayloadError for an unknown AI, a truncated or over-long field, a bad
    check digit, a bad date or a character outside GS1's set 82.
    """
    pos = 1 if text.startswith(GS) else 0
    if pos >= len(text):
        raise PayloadError("empty GS1 element string")
    elements: list[Element] = []
    while pos < len(text):
        ai = text[pos:pos + 2]
        spec = AI_SPECS.get(ai)
        if spec is None:
            if len(ai) < 2:
                raise PayloadError(f"truncated AI at offset {pos}: {ai!r}")
            raise PayloadError(f"unknown AI ({ai!r}) at offset {pos}")
        start = pos + 2
        if spec.fixed:
            data = text[start:start + spec.length]
            if len(data) < spec.length or GS in data:
                raise PayloadError(
                    f"AI ({ai}) {spec.title} truncated: needs {spec.length} characters, "
                    f"got {data.split(GS)[0]!r}"
                )
            pos = start + spec.length
        else:
            end = text.find(GS, start)
            if end < 0:
                end = len(text)
            data = text[start:end]
            if not data:
                raise PayloadError(f"AI ({ai}) {spec.title} is empty")
            if len(data) > spec.length:
                raise PayloadError(
                    f"AI ({ai}) {spec.title} is {len(data)} characters, at most {spec.length} "
                    "(a missing GS separator?)"
                )
            pos = end
        _validate(ai, spec, data)
        elements.append(Element(ai, data))
        if text.startswith(GS, pos):  # the separator, or a superfluous one after a fixed field
            pos += 1
    return tuple(elements)


def _validate(ai: str, spec: _AiSpec, data: str) -> None:
    if spec.kind == "gtin":
        if not _is_digits(data):
            raise PayloadError(f"AI ({ai}) GTIN is not 14 digits: {data!r}")
        if not has_valid_check_digit(data):
            raise PayloadError(
                f"AI ({ai}) bad check digit in GTIN {data}: expected {check_digit(data[:-1])}"
            )
    elif spec.kind == "date":
        _date_parts(ai, data)
    elif _CSET82.fullmatch(data) is None:
        bad = next(c for c in data if _CSET82.fullmatch(c) is None)
        raise PayloadError(f"AI ({ai}) {spec.title} has a character outside GS1 set 82: {bad!r}")


def _date_parts(ai: str, data: str) -> tuple[int, int, int]:
    if not _is_digits(data) or len(data) != 6:
        raise PayloadError(f"AI ({ai}) date is not YYMMDD: {data!r}")
    yy, mm, dd = int(data[:2]), int(data[2:4]), int(data[4:])
    # Any year's month length bounds the day here; the century is only known with a reference.
    if not 1 <= mm <= 12 or dd > calendar.monthrange(2000, mm)[1]:
        raise PayloadError(f"AI ({ai}) date {data} is not a calendar date")
    return yy, mm, dd


def resolve_date(yymmdd: str, reference_year: int, *, ai: str = "17") -> date:
    """A GS1 YYMMDD date as a calendar date, given the year it was read in.

    Century per General Specifications 7.12: the year is taken within 49 years before and 50 years
    after ``reference_year``. Day 00 is the last day of the month (leap years included).
    """
    yy, mm, dd = _date_parts(ai, yymmdd)
    year = reference_year - reference_year % 100 + yy
    if year - reference_year > 50:
        year -= 100
    elif reference_year - year > 49:
        year += 100
    last = calendar.monthrange(year, mm)[1]
    if dd > last:  # 29 February in a year that has none
        raise PayloadError(f"AI ({ai}) date {yymmdd} is not a calendar date in {year}")
    return date(year, mm, dd or last)


# Encoding (for simulators and tests)


def encode_element_string(elements: Iterable[tuple[str, str]]) -> str:
    """Concatenate ``(ai, data)`` pairs as a scanner transmits them, without symbology prefix:
    a GS after every variable-length field except the last. Validates like the parser."""
    pairs = list(elements)
    if not pairs:
        raise UsageError("an element string needs at least one element")
    out: list[str] = []
    for i, (ai, data) in enumerate(pairs):
        spec = AI_SPECS.get(ai)
        if spec is None:
            raise UsageError(f"unknown AI ({ai})")
        if spec.fixed and len(data) != spec.length:
            raise UsageError(f"AI ({ai}) needs exactly {spec.length} characters, got {data!r}")
        if not spec.fixed and not 1 <= len(data) <= spec.length:
            raise UsageError(f"AI ({ai}) takes 1..{spec.length} characters, got {data!r}")
        try:
            _validate(ai, spec, data)
        except PayloadError as exc:
            raise UsageError(str(exc)) from exc
        out.append(ai + data)
        if not spec.fixed and i < len(pairs) - 1:
            out.append(GS)
    return "".join(out)


def to_hri(elements: Iterable[Element]) -> str:
    """The human-readable interpretation, e.g. ``(01)09501101020917(17)190508``."""
    return "".join(f"({e.ai}){e.data}" for e in elements)
