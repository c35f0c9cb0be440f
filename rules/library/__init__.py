"""The built-in rule library: name -> rule class. Every rule is documented in docs/rules.md."""

from __future__ import annotations

from rules.library.base import Rule
from rules.library.checkout import CheckoutSuspect, CheckoutVoids
from rules.library.freshness import ColdChain, Expiry
from rules.library.loss import Misplaced, Shrink
from rules.library.sensors import (
    DeviceOffline,
    SensorDrift,
    SensorNoisy,
    SensorStuck,
    ShelfCamera,
)
from rules.library.stock import DaysOfCover, LowStock, OutOfStock

RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (LowStock, OutOfStock, DaysOfCover, Shrink, Misplaced, ShelfCamera, SensorStuck,
                SensorNoisy, SensorDrift, DeviceOffline, CheckoutSuspect, CheckoutVoids,
                ColdChain, Expiry)
}
