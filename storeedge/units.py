"""Unit conversions shared by codecs and the agent."""

from __future__ import annotations


def ms_to_s(ms: float) -> float:
    return ms / 1000.0


def s_to_ms(seconds: float) -> int:
    return round(seconds * 1000.0)


def decigrams_to_grams(raw: int) -> float:
    """Shelf controllers report net weight in 0.1 g steps."""
    return raw / 10.0


def grams_to_decigrams(grams: float) -> int:
    return round(grams * 10.0)
