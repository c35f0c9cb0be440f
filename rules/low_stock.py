"""Low stock: one alert when a lane's count falls to its threshold, re-armed only after a
restock above it. Hysteresis is the threshold itself: noise that does not change the count
cannot make it flap, and a count that hovers at the threshold raises nothing new."""

from __future__ import annotations

from rules.actions import Action, ClearAlert, OpenAlert
from storeedge.events import Severity

RULE = "low_stock"


def low_stock(*, active: bool, lane: str, sku: str, units: int, threshold: int, capacity: int,
              severity: Severity = Severity.WARNING) -> Action | None:
    """``active``: whether this lane's low-stock alert is open now."""
    if not active and units <= threshold:
        bring = max(capacity - units, 0)
        return OpenAlert(
            rule=RULE, subject=lane, severity=severity, sku=sku, location=lane,
            message=f"{sku} at lane {lane}: {units} left (threshold {threshold}); bring {bring}",
            detail={"units": units, "threshold": threshold, "bring": bring},
        )
    if active and units > threshold:
        return ClearAlert(rule=RULE, subject=lane, reason=f"restocked to {units}")
    return None
