"""Config models of the RFID device kinds (pydantic v2, one per ``type``).

MQTT readers publish on ``topic``, by default ``store/{store_id}/dev/{id}/tags`` (stream ``tags``).
Every kind maps where it reads to a store location: ``antennas`` maps an antenna port to a
location id, ``location`` covers antennas not listed (and the serial module's single antenna).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

STREAM = "tags"


def tags_topic(store_id: str, device_id: str) -> str:
    """The default topic of an MQTT reader: ``store/{store_id}/dev/{device_id}/tags``."""
    return f"store/{store_id}/dev/{device_id}/{STREAM}"


class _Located(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    antennas: dict[Annotated[int, Field(ge=0, le=65535)], str] = {}
    location: str | None = None

    def location_of(self, antenna: int | None) -> str | None:
        """The location an antenna reads, or None for an antenna we do not place."""
        if antenna is not None:
            found = self.antennas.get(antenna)
            if found is not None:
                return found
        return self.location


class RfidZebraDevice(_Located):
    """A Zebra fixed reader (FX7500, FX9600, ATR7000) publishing IoT Connector tag data events."""

    type: Literal["rfid_zebra"]
    id: str
    topic: str | None = None  # None: store/{store_id}/dev/{id}/tags


class RfidImpinjDevice(_Located):
    """An Impinj reader (R700, R720) publishing IoT device interface ``tagInventory`` events."""

    type: Literal["rfid_impinj"]
    id: str
    topic: str | None = None  # None: store/{store_id}/dev/{id}/tags


class RfidSerialDevice(_Located):
    """An M100/R200-family UHF module on a serial port, polled for single inventories."""

    type: Literal["rfid_serial"]
    id: str
    port: str
    baudrate: int = 115200
    framing: Literal["bb7e", "aadd"] = "bb7e"
    poll_hz: Annotated[float, Field(gt=0, le=50)] = 10.0
