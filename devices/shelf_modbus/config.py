"""Config of a wired smart shelf controller: Modbus RTU over RS-485."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from devices.shelf_modbus.register_map import RegisterMap, named_map, shipped_map

DEFAULT_MAP = "storeedge-shelf"
# What every controller on one port must share: one driver opens the port with them.
LINE_SETTINGS = ("baudrate", "parity", "stopbits", "timeout_seconds")


class ShelfModbusDevice(BaseModel):
    """One shelf controller (one slave address) on an RS-485 port.

    Several controllers may share a port (each with its own ``slave``); they must then agree on
    the line settings (``baudrate``, ``parity``, ``stopbits``, ``timeout_seconds``), as one driver
    task owns the port and polls them in turn. ``register_map`` is the name of a shipped map
    (``devices/shelf_modbus/maps/``) or a map given inline (``register_map.RegisterMap``); the
    default is our own controller's. ``lanes`` are the lane ids in register order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["shelf_modbus"]
    id: str
    port: str
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    slave: Annotated[int, Field(ge=1, le=247)] = 1
    poll_hz: Annotated[float, Field(gt=0, le=50)] = 5.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 0.3
    register_map: RegisterMap = Field(default_factory=partial(named_map, DEFAULT_MAP))
    lanes: Annotated[list[str], Field(min_length=1, max_length=60)]

    @field_validator("register_map", mode="before")
    @classmethod
    def _named_map(cls, value: Any) -> Any:
        return shipped_map(value) if isinstance(value, str) else value

    @field_validator("lanes")
    @classmethod
    def _lanes_fit_the_map(cls, lanes: list[str], info: ValidationInfo) -> list[str]:
        register_map = info.data.get("register_map")
        if isinstance(register_map, RegisterMap):
            register_map.check_lanes(len(lanes))
        return lanes


def check_shared_ports(devices: Sequence[Any]) -> None:
    """A serial port is one device's, but for an RS-485 bus of shelf controllers, which share it
    with distinct slave addresses and the same line settings. ValueError naming the key
    (``devices.{i}.{key}: ...``) of the first device that breaks this."""
    on_port: dict[str, list[Any]] = {}
    for i, dev in enumerate(devices):
        port = getattr(dev, "port", None)
        if port is None:
            continue
        others = on_port.setdefault(port, [])
        for other in others:
            if dev.type != "shelf_modbus" or other.type != "shelf_modbus":
                raise ValueError(f"devices.{i}.port: {port} is used by {other.id!r} already (only "
                                 "Modbus shelf controllers share a port, as an RS-485 bus)")
            if dev.slave == other.slave:
                raise ValueError(f"devices.{i}.slave: {other.id!r} on {port} has slave "
                                 f"address {dev.slave} already")
            for key in LINE_SETTINGS:
                if getattr(dev, key) != getattr(other, key):
                    raise ValueError(f"devices.{i}.{key}: {getattr(dev, key)} differs from "
                                     f"{getattr(other, key)} of {other.id!r} on the same port")
        others.append(dev)
