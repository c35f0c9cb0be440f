"""Config of a self-checkout kiosk publishing session events on store/{sid}/dev/{id}/session."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class CheckoutDevice(BaseModel):
    """One self-checkout kiosk. ``topic`` None means ``store/{store_id}/dev/{id}/session`` (the
    ``session`` stream)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["checkout"]
    id: Annotated[str, Field(min_length=1, max_length=64)]
    topic: str | None = None
    # Fraction of the scanned items' expected weight the bagging scale may differ by (Intel's
    # checkout reference designs reconcile at about 2%).
    tolerance: Annotated[float, Field(gt=0, lt=0.5)] = 0.02
    # Below this an excess is scale noise or a receipt, whatever the tolerance says.
    min_unexplained_grams: Annotated[float, Field(gt=0)] = 15.0
    # A bagging weight counts once it stayed within settle_band_grams this long (0: at once).
    settle_seconds: Annotated[float, Field(ge=0)] = 1.0
    settle_band_grams: Annotated[float, Field(gt=0)] = 5.0
    # A session nobody touched for this long is dropped (a kiosk rebooted mid-session).
    session_idle_seconds: Annotated[float, Field(gt=0)] = 4 * 3600.0
