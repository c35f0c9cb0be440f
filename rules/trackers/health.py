"""Device health: online, degraded or offline, from what the device says (a retained MQTT last
will, a driver's port status), how long it has been silent, and how much of what it sends is bad.
Pure: the clock is passed in; changes come back as ``DeviceHealth`` events for rules and HQ."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storeedge.events import DeviceHealth, HealthState

# How long a kind may stay silent before it counts as offline. None: silence is normal (a
# scanner nobody uses, a kiosk with no shopper); only its last will or driver says offline.
SILENCE_LIMIT_S: dict[str, float | None] = {
    "shelf_modbus": 10.0,
    "shelf_mqtt": 30.0,
    "rfid_zebra": 120.0,
    "rfid_impinj": 120.0,
    "rfid_serial": 30.0,
    "camera": 150.0,  # a still shelf sends only its heartbeat (60 s by default)
    "zigbee2mqtt": 1800.0,
    "scanner": None,
    "checkout": None,
}
DEGRADED_ERROR_RATE = 0.2  # of the last window's messages
MIN_WINDOW_MESSAGES = 10
WINDOW_S = 60.0


@dataclass
class _Device:
    id: str
    kind: str
    silence_limit: float | None
    reported: bool | None = None
    error: str | None = None
    last_seen: float | None = None
    state: HealthState | None = None
    reason: str = ""
    readings: int = 0
    bad: int = 0
    window_start: float = 0.0
    window_good: int = 0
    window_bad: int = 0
    prev_rate: float = 0.0
    changes: list[tuple[float, str]] = field(default_factory=list)


class HealthTracker:
    def __init__(self, store_id: str, devices: dict[str, str]) -> None:
        """``devices``: device id -> kind."""
        self.store_id = store_id
        self._devices = {d: _Device(d, kind, SILENCE_LIMIT_S.get(kind, 60.0))
                         for d, kind in devices.items()}

    def __contains__(self, device_id: str) -> bool:
        return device_id in self._devices

    def reported(self, device_id: str, online: bool, error: str | None,
                 now: float) -> DeviceHealth | None:
        dev = self._devices[device_id]
        dev.reported, dev.error = online, error
        if online:
            dev.last_seen = now
        return self._evaluate(dev, now)

    def seen(self, device_id: str, now: float, good: bool = True) -> DeviceHealth | None:
        """A message from the device; bad ones count towards its error rate. Cheap: it is
        called per reading."""
        dev = self._devices.get(device_id)
        if dev is None:
            return None
        dev.last_seen = now
        if good:
            dev.readings += 1
            dev.window_good += 1
        else:
            dev.bad += 1
            dev.window_bad += 1
        if dev.state is HealthState.ONLINE and good:
            return None
        return self._evaluate(dev, now)

    def tick(self, now: float) -> list[DeviceHealth]:
        out = []
        for dev in self._devices.values():
            if now - dev.window_start >= WINDOW_S:
                total = dev.window_good + dev.window_bad
                dev.prev_rate = dev.window_bad / total if total >= MIN_WINDOW_MESSAGES else 0.0
                dev.window_start, dev.window_good, dev.window_bad = now, 0, 0
            change = self._evaluate(dev, now)
            if change is not None:
                out.append(change)
        return out

    def shift(self, delta: float) -> None:
        """Move the times that durations are measured from by ``delta`` seconds (the agent's
        clock stepped): a step is not silence."""
        for dev in self._devices.values():
            if dev.last_seen is not None:
                dev.last_seen += delta
            dev.window_start += delta

    def _evaluate(self, dev: _Device, now: float) -> DeviceHealth | None:
        total = dev.window_good + dev.window_bad
        rate = max(dev.prev_rate, dev.window_bad / total if total >= MIN_WINDOW_MESSAGES else 0.0)
        if dev.reported is False:
            state, reason = HealthState.OFFLINE, dev.error or "device reported offline"
        elif (dev.silence_limit is not None and dev.last_seen is not None
              and now - dev.last_seen > dev.silence_limit):
            state, reason = HealthState.OFFLINE, f"silent for {now - dev.last_seen:.0f}s"
        elif rate > DEGRADED_ERROR_RATE:
            state, reason = HealthState.DEGRADED, f"{rate:.0%} of its messages are bad"
        elif dev.reported or dev.last_seen is not None:
            state, reason = HealthState.ONLINE, "ok"
        else:
            return None
        if state is dev.state:
            return None
        dev.state, dev.reason = state, reason
        dev.changes.append((now, state.value))
        del dev.changes[:-20]
        return DeviceHealth(store_id=self.store_id, source=dev.id, received_ts=now,
                            device=dev.id, state=state, reason=reason)

    def view(self) -> dict[str, dict[str, Any]]:
        return {d.id: {"type": d.kind, "state": d.state.value if d.state else "unknown",
                       "reason": d.reason, "online": d.state is not None and
                       d.state is not HealthState.OFFLINE, "last_seen": d.last_seen,
                       "readings": d.readings, "bad": d.bad, "error": d.error,
                       "history": [{"ts": ts, "state": s} for ts, s in d.changes]}
                for d in self._devices.values()}

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self._devices.values():
            key = d.state.value if d.state else "unknown"
            out[key] = out.get(key, 0) + 1
        return out
