"""Config of a wireless smart shelf publishing JSON on store/{sid}/dev/{id}/weight."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ShelfMqttDevice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["shelf_mqtt"]
    id: str
    topic: str | None = None  # default store/{sid}/dev/{id}/weight
    lanes: Annotated[list[str], Field(min_length=1)]
