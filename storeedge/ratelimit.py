"""Rate-limited log lines: bad input or a long outage can repeat a message thousands of times a
second; each key logs at most once per interval and says how many it held back. Keys are
bounded: past ``max_keys`` the oldest are forgotten, so keys made of peer input cannot grow
memory (a forgotten key may log once more early)."""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 max_keys: int = 1_024) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._next)

    def log(self, key: str, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._next.pop(key, None)  # re-inserted last: the dict's order is the keys' age
        self._next[key] = now + self.interval
        if len(self._next) > self.max_keys:
            oldest = next(iter(self._next))
            del self._next[oldest]
            self._held.pop(oldest, None)
        if held:
            msg += " (%d similar held back)"
            args = (*args, held)
        self.logger.log(level, msg, *args)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        self.log(key, logging.WARNING, msg, *args)
