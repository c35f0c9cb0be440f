"""Loss rules: shrink (units leaving a shelf that no sale explains) and misplaced items (a tag of
one SKU at another SKU's lane; a weight change that is no whole number of units)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field

from rules.actions import Action, ClearAlert, UpdateAlert
from rules.library.base import Rule, RuleParams
from storeedge.events import Event, Sale, StockCause, StockChanged, TagPresence


class ShrinkParams(RuleParams):
    window_seconds: Annotated[float, Field(gt=0)] = 1800.0  # a sale this close explains a unit
    min_units: Annotated[int, Field(ge=1)] = 1  # unexplained units in a day before alerting
    picks: bool = True  # count shelf decreases (StockChanged, cause pick)
    departures: bool = True  # count RFID departures (TagPresence departed with a sku)


class Shrink(Rule):
    """A unit leaving the shelf (a pick or a tag departure) is explained by a Sale of its SKU
    within ``window_seconds`` before or after; what is left unexplained once the window has
    passed is added to the SKU's tally for that (store-local) day. One alert per SKU per day,
    re-notified as the tally grows; never auto-cleared. Subject: ``{sku}:{YYYY-MM-DD}``.

    Units are kept per SKU in minute buckets (the time of a bucket is its latest unit's), so the
    state is at most ``window_seconds / 60 + 1`` entries per SKU and direction whatever the
    traffic, and a unit may be explained by a sale up to a minute beyond the window.

    A SKU both weighed and tagged would count each unit twice: switch one source off for it."""

    name = "shrink"
    Params = ShrinkParams
    events = (StockChanged, TagPresence, Sale)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        # pending: sku -> [[t, qty], ...] decreases awaiting a sale; credit: the same for sales
        # not yet matched (oldest first, one entry per minute); tally: "sku:day" -> units
        return {"pending": {}, "credit": {}, "tally": {}}

    def handle(self, event: Event, now: float) -> list[Action]:
        if type(event) is Sale:
            return self._sale(event.sku, event.qty, now)
        if type(event) is StockChanged:
            if event.cause is not StockCause.PICK or event.after >= event.before:
                return []
            sku, qty = event.sku, event.before - event.after
            if not self._params(sku).picks:
                return []
        else:
            assert isinstance(event, TagPresence)
            if event.change != "departed" or event.sku is None:
                return []
            sku, qty = event.sku, 1
            if not self._params(sku).departures:
                return []
        return self._decrease(sku, qty, now)

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for sku in list(self.state["pending"]):
            out += self._expire(sku, now)
        credits = self.state["credit"]
        for sku, credit in list(credits.items()):
            _drop_older(credit, now - self._params(sku).window_seconds)
            if not credit:
                del credits[sku]
        if self.state["tally"]:
            keep = self._day(now - 2 * 86400)
            tally = self.state["tally"]
            for key in [k for k in tally if k.rpartition(":")[2] < keep]:
                del tally[key]
        return out

    def _params(self, sku: str) -> ShrinkParams:
        params: ShrinkParams = self.ctx.params(self.name, sku, self.ctx.model.zone_of_sku(sku))
        return params

    def _decrease(self, sku: str, qty: int, now: float) -> list[Action]:
        out = self._expire(sku, now)
        credit = self.state["credit"].get(sku)
        if credit is not None:
            _drop_older(credit, now - self._params(sku).window_seconds)
            qty = _take(credit, qty)
            if not credit:
                del self.state["credit"][sku]
        if qty:
            _add(self.state["pending"].setdefault(sku, []), qty, now)
        return out

    def _sale(self, sku: str, qty: int, now: float) -> list[Action]:
        out = self._expire(sku, now)
        pending = self.state["pending"].get(sku)
        if pending is not None:
            qty = _take(pending, qty)
            if not pending:
                del self.state["pending"][sku]
        if qty:
            credit = self.state["credit"].setdefault(sku, [])
            _drop_older(credit, now - self._params(sku).window_seconds)
            _add(credit, qty, now)
        return out

    def _expire(self, sku: str, now: float) -> list[Action]:
        pending = self.state["pending"].get(sku)
        if not pending:
            return []
        p = self._params(sku)
        lost: dict[str, int] = {}
        while pending and now - pending[0][0] > p.window_seconds:
            t, qty = pending.pop(0)
            day = self._day(t)
            lost[day] = lost.get(day, 0) + qty
        if not pending:
            del self.state["pending"][sku]
        out: list[Action] = []
        for day, qty in lost.items():
            key = f"{sku}:{day}"
            tally = self.state["tally"]
            tally[key] = total = tally.get(key, 0) + qty
            if total < p.min_units:
                continue
            message = f"{sku}: {total} unit(s) left the shelf on {day} with no sale to explain them"
            if self.ctx.is_open(self.name, key):
                out.append(UpdateAlert(rule=self.name, subject=key, severity=p.severity,
                                       message=message, detail={"units": total, "day": day}))
            else:
                out.append(self.alert(p, key, message, sku=sku,
                                      zone=self.ctx.model.zone_of_sku(sku), units=total, day=day))
        return out

    def _day(self, t: float) -> str:
        return datetime.fromtimestamp(t, ZoneInfo(self.ctx.model.timezone)).date().isoformat()


def _add(entries: list[list[Any]], qty: int, now: float) -> None:
    """Count ``qty`` units at ``now`` into the last entry if it is of the same minute."""
    if entries and entries[-1][0] // 60 == now // 60:
        last = entries[-1]
        last[0] = max(last[0], now)
        last[1] += qty
    else:
        entries.append([now, qty])


def _take(entries: list[list[Any]], qty: int) -> int:
    """Use up to ``qty`` units, oldest first; what is left of ``qty``."""
    while entries and qty:
        used = min(entries[0][1], qty)
        qty -= used
        if used == entries[0][1]:
            entries.pop(0)
        else:
            entries[0][1] -= used
    return qty


def _drop_older(entries: list[list[Any]], oldest: float) -> None:
    while entries and entries[0][0] < oldest:
        entries.pop(0)


class Misplaced(Rule):
    """A tag of one SKU arriving at (or moving to) a lane that holds another SKU opens an alert
    for the tag (subject ``tag:{epc}``), cleared when it departs or reaches a lane of its own SKU.
    A StockChanged with cause ambiguous (a lane whose weight stayed no whole number of units: a
    foreign or misplaced item) opens one for the lane (subject ``lane:{lane}``), cleared when the
    lane is next restocked, re-tared or recounted."""

    name = "misplaced"
    events = (TagPresence, StockChanged)

    def initial_state(self) -> dict[str, Any]:
        return {"tags": {}, "lanes": {}}  # epc -> lane; lane -> true

    def handle(self, event: Event, now: float) -> list[Action]:
        if type(event) is StockChanged:
            return self._weight(event)
        assert isinstance(event, TagPresence)
        tags = self.state["tags"]
        epc = event.epc
        lane = self.ctx.model.lane.get(event.location) if event.change != "departed" else None
        wrong = lane is not None and event.sku is not None and lane.sku != event.sku
        subject = f"tag:{epc}"
        if wrong and tags.get(epc) != event.location:
            assert lane is not None
            out: list[Action] = []
            if epc in tags:
                out.append(ClearAlert(rule=self.name, subject=subject, reason="tag moved"))
            tags[epc] = event.location
            p = self.ctx.params(self.name, event.sku, lane.zone)
            out.append(self.alert(p, subject, f"{event.sku} (tag {epc}) is at lane {lane.id}, "
                                  f"which holds {lane.sku}", sku=event.sku, location=lane.id,
                                  zone=lane.zone, epc=epc, lane_sku=lane.sku))
            return out
        if not wrong and epc in tags:
            del tags[epc]
            return [ClearAlert(rule=self.name, subject=subject,
                               reason=f"tag {event.change} ({event.location})")]
        return []

    def _weight(self, event: StockChanged) -> list[Action]:
        lanes = self.state["lanes"]
        subject = f"lane:{event.location}"
        if event.cause is StockCause.AMBIGUOUS:
            if event.location in lanes:
                return []
            lanes[event.location] = True
            lane = self.ctx.model.lane.get(event.location)
            zone = lane.zone if lane is not None else None
            p = self.ctx.params(self.name, event.sku, zone)
            return [self.alert(p, subject, f"lane {event.location} ({event.sku}): a weight that "
                               "is no whole number of units: a foreign or misplaced item?",
                               sku=event.sku, location=event.location, zone=zone)]
        if event.location in lanes and event.cause is not StockCause.PICK:
            del lanes[event.location]
            return [ClearAlert(rule=self.name, subject=subject, reason=f"lane {event.cause.value}")]
        return []
