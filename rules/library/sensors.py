"""Rules about the instruments themselves: shelf/camera disagreement, a sensor stuck, noisy or
drifting, a device offline."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from rules.actions import Action, ClearAlert
from rules.library.base import Rule, RuleParams
from storeedge.events import (
    Climate,
    DeviceHealth,
    Event,
    HealthState,
    ShelfImage,
    ShelfWeight,
    StockCause,
    StockChanged,
)


class ShelfCameraParams(RuleParams):
    margin: Annotated[float, Field(gt=0, le=1)] = 0.3  # |occupancy - count/capacity| beyond
    clear_margin: Annotated[float, Field(ge=0, le=1)] = 0.2  # agreeing again within this
    seconds: Annotated[float, Field(ge=0)] = 120.0  # ... for this long opens


class ShelfCamera(Rule):
    """A camera's occupancy of a lane (0..1) and the lane's count / capacity differ by more than
    ``margin`` for ``seconds``: one of them is wrong (a blocked load cell, a moved camera,
    goods on the wrong lane). Clears when they agree within ``clear_margin``. Subject: the lane."""

    name = "shelf_camera"
    Params = ShelfCameraParams
    events = (ShelfImage, StockChanged)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        # seen: lane -> last occupancy; since: lane -> when disagreement began; bad: lane -> true
        return {"seen": {}, "since": {}, "bad": {}}

    def handle(self, event: Event, now: float) -> list[Action]:
        if type(event) is StockChanged:
            occupancy = self.state["seen"].get(event.location)
            return [] if occupancy is None else self._judge(event.location, occupancy, now)
        assert isinstance(event, ShelfImage)
        out: list[Action] = []
        seen = self.state["seen"]
        for lane, occupancy in event.occupancy.items():
            seen[lane] = occupancy
            out += self._judge(lane, occupancy, now)
        return out

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for lane, since in list(self.state["since"].items()):
            out += self._due(lane, since, now)
        return out

    def _judge(self, lane_id: str, occupancy: float, now: float) -> list[Action]:
        lane = self.ctx.model.lane.get(lane_id)
        count = self.ctx.counts.get(lane_id)
        if lane is None or count is None:
            return []
        p = self.ctx.params(self.name, lane.sku, lane.zone)
        diff = abs(occupancy - min(count / lane.capacity, 1.0))
        if lane_id in self.state["bad"]:
            if diff <= p.clear_margin:
                del self.state["bad"][lane_id]
                return [ClearAlert(rule=self.name, subject=lane_id,
                                   reason="camera and shelf agree")]
            return []
        since = self.state["since"]
        if diff <= p.margin:
            since.pop(lane_id, None)
            return []
        return self._due(lane_id, since.setdefault(lane_id, now), now)

    def _due(self, lane_id: str, since: float, now: float) -> list[Action]:
        lane = self.ctx.model.lane.get(lane_id)
        if lane is None:
            self.state["since"].pop(lane_id, None)
            return []
        p = self.ctx.params(self.name, lane.sku, lane.zone)
        if now - since < p.seconds:
            return []
        del self.state["since"][lane_id]
        self.state["bad"][lane_id] = True
        occupancy = self.state["seen"].get(lane_id)
        count = self.ctx.counts.get(lane_id)
        return [self.alert(p, lane_id, f"lane {lane_id} ({lane.sku}): camera sees "
                           f"{occupancy:.0%} full, the shelf counts {count}/{lane.capacity}",
                           sku=lane.sku, location=lane_id, zone=lane.zone,
                           occupancy=occupancy, count=count)]


class SensorStuckParams(RuleParams):
    seconds: Annotated[float, Field(gt=0)] = 1800.0  # identical readings this long
    peer_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5  # while this share of peers change
    min_peers: Annotated[int, Field(ge=1)] = 1


class SensorStuck(Rule):
    """A device (shelf controller or climate sensor) whose every reading has been identical for
    ``seconds``, while it keeps reporting and at least ``peer_fraction`` (and ``min_peers``) of
    the other devices of its kind changed in that time. Clears at its next change. Subject: the
    device. Assumes raw readings: a live load cell or thermometer jitters in its last digit."""

    name = "sensor_stuck"
    Params = SensorStuckParams
    events = (ShelfWeight, Climate)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        # dev: device -> [kind, changed_at, last_seen]; last: device -> {channel: value}
        return {"dev": {}, "last": {}, "stuck": {}, "next": 0.0}

    def handle(self, event: Event, now: float) -> list[Action]:
        source = event.source
        if type(event) is ShelfWeight:
            channel, value, kind = event.lane, event.grams, "shelf"
        else:
            assert isinstance(event, Climate)
            if event.temperature is None:
                return []
            channel, value, kind = "t", event.temperature, "climate"
        dev = self.state["dev"].get(source)
        if dev is None:
            self.state["dev"][source] = [kind, now, now]
            self.state["last"][source] = {channel: value}
            return []
        dev[2] = now
        last = self.state["last"][source]
        if last.get(channel) != value:
            last[channel] = value
            dev[1] = now
            if source in self.state["stuck"]:
                del self.state["stuck"][source]
                return [ClearAlert(rule=self.name, subject=source, reason="readings change again")]
        return []

    def tick(self, now: float) -> list[Action]:
        if now < self.state["next"]:
            return []
        p = self.ctx.params(self.name)
        self.state["next"] = now + min(p.seconds / 20, 60.0)
        devices = self.state["dev"]
        changing: dict[str, int] = {}
        total: dict[str, int] = {}
        for kind, changed, _ in devices.values():
            total[kind] = total.get(kind, 0) + 1
            if now - changed < p.seconds:
                changing[kind] = changing.get(kind, 0) + 1
        out: list[Action] = []
        for device, (kind, changed, seen) in devices.items():
            if device in self.state["stuck"] or now - changed < p.seconds or now - seen > p.seconds:
                continue
            peers, moving = total[kind] - 1, changing.get(kind, 0)
            if moving < p.min_peers or moving < p.peer_fraction * peers:
                continue
            zone = self.ctx.model.zone_of_device.get(device)
            dp = self.ctx.params(self.name, None, zone)
            self.state["stuck"][device] = True
            out.append(self.alert(dp, device, f"device {device}: readings unchanged for "
                                  f"{(now - changed) / 60:.0f} min while {moving} other {kind} "
                                  "device(s) changed", location=device, zone=zone))
        return out


class SensorNoisyParams(RuleParams):
    samples: Annotated[int, Field(ge=4)] = 20  # judged every this many samples of a channel
    max_grams: Annotated[float, Field(gt=0)] = 5.0  # median step between samples, shelf
    max_celsius: Annotated[float, Field(gt=0)] = 1.0  # median step between samples, climate
    clear_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5  # clears below bound * this


class SensorNoisy(Rule):
    """The median noise step between successive samples of one lane (or one thermometer), over
    ``samples`` samples, above ``max_grams`` (``max_celsius``): noise, not goods. Clears when
    below the bound * ``clear_ratio``. Subject: ``{device}/{lane}`` (``{device}/t`` for a
    thermometer).

    What noise looks like depends on how a shelf reports. A shelf polled several times a second
    shows noise as small steps between samples, with a pick as one big step the median ignores;
    a shelf that reports on change sends one sample per pick, so every step is a pick. A step's
    noise is therefore its distance from the nearest whole number of units (the SKU's unit
    weight, where the catalog gives it): picks and restocks cost nothing, jitter counts in
    full, whichever way the shelf reports."""

    name = "sensor_noisy"
    Params = SensorNoisyParams
    events = (ShelfWeight, Climate)

    def initial_state(self) -> dict[str, Any]:
        return {"ch": {}, "noisy": {}}  # "device/lane" -> [last, [steps]]

    def handle(self, event: Event, now: float) -> list[Action]:
        unit = None
        if type(event) is ShelfWeight:
            subject, value = f"{event.source}/{event.lane}", event.grams
            lane = self.ctx.model.lane.get(event.lane)
            sku = self.ctx.model.sku.get(lane.sku) if lane is not None else None
            unit = sku.unit_grams if sku is not None else None
        else:
            assert isinstance(event, Climate)
            if event.temperature is None:
                return []
            subject, value = f"{event.source}/t", event.temperature
        ch = self.state["ch"].get(subject)
        if ch is None:
            self.state["ch"][subject] = [value, []]
            return []
        steps = ch[1]
        step = abs(value - ch[0])
        if unit:
            step = abs(step - round(step / unit) * unit)
        steps.append(step)
        ch[0] = value
        p = self.ctx.params(self.name)
        if len(steps) < p.samples:
            return []
        steps.sort()
        median = steps[len(steps) // 2]
        ch[1] = []
        return self._judge(event, subject, median)

    def _judge(self, event: Event, subject: str, median: float) -> list[Action]:
        shelf = type(event) is ShelfWeight
        lane = self.ctx.model.lane.get(event.lane) if isinstance(event, ShelfWeight) else None
        zone = lane.zone if lane is not None else self.ctx.model.zone_of_device.get(event.source)
        p = self.ctx.params(self.name, lane.sku if lane is not None else None, zone)
        bound, unit = (p.max_grams, "g") if shelf else (p.max_celsius, "°C")
        noisy = self.state["noisy"]
        if subject in noisy:
            if median < bound * p.clear_ratio:
                del noisy[subject]
                return [ClearAlert(rule=self.name, subject=subject, reason="quiet again")]
            return []
        if median <= bound:
            return []
        noisy[subject] = True
        return [self.alert(p, subject, f"{subject}: noisy, readings jump {median:.1f} {unit} "
                           "between samples", location=lane.id if lane else event.source,
                           zone=zone, median_step=median)]


class SensorDriftParams(RuleParams):
    grams: Annotated[float, Field(gt=0)] = 10.0  # smoothed empty weight this far off
    min_seconds: Annotated[float, Field(ge=0)] = 600.0  # ... after the lane emptied this long
    smoothing: Annotated[float, Field(gt=0, le=1)] = 0.05  # EWMA weight of each sample


class SensorDrift(Rule):
    """An empty lane's (count 0) smoothed weight moving more than ``grams`` from what it read
    when it became empty: the load cell drifts (the agent re-tares it; this tells maintenance).
    A sample more than ``grams`` off the smoothed weight is a step (goods), not drift, and is
    left out. Clears when back within half of ``grams`` or when the lane is restocked. Subject:
    the lane."""

    name = "sensor_drift"
    Params = SensorDriftParams
    events = (ShelfWeight, StockChanged)

    def initial_state(self) -> dict[str, Any]:
        return {"lanes": {}, "drifting": {}}  # lane -> [baseline, ewma, since]

    def handle(self, event: Event, now: float) -> list[Action]:
        lanes = self.state["lanes"]
        if type(event) is StockChanged:
            if event.cause is StockCause.TARE:
                return []
            lanes.pop(event.location, None)
            if event.location in self.state["drifting"] and event.after > 0:
                del self.state["drifting"][event.location]
                return [ClearAlert(rule=self.name, subject=event.location, reason="restocked")]
            return []
        assert isinstance(event, ShelfWeight)
        lane_id = event.lane
        if self.ctx.counts.get(lane_id) != 0:
            return []
        st = lanes.get(lane_id)
        if st is None:
            lanes[lane_id] = [event.grams, event.grams, now]
            return []
        lane = self.ctx.model.lane.get(lane_id)
        p = self.ctx.params(self.name, lane.sku if lane else None, lane.zone if lane else None)
        if abs(event.grams - st[1]) > p.grams:
            # A step, not drift: goods put on the lane, whose count changes once the weight
            # settles (a restock of a lane empty for min_seconds would otherwise open at once).
            return []
        st[1] += p.smoothing * (event.grams - st[1])
        off = abs(st[1] - st[0])
        drifting = self.state["drifting"]
        if lane_id in drifting:
            if off < p.grams / 2:
                del drifting[lane_id]
                return [ClearAlert(rule=self.name, subject=lane_id, reason="back to its zero")]
            return []
        if off < p.grams or now - st[2] < p.min_seconds:
            return []
        drifting[lane_id] = True
        return [self.alert(p, lane_id, f"lane {lane_id}: empty but its weight drifted "
                           f"{st[1] - st[0]:+.1f} g", sku=lane.sku if lane else None,
                           location=lane_id, zone=lane.zone if lane else None,
                           drift_grams=round(st[1] - st[0], 1))]


class DeviceOfflineParams(RuleParams):
    seconds: Annotated[float, Field(ge=0)] = 120.0


class DeviceOffline(Rule):
    """A DeviceHealth offline that lasts ``seconds`` opens; online or degraded clears. Subject:
    the device."""

    name = "device_offline"
    Params = DeviceOfflineParams
    events = (DeviceHealth,)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        return {"since": {}, "down": {}}

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, DeviceHealth)
        device = event.device
        if event.state is HealthState.OFFLINE:
            if device in self.state["down"]:
                return []
            since = self.state["since"].setdefault(device, now)
            return self._due(device, since, now, event.reason)
        self.state["since"].pop(device, None)
        if self.state["down"].pop(device, None):
            return [ClearAlert(rule=self.name, subject=device, reason=f"{event.state.value}")]
        return []

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for device, since in list(self.state["since"].items()):
            out += self._due(device, since, now, "")
        return out

    def _due(self, device: str, since: float, now: float, reason: str) -> list[Action]:
        zone = self.ctx.model.zone_of_device.get(device)
        p = self.ctx.params(self.name, None, zone)
        if now - since < p.seconds:
            return []
        del self.state["since"][device]
        self.state["down"][device] = True
        why = f": {reason}" if reason else ""
        return [self.alert(p, device, f"device {device} offline for {now - since:.0f} s{why}",
                           location=device, zone=zone, since=since)]
