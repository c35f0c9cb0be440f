"""GS1 keys and element strings: a pure codec, no I/O and no clock.

The GS1 General Specifications' table of Application Identifiers (every AI, its format, fixed or
variable length, data title) and the checks of each AI's data come from biip (PyPI ``biip``).
What this module adds on top:

- Element strings are read one element at a time, so an element that cannot be interpreted (an AI
  not in the table, data that does not fit its AI's format, a bad check digit or date) becomes
  one error naming that AI while every other element is kept. A field's extent is known from
  the table (predefined length) or ends at FNC1, which scanners send as GS (0x1D) or a configured
  character; reading resumes after it. An unknown AI with no FNC1 after it ends the reading,
  because its length is unknowable.
- The meaning of the data, as text (``Element.value``): dates as ISO dates, with the century of
  the year the code was read (section 7.12: from 49 years back to 50 ahead) and day 00 as the
  month's last day (section 3.4); date-times and the date ranges of AI 7007; measures and amounts
  with their implied decimal point (31nn-36nn, 390n-394n: the AI's last digit counts the
  decimals); amounts with an ISO 4217 currency (391n, 393n) as ``"978 12.50"``.
- The human-readable form ``(01)...(10)...`` both ways, and Digital Link URIs read as tolerantly
  as element strings.

Check digits (section 7.9, ``storeedge.ids.gs1_check_digit``): one rule for GTIN-8/12/13/14,
SSCC and GLN. A shorter GTIN becomes a GTIN-14 by left-padding with zeros.

biip is imported at the first element string read, not with this module: at import it builds
GS1's company-prefix table, 19 MB in the agent's memory, which keys, check digits and plain
GTINs (the catalog, EAN-13 scans, EPCs) never need.

Malformed input raises ``PayloadError`` naming the AI and what is wrong (only when nothing at all
could be read); misuse of the encoders raises ``UsageError``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from storeedge.errors import PayloadError, UsageError
from storeedge.ids import gs1_check_digit

if TYPE_CHECKING:
    from biip import ParseConfig
    from biip.gs1_application_identifiers import GS1ApplicationIdentifier

GS = "\x1d"  # FNC1 as a scanner transmits it between fields

GTIN_LENGTHS = (8, 12, 13, 14)
_DIGITS = re.compile(r"[0-9]*")
_FIXED_PART = re.compile(r"[NXYZ]([0-9]+)")
_ANY_PART = re.compile(r"[NXYZ](?:\.\.)?([0-9]+)")
_MONEY_AIS = ("391", "393")  # amount with an ISO 4217 currency code before it
_DATE_RANGE_AI = "7007"
# GS1 AI encodable character set 82 (General Specifications figure 7.11-1).
_CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
                    "abcdefghijklmnopqrstuvwxyz")
_DATE_AI = re.compile(r"\(YYMMDD")  # in an AI's description: its data starts with a date
_HRI_AI = re.compile(r"\(([0-9]{2,4})\)")


def _is_digits(text: str) -> bool:
    # str.isdigit() accepts non-ASCII digits such as '²'; a barcode carries ASCII only.
    return _DIGITS.fullmatch(text) is not None


def check_digit(body: str) -> str:
    """The GS1 mod-10 check digit for ``body`` (a key without its check digit)."""
    if not body or not _is_digits(body):
        raise UsageError(f"a check digit is computed over digits, got {body!r}")
    return str(gs1_check_digit(body))


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


def resolve_date(yymmdd: str, reference_year: int, *, ai: str = "17") -> date:
    """A GS1 YYMMDD date as a calendar date, given the year it was read in.

    Century per General Specifications 7.12: the year is taken within 49 years before and 50 years
    after ``reference_year``. Day 00 is the last day of the month (leap years included).
    """
    if not _is_digits(yymmdd) or len(yymmdd) != 6:
        raise PayloadError(f"AI ({ai}) date is not YYMMDD: {yymmdd!r}")
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    year = reference_year - reference_year % 100 + yy
    if year - reference_year > 50:
        year -= 100
    elif reference_year - year > 49:
        year += 100
    if not 1 <= mm <= 12:
        raise PayloadError(f"AI ({ai}) date {yymmdd} is not a calendar date")
    last = calendar.monthrange(year, mm)[1]
    if dd > last:
        raise PayloadError(f"AI ({ai}) date {yymmdd} is not a calendar date in {year}")
    return date(year, mm, dd or last)


# Application identifiers


@dataclass(frozen=True, slots=True)
class Element:
    """One AI and its data as carried in the barcode; ``title`` is GS1's data title (e.g.
    ``BATCH/LOT``), ``value`` the data's meaning where GS1 gives one (see the module docstring)."""

    ai: str
    data: str
    title: str = ""
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Gs1Data:
    """What one code said in GS1 terms: the elements read, and one error per AI that could not
    be, each naming the AI."""

    elements: tuple[Element, ...]
    errors: tuple[str, ...] = ()

    def get(self, ai: str) -> Element | None:
        """The first element with ``ai``, or None."""
        return next((e for e in self.elements if e.ai == ai), None)


@cache
def _no_date_check() -> ParseConfig:
    from biip import ParseConfig

    return ParseConfig(gs1_element_strings_verify_date=False)


def _ai_spec(text: str) -> GS1ApplicationIdentifier | None:
    """The AI ``text`` starts with, or None when it starts with no AI of the table."""
    from biip import ParseError
    from biip.gs1_application_identifiers import GS1ApplicationIdentifier

    try:
        return GS1ApplicationIdentifier.extract(text)
    except ParseError:
        return None


def _data_parts(spec: GS1ApplicationIdentifier) -> list[str]:
    return spec.format.split("+")[1:]


def _fixed_length(spec: GS1ApplicationIdentifier) -> int | None:
    """The data length of an AI whose format has no variable or optional part, else None."""
    parts = _data_parts(spec)
    matches = [_FIXED_PART.fullmatch(p) for p in parts]
    if not parts or not all(matches):
        return None
    return sum(int(m.group(1)) for m in matches if m)


def _max_length(spec: GS1ApplicationIdentifier) -> int:
    return sum(int(n) for n in _ANY_PART.findall(spec.format.split("+", 1)[1]))


def _element(spec: GS1ApplicationIdentifier, data: str, year: int) -> Element:
    """Check ``data`` against its AI and interpret it; PayloadError naming the AI."""
    from biip import ParseError
    from biip.gs1_element_strings import GS1ElementString

    ai = spec.ai
    name = f"AI ({ai}) {spec.data_title}"
    if not data:
        raise PayloadError(f"{name} is empty")
    fixed = _fixed_length(spec)
    if fixed is not None and len(data) != fixed:
        raise PayloadError(f"{name} needs {fixed} characters, got {len(data)}: {data[:40]!r}")
    longest = _max_length(spec)
    if len(data) > longest:
        raise PayloadError(f"{name} is {len(data)} characters, at most {longest} "
                           "(a missing FNC1?)")
    try:
        # Dates are checked here, with the century of the read's year, not the library's clock.
        es = GS1ElementString.parse(ai + data, config=_no_date_check())
    except ParseError:
        raise PayloadError(f"{name} {data[:40]!r} {_mismatch(spec, data)}") from None
    key_error = es.gtin_error or es.sscc_error or es.gln_error
    if key_error:
        raise PayloadError(f"{name}: {key_error}")
    if _DATE_AI.search(spec.description):
        value = _date_value(name, ai, data, year)
    elif es.decimal is not None and ai.startswith(_MONEY_AIS):
        value = f"{es.pattern_groups[0]} {es.decimal}"
    elif es.decimal is not None:
        value = str(es.decimal)
    else:
        value = None
    return Element(ai, data, spec.data_title, value)


def _date_value(name: str, ai: str, data: str, year: int) -> str:
    """An ISO date, date-time (YYMMDDHH[MM[SS]]) or date range (AI 7007) of a date AI's data."""
    try:
        day = resolve_date(data[:6], year, ai=ai).isoformat()
        rest = data[6:]
        if ai == _DATE_RANGE_AI:
            return f"{day}/{resolve_date(rest, year, ai=ai).isoformat()}" if rest else day
    except PayloadError:
        raise PayloadError(f"{name} {data!r} is not a calendar date (YYMMDD)") from None
    if not rest:
        return day
    hh, mm, ss = rest[:2], rest[2:4], rest[4:6]
    if hh == "99" and mm == "99":  # 4324, 4325: time of day unknown
        return day
    if int(hh) > 23 or int(mm or 0) > 59 or int(ss or 0) > 59:
        raise PayloadError(f"{name} {data!r}: {rest} is not a time of day (HHMM)")
    return f"{day}T{hh}:{mm or '00'}" + (f":{ss}" if ss else "")


def _mismatch(spec: GS1ApplicationIdentifier, data: str) -> str:
    """Why ``data`` that the library refused does not fit its AI, in words."""
    if _DATE_AI.search(spec.description) and _is_digits(data):
        return "is not a calendar date (YYMMDD)"
    bad = next((c for c in data if c not in _CSET82), None)
    if bad is not None:
        return f"has a character outside GS1 set 82: {bad!r}"
    if all(p.startswith("N") for p in _data_parts(spec)) and not _is_digits(data):
        return f"must be digits ({spec.format})"
    return f"does not fit the AI's format {spec.format}"


def parse_element_string(text: str, *, reference_year: int, separator: str = GS) -> Gs1Data:
    """Read GS1 element strings (the data after the symbology identifier).

    FNC1 is ``separator`` (GS unless a scanner is set to send another character); a leading one
    (FNC1 in first position) and superfluous ones after a field are skipped. Dates resolve their
    century against ``reference_year``. Raises PayloadError only when no element could be read.
    """
    elements: list[Element] = []
    errors: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos] == separator:
            pos += 1
            continue
        end = text.find(separator, pos)
        if end < 0:
            end = n
        spec = _ai_spec(text[pos:end])
        if spec is None:
            errors.append(f"unknown AI at offset {pos}: {text[pos:pos + 4]!r}; "
                          f"{end - pos} characters up to the next FNC1 skipped")
            pos = end
            continue
        start = pos + len(spec.ai)
        fixed = _fixed_length(spec)
        stop = end if fixed is None else min(start + fixed, end)
        try:
            elements.append(_element(spec, text[start:stop], reference_year))
        except PayloadError as exc:
            errors.append(str(exc))
        pos = stop
    return _result(elements, errors)


def parse_hri(text: str, *, reference_year: int) -> Gs1Data:
    """Read the human-readable form ``(01)09501101020917(17)190508(10)ABCD1234`` (spaces
    between fields, as printed, are ignored: set 82 has none). An AI's data ends where the next
    ``(nn)`` begins, so every field's extent is known even for unknown AIs.
    Raises PayloadError only when no element could be read."""
    parts = _HRI_AI.split("".join(text.split()))  # printed forms space the fields out
    if parts[0].strip() or len(parts) < 3:
        raise PayloadError(f"not a GS1 human-readable string: {text[:40]!r}")
    elements: list[Element] = []
    errors: list[str] = []
    for ai, data in zip(parts[1::2], parts[2::2], strict=True):
        spec = _ai_spec(ai + data)
        if spec is None or spec.ai != ai:
            errors.append(f"unknown AI ({ai})")
            continue
        try:
            elements.append(_element(spec, data, reference_year))
        except PayloadError as exc:
            errors.append(str(exc))
    return _result(elements, errors)


def to_hri(elements: Iterable[Element]) -> str:
    """The human-readable interpretation, e.g. ``(01)09501101020917(17)190508``."""
    return "".join(f"({e.ai}){e.data}" for e in elements)


# The primary keys a Digital Link path starts with (GS1 Digital Link standard 1.2, section 4).
_DL_PRIMARY = frozenset({"00", "01", "253", "255", "401", "402", "414", "415", "417", "8003",
                         "8004", "8006", "8010", "8013", "8017", "8018"})


def parse_digital_link(uri: str, *, reference_year: int) -> Gs1Data | None:
    """Read a GS1 Digital Link URI (``https://id.gs1.org/01/09506000134352/10/ABC?17=201225``).

    None when ``uri`` is not one (no primary key in its path): an ordinary web address. The
    path's key-value pairs and the query's numeric keys are read like element strings; a GTIN
    written with 8, 12 or 13 digits is zero-padded to 14 (Digital Link 1.2, section 4.2). Raises
    PayloadError only when it is a Digital Link and none of its elements could be read.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    segments = parts.path.split("/")
    first = next((i for i, s in enumerate(segments) if s in _DL_PRIMARY), None)
    if first is None:
        return None
    path = [unquote(s) for s in segments[first:]]
    pairs = list(zip(path[::2], path[1::2], strict=False))
    if len(path) % 2:
        pairs.append((path[-1], ""))
    pairs += [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
              if _is_digits(k) and 2 <= len(k) <= 4]
    elements: list[Element] = []
    errors: list[str] = []
    for ai, data in pairs:
        spec = _ai_spec(ai + data)
        if spec is None or spec.ai != ai:
            errors.append(f"unknown AI ({ai})")
            continue
        if ai == "01" and _is_digits(data) and len(data) in (8, 12, 13):
            data = data.zfill(14)
        try:
            elements.append(_element(spec, data, reference_year))
        except PayloadError as exc:
            errors.append(str(exc))
    return _result(elements, errors)


def _result(elements: list[Element], errors: list[str]) -> Gs1Data:
    if not elements:
        if not errors:
            raise PayloadError("empty GS1 element string")
        raise PayloadError("; ".join(errors))
    return Gs1Data(tuple(elements), tuple(errors))


# Encoding (for simulators and tests)


def encode_element_string(elements: Iterable[tuple[str, str]], *, separator: str = GS) -> str:
    """Concatenate ``(ai, data)`` pairs as a scanner transmits them, without symbology prefix:
    FNC1 after every field of variable length except the last. Validates each element."""
    pairs = list(elements)
    if not pairs:
        raise UsageError("an element string needs at least one element")
    out: list[str] = []
    for i, (ai, data) in enumerate(pairs):
        spec = _ai_spec(ai + data)
        if spec is None or spec.ai != ai:
            raise UsageError(f"unknown AI ({ai})")
        try:
            _element(spec, data, 2000)
        except PayloadError as exc:
            raise UsageError(str(exc)) from exc
        out.append(ai + data)
        if spec.separator_required and i < len(pairs) - 1:
            out.append(separator)
    return "".join(out)
