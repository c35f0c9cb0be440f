"""Waiting in tests: poll a condition with a deadline instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import serial


async def until(condition: Callable[[], object], within: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail (TimeoutError) after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


def port_is_free(path: Path) -> bool:
    """pyserial locks the port exclusively: a second exclusive open works only once it is closed."""
    try:
        serial.Serial(str(path), exclusive=True).close()
    except serial.SerialException:
        return False
    return True
