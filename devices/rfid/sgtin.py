"""SGTIN-96: the EPC that carries a GTIN and a serial number (GS1 EPC Tag Data Standard, TDS).

Binary layout, 96 bits, most significant first::

    header(8) = 0x30 | filter(3) | partition(3) | company prefix(P) | item reference(I) | serial(38)

The partition says how the 44 bits of company prefix + item reference split and how many decimal
digits each has (TDS table "SGTIN Partition Table")::

    partition  prefix bits/digits  item bits/digits
        0          40 / 12             4 / 1
        1          37 / 11             7 / 2
        2          34 / 10            10 / 3
        3          30 /  9            14 / 4
        4          27 /  8            17 / 5
        5          24 /  7            20 / 6
        6          20 /  6            24 / 7

The item reference's first digit is the GTIN's indicator digit. GTIN-14 = indicator + company
prefix + the rest of the item reference + the GS1 mod-10 check digit.
"""

from __future__ import annotations

from dataclasses import dataclass

from storeedge.errors import PayloadError, UsageError

HEADER = 0x30
_PARTITIONS = ((40, 12, 4, 1), (37, 11, 7, 2), (34, 10, 10, 3), (30, 9, 14, 4),
               (27, 8, 17, 5), (24, 7, 20, 6), (20, 6, 24, 7))
_SERIAL_BITS = 38
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Sgtin:
    """A decoded SGTIN-96. ``company_prefix`` and ``item_reference`` are the decimal digits the
    partition gives (leading zeros kept; ``item_reference`` starts with the indicator digit)."""

    filter: int
    company_prefix: str
    item_reference: str
    serial: int

    @property
    def gtin(self) -> str:
        """The GTIN-14, check digit included."""
        body = self.item_reference[0] + self.company_prefix + self.item_reference[1:]
        return body + check_digit(body)

    @property
    def uri(self) -> str:
        """The pure identity URI, ``urn:epc:id:sgtin:CompanyPrefix.ItemRef.Serial``."""
        return f"urn:epc:id:sgtin:{self.company_prefix}.{self.item_reference}.{self.serial}"


def check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit for ``digits`` (weights 3,1,3,... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def decode_sgtin96(epc: str) -> Sgtin | None:
    """Decode an EPC in hex. None when it is not a valid SGTIN-96 (another scheme, another
    length, a reserved partition, digits that overflow): a tag we do not map to a GTIN.
    PayloadError when ``epc`` is not hex at all."""
    if not epc or not _HEXDIGITS.issuperset(epc):
        raise PayloadError(f"EPC is not hex: {epc!r:.40}")
    if len(epc) != 24:
        return None
    value = int(epc, 16)
    if value >> 88 != HEADER:
        return None
    filter_ = (value >> 85) & 0x7
    partition = (value >> 82) & 0x7
    if partition > 6:
        return None
    prefix_bits, prefix_digits, item_bits, item_digits = _PARTITIONS[partition]
    prefix = (value >> (_SERIAL_BITS + item_bits)) & ((1 << prefix_bits) - 1)
    item = (value >> _SERIAL_BITS) & ((1 << item_bits) - 1)
    if prefix >= 10**prefix_digits or item >= 10**item_digits:
        return None
    return Sgtin(filter_, f"{prefix:0{prefix_digits}d}", f"{item:0{item_digits}d}",
                 value & ((1 << _SERIAL_BITS) - 1))


def encode_sgtin96(gtin: str, serial: int, *, company_prefix_digits: int, filter: int = 1) -> str:
    """The SGTIN-96 EPC (upper-case hex) for a GTIN-14 (or GTIN-13/12/8, zero-padded) whose
    company prefix has ``company_prefix_digits`` digits. ``filter`` 1 is a point-of-sale item."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        raise UsageError(f"GTIN must be 8, 12, 13 or 14 digits, got {gtin!r}")
    gtin = gtin.zfill(14)
    if check_digit(gtin[:13]) != gtin[13]:
        raise UsageError(f"GTIN {gtin} has a wrong check digit")
    partition = next((i for i, row in enumerate(_PARTITIONS) if row[1] == company_prefix_digits),
                     None)
    if partition is None:
        raise UsageError(f"company prefix must have 6..12 digits, got {company_prefix_digits}")
    prefix_bits, prefix_digits, item_bits, _ = _PARTITIONS[partition]
    if not 0 <= filter <= 7:
        raise UsageError(f"filter must be 0..7, got {filter}")
    if not 0 <= serial < 1 << _SERIAL_BITS:
        raise UsageError(f"serial must be 0..2^38-1, got {serial}")
    prefix = int(gtin[1:1 + prefix_digits])
    item = int(gtin[0] + gtin[1 + prefix_digits:13])
    value = HEADER
    for field, bits in ((filter, 3), (partition, 3), (prefix, prefix_bits), (item, item_bits),
                        (serial, _SERIAL_BITS)):
        value = (value << bits) | field
    return f"{value:024X}"
