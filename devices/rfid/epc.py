"""EPCs as the GS1 EPC Tag Data Standard (TDS) defines them: a pure codec, no I/O.

One EPC has three forms, each read and written here:

- binary, as a reader reports the tag's EPC bank, in hex: ``3074257BF7194E4000001A85``;
- the tag URI, the identity plus the binary scheme and filter:
  ``urn:epc:tag:sgtin-96:3.0614141.812345.6789``;
- the pure identity URI, the identity alone: ``urn:epc:id:sgtin:0614141.812345.6789``.

Schemes (TDS section 14, "EPC Binary Encoding")::

    SGTIN-96   0x30 | filter(3) | partition(3) | company prefix + item reference (44) | serial(38)
    SGTIN-198  0x36 | filter(3) | partition(3) | company prefix + item reference (44) | serial(140)
    SSCC-96    0x31 | filter(3) | partition(3) | company prefix + serial reference (58) | 0 (24)

The partition says how many bits and decimal digits the company prefix takes (12 digits for
partition 0 down to 6 for partition 6); the rest goes to the item reference (whose first digit is
the GTIN's indicator) or the serial reference (whose first digit is the SSCC's extension digit).
An SGTIN-96 serial is a number below 2^38 written without leading zeros; an SGTIN-198 serial is 1
to 20 characters of GS1 AI encodable character set 82, 7 bits each, zero-padded (TDS 14.4.2). In
URIs the characters ``"%&/<>?`` of a serial are percent-escaped (TDS Annex A).

A binary EPC of any other scheme (a chip's factory EPC, a GRAI, a reserved partition) decodes to
None: it is still a tag, tracked by its hex, with no GS1 key. Malformed input raises PayloadError
naming the field; building an EPC that its scheme cannot hold raises UsageError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storeedge.errors import PayloadError, UsageError
from storeedge.ids import gs1_check_digit

SGTIN_96, SGTIN_198, SSCC_96 = "sgtin-96", "sgtin-198", "sscc-96"
_HEADER = {SGTIN_96: 0x30, SGTIN_198: 0x36, SSCC_96: 0x31}
_SCHEME_OF_HEADER = {h: s for s, h in _HEADER.items()}
_BITS = {SGTIN_96: 96, SGTIN_198: 198, SSCC_96: 96}
# By partition (12 minus the company prefix's digits): (prefix bits, reference bits), as the
# TDS's SGTIN and SSCC partition tables give them.
_SGTIN_PARTITIONS = ((40, 4), (37, 7), (34, 10), (30, 14), (27, 17), (24, 20), (20, 24))
_SSCC_PARTITIONS = ((40, 18), (37, 21), (34, 24), (30, 28), (27, 31), (24, 34), (20, 38))
_KEY_DIGITS = {"sgtin": 13, "sscc": 17}  # company prefix + reference, check digit excluded
_SERIAL96_BITS = 38
_SERIAL198_CHARS = 20
_SERIAL198_BITS = 140
_SSCC_RESERVED_BITS = 24

_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_DIGITS = re.compile(r"[0-9]+")
_SERIAL96 = re.compile(r"0|[1-9][0-9]*")
# GS1 AI encodable character set 82 (GS1 General Specifications figure 7.11-1).
_CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
                    "abcdefghijklmnopqrstuvwxyz")
_URI_ESCAPED = {c: f"%{ord(c):02X}" for c in "\"%&/<>?"}
_URI_UNESCAPED = {v: k for k, v in _URI_ESCAPED.items()}


def _kind(scheme: str) -> str:
    return scheme.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class Epc:
    """One EPC of a scheme decoded here.

    ``reference`` is the SGTIN's indicator digit + item reference, or the SSCC's extension digit +
    serial reference, as the URIs write them (leading zeros kept). ``serial`` is the SGTIN's
    serial, empty for an SSCC. Raises UsageError when a field does not fit ``scheme``.
    """

    scheme: str
    filter: int
    company_prefix: str
    reference: str
    serial: str = ""

    def __post_init__(self) -> None:
        problem = _problem(self.scheme, self.filter, self.company_prefix, self.reference,
                           self.serial)
        if problem:
            raise UsageError(problem)

    @property
    def gtin(self) -> str | None:
        """The GTIN-14 of an SGTIN, check digit included; None for an SSCC."""
        return self._key() if _kind(self.scheme) == "sgtin" else None

    @property
    def sscc(self) -> str | None:
        """The 18-digit SSCC of an SSCC EPC, check digit included; None for an SGTIN."""
        return self._key() if _kind(self.scheme) == "sscc" else None

    def _key(self) -> str:
        # The reference's first digit (indicator or extension digit) leads the GS1 key.
        body = self.reference[0] + self.company_prefix + self.reference[1:]
        return body + str(gs1_check_digit(body))

    @property
    def element_string(self) -> str:
        """The GS1 element string in human-readable form: ``(01)...(21)...`` or ``(00)...``."""
        if self.sscc is not None:
            return f"(00){self.sscc}"
        return f"(01){self.gtin}(21){self.serial}"

    @property
    def pure_identity_uri(self) -> str:
        """``urn:epc:id:sgtin:CompanyPrefix.ItemRef.Serial`` or ``urn:epc:id:sscc:...``."""
        return f"urn:epc:id:{_kind(self.scheme)}:{self._uri_fields()}"

    @property
    def tag_uri(self) -> str:
        """``urn:epc:tag:sgtin-96:Filter.CompanyPrefix.ItemRef.Serial`` and the like."""
        return f"urn:epc:tag:{self.scheme}:{self.filter}.{self._uri_fields()}"

    @property
    def hex(self) -> str:
        """The binary encoding in upper-case hex, padded to whole 16-bit words as a tag's EPC
        bank holds it (SGTIN-198: 208 bits)."""
        value, bits = self._binary()
        width = -(-bits // 16) * 16
        return f"{value << (width - bits):0{width // 4}X}"

    def _uri_fields(self) -> str:
        fields = f"{self.company_prefix}.{self.reference}"
        if _kind(self.scheme) == "sgtin":
            fields += "." + "".join(_URI_ESCAPED.get(c, c) for c in self.serial)
        return fields

    def _binary(self) -> tuple[int, int]:
        digits = len(self.company_prefix)
        partition = 12 - digits
        if _kind(self.scheme) == "sscc":
            prefix_bits, ref_bits = _SSCC_PARTITIONS[partition]
        else:
            prefix_bits, ref_bits = _SGTIN_PARTITIONS[partition]
        value = _HEADER[self.scheme]
        for field, bits in ((self.filter, 3), (partition, 3), (int(self.company_prefix),
                            prefix_bits), (int(self.reference), ref_bits)):
            value = (value << bits) | field
        if self.scheme == SGTIN_96:
            value = (value << _SERIAL96_BITS) | int(self.serial)
        elif self.scheme == SGTIN_198:
            chars = 0
            for c in self.serial.ljust(_SERIAL198_CHARS, "\0"):
                chars = (chars << 7) | ord(c)
            value = (value << _SERIAL198_BITS) | chars
        else:
            value <<= _SSCC_RESERVED_BITS
        return value, _BITS[self.scheme]


def _problem(scheme: str, filter_: int, cp: str, ref: str, serial: str) -> str | None:
    """What keeps these fields from making an EPC of ``scheme``, or None."""
    if scheme not in _HEADER:
        return f"scheme must be one of {', '.join(_HEADER)}, got {scheme!r}"
    if type(filter_) is not int or not 0 <= filter_ <= 7:
        return f"filter must be 0..7, got {filter_!r}"
    if _DIGITS.fullmatch(cp) is None or not 6 <= len(cp) <= 12:
        return f"company prefix must be 6 to 12 digits, got {cp!r}"
    kind = _kind(scheme)
    want = _KEY_DIGITS[kind] - len(cp)
    if _DIGITS.fullmatch(ref) is None or len(ref) != want:
        what = "item reference" if kind == "sgtin" else "serial reference"
        return (f"{what} must be {want} digits after a {len(cp)}-digit company prefix, "
                f"got {ref!r}")
    if scheme == SGTIN_96:
        if _SERIAL96.fullmatch(serial) is None or int(serial) >= 1 << _SERIAL96_BITS:
            return ("SGTIN-96 serial must be a number below 2^38 without leading zeros, "
                    f"got {serial!r:.40}")
    elif scheme == SGTIN_198:
        if not 1 <= len(serial) <= _SERIAL198_CHARS:
            return f"SGTIN-198 serial must be 1 to 20 characters, got {len(serial)}"
        bad = next((c for c in serial if c not in _CSET82), None)
        if bad is not None:
            return f"SGTIN-198 serial has a character outside GS1 set 82: {bad!r}"
    elif serial:
        return f"an SSCC has no serial, got {serial!r:.40}"
    return None


# Binary


def decode(epc_hex: str) -> Epc | None:
    """Decode a binary EPC given in hex (either case). None when it is not an SGTIN-96,
    SGTIN-198 or SSCC-96 that the TDS allows (another scheme or length, a reserved partition,
    digits that overflow their field, non-zero padding). PayloadError when ``epc_hex`` is not
    hex at all."""
    if not epc_hex or not _HEXDIGITS.issuperset(epc_hex):
        raise PayloadError(f"EPC is not hex: {epc_hex!r:.40}")
    scheme = _SCHEME_OF_HEADER.get(int(epc_hex[:2], 16))
    if scheme is None:
        return None
    bits = _BITS[scheme]
    total = len(epc_hex) * 4
    if not bits <= total < bits + 16:  # the scheme's bits, padded to at most the next word
        return None
    value = int(epc_hex, 16)
    if value & ((1 << (total - bits)) - 1):
        return None
    value >>= total - bits
    kind = _kind(scheme)
    tail = {SGTIN_96: _SERIAL96_BITS, SGTIN_198: _SERIAL198_BITS,
            SSCC_96: _SSCC_RESERVED_BITS}[scheme]
    filter_ = (value >> (bits - 11)) & 0x7
    partition = (value >> (bits - 14)) & 0x7
    if partition > 6:
        return None
    prefix_bits, ref_bits = (_SSCC_PARTITIONS if kind == "sscc" else _SGTIN_PARTITIONS)[partition]
    prefix_digits = 12 - partition
    ref_digits = _KEY_DIGITS[kind] - prefix_digits
    prefix = (value >> (tail + ref_bits)) & ((1 << prefix_bits) - 1)
    ref = (value >> tail) & ((1 << ref_bits) - 1)
    if prefix >= 10**prefix_digits or ref >= 10**ref_digits:
        return None
    low = value & ((1 << tail) - 1)
    serial: str | None
    if scheme == SGTIN_96:
        serial = str(low)
    elif scheme == SGTIN_198:
        serial = _serial198(low)
    else:
        serial = None if low else ""
    if serial is None:
        return None
    return Epc(scheme, filter_, f"{prefix:0{prefix_digits}d}", f"{ref:0{ref_digits}d}", serial)


def _serial198(bits: int) -> str | None:
    chars = [(bits >> (7 * (_SERIAL198_CHARS - 1 - i))) & 0x7F for i in range(_SERIAL198_CHARS)]
    end = chars.index(0) if 0 in chars else _SERIAL198_CHARS
    if end == 0 or any(chars[end:]):
        return None
    serial = "".join(map(chr, chars[:end]))
    return serial if _CSET82.issuperset(serial) else None


# URIs


_TAG_URI = re.compile(r"urn:epc:tag:(sgtin-96|sgtin-198|sscc-96):(.*)")
_ID_URI = re.compile(r"urn:epc:id:(sgtin|sscc):(.*)")


def from_tag_uri(uri: str) -> Epc:
    """The EPC a tag URI names; PayloadError naming the field that is wrong."""
    m = _TAG_URI.fullmatch(uri)
    if m is None:
        raise PayloadError(f"not an SGTIN-96, SGTIN-198 or SSCC-96 tag URI: {uri!r:.80}")
    scheme, rest = m.groups()
    filter_, _, rest = rest.partition(".")
    if filter_ not in tuple("01234567"):
        raise PayloadError(f"tag URI filter must be 0..7, got {filter_!r:.20} in {uri!r:.80}")
    return _checked(scheme, int(filter_), *_split(_kind(scheme), rest, uri), uri)


def from_pure_identity_uri(uri: str, *, filter: int = 0, scheme: str | None = None) -> Epc:
    """The EPC of a pure identity URI, given the filter (and binary scheme) a tag would carry.

    ``scheme`` None picks SGTIN-96 when the serial fits it, else SGTIN-198, and SSCC-96 for an
    SSCC. PayloadError naming the field that is malformed or does not fit ``scheme``.
    """
    m = _ID_URI.fullmatch(uri)
    if m is None:
        raise PayloadError(f"not an SGTIN or SSCC pure identity URI: {uri!r:.80}")
    kind, rest = m.groups()
    cp, ref, serial = _split(kind, rest, uri)
    if scheme is None:
        scheme = SSCC_96 if kind == "sscc" else _sgtin_scheme(serial)
    elif _kind(scheme) != kind:
        raise UsageError(f"scheme {scheme!r} cannot carry an {kind.upper()}")
    return _checked(scheme, filter, cp, ref, serial, uri)


def _sgtin_scheme(serial: str) -> str:
    fits = _SERIAL96.fullmatch(serial) is not None and int(serial) < 1 << _SERIAL96_BITS
    return SGTIN_96 if fits else SGTIN_198


def _split(kind: str, rest: str, uri: str) -> tuple[str, str, str]:
    """Company prefix, reference and (unescaped) serial of a URI's dotted fields."""
    # An SGTIN serial may hold '.' (set 82 does, and the URI leaves it unescaped): the serial is
    # everything after the second dot.
    parts = rest.split(".", 2) if kind == "sgtin" else rest.split(".")
    if len(parts) != (3 if kind == "sgtin" else 2):
        names = "CompanyPrefix.ItemRef.Serial" if kind == "sgtin" else "CompanyPrefix.SerialRef"
        raise PayloadError(f"{kind.upper()} URI needs {names}: {uri!r:.80}")
    return parts[0], parts[1], _unescape(parts[2], uri) if kind == "sgtin" else ""


def _checked(scheme: str, filter_: int, cp: str, ref: str, serial: str, uri: str) -> Epc:
    problem = _problem(scheme, filter_, cp, ref, serial)
    if problem:
        raise PayloadError(f"{problem} in {uri!r:.80}")
    return Epc(scheme, filter_, cp, ref, serial)


def _unescape(text: str, uri: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "%":
            code = text[i:i + 3].upper()
            char = _URI_UNESCAPED.get(code)
            if char is None:
                raise PayloadError(f"serial has a bad escape {text[i:i + 3]!r}: only "
                                   f"{', '.join(_URI_UNESCAPED)} are allowed, in {uri!r:.80}")
            out.append(char)
            i += 3
        else:
            if text[i] in _URI_ESCAPED:
                raise PayloadError(f"serial character {text[i]!r} must be escaped as "
                                   f"{_URI_ESCAPED[text[i]]} in {uri!r:.80}")
            out.append(text[i])
            i += 1
    return "".join(out)


# From GS1 keys


def from_gtin(gtin: str, serial: str | int, *, company_prefix_digits: int, filter: int = 1,
              scheme: str | None = None) -> Epc:
    """The SGTIN of a GTIN (8, 12, 13 or 14 digits) and serial. ``scheme`` None picks SGTIN-96
    when the serial fits it, else SGTIN-198. ``filter`` 1 is a point-of-sale item. UsageError
    when the GTIN or serial is malformed or does not fit."""
    if _DIGITS.fullmatch(gtin) is None or len(gtin) not in (8, 12, 13, 14):
        raise UsageError(f"GTIN must be 8, 12, 13 or 14 digits, got {gtin!r}")
    gtin = gtin.zfill(14)
    if str(gs1_check_digit(gtin[:13])) != gtin[13]:
        raise UsageError(f"GTIN {gtin} has a wrong check digit")
    if not 6 <= company_prefix_digits <= 12:
        raise UsageError(f"company prefix must have 6..12 digits, got {company_prefix_digits}")
    serial = str(serial)
    if scheme is None:
        scheme = _sgtin_scheme(serial)
    cp = gtin[1:1 + company_prefix_digits]
    return Epc(scheme, filter, cp, gtin[0] + gtin[1 + company_prefix_digits:13], serial)


def from_sscc(sscc: str, *, company_prefix_digits: int, filter: int = 0) -> Epc:
    """The SSCC-96 of an 18-digit SSCC. UsageError when it is malformed."""
    if _DIGITS.fullmatch(sscc) is None or len(sscc) != 18:
        raise UsageError(f"SSCC must be 18 digits, got {sscc!r}")
    if str(gs1_check_digit(sscc[:17])) != sscc[17]:
        raise UsageError(f"SSCC {sscc} has a wrong check digit")
    if not 6 <= company_prefix_digits <= 12:
        raise UsageError(f"company prefix must have 6..12 digits, got {company_prefix_digits}")
    return Epc(SSCC_96, filter, sscc[1:1 + company_prefix_digits],
               sscc[0] + sscc[1 + company_prefix_digits:17])


def encode_sgtin96(gtin: str, serial: int, *, company_prefix_digits: int,
                   filter: int = 1) -> str:
    """The SGTIN-96 hex of a GTIN and numeric serial (what simulators and tests write)."""
    return from_gtin(gtin, serial, company_prefix_digits=company_prefix_digits, filter=filter,
                     scheme=SGTIN_96).hex
