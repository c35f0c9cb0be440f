"""The barcode scanner's serial line protocol: a sans-I/O codec.

A USB-CDC scanner sends one code per line, ended by CR or CRLF (a lone LF is taken as well). A
line may start with an AIM symbology identifier (ISO/IEC 15424, as GS1 General Specifications
5.1.2 and 5.4.6 list them): ``]``, a code character naming the symbology and a modifier, e.g.

    ]E0  EAN-13, UPC-A or UPC-E, always sent as 13 digits (UPC-A with a leading 0)
    ]E1  a 2-digit add-on alone     ]E2  a 5-digit add-on alone
    ]E3  EAN-13 with its add-on (15 or 18 digits)
    ]E4  EAN-8 (8 digits)
    ]I1  ITF with check digit; 14 digits are an ITF-14 GTIN
    ]C1  GS1-128   ]e0 GS1 DataBar   ]e1, ]e2 GS1 Composite   ]d2 GS1 DataMatrix
    ]Q3  GS1 QR Code   ]J1 GS1 DotCode
    ]d1, ]Q1  plain DataMatrix and QR Code (a GS1 Digital Link URI, or any text)

The EAN/UPC identifiers are held to their lengths. Under the GS1 identifiers the data are GS1
element strings (``devices.scanner.gs1``). Other data are read as GS1 where they say so: a GS1
Digital Link URI, the bracketed form ``(01)...(10)...``, a line starting with FNC1 (GS, or the
scanner's configured separator), or, for a scanner configured with ``gs1_without_prefix``, any line
that is not a bare GTIN. Without a prefix, a line of 8, 12, 13 or 14 digits is taken as a GTIN
and must carry a valid check digit (scanners verify EAN/UPC check digits before sending, so a bad
one means a garbled line); anything else is an opaque code. So a scanner that does not send AIM
prefixes must not be set to send ``]`` either.

A GS1 code with some unreadable elements is still a Scan: what could be read is kept and
``Scan.gs1_errors`` names each AI that could not be. Errors: ``FrameError`` for a line that is
not a scan (too long, not UTF-8, control characters, a malformed prefix, nothing after the
prefix); ``PayloadError`` for a scan whose content is wrong (a check digit, a length its
symbology does not allow, GS1 data of which nothing could be read), naming what.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from devices.scanner import gs1
from storeedge.errors import FrameError, PayloadError, PeerError, UsageError
from storeedge.events import Scan

MAX_LINE = 512
CR, LF = 0x0D, 0x0A

# AIM identifier -> our symbology name. Identifiers not listed keep their AIM form ("]A0").
SYMBOLOGIES = {
    "]E0": "ean-13",
    "]E1": "ean-addon-2",
    "]E2": "ean-addon-5",
    "]E3": "ean-13+addon",
    "]E4": "ean-8",
    "]C0": "code128",
    "]C1": "gs1-128",
    "]e0": "gs1-databar",
    "]e1": "gs1-composite",
    "]e2": "gs1-composite",
    "]d1": "datamatrix",
    "]d2": "gs1-datamatrix",
    "]Q1": "qr",
    "]Q3": "gs1-qr",
    "]J1": "gs1-dotcode",
    "]A0": "code39",
    "]I0": "itf",
    "]I1": "itf",
}
GS1_AIM = frozenset({"]C1", "]e0", "]e1", "]e2", "]d2", "]Q3", "]J1"})
# The digits each EAN/UPC identifier carries (GS1 General Specifications 5.1.2: an EAN/UPC
# symbol is always transmitted as 13 digits, EAN-8 as 8, add-ons appended).
EAN_LENGTHS = {"]E0": (13,), "]E1": (2,), "]E2": (5,), "]E3": (15, 18), "]E4": (8,)}
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
# C0 controls and DEL, except GS (FNC1 separator) and TAB (a QR code may hold text with tabs).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1c\x1e\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
_GTIN_LINE = re.compile(r"[0-9]{8}|[0-9]{12,14}")
_HRI_LINE = re.compile(r"(\([0-9]{2,4}\)[^()]+)+")
_URL = re.compile(r"https?://", re.IGNORECASE)


def decode_line(line: bytes, *, store_id: str, device_id: str, received_ts: float,
                separator: str = gs1.GS, gs1_without_prefix: bool = False) -> Scan:
    """Decode one line (without its terminator) into a Scan.

    ``separator`` is the character the scanner sends for FNC1; ``gs1_without_prefix`` reads
    every unprefixed line that is not a bare GTIN as GS1 element strings (a scanner that drops
    both the AIM prefix and the leading FNC1). Raises FrameError or PayloadError (see the module
    docstring), naming what is wrong. GS1 dates resolve their century against the year of
    ``received_ts`` (UTC).
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"line is not UTF-8: {line[:40]!r}", source=device_id) from exc
    bad = _CONTROL.search(text)
    if bad:
        raise FrameError(
            f"control character 0x{ord(bad.group()):02x} at offset {bad.start()} in {text[:40]!r}",
            source=device_id,
        )
    aim: str | None = None
    data = text
    if text.startswith("]"):
        aim = text[:3]
        if _AIM.fullmatch(aim) is None:
            raise FrameError(f"bad AIM symbology identifier {aim!r}", source=device_id)
        data = text[3:]
    if not data or data == separator:
        raise FrameError(f"empty code after {aim or 'nothing'}", source=device_id)
    year = datetime.fromtimestamp(received_ts, UTC).year
    try:
        gtin, found = _read(data, aim, year, separator, gs1_without_prefix)
    except PayloadError as exc:
        raise PayloadError(str(exc), source=device_id) from None
    symbology = SYMBOLOGIES.get(aim, aim) if aim else None
    if found is None:
        return Scan(store_id=store_id, source=device_id, received_ts=received_ts, code=data,
                    symbology=symbology, gtin=gtin)
    ai: dict[str, str] = {}
    for e in found.elements:
        ai.setdefault(e.ai, e.data)
    values = {e.ai: e.value for e in found.elements if e.value is not None}
    return Scan(store_id=store_id, source=device_id, received_ts=received_ts, code=data,
                symbology=symbology, gtin=ai.get("01"), batch=ai.get("10"),
                expiry=values.get("17"), serial=ai.get("21"), ai=ai, ai_values=values,
                gs1_errors=found.errors)


def _read(data: str, aim: str | None, year: int, separator: str,
          gs1_without_prefix: bool) -> tuple[str | None, gs1.Gs1Data | None]:
    """The GTIN of a linear code, or the GS1 data of a GS1 code (one of the two, or neither)."""
    if aim in GS1_AIM:
        return None, gs1.parse_element_string(data, reference_year=year, separator=separator)
    if aim in EAN_LENGTHS:
        if _DIGITS.fullmatch(data) is None or len(data) not in EAN_LENGTHS[aim]:
            lengths = " or ".join(map(str, EAN_LENGTHS[aim]))
            raise PayloadError(f"{SYMBOLOGIES[aim]} read under {aim} is not {lengths} digits: "
                               f"{data[:40]!r}")
        if aim in ("]E1", "]E2"):  # an add-on alone: a price or issue number, not an item
            return None, None
        return gs1.to_gtin14(data[:13] if aim == "]E3" else data), None
    if aim == "]I1" and _DIGITS.fullmatch(data) and len(data) == 14:
        return gs1.to_gtin14(data), None
    if aim is None and _GTIN_LINE.fullmatch(data):
        return gs1.to_gtin14(data), None
    if _URL.match(data):
        return None, gs1.parse_digital_link(data, reference_year=year)
    if _HRI_LINE.fullmatch(data):
        return None, gs1.parse_hri(data, reference_year=year)
    if aim is None and (data.startswith(separator) or gs1_without_prefix):
        return None, gs1.parse_element_string(data, reference_year=year, separator=separator)
    return None, None


class LineDecoder:
    """Incremental line splitter and decoder for one scanner's byte stream.

    Feed it whatever the port delivers, a byte or a kilobyte at a time; the result does not
    depend on how the stream is cut. A line longer than ``max_line`` bytes yields one FrameError
    and is skipped up to the next terminator. Empty lines (a CR after a CR) are ignored.

    ``separator`` and ``gs1_without_prefix`` are the scanner's settings (see ``decode_line``).
    Counters: ``good`` (scans decoded), ``bad`` (lines rejected).
    """

    def __init__(self, *, store_id: str, device_id: str, max_line: int = MAX_LINE,
                 separator: str = gs1.GS, gs1_without_prefix: bool = False) -> None:
        if max_line < 1:
            raise UsageError(f"max_line must be positive, got {max_line}")
        if len(separator) != 1 or separator in "\r\n]":
            raise UsageError(f"the FNC1 separator is one character other than CR, LF and ']', "
                             f"got {separator!r}")
        self.separator = separator
        self.gs1_without_prefix = gs1_without_prefix
        self.store_id = store_id
        self.device_id = device_id
        self.max_line = max_line
        self.good = 0
        self.bad = 0
        self._buf = bytearray()
        self._after_cr = False
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes held of a line not yet ended."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial line (the port was reopened)."""
        self._buf.clear()
        self._after_cr = False
        self._skipping = False

    def feed(self, data: bytes | bytearray, received_ts: float) -> list[Scan | PeerError]:
        """Add received bytes; return a Scan for each good line they end and the error for each
        bad one, in stream order. Never raises for bad input."""
        out: list[Scan | PeerError] = []
        buf = self._buf
        start = 0
        n = len(data)
        while start < n:
            if self._after_cr:
                self._after_cr = False
                if data[start] == LF:
                    start += 1
                    continue
            cr = data.find(b"\r", start)
            lf = data.find(b"\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            end = min(ends) if ends else n
            if not self._skipping:
                room = self.max_line - len(buf)
                buf += data[start:min(end, start + room + 1)]
                if len(buf) > self.max_line:
                    buf.clear()
                    self._skipping = True
                    self.bad += 1
                    out.append(FrameError(
                        f"line longer than {self.max_line} bytes; skipped to its end",
                        source=self.device_id))
            if end == n:
                break
            self._after_cr = data[end] == CR
            start = end + 1
            if self._skipping:
                self._skipping = False
            elif buf:
                out.append(self._line(bytes(buf), received_ts))
                buf.clear()
        return out

    def _line(self, line: bytes, received_ts: float) -> Scan | PeerError:
        try:
            scan = decode_line(line, store_id=self.store_id, device_id=self.device_id,
                               received_ts=received_ts, separator=self.separator,
                               gs1_without_prefix=self.gs1_without_prefix)
        except PeerError as exc:
            self.bad += 1
            return exc
        self.good += 1
        return scan


def encode_line(data: str, aim: str | None = None, *, terminator: bytes = b"\r\n") -> bytes:
    """The bytes a scanner sends for one read: optional AIM prefix, data, terminator."""
    if aim is not None and _AIM.fullmatch(aim) is None:
        raise UsageError(f"bad AIM symbology identifier {aim!r}")
    if terminator not in (b"\r", b"\r\n", b"\n"):
        raise UsageError(f"a line ends with CR, CRLF or LF, not {terminator!r}")
    if "\r" in data or "\n" in data:
        raise UsageError("a code cannot contain CR or LF")
    return (aim or "").encode() + data.encode() + terminator
