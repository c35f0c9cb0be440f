"""Config of a fridge/freezer sensor published by Zigbee2MQTT."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A topic level name: no MQTT wildcards, no empty levels at either end.
_TOPIC_PART = r"^[^/+#\x00](?:[^+#\x00]*[^/+#\x00])?$"


class Zigbee2MqttDevice(BaseModel):
    """One Zigbee sensor in a fridge or freezer, read from Zigbee2MQTT's own topics.

    ``name`` is the sensor's friendly name in Zigbee2MQTT (it may contain ``/``), ``zone`` the
    store zone it watches (e.g. ``dairy-fridge-1``). ``topic`` None means ``{base_topic}/{name}``
    (Zigbee2MQTT's device state topic, outside our ``store/{sid}/`` namespace: third-party formats
    are read where they already publish); availability is on ``{topic}/availability``.
    ``voltage_unit`` is the unit the device's ``voltage`` is in: millivolts for battery sensors
    (as their Zigbee2MQTT device pages say), volts for some others.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["zigbee2mqtt"]
    id: str
    name: Annotated[str, Field(pattern=_TOPIC_PART)]
    zone: Annotated[str, Field(min_length=1)]
    base_topic: Annotated[str, Field(pattern=_TOPIC_PART)] = "zigbee2mqtt"
    topic: str | None = None
    voltage_unit: Literal["mV", "V"] = "mV"

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str | None) -> str | None:
        if value is not None and (not value or "+" in value or "#" in value):
            raise ValueError("must be a topic name without wildcards")
        return value

    @property
    def state_topic(self) -> str:
        """Where the sensor's state JSON is published."""
        return self.topic or f"{self.base_topic}/{self.name}"

    @property
    def availability_topic(self) -> str:
        """Where Zigbee2MQTT publishes the sensor's availability (retained)."""
        return f"{self.state_topic}/availability"
