"""Which of the agent's alerts the scenario's truth justifies.

The simulator knows the store's physical truth (how low each lane really went, what was sold)
and what the scenario planted (incidents, device faults). An alert that none of it explains is
a false alarm: what a store manager would learn to ignore. The demo reports them as
``false_alerts``; a clean scenario must have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from firmware_sim.faults import Faults
from firmware_sim.scenario import Scenario

# Rules about the instruments: justified only by a fault of the device they name.
_INSTRUMENT_RULES = frozenset({"sensor_noisy", "sensor_stuck", "sensor_drift", "shelf_camera",
                               "misplaced", "cold_chain", "checkout_voids", "expiry"})


def false_alerts(scenario: Scenario, faults: Mapping[str, Faults], truth: Mapping[str, Any],
                 alerts: list[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The alerts (each as its opening transition's dict) that the truth does not justify,
    each with ``why``. ``truth`` is the simulator's record (``SimulatedStore.truth()``); None
    when there is none to judge by (a simulator that died before writing it)."""
    if not truth:
        return None
    judge = _Judge(scenario, faults, truth)
    out = []
    for alert in alerts:
        why = judge.why_false(alert)
        if why is not None:
            out.append({"alert_id": alert.get("alert_id"), "rule": alert.get("rule"),
                        "subject": alert.get("subject"), "why": why})
    return out


class _Judge:
    def __init__(self, scenario: Scenario, faults: Mapping[str, Faults],
                 truth: Mapping[str, Any]) -> None:
        self.low_water: dict[str, int] = dict(truth.get("lane_low_water") or {})
        self.sold: dict[str, int] = dict(truth.get("sales_units") or {})
        self.faulty = {device for device, f in faults.items() if f.any}
        self.unplugged = {device for device, f in faults.items() if f.unplug_at is not None}
        # The end of the run unplugs every device: an agent that outlives it says so, rightly.
        self.all_unplugged_at: float | None = truth.get("unplugged_all_ts")
        self.shelf_of = {lane.id: shelf.id for shelf in scenario.shelves for lane in shelf.lanes}
        self.lanes_of_sku: dict[str, list[str]] = {}
        for shelf in scenario.shelves:
            for lane in shelf.lanes:
                self.lanes_of_sku.setdefault(lane.sku, []).append(lane.id)
        self.cameras_of = {lane: cam.id for cam in scenario.cameras for lane in cam.lanes}
        self.avoided = {(i.device, i.sku) for i in scenario.incidents
                        if i.kind == "scan_avoidance"}
        self.walked = {i.sku for i in scenario.incidents if i.kind == "tag_walkout"}

    def why_false(self, alert: Mapping[str, Any]) -> str | None:
        rule, location = alert.get("rule"), alert.get("location")
        sku, detail = alert.get("sku"), alert.get("detail") or {}
        if rule == "low_stock":
            low = self.low_water.get(str(location))
            threshold = detail.get("threshold")
            if low is None or threshold is None or low > threshold:
                return f"lane {location} never went below {low} units (threshold {threshold})"
            return None
        if rule == "out_of_stock":
            low = self.low_water.get(str(location))
            return None if low == 0 else f"lane {location} never emptied (lowest {low})"
        if rule == "days_of_cover":
            lowest = sum(self.low_water.get(lane, 0) for lane in self.lanes_of_sku.get(sku, ()))
            if not self.sold.get(str(sku)):
                return f"{sku} never sold"
            if lowest > detail.get("stock", 0):
                return f"{sku} never had as few as {detail.get('stock')} on the shelf"
            return None
        if rule == "checkout_suspect":
            kiosk = location
            return None if any(k == kiosk for k, _ in self.avoided) else (
                f"no scan avoidance was planted at {kiosk}")
        if rule == "shrink":
            if sku in self.walked or any(s == sku for _, s in self.avoided):
                return None
            return f"nothing of {sku} left the store unpaid"
        if rule == "device_offline":
            ended = self.all_unplugged_at
            if location in self.unplugged or (
                    ended is not None and float(alert.get("received_ts") or 0) >= ended):
                return None
            return f"{location} was never unplugged"
        if rule in _INSTRUMENT_RULES:
            devices = self._devices_behind(alert)
            if devices & self.faulty:
                return None
            return f"no fault was injected into {', '.join(sorted(devices)) or 'any device'}"
        return f"no truth justifies rule {rule}"

    def _devices_behind(self, alert: Mapping[str, Any]) -> set[str]:
        """The devices whose readings an instrument alert rests on."""
        subject, location = str(alert.get("subject") or ""), alert.get("location")
        devices = {subject.split("/", 1)[0]}
        if location is not None:
            devices.add(str(location))
            if location in self.shelf_of:
                devices.add(self.shelf_of[location])
            if location in self.cameras_of:
                devices.add(self.cameras_of[location])
        return devices
