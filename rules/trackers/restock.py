"""A restock checked against the shelf: a stock task resolved as restocked is taken on trust
for ``wait_s`` only. If the lane's count has not risen above what it held when the task was
resolved by then, the task opens again (``due``), saying so.

Pure: the caller says when a task was resolved, when a lane's count changed, and what time it
is; it raises what ``due`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.actions import OpenAlert
from storeedge.events import Alert, Severity


@dataclass(slots=True)
class _Expected:
    due: float
    units: int  # the lane's count when "restocked" was said
    alert: dict[str, Any]  # the resolved alert's rule, subject, severity, sku, zone, detail


class RestockChecks:
    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._expected: dict[str, _Expected] = {}  # lane -> what was said of it

    def resolved(self, alert: Alert, units: int | None, now: float) -> None:
        """``alert`` (a stock task of one lane) was resolved as restocked while its lane held
        ``units`` (None: not counted, nothing to check)."""
        told = alert.detail.get("units")
        if not self.wait_s or units is None or alert.location is None:
            return
        if isinstance(told, int) and units > told:
            return  # the lane rose before the button was pressed
        self._expected[alert.location] = _Expected(now + self.wait_s, units, {
            "rule": alert.rule, "subject": alert.subject, "severity": str(alert.severity),
            "sku": alert.sku, "zone": alert.detail.get("zone"), "id": alert.alert_id,
            "threshold": alert.detail.get("threshold"), "bring": alert.detail.get("bring")})

    def counted(self, lane: str, units: int) -> None:
        """The lane's count is ``units`` now."""
        expected = self._expected.get(lane)
        if expected is not None and units > expected.units:
            del self._expected[lane]

    def due(self, now: float) -> list[OpenAlert]:
        """The tasks whose lanes did not rise in time, to open again."""
        out = []
        for lane, e in list(self._expected.items()):
            if e.due > now:
                continue
            del self._expected[lane]
            a = e.alert
            out.append(OpenAlert(
                rule=a["rule"], subject=a["subject"], severity=Severity(a["severity"]),
                sku=a["sku"],
                location=lane, zone=a["zone"], role="staff",
                message=(f"{a['sku']} at lane {lane}: marked restocked, but the shelf still "
                         f"holds {e.units}"),
                detail={"units": e.units, "threshold": a["threshold"], "bring": a["bring"],
                        "restock_unverified": True, "reopened_from": a["id"]}))
        return out

    def __len__(self) -> int:
        return len(self._expected)

    def snapshot(self) -> list[list[Any]]:
        return [[lane, e.due, e.units, e.alert] for lane, e in self._expected.items()]

    def restore(self, data: list[list[Any]]) -> None:
        self._expected = {lane: _Expected(due, units, alert) for lane, due, units, alert in data}
