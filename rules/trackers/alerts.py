"""The alert lifecycle: what happens to an alert between the rule that raises it and the person
who deals with it.

    open ──claim──> claimed ──resolve(outcome)──> resolved
     │  └─(nobody claims within the rule's limit)─> escalated ──claim──> claimed
     └─(any active state, the rule's condition ends)──> cleared

It applies the rule engine's actions (``rules.actions``): ``OpenAlert`` opens one, routed by
its ``role`` and ``zone`` (else the zone of its lane); ``UpdateAlert`` re-notifies it (a
``worsened`` transition); ``EscalateAlert`` escalates it if still unclaimed; ``ClearAlert``
clears it. One active alert per (rule, subject): an ``OpenAlert`` for a subject that already has
one updates it only when it is worse (higher severity or more to bring), never opens a second.
The engine times escalations; ``tick`` escalates by this manager's own limits instead, for
callers without an engine (it does nothing unless limits are given).

Every change is an ``Alert`` event (one transition) returned to the caller, who journals,
publishes and streams it. ``detail`` carries the rule's own keys (``units``, ``threshold``,
``bring``...) and the lifecycle's: ``transition`` (opened, worsened, escalated, claimed,
confirmed, resolved, cleared), ``by`` (a person's name, ``rule`` or ``timer``), ``zone``,
``opened_at``, ``claim_within_s``, ``claimed_by``/``claimed_at``, ``escalated``/``escalated_at``,
``confirmed_by``/``confirmed_at``/``confirmed_code``, ``resolved_by``/``resolved_at``/
``outcome``/``note``, ``cleared_at``/``reason``, ``renotified``. A restock task (an alert with a
SKU, a lane and a count to bring) also carries ``task: {"sku", "lane", "bring"}``.

Not thread-safe: use it from the agent's event loop.

Errors, each an ``AlertError`` (a ``StoreEdgeError``): ``AlertNotFound`` (HTTP 404),
``NotPermitted`` (403: another zone, another person's claim, a role that may not act),
``IllegalTransition`` (409: claiming a resolved alert, a staff member resolving an unclaimed one),
and ``PayloadError`` (422) for an outcome that is unknown or does not fit the rule (``OUTCOMES``).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rules.actions import Action, ClearAlert, EscalateAlert, OpenAlert, UpdateAlert
from storeedge.errors import PayloadError, StoreEdgeError
from storeedge.events import Alert, AlertState, Event, Severity
from storeedge.ids import new_event_id

log = logging.getLogger(__name__)

ACTIVE_STATES = frozenset({AlertState.OPEN, AlertState.CLAIMED, AlertState.ESCALATED})
ALL_ZONES = "*"
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_ACTING_ROLES = frozenset({"staff", "manager"})
_SEEING_ROLES = frozenset({"manager", "hq"})


class Outcome(StrEnum):
    """How a person closed an alert."""

    RESTOCKED = "restocked"
    COUNTED = "counted"
    FIXED = "fixed"  # put right on the spot: the item back, the device working, the basket checked
    REMOVED = "removed"  # taken off sale (expired goods pulled)
    FALSE_ALARM = "false_alarm"
    OTHER = "other"


_SHELF = (Outcome.RESTOCKED, Outcome.COUNTED, Outcome.FALSE_ALARM, Outcome.OTHER)
_PUT_RIGHT = (Outcome.FIXED, Outcome.FALSE_ALARM, Outcome.OTHER)
#: The outcomes that fit each rule's alerts, in the order a handheld offers them: only shelf
#: stock is restocked; a checkout suspect, a device or a fridge is put right. A rule not named
#: here (a store's own) takes any outcome.
OUTCOMES: dict[str, tuple[Outcome, ...]] = {
    "low_stock": _SHELF, "out_of_stock": _SHELF, "days_of_cover": _SHELF,
    "shrink": (Outcome.COUNTED, Outcome.FALSE_ALARM, Outcome.OTHER),
    "shelf_camera": (Outcome.COUNTED, *_PUT_RIGHT),
    "expiry": (Outcome.REMOVED, Outcome.FALSE_ALARM, Outcome.OTHER),
    **dict.fromkeys(("misplaced", "checkout_suspect", "checkout_voids", "cold_chain",
                     "sensor_stuck", "sensor_noisy", "sensor_drift", "device_offline"),
                    _PUT_RIGHT),
    "click_collect": _PUT_RIGHT,  # fixed: picked (edge_agent.pickups)
    "problem": _PUT_RIGHT,  # a staff report (edge_agent.problems)
    # the agent's own (edge_agent.operations)
    **dict.fromkeys(("journal_quarantined", "erp_dead_letter"), _PUT_RIGHT),
}


def outcomes_for(rule: str) -> tuple[Outcome, ...]:
    """The outcomes that may close an alert of ``rule``."""
    return OUTCOMES.get(rule, tuple(Outcome))


class AlertError(StoreEdgeError):
    """A lifecycle request that cannot be carried out."""


class AlertNotFound(AlertError):
    """No alert with this id is active or in the kept history."""


class NotPermitted(AlertError):
    """The person may not act on this alert (zone, role, or someone else's claim)."""


class IllegalTransition(AlertError):
    """The alert's state does not allow this (e.g. claiming a resolved alert)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """A signed-in person: ``role`` is staff, manager or hq; ``zones`` the zones they cover
    (``*``: all)."""

    name: str
    role: str | None
    zones: frozenset[str] = frozenset({ALL_ZONES})

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    def covers(self, zone: str | None) -> bool:
        """Whether an alert routed to ``zone`` (None: the whole store) is this person's."""
        return ALL_ZONES in self.zones or (zone is not None and zone in self.zones)

    def can_see(self, alert: Alert) -> bool:
        """Managers and HQ see every alert; staff their zones' and the store-wide ones."""
        zone = alert.detail.get("zone")
        return self.role in _SEEING_ROLES or zone is None or self.covers(zone)


@dataclass(frozen=True, slots=True)
class ScanMatch:
    """What a scanned code confirmed: the task it matched (if any) and the transitions made."""

    code: str
    skus: tuple[str, ...]
    alert: Alert | None
    transitions: tuple[Alert, ...]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "skus": list(self.skus),
                               "matched": self.alert is not None}
        if self.alert is None:
            out["reason"] = ("unknown code" if not self.skus
                             else "no open task for this product in your zones")
        else:
            out["alert"] = self.alert.to_dict()
            out["lane"] = self.alert.location
            out["sku"] = self.alert.sku
            out["bring"] = self.alert.detail.get("bring")
        return out


class AlertManager:
    """Owns one store's active alerts and their lifecycle; every mutator returns the
    transitions it made, in order, for the caller to journal and publish.

    ``claim_within``: seconds per rule before ``tick`` escalates an unclaimed alert (a rule's
    ``OpenAlert.detail["claim_within_s"]`` overrides it; None: never); ``zones``: lane
    (location) -> zone, for alerts whose rule gave no zone; ``history_seconds`` and
    ``history_max`` bound the transitions kept in memory for ``history`` and ``summary``.
    """

    def __init__(self, store_id: str, *, claim_within: Mapping[str, float] | None = None,
                 default_claim_within: float | None = None, zones: Mapping[str, str] | None = None,
                 history_seconds: float = 86_400.0, history_max: int = 50_000) -> None:
        self.store_id = store_id
        self._claim_within = dict(claim_within or {})
        self._default_claim_within = default_claim_within
        self._zones = dict(zones or {})
        self._history_seconds = history_seconds
        self._active: dict[tuple[str, str], Alert] = {}
        self._by_id: dict[str, tuple[str, str]] = {}
        self._log: deque[Alert] = deque(maxlen=history_max)
        self._history: dict[str, list[Alert]] = {}

    def __len__(self) -> int:
        return len(self._active)

    # Reads

    def active(self) -> list[Alert]:
        """The latest transition of each active alert, newest first."""
        return sorted(self._active.values(), key=lambda a: a.received_ts, reverse=True)

    def alerts(self, state: str | None = None) -> list[Alert]:
        """``active()``, optionally of one state (what ``AgentApi.alerts`` returns)."""
        return [a for a in self.active() if state is None or a.state == state]

    def is_active(self, rule: str, subject: str) -> bool:
        """Whether (rule, subject) has an active alert."""
        return (rule, subject) in self._active

    def current(self, rule: str, subject: str) -> Alert | None:
        """The latest transition of (rule, subject)'s active alert, if it has one."""
        return self._active.get((rule, subject))

    def get(self, alert_id: str) -> Alert:
        """The latest transition of an alert, active or ended (while its history is kept)."""
        key = self._by_id.get(alert_id)
        if key is not None:
            return self._active[key]
        kept = self._history.get(alert_id)
        if not kept:
            raise AlertNotFound(f"no alert {alert_id!r} in store {self.store_id}")
        return kept[-1]

    def history(self, alert_id: str) -> list[Alert]:
        """Every kept transition of one alert, oldest first."""
        self.get(alert_id)
        return list(self._history.get(alert_id, ()))

    # Rule actions and time

    def apply(self, actions: Iterable[Action], now: float,
              cause: Event | None = None) -> list[Alert]:
        """Apply rule actions; ``cause`` is the event that made the rule act."""
        out: list[Alert] = []
        for action in actions:
            if isinstance(action, OpenAlert):
                alert = self._open(action, now, cause)
            elif isinstance(action, UpdateAlert):
                alert = self._update(action, now, cause)
            elif isinstance(action, EscalateAlert):
                alert = self._escalate(action, now)
            else:
                alert = self._clear(action, now, cause)
            if alert is not None:
                out.append(alert)
        return out

    def tick(self, now: float) -> list[Alert]:
        """Escalate every open alert nobody claimed within its limit."""
        out = []
        for alert in list(self._active.values()):
            if alert.state is not AlertState.OPEN:
                continue
            d = alert.detail
            limit = d.get("claim_within_s")
            if limit is not None and now - d.get("opened_at", alert.received_ts) >= limit:
                out.append(self._move(alert, AlertState.ESCALATED, now, "escalated", "timer",
                                      source="alerts", escalated=True, escalated_at=now,
                                      route="manager", reason=f"unclaimed for {limit:.0f} s"))
        return out

    def _escalate(self, action: EscalateAlert, now: float) -> Alert | None:
        current = self._active.get((action.rule, action.subject))
        if current is None or current.state is not AlertState.OPEN:
            return None
        return self._move(current, AlertState.ESCALATED, now, "escalated", "rule",
                          source="rules", escalated=True, escalated_at=now, route=action.role,
                          reason=action.reason)

    def _update(self, action: UpdateAlert, now: float, cause: Event | None) -> Alert | None:
        current = self._active.get((action.rule, action.subject))
        if current is None:
            return None
        return self._worsened(current, action.severity, action.message, action.detail, now,
                              cause)

    def _worsened(self, current: Alert, severity: Severity, message: str,
                  rule_detail: Mapping[str, Any], now: float, cause: Event | None) -> Alert:
        detail = _task_detail(rule_detail, current.sku, current.location)
        return self._move(current, current.state, now, "worsened", "rule", cause=cause,
                          severity=severity,
                          message=_message(message, detail),
                          rule_detail=detail,
                          renotified=current.detail.get("renotified", 0) + 1)

    def _open(self, action: OpenAlert, now: float, cause: Event | None) -> Alert | None:
        key = (action.rule, action.subject)
        detail = _task_detail(action.detail, action.sku, action.location)
        current = self._active.get(key)
        if current is not None:
            if not _worse(action.severity, detail, current):
                return None
            return self._worsened(current, action.severity, action.message, action.detail, now,
                                  cause)
        limit = detail.get("claim_within_s",
                           self._claim_within.get(action.rule, self._default_claim_within))
        zone = (action.zone or detail.get("zone") or self._zones.get(action.location or "")
                or action.location)
        role = action.role if action.role != "staff" else detail.get("role", "staff")
        detail.update(transition="opened", by="rule", zone=zone, role=role, route=role,
                      opened_at=now, claim_within_s=limit, escalated=False)
        alert = Alert(store_id=self.store_id, source=cause.source if cause else "rules",
                      received_ts=now, device_ts=cause.device_ts if cause else None,
                      alert_id=new_event_id(), rule=action.rule, severity=action.severity,
                      subject=action.subject, message=_message(action.message, detail),
                      state=AlertState.OPEN, sku=action.sku, location=action.location,
                      detail=detail)
        self._active[key] = alert
        self._by_id[alert.alert_id] = key
        self._remember(alert)
        return alert

    def _clear(self, action: ClearAlert, now: float, cause: Event | None) -> Alert | None:
        key = (action.rule, action.subject)
        current = self._active.get(key)
        if current is None:
            return None
        return self._move(current, AlertState.CLEARED, now, "cleared", "rule", cause=cause,
                          cleared_at=now, reason=action.reason)

    # People

    def claim(self, alert_id: str, actor: Actor, now: float) -> list[Alert]:
        """Take an open or escalated alert; claiming one's own claim again changes nothing."""
        alert = self._actionable(alert_id, actor, "claim")
        if alert.state is AlertState.CLAIMED:
            if alert.detail.get("claimed_by") == actor.name:
                return []
            raise IllegalTransition(
                f"alert {alert_id} is already claimed by {alert.detail.get('claimed_by')}")
        return [self._claimed(alert, actor, now, "claimed")]

    def resolve(self, alert_id: str, actor: Actor, outcome: Outcome | str, now: float,
                note: str | None = None) -> list[Alert]:
        """Close a claimed alert with an outcome. Only a manager may resolve one nobody
        claimed, or one someone else claimed."""
        try:
            outcome = Outcome(outcome)
        except ValueError as exc:
            raise PayloadError(f"outcome {outcome!r} is not one of "
                               f"{', '.join(o.value for o in Outcome)}") from exc
        alert = self._actionable(alert_id, actor, "resolve")
        if outcome not in outcomes_for(alert.rule):
            raise PayloadError(f"outcome {outcome.value!r} does not fit a {alert.rule} alert: one "
                               f"of {', '.join(o.value for o in outcomes_for(alert.rule))}")
        claimed_by = alert.detail.get("claimed_by")
        if not actor.is_manager:
            if alert.state is not AlertState.CLAIMED:
                raise IllegalTransition(f"alert {alert_id} is {alert.state}: claim it first")
            if claimed_by != actor.name:
                raise NotPermitted(f"alert {alert_id} is claimed by {claimed_by}")
        return [self._move(alert, AlertState.RESOLVED, now, "resolved", actor.name,
                           source="handheld", resolved_by=actor.name, resolved_at=now,
                           outcome=outcome.value, note=note)]

    def scan(self, code: str, actor: Actor, now: float,
             barcodes: Mapping[str, str | None]) -> ScanMatch:
        """Confirm the product at a lane: match a scanned code (``barcodes``: sku -> barcode)
        to the person's most urgent active task for that SKU, and claim it if it was not."""
        code = _clean_code(code)
        skus = tuple(sku for sku, barcode in barcodes.items()
                     if code == sku or (barcode is not None and _same_code(code, barcode)))
        candidates = [
            a for a in self._active.values()
            if a.sku in skus and a.detail.get("claimed_by") in (None, actor.name)
            and self._may_act(a, actor)]
        if not candidates:
            return ScanMatch(code, skus, None, ())
        target = min(candidates, key=lambda a: (a.detail.get("claimed_by") != actor.name,
                                                -_RANK[a.severity], a.detail.get("opened_at", 0)))
        confirmed = self._claimed(target, actor, now, "confirmed", confirmed_by=actor.name,
                                  confirmed_at=now, confirmed_code=code)
        return ScanMatch(code, skus, confirmed, (confirmed,))

    def _claimed(self, alert: Alert, actor: Actor, now: float, transition: str,
                 **changes: Any) -> Alert:
        if alert.state is not AlertState.CLAIMED:
            changes.update(claimed_by=actor.name, claimed_at=now)
        return self._move(alert, AlertState.CLAIMED, now, transition, actor.name,
                          source="handheld", **changes)

    def _actionable(self, alert_id: str, actor: Actor, verb: str) -> Alert:
        alert = self.get(alert_id)
        if alert.state not in ACTIVE_STATES:
            raise IllegalTransition(f"cannot {verb} alert {alert_id}: it is {alert.state}")
        if not self._may_act(alert, actor):
            raise NotPermitted(
                f"{actor.name} ({actor.role}, zones {','.join(sorted(actor.zones)) or '-'}) may "
                f"not {verb} alert {alert_id} routed to zone {alert.detail.get('zone')}")
        return alert

    @staticmethod
    def _may_act(alert: Alert, actor: Actor) -> bool:
        if actor.is_manager:
            return True
        return (actor.role == "staff" and alert.detail.get("role", "staff") == "staff"
                and actor.covers(alert.detail.get("zone")))

    # Transitions

    def _move(self, alert: Alert, state: AlertState, now: float, transition: str, by: str, *,
              cause: Event | None = None, source: str | None = None,
              severity: Severity | None = None, message: str | None = None,
              rule_detail: Mapping[str, Any] | None = None, **changes: Any) -> Alert:
        detail = {**alert.detail, **(rule_detail or {}), **changes,
                  "transition": transition, "by": by}
        # Every field named (keep in step with Alert): dataclasses.replace costs twice as much.
        moved = Alert(
            store_id=alert.store_id, seq=alert.seq, alert_id=alert.alert_id, rule=alert.rule,
            subject=alert.subject, sku=alert.sku, location=alert.location,
            event_id=new_event_id(), received_ts=now, state=state,
            source=cause.source if cause else (source or alert.source),
            device_ts=cause.device_ts if cause else None,
            severity=severity or alert.severity, message=message or alert.message,
            detail=detail)
        key = (alert.rule, alert.subject)
        if state in ACTIVE_STATES:
            self._active[key] = moved
        else:
            self._active.pop(key, None)
            self._by_id.pop(alert.alert_id, None)
        self._remember(moved)
        log.info("store %s: alert %s %s %s/%s by %s", self.store_id, moved.alert_id, transition,
                 moved.rule, moved.subject, by)
        return moved

    def _remember(self, alert: Alert) -> None:
        if len(self._log) == self._log.maxlen:
            self._forget(self._log[0])
        self._log.append(alert)
        self._history.setdefault(alert.alert_id, []).append(alert)
        horizon = alert.received_ts - self._history_seconds
        while self._log and self._log[0].received_ts < horizon:
            self._forget(self._log.popleft())

    def _forget(self, oldest: Alert) -> None:
        kept = self._history.get(oldest.alert_id)
        if kept and kept[0] is oldest:
            kept.pop(0)
            if not kept:
                del self._history[oldest.alert_id]

    # Restart

    def restore(self, alerts: Iterable[Alert], history: Iterable[Alert] = ()) -> None:
        """Take back the active alerts (their latest transitions, as the journal keeps them)
        and, for ``history`` and ``summary``, earlier transitions in journal order."""
        for alert in history:
            self._remember(alert)
        for alert in alerts:
            if alert.state not in ACTIVE_STATES:
                continue
            detail = dict(alert.detail)
            detail.setdefault("opened_at", alert.received_ts)
            detail.setdefault("claim_within_s", self._claim_within.get(
                alert.rule, self._default_claim_within))
            detail.setdefault("role", "staff")
            detail.setdefault("zone", self._zones.get(alert.location or "") or alert.location)
            alert = dataclasses.replace(alert, detail=detail)
            key = (alert.rule, alert.subject)
            self._active[key] = alert
            self._by_id[alert.alert_id] = key
            kept = self._history.setdefault(alert.alert_id, [])
            if not kept or kept[-1].event_id != alert.event_id:
                kept.append(alert)
        log.info("store %s: %d active alerts restored", self.store_id, len(self._active))

    # The manager's view

    def summary(self, now: float) -> dict[str, Any]:
        """Open alerts with their ages, per rule how many of each transition and how long
        claiming and resolving took (median, p90, seconds), per person what they did, and the
        latest people's actions; over the kept history."""
        rules: dict[str, dict[str, Any]] = {}
        to_claim: dict[str, list[float]] = {}
        to_resolve: dict[str, list[float]] = {}
        people: dict[str, Counter[str]] = {}
        actions: list[dict[str, Any]] = []
        for a in self._log:
            d = a.detail
            transition = d.get("transition") or a.state.value
            counts = rules.setdefault(a.rule, Counter())
            counts[transition] += 1
            opened = d.get("opened_at")
            if transition in ("claimed", "confirmed") and d.get("claimed_at") == a.received_ts \
                    and opened is not None:
                to_claim.setdefault(a.rule, []).append(a.received_ts - opened)
            if transition == "resolved" and opened is not None:
                to_resolve.setdefault(a.rule, []).append(a.received_ts - opened)
            if transition in ("claimed", "confirmed", "resolved"):
                done = people.setdefault(d.get("by", "?"), Counter())
                done[transition] += 1
                if transition == "resolved":
                    done[f"outcome:{d.get('outcome')}"] += 1
                actions.append({"ts": a.received_ts, "by": d.get("by"), "action": transition,
                                "alert_id": a.alert_id, "rule": a.rule, "subject": a.subject,
                                "outcome": d.get("outcome"), "note": d.get("note")})
        open_alerts = []
        for a in self.active():
            d = a.detail
            opened = d.get("opened_at", a.received_ts)
            open_alerts.append({**a.to_dict(), "age_s": round(now - opened, 1),
                                "claimed_after_s": _round(d.get("claimed_at"), opened)})
        return {
            "store_id": self.store_id, "now": now,
            "open": open_alerts,
            "rules": {rule: {**counts, "to_claim_s": _stats(to_claim.get(rule, [])),
                             "to_resolve_s": _stats(to_resolve.get(rule, []))}
                      for rule, counts in sorted(rules.items())},
            "people": {name: _person(done) for name, done in sorted(people.items())},
            "recent": actions[::-1][:50],
        }


def _task_detail(rule_detail: Mapping[str, Any], sku: str | None,
                 lane: str | None) -> dict[str, Any]:
    """The rule's detail, with a restock task's count to bring worked out when the rule gave
    a target level and the count now instead."""
    detail = dict(rule_detail)
    if "bring" not in detail and "target" in detail and "units" in detail:
        detail["bring"] = max(int(detail["target"]) - int(detail["units"]), 0)
    if detail.get("bring") and sku and lane:
        detail["task"] = {"sku": sku, "lane": lane, "bring": detail["bring"]}
    return detail


def _message(message: str, detail: Mapping[str, Any]) -> str:
    task = detail.get("task")
    if task is None or "bring" in message.lower():
        return message
    return f"{message}; bring {task['bring']} x {task['sku']} to lane {task['lane']}"


def _worse(severity: Severity, detail: Mapping[str, Any], than: Alert) -> bool:
    if _RANK[severity] != _RANK[than.severity]:
        return _RANK[severity] > _RANK[than.severity]
    new, old = detail.get("bring"), than.detail.get("bring")
    return isinstance(new, int | float) and isinstance(old, int | float) and new > old


def _clean_code(code: str) -> str:
    code = code.strip()
    if code.startswith("]") and len(code) > 3:  # an AIM symbology identifier, e.g. ]E0
        code = code[3:]
    return code


def _same_code(scanned: str, barcode: str) -> bool:
    """Equal codes, or equal GTINs however zero-padded (UPC-A, EAN-13, GTIN-14), or a GS1
    element string whose AI 01 holds the GTIN."""
    if scanned == barcode:
        return True
    if scanned.startswith("01") and len(scanned) >= 16 and scanned[2:16].isdigit():
        scanned = scanned[2:16]
    return scanned.isdigit() and barcode.isdigit() and scanned.lstrip("0") == barcode.lstrip("0")


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "p90": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"n": len(ordered), "median": round(statistics.median(ordered), 1),
            "p90": round(p90, 1)}


def _person(done: Counter[str]) -> dict[str, Any]:
    outcomes = {k.split(":", 1)[1]: n for k, n in done.items() if k.startswith("outcome:")}
    return {"claimed": done["claimed"], "confirmed": done["confirmed"],
            "resolved": done["resolved"], "outcomes": outcomes}


def _round(ts: float | None, since: float) -> float | None:
    return None if ts is None else round(ts - since, 1)
