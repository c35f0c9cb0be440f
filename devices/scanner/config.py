"""Config of a barcode scanner on a USB-CDC serial port."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ScannerDevice(BaseModel):
    """A scanner sending one code per line; ``location`` says where it is used (e.g. "receiving",
    "checkout-3"), for the rules and the handheld to show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["scanner"]
    id: str
    port: Annotated[str, Field(min_length=1)]
    baudrate: Annotated[int, Field(gt=0)] = 9600
    location: str | None = None
