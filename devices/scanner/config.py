"""Config of a barcode scanner on a USB-CDC serial port."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ScannerDevice(BaseModel):
    """A scanner sending one code per line; ``location`` says where it is used (e.g. "receiving",
    "checkout-3"), for the rules and the handheld to show.

    ``gs1_separator`` is the character the scanner sends for FNC1 (ASCII GS unless it is set to
    replace it); ``gs1_without_prefix`` says the scanner sends GS1 element strings with neither an
    AIM prefix nor a leading FNC1, so every line that is not a bare GTIN is read as GS1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["scanner"]
    id: str
    port: Annotated[str, Field(min_length=1)]
    baudrate: Annotated[int, Field(gt=0)] = 9600
    location: str | None = None
    gs1_separator: Annotated[str, Field(pattern=r"^[^\r\n\]]$")] = "\x1d"
    gs1_without_prefix: bool = False
