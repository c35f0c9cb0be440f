"""The scanner's config schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from devices.scanner.config import ScannerDevice


def test_defaults_and_fields() -> None:
    dev = ScannerDevice(type="scanner", id="scan-1", port="/dev/ttyACM0")
    assert (dev.baudrate, dev.location) == (9600, None)
    dev = ScannerDevice(type="scanner", id="scan-2", port="/dev/ttyACM1", baudrate=115200,
                        location="receiving")
    assert (dev.baudrate, dev.location) == (115200, "receiving")


def test_gs1_settings() -> None:
    dev = ScannerDevice(type="scanner", id="scan-1", port="/dev/ttyACM0")
    assert (dev.gs1_separator, dev.gs1_without_prefix) == ("\x1d", False)
    dev = ScannerDevice(type="scanner", id="scan-1", port="/dev/ttyACM0", gs1_separator="^",
                        gs1_without_prefix=True)
    assert (dev.gs1_separator, dev.gs1_without_prefix) == ("^", True)


@pytest.mark.parametrize("bad", [{"port": ""}, {"baudrate": 0}, {"type": "shelf"},
                                 {"speed": 9600}, {"gs1_separator": ""},
                                 {"gs1_separator": "ab"}, {"gs1_separator": "]"},
                                 {"gs1_separator": "\n"}])
def test_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ScannerDevice.model_validate({"type": "scanner", "id": "s", "port": "/dev/ttyACM0",
                                      **bad})


def test_frozen() -> None:
    dev = ScannerDevice(type="scanner", id="scan-1", port="/dev/ttyACM0")
    with pytest.raises(ValidationError):
        dev.port = "/dev/ttyACM1"  # type: ignore[misc]
