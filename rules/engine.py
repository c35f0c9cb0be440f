"""The rule engine: every event and every clock tick through the rule library, and the table of
open alerts that makes the library's actions safe to apply.

Pure: no I/O, no clock of its own (``now`` is passed in), so a simulated day runs in seconds.
The agent calls it from one task, so events about one subject are processed in the order given.

Guarantees, whatever the rules ask:
- one active alert per (rule, subject) until it clears (the engine serves one store);
- a subject cleared less than its rule's ``cooldown_seconds`` ago opens again only when the
  cooldown ends, and not at all if the condition clears meanwhile, so flapping input yields
  at most one open/clear pair per cooldown;
- an open alert nobody claimed within ``escalate_after_seconds`` is escalated once;
- ``reload`` keeps open alerts and every rule's windows and timers;
- ``snapshot()`` is JSON-able and ``restore()`` takes it back;
- every rule's state is bounded by the store (lanes, SKUs, devices, open alerts) and its
  windows, never by the traffic, so a snapshot stays small and cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rules.actions import Action, ClearAlert, EscalateAlert, OpenAlert, UpdateAlert
from rules.config import RulesConfig
from rules.library import RULES
from rules.library.base import Rule
from rules.model import StoreModel
from storeedge.errors import UsageError
from storeedge.events import Alert, AlertState, Event, Severity, StockCause, StockChanged

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class _Open:
    opened: float
    sku: str | None
    zone: str | None
    escalate_at: float | None
    claimed: bool = False


class RuleEngine:
    """Runs the rule library for one store.

    ``handle(event, now)`` and ``tick(now)`` return the actions to apply, in order. Tell the
    engine about staff transitions with ``claimed`` and ``resolved``.

    ``changes`` grows whenever the state changed in a way a ``snapshot()`` should keep: a caller
    that saves snapshots may skip one while it equals the value at the last save. (Time passing
    alone also moves rule state, but only in ways the next ``tick`` after a ``restore`` redoes.)
    """

    def __init__(self, config: RulesConfig, model: StoreModel) -> None:
        self.config = config
        self.model = model
        self.counts: dict[str, int] = {}
        self.changes = 0
        self._open: dict[tuple[str, str], _Open] = {}
        self._deferred: dict[tuple[str, str], tuple[float, OpenAlert]] = {}
        self._cleared: dict[tuple[str, str], float] = {}
        self._rules: dict[str, Rule] = {}
        self._params: dict[tuple[str, str | None, str | None], Any] = {}
        self._configure()

    # What rules see (RuleContext)

    def params(self, rule: str, sku: str | None = None, zone: str | None = None) -> Any:
        """A rule's parameters for a SKU in a zone (cached until the next reload)."""
        key = (rule, sku, zone)
        p = self._params.get(key)
        if p is None:
            p = self._params[key] = self.config.params(rule, sku, zone)
        return p

    def is_open(self, rule: str, subject: str) -> bool:
        return (rule, subject) in self._open or (rule, subject) in self._deferred

    # Input

    def listens(self, event_type: type[Event]) -> bool:
        """Whether ``handle`` does anything with events of this type under the configuration in
        force (until the next ``reload``): the caller may skip the others. StockChanged always
        is listened to, as the engine keeps every lane's count."""
        return event_type in self._listened

    def handle(self, event: Event, now: float) -> list[Action]:
        """Feed one event (a reading or a derived fact) at agent time ``now``."""
        if type(event) is StockChanged and event.cause is not StockCause.AMBIGUOUS:
            self.counts[event.location] = event.after
            self.changes += 1
        rules = self._dispatch.get(type(event))
        if rules is None:
            return []
        self.changes += 1
        out: list[Action] = []
        for rule in rules:
            actions = rule.handle(event, now)
            if actions:
                self._apply(actions, now, out)
        return out

    def tick(self, now: float) -> list[Action]:
        """Let time pass: timers, windows, cooldowns and escalations due by ``now``. Call it about
        once a second; how often only changes how late a time-based alert can be."""
        out: list[Action] = []
        for key, (due, action) in list(self._deferred.items()):
            if due <= now:
                del self._deferred[key]
                self.changes += 1
                self._apply([action], now, out)
        for key, entry in self._open.items():
            if entry.escalate_at is not None and entry.escalate_at <= now:
                entry.escalate_at = None
                if not entry.claimed:
                    waited = now - entry.opened
                    out.append(EscalateAlert(rule=key[0], subject=key[1], role="manager",
                                             reason=f"unclaimed for {waited:.0f} s"))
        for rule in self._tickers:
            actions = rule.tick(now)
            if actions:
                self._apply(actions, now, out)
        if self._cleared:
            horizon = self._max_cooldown
            for key, at in list(self._cleared.items()):
                if now - at >= horizon:
                    del self._cleared[key]
        if out:
            self.changes += 1
        return out

    def claimed(self, rule: str, subject: str) -> None:
        """Someone claimed the alert: it will not be escalated."""
        entry = self._open.get((rule, subject))
        if entry is not None:
            entry.claimed = True
            self.changes += 1

    def resolved(self, rule: str, subject: str, now: float) -> None:
        """Staff resolved the alert. The rule opens it again only on a new occurrence of its
        condition (a level rule needs the condition to end and return)."""
        if self._open.pop((rule, subject), None) is not None:
            self._cleared[(rule, subject)] = now
            self.changes += 1

    @property
    def rule_names(self) -> list[str]:
        """The rules switched on."""
        return list(self._rules)

    def open_alerts(self) -> list[tuple[str, str]]:
        """(rule, subject) of every alert open now, oldest first."""
        return list(self._open)

    # Configuration and state

    def reload(self, config: RulesConfig, model: StoreModel | None = None) -> list[Action]:
        """Swap the configuration (and the store model) keeping open alerts and rule state.
        A rule switched off clears its open alerts: those are returned."""
        self.config = config
        if model is not None:
            self.model = model
        self._params.clear()
        self.changes += 1
        before = set(self._rules)
        self._configure()
        out: list[Action] = []
        for name in before - set(self._rules):
            for key in [k for k in self._open if k[0] == name]:
                del self._open[key]
                out.append(ClearAlert(rule=name, subject=key[1], reason="rule switched off"))
            self._deferred = {k: v for k, v in self._deferred.items() if k[0] != name}
        return out

    def snapshot(self) -> dict[str, Any]:
        """The engine's whole state as JSON-able data the engine does not share: the caller may
        keep it while the engine runs on."""
        return {
            "version": SNAPSHOT_VERSION,
            "counts": dict(self.counts),
            "open": [[k[0], k[1], e.opened, e.sku, e.zone, e.escalate_at, e.claimed]
                     for k, e in self._open.items()],
            "deferred": [[k[0], k[1], due, _action_data(a)]
                         for k, (due, a) in self._deferred.items()],
            "cleared": [[k[0], k[1], at] for k, at in self._cleared.items()],
            "rules": {name: _copy(rule.state) for name, rule in self._rules.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take back a ``snapshot()`` (from this or an earlier process)."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise UsageError(f"rule engine snapshot version {data.get('version')!r} is not "
                             f"{SNAPSHOT_VERSION}")
        data = _copy(data)
        self.changes += 1
        self.counts = data["counts"]
        self._open = {(r, s): _Open(opened, sku, zone, esc, claimed)
                      for r, s, opened, sku, zone, esc, claimed in data["open"]}
        self._deferred = {(r, s): (due, OpenAlert(**{**a, "severity": Severity(a["severity"])}))
                          for r, s, due, a in data["deferred"]}
        self._cleared = {(r, s): at for r, s, at in data["cleared"]}
        for name, rule in self._rules.items():
            rule.state = data["rules"].get(name) or rule.initial_state()

    def reopen(self, action: OpenAlert, now: float) -> OpenAlert:
        """Open again an alert staff closed too soon (a restock the shelf did not bear out): no
        cooldown applies, and the rule's later updates and clear reach it."""
        key = (action.rule, action.subject)
        self._cleared.pop(key, None)
        self._deferred.pop(key, None)
        if key not in self._open:
            esc = self.params(action.rule, action.sku, action.zone).escalate_after_seconds
            self._open[key] = _Open(now, action.sku, action.zone,
                                    None if esc is None else now + esc)
        self.changes += 1
        return action

    def reconcile(self, active: Iterable[Alert], now: float) -> None:
        """Make the open set the alerts the journal holds active (``active``, each its latest
        transition). A snapshot is a few seconds older than the journal: an alert opened in
        between would be left without updates, one ended in between never opened again."""
        kept: dict[tuple[str, str], _Open] = {}
        for alert in active:
            key = (alert.rule, alert.subject)
            if alert.rule not in self._rules:
                continue
            entry = self._open.get(key)
            if entry is None:
                zone = alert.detail.get("zone")
                opened = alert.detail.get("opened_at", alert.received_ts)
                esc = self.params(alert.rule, alert.sku, zone).escalate_after_seconds
                waiting = alert.state is AlertState.OPEN and esc is not None
                entry = _Open(opened, alert.sku, zone, opened + esc if waiting else None,
                              claimed=alert.state is AlertState.CLAIMED)
            kept[key] = entry
        for key in self._open.keys() - kept.keys():
            self._cleared[key] = now
        if kept.keys() != self._open.keys():
            self.changes += 1
        self._open = kept

    # Inside

    def _configure(self) -> None:
        rules = {}
        for name, cls in RULES.items():
            if not self.params(name).enabled:
                continue
            rules[name] = self._rules.get(name) or cls(self)
        self._rules = rules
        self._dispatch: dict[type, list[Rule]] = {}
        for rule in rules.values():
            for kind in rule.events:
                self._dispatch.setdefault(kind, []).append(rule)
        self._listened = frozenset((*self._dispatch, StockChanged))
        self._tickers = [r for r in rules.values() if r.ticks]
        cooldowns = [self.params(name).cooldown_seconds for name in RULES]
        for over in (*self.config.skus.values(), *self.config.zones.values()):
            cooldowns += [getattr(over, n).cooldown_seconds or 0 for n in RULES
                          if getattr(over, n) is not None]
        self._max_cooldown = max(cooldowns, default=0.0)

    def _apply(self, actions: list[Action], now: float, out: list[Action]) -> None:
        for action in actions:
            key = (action.rule, action.subject)
            if type(action) is OpenAlert:
                if key in self._open:
                    continue
                if key in self._deferred:
                    self._deferred[key] = (self._deferred[key][0], action)
                    continue
                p = self.params(action.rule, action.sku, action.zone)
                cleared = self._cleared.get(key)
                if cleared is not None and now - cleared < p.cooldown_seconds:
                    self._deferred[key] = (cleared + p.cooldown_seconds, action)
                    continue
                esc = p.escalate_after_seconds
                self._open[key] = _Open(now, action.sku, action.zone,
                                        None if esc is None else now + esc)
                out.append(action)
            elif type(action) is ClearAlert:
                if self._deferred.pop(key, None) is not None:
                    continue
                if self._open.pop(key, None) is None:
                    continue
                self._cleared[key] = now
                out.append(action)
            elif type(action) is UpdateAlert:
                if key in self._open:
                    out.append(action)
                elif key in self._deferred:
                    due, opening = self._deferred[key]
                    self._deferred[key] = (due, OpenAlert(
                        rule=opening.rule, subject=opening.subject, severity=action.severity,
                        message=action.message, sku=opening.sku, location=opening.location,
                        detail=action.detail, role=opening.role, zone=opening.zone))
            else:
                raise UsageError(f"rule {action.rule} returned {type(action).__name__}")


def _action_data(action: OpenAlert) -> dict[str, Any]:
    return {"rule": action.rule, "subject": action.subject, "severity": action.severity.value,
            "message": action.message, "sku": action.sku, "location": action.location,
            "detail": _copy(action.detail), "role": action.role, "zone": action.zone}


_CONTAINERS = (dict, list)


def _copy(data: Any) -> Any:
    """A deep copy of JSON data (dicts and lists of them and of scalars). Twice as fast as a
    JSON round trip, which would also format and parse every number."""
    if type(data) is dict:
        return {k: _copy(v) if type(v) in _CONTAINERS else v for k, v in data.items()}
    if type(data) is list:
        return [_copy(v) if type(v) in _CONTAINERS else v for v in data]
    return data
