"""Freshness rules: the cold chain (a chilled zone out of its range too long) and expiry (GS1
expiry dates scanned into stock that are near or past)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field

from rules.actions import Action, ClearAlert
from rules.library.base import Rule, RuleParams
from storeedge.events import Climate, Event, Scan, Severity


class ColdChainParams(RuleParams):
    severity: Severity = Severity.CRITICAL
    minutes: Annotated[float, Field(ge=0)] = 15.0  # out of range this long opens
    hysteresis_c: Annotated[float, Field(ge=0)] = 0.5  # back inside the range by this clears
    min_c: float | None = None  # override the zone's range
    max_c: float | None = None


class ColdChain(Rule):
    """A climate sensor of a zone with a range reads outside it for ``minutes``. The timer stops,
    and an open alert clears, only once the reading is back inside the range by
    ``hysteresis_c``: a fridge hovering at its limit counts as out. Subject: the sensor."""

    name = "cold_chain"
    Params = ColdChainParams
    events = (Climate,)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        return {"since": {}, "out": {}, "last": {}}  # sensor -> ts; -> true; -> °C

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, Climate)
        t = event.temperature
        sensor = event.source
        zone_id = self.ctx.model.zone_of_sensor.get(sensor)
        if t is None or zone_id is None:
            return []
        p = self.ctx.params(self.name, None, zone_id)
        zone = self.ctx.model.zone[zone_id]
        low = p.min_c if p.min_c is not None else zone.min_c
        high = p.max_c if p.max_c is not None else zone.max_c
        outside = (low is not None and t < low) or (high is not None and t > high)
        inside = ((low is None or t >= low + p.hysteresis_c)
                  and (high is None or t <= high - p.hysteresis_c))
        self.state["last"][sensor] = t
        if sensor in self.state["out"]:
            if inside:
                del self.state["out"][sensor]
                return [ClearAlert(rule=self.name, subject=sensor,
                                   reason=f"{t:.1f} °C, back in range")]
            return []
        if inside:
            self.state["since"].pop(sensor, None)
            return []
        if not outside and sensor not in self.state["since"]:
            return []
        return self._due(sensor, self.state["since"].setdefault(sensor, now), now)

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for sensor, since in list(self.state["since"].items()):
            out += self._due(sensor, since, now)
        return out

    def _due(self, sensor: str, since: float, now: float) -> list[Action]:
        zone_id = self.ctx.model.zone_of_sensor.get(sensor)
        if zone_id is None:
            del self.state["since"][sensor]
            return []
        p = self.ctx.params(self.name, None, zone_id)
        if now - since < p.minutes * 60:
            return []
        del self.state["since"][sensor]
        self.state["out"][sensor] = True
        zone = self.ctx.model.zone[zone_id]
        low = p.min_c if p.min_c is not None else zone.min_c
        high = p.max_c if p.max_c is not None else zone.max_c
        t = self.state["last"].get(sensor)
        return [self.alert(p, sensor, f"{zone_id}: {t:.1f} °C, outside {low}..{high} °C for "
                           f"{(now - since) / 60:.0f} min (sensor {sensor})", location=sensor,
                           zone=zone_id, temperature=t, min_c=low, max_c=high)]


class ExpiryParams(RuleParams):
    days: Annotated[int, Field(ge=0)] = 3  # expiring within this many days opens


class Expiry(Rule):
    """A Scan with a GS1 expiry date (AI 17) within ``days`` of today (store-local) opens one
    alert per product and batch, critical when already past. Not auto-cleared: staff pull the
    goods. Subject: ``{gtin or code}/{batch or expiry}``. Per-SKU ``days`` need the SKU's gtin
    in the StoreModel."""

    name = "expiry"
    Params = ExpiryParams
    events = (Scan,)

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, Scan)
        if not event.expiry:
            return []
        try:
            expires = date.fromisoformat(event.expiry)
        except ValueError:
            return []
        today = datetime.fromtimestamp(now, ZoneInfo(self.ctx.model.timezone)).date()
        left = (expires - today).days
        sku = self.ctx.model.sku_of_gtin.get(event.gtin) if event.gtin else None
        zone = (self.ctx.model.zone_of_sku(sku) if sku else None) or \
            self.ctx.model.zone_of_device.get(event.source)
        p = self.ctx.params(self.name, sku, zone)
        if left > p.days:
            return []
        product = event.gtin or event.code
        subject = f"{product}/{event.batch or event.expiry}"
        what = sku or product
        batch = f" batch {event.batch}" if event.batch else ""
        when = f"expired {-left} day(s) ago" if left < 0 else f"expires in {left} day(s)"
        return [self.alert(p, subject, f"{what}{batch} {when} ({event.expiry})", sku=sku,
                           zone=zone, severity=Severity.CRITICAL if left < 0 else None,
                           gtin=event.gtin, batch=event.batch, expiry=event.expiry,
                           days_left=left)]
