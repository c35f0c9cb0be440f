"""The barcode scanner's serial line protocol: a sans-I/O codec.

A USB-CDC scanner sends one code per line, ended by CR or CRLF (a lone LF is taken as well). A
line may start with an AIM symbology identifier (ISO/IEC 15424): ``]``, a code character naming
the symbology and a modifier character, e.g.

    ]E0  EAN-13 or UPC-A (UPC-A sent as 13 digits with a leading 0)
    ]E4  EAN-8
    ]C1  GS1-128 (Code 128 with FNC1 in first position)
    ]e0  GS1 DataBar
    ]d2  GS1 DataMatrix
    ]Q3  GS1 QR Code

With ]C1, ]e0, ]d2 and ]Q3 the data are GS1 element strings (``devices.scanner.gs1``). Without a
prefix, a line of 8, 12, 13 or 14 digits is taken as a GTIN and must carry a valid check digit
(scanners verify EAN/UPC check digits before sending, so a bad one means a garbled line), and a
line starting with GS (FNC1 as some scanners send it) as GS1 element strings; anything else is an
opaque code. So a scanner that does not send AIM prefixes must not be set to send ``]`` either.

Errors: ``FrameError`` for a line that is not a scan (too long, not UTF-8, control characters, a
malformed prefix, nothing after the prefix); ``PayloadError`` for a scan whose content is wrong
(check digit, unknown AI, truncated field, bad date).
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
    "]E3": "ean-13+addon",
    "]E4": "ean-8",
    "]C0": "code128",
    "]C1": "gs1-128",
    "]e0": "gs1-databar",
    "]d1": "datamatrix",
    "]d2": "gs1-datamatrix",
    "]Q1": "qr",
    "]Q3": "gs1-qr",
    "]A0": "code39",
    "]I0": "itf",
}
GS1_AIM = frozenset({"]C1", "]e0", "]d2", "]Q3"})
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
# C0 controls and DEL, except GS (FNC1 separator) and TAB (a QR code may hold text with tabs).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1c\x1e\x1f\x7f]")
_GTIN_LINE = re.compile(r"[0-9]{8}|[0-9]{12,14}")


def decode_line(line: bytes, *, store_id: str, device_id: str, received_ts: float) -> Scan:
    """Decode one line (without its terminator) into a Scan.

    Raises FrameError or PayloadError (see the module docstring), naming what is wrong. GS1 dates
    resolve their century against the year of ``received_ts`` (UTC).
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
    if not data or data == gs1.GS:
        raise FrameError(f"empty code after {aim or 'nothing'}", source=device_id)
    try:
        return _scan(data, aim, store_id=store_id, device_id=device_id, received_ts=received_ts)
    except PayloadError as exc:
        raise PayloadError(str(exc), source=device_id) from None


def _scan(data: str, aim: str | None, *, store_id: str, device_id: str,
          received_ts: float) -> Scan:
    symbology = SYMBOLOGIES.get(aim, aim) if aim else None
    gtin = batch = expiry = serial = None
    if aim in GS1_AIM or (aim is None and data.startswith(gs1.GS)):
        elements = {e.ai: e.data for e in gs1.parse_element_string(data)}
        gtin = elements.get("01")
        batch = elements.get("10")
        serial = elements.get("21")
        if "17" in elements:
            year = datetime.fromtimestamp(received_ts, UTC).year
            expiry = gs1.resolve_date(elements["17"], year).isoformat()
    elif aim is not None and aim.startswith("]E"):
        gtin = gs1.to_gtin14(_ean_digits(data, aim))
        if aim == "]E0" and len(data) == 12:
            symbology = "upc-a"
    elif aim is None and _GTIN_LINE.fullmatch(data):
        gtin = gs1.to_gtin14(data)
    return Scan(store_id=store_id, source=device_id, received_ts=received_ts, code=data,
                symbology=symbology, gtin=gtin, batch=batch, expiry=expiry, serial=serial)


def _ean_digits(data: str, aim: str) -> str:
    """The GTIN part of an EAN/UPC read: the whole code, or the first 13 digits with an add-on."""
    if aim == "]E3" and len(data) in (15, 18):  # EAN-13 + 2- or 5-digit add-on
        return data[:13]
    if aim == "]E4" and len(data) != 8:
        raise PayloadError(f"EAN-8 read is not 8 digits: {data[:40]!r}")
    if aim == "]E0" and len(data) not in (12, 13):
        raise PayloadError(f"EAN-13/UPC-A read is not 12 or 13 digits: {data[:40]!r}")
    return data


class LineDecoder:
    """Incremental line splitter and decoder for one scanner's byte stream.

    Feed it whatever the port delivers, a byte or a kilobyte at a time; the result does not
    depend on how the stream is cut. A line longer than ``max_line`` bytes yields one FrameError
    and is skipped up to the next terminator. Empty lines (a CR after a CR) are ignored.

    Counters: ``good`` (scans decoded), ``bad`` (lines rejected).
    """

    def __init__(self, *, store_id: str, device_id: str, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise UsageError(f"max_line must be positive, got {max_line}")
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
                               received_ts=received_ts)
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
