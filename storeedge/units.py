"""Unit conversions shared by codecs and the agent."""

from __future__ import annotations

#: Epoch seconds a device's clock can plausibly read: 2001-09-09 up to 2286-11-20. A time sent
#: in seconds where milliseconds are expected decodes a thousand times too small (January 1970);
#: milliseconds where seconds are expected, a thousand times too large: both fall outside.
PLAUSIBLE_EPOCH_S = (1e9, 1e10)


def ms_to_s(ms: float) -> float:
    return ms / 1000.0


def s_to_ms(seconds: float) -> int:
    return round(seconds * 1000.0)


def decigrams_to_grams(raw: int) -> float:
    """Shelf controllers report net weight in 0.1 g steps."""
    return raw / 10.0


def grams_to_decigrams(grams: float) -> int:
    return round(grams * 10.0)
