"""Time-ordered event ids (UUIDv7, RFC 9562), idempotency keys and GS1 check digits."""

from __future__ import annotations

import random
import threading
import time

_lock = threading.Lock()
# Ids need uniqueness, not secrecy: a seeded PRNG is ten times cheaper than os.urandom per id.
_random = random.Random()
_last_ms = 0
_counter = 0


def new_event_id(now_ns: int | None = None) -> str:
    """A UUIDv7 string; ids made by one process sort in creation order.

    The 12-bit `rand_a` field holds a counter within the millisecond (RFC 9562, method 1),
    seeded randomly each new millisecond, so ids stay ordered at tens of thousands a second.
    """
    global _last_ms, _counter
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = _random.getrandbits(11)
        else:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                ms = _last_ms
                _counter = 0
        counter = _counter
    rand_b = _random.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    h = value.to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def idempotency_key(store_id: str, kind: str, *parts: object) -> str:
    """The key an ERP command carries so a replayed delivery is recognised: stable, readable."""
    return ":".join([store_id, kind, *(str(p) for p in parts)])


def gs1_check_digit(body: str) -> int:
    """The check digit of a GS1 key (GTIN, SSCC, GLN) whose other digits are ``body``: GS1
    General Specifications 7.9.1, weights 3, 1, 3, ... from the right-most digit, then the
    difference to the next multiple of ten. ``body`` is ASCII digits (the caller checks)."""
    odd = sum(map(int, body[-1::-2]))
    even = sum(map(int, body[-2::-2]))
    return -(3 * odd + even) % 10
