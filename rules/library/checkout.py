"""Self-checkout rules: suspect items (the bagging area weighs what nobody scanned) and repeated
voids in one session."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from rules.actions import Action, UpdateAlert
from rules.library.base import Rule, RuleParams
from storeedge.events import CheckoutEvent, CheckoutKind, Event, SuspectItem

_SESSION_IDLE_SECONDS = 6 * 3600.0  # forget a session silent this long (a kiosk that crashed)


class CheckoutSuspect(Rule):
    """Each SuspectItem opens one alert per kiosk session for the attendant; more in the same
    session re-notify. Not auto-cleared: staff check the bag. Subject: ``{kiosk}/{session}``."""

    name = "checkout_suspect"
    events = (SuspectItem,)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        return {"seen": {}}  # subject -> [last_ts, grams]

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, SuspectItem)
        subject = f"{event.kiosk}/{event.session}"
        zone = self.ctx.model.zone_of_device.get(event.kiosk)
        p = self.ctx.params(self.name, None, zone)
        message = (f"kiosk {event.kiosk}: {event.unexplained_grams:.0f} g in the bagging area "
                   f"not scanned ({event.message})")
        seen = self.state["seen"]
        if subject in seen:
            seen[subject][0] = now
            return [UpdateAlert(rule=self.name, subject=subject, severity=p.severity,
                                message=message,
                                detail={"unexplained_grams": event.unexplained_grams})]
        seen[subject] = [now, event.unexplained_grams]
        return [self.alert(p, subject, message, location=event.kiosk, zone=zone,
                           session=event.session, unexplained_grams=event.unexplained_grams)]

    def tick(self, now: float) -> list[Action]:
        seen = self.state["seen"]
        for subject in [s for s, v in seen.items() if now - v[0] > _SESSION_IDLE_SECONDS]:
            del seen[subject]
        return []


class CheckoutVoidsParams(RuleParams):
    max_voids: Annotated[int, Field(ge=0)] = 3  # more voids than this in a session opens


class CheckoutVoids(Rule):
    """More than ``max_voids`` voided items in one kiosk session opens one alert (a sweethearting
    or scan-avoidance pattern); not auto-cleared. Subject: ``{kiosk}/{session}``."""

    name = "checkout_voids"
    Params = CheckoutVoidsParams
    events = (CheckoutEvent,)
    ticks = True

    def initial_state(self) -> dict[str, Any]:
        return {"sessions": {}}  # subject -> [voids, last_ts]

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, CheckoutEvent)
        subject = f"{event.kiosk}/{event.session}"
        sessions = self.state["sessions"]
        if event.kind in (CheckoutKind.PAID, CheckoutKind.CANCELLED):
            sessions.pop(subject, None)
            return []
        if event.kind is not CheckoutKind.VOIDED:
            return []
        entry = sessions.setdefault(subject, [0, now])
        entry[0] += 1
        entry[1] = now
        zone = self.ctx.model.zone_of_device.get(event.kiosk)
        p = self.ctx.params(self.name, None, zone)
        if entry[0] != p.max_voids + 1:
            return []
        return [self.alert(p, subject, f"kiosk {event.kiosk}: {entry[0]} items voided in one "
                           "session", location=event.kiosk, zone=zone, session=event.session,
                           voids=entry[0])]

    def tick(self, now: float) -> list[Action]:
        sessions = self.state["sessions"]
        for subject in [s for s, v in sessions.items() if now - v[1] > _SESSION_IDLE_SECONDS]:
            del sessions[subject]
        return []
