"""Config of a wired smart shelf controller: Modbus RTU over RS-485."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ShelfModbusDevice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["shelf_modbus"]
    id: str
    port: str
    baudrate: int = 19200
    slave: Annotated[int, Field(ge=1, le=247)] = 1
    poll_hz: Annotated[float, Field(gt=0, le=50)] = 5.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 0.3
    lanes: Annotated[list[str], Field(min_length=1, max_length=60)]  # lane ids in register order
