"""The store's pipeline: device messages and events in, store state, facts and alert transitions
out. No I/O and no clock of its own: every entry point is handed ``now`` (the agent's wall
clock), and what a call produced waits in ``turn`` until the runtime takes it to commit and
publish.

Readings move state (lane counts, tag presence, kiosk sessions, device health); the facts they
make (tag arrivals and departures, suspect items, health changes) and every event the rules in
force listen to go through the rule engine, and what the rules ask goes through the alert
lifecycle into the turn's transitions. A kiosk session's events that decide what it sells are
facts too; a paid session comes out as a sale for the runtime to book like a POS one, and the
rules see a sale once it is booked (``sold``).

One state machine: every handler shares the turn and the time of the call, which is why the
entry points, the handlers and the snapshot stay in this one module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from devices.shelf_mqtt.protocol import decode_status
from edge_agent.catalog import Catalog
from edge_agent.config import StoreConfig
from edge_agent.routes import Routes
from rules.actions import Action
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.trackers.alerts import Actor, AlertManager, Outcome
from rules.trackers.checkout import CheckoutReconciler, CheckoutSale
from rules.trackers.health import HealthTracker
from rules.trackers.inventory import Change, LaneScale
from rules.trackers.presence import PresenceParams, PresenceTracker
from rules.trackers.restock import RestockChecks
from storeedge.errors import PayloadError, StoreEdgeError
from storeedge.events import (
    Alert,
    AlertState,
    CheckoutEvent,
    CheckoutKind,
    Climate,
    DeviceHealth,
    DeviceStatus,
    Event,
    PosTransaction,
    Sale,
    Scan,
    ShelfImage,
    ShelfWeight,
    StockCause,
    StockChanged,
    TagRead,
)
from storeedge.ratelimit import RateLimitedLog
from storeedge.units import PLAUSIBLE_EPOCH_S

log = logging.getLogger(__name__)

Batch = list[tuple[str, bytes]]
E = TypeVar("E", bound=Event)

_STOCK_KEYS = {cause: f"stock_{cause.value}" for cause in StockCause}
#: Kiosk events that change what a session sells, journaled as facts (bagging weights are not).
SESSION_KINDS = frozenset({CheckoutKind.STARTED, CheckoutKind.ITEM_SCANNED, CheckoutKind.VOIDED,
                           CheckoutKind.PAID, CheckoutKind.CANCELLED})


@dataclass(slots=True)
class Turn:
    """What the pipeline produced since it was last taken: facts to journal, alert transitions
    to journal and publish, kiosk sales to book."""

    facts: list[Event] = field(default_factory=list)
    transitions: list[Alert] = field(default_factory=list)
    sales: list[CheckoutSale] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.facts or self.transitions or self.sales)


class StorePipeline:
    def __init__(self, config: StoreConfig, rules: RulesConfig,
                 bad_input: RateLimitedLog | None = None) -> None:
        self.config = config
        self.store_id = store_id = config.store.id
        self._prefix = f"store/{store_id}/"
        self.counters: Counter[str] = Counter()
        self.bad_input = bad_input or RateLimitedLog(log)
        self.turn = Turn()
        self._now = 0.0  # the time of the call being handled
        self.catalog = Catalog(config, self.bad_input)
        self.rules_config = rules
        self.scales: dict[str, LaneScale] = {}
        self.alert_manager = AlertManager(
            store_id, history_max=5_000,
            zones={lane.id: lane.zone for lane in config.lanes if lane.zone})
        self.engine = RuleEngine(rules, self.catalog.store_model())
        self._rules_saved = -1  # engine.changes at the last saved snapshot
        self.restocks = RestockChecks(config.inventory.verify_restock_seconds)
        r = config.rfid
        self.presence = PresenceTracker(
            PresenceParams(window=r.window, rssi_offset_db=r.rssi_offset_db,
                           offset_decay_s=r.offset_decay_s, departed_after_s=r.departed_after_s),
            sku_of=self.catalog.sku_of_epc)
        self._location_of = {d.id: d.location_of for d in config.devices
                             if hasattr(d, "location_of")}
        self._zone_of = {d.id: d.zone for d in config.devices if hasattr(d, "zone")}
        self.reconcilers = {
            d.id: CheckoutReconciler(d.tolerance, d.min_unexplained_grams,
                                     self.catalog.sku_of_code,
                                     settle_seconds=d.settle_seconds,
                                     settle_band_grams=d.settle_band_grams,
                                     session_idle_seconds=d.session_idle_seconds)
            for d in config.devices if d.type == "checkout"}
        self.device_health = HealthTracker(store_id, {d.id: d.type for d in config.devices})
        self._alert_keys: dict[tuple[str, AlertState], str] = {}  # counter names, made once
        routes = Routes(config)
        self.routes, self._status_topics = routes.decoders, routes.status
        self.subscriptions = routes.subscriptions
        self._reading_key = {d.id: f"readings_{d.type}" for d in config.devices}
        self._handlers: dict[type, Callable[[Any], None]] = {
            ShelfWeight: self._weigh,
            DeviceStatus: self.device_status,
            ShelfImage: self._camera,
            Climate: self._climate,
            Scan: self._scan,
            TagRead: self._tag_read,
            CheckoutEvent: self._checkout,
        }
        self.camera_occupancy: dict[str, float] = {}
        self.climate: dict[str, dict[str, Any]] = {}  # zone -> latest sample
        self.last_scans: list[Scan] = []

    def take(self) -> Turn:
        """What was produced since the last ``take``; the pipeline starts a new turn."""
        turn = self.turn
        if turn:  # an empty turn stays current: most MQTT reads make nothing to commit
            self.turn = Turn()
        return turn

    # Catalog and rules

    def set_catalog(self, items: list[dict[str, Any]], now: float) -> None:
        """Merge catalog items: lanes whose SKU became known get a scale, and the rules see the
        new store model."""
        self._now = now
        self.catalog.merge(items)
        for lane in self.config.lanes:
            sku = self.catalog.get(lane.sku)
            if sku is None:
                continue
            scale = self.scales.get(lane.id)
            if scale is None:
                self.scales[lane.id] = LaneScale(lane.id, lane.sku, sku.unit_grams, lane.capacity)
            elif scale.set_unit(sku.unit_grams):
                log.warning("lane %s (store %s): %s now weighs %.1f g a unit, was %.1f g; the %d "
                            "units on the lane are counted at the old weight until it is empty",
                            lane.id, self.store_id, lane.sku, sku.unit_grams, scale.unit_grams,
                            scale.units)
        self.reload_rules(self.rules_config, self._now)

    def reload_rules(self, rules: RulesConfig, now: float) -> None:
        """Put ``rules`` in force: open alerts stay open; a rule switched off clears its own."""
        self.rules_config = rules
        actions = self.engine.reload(rules, self.catalog.store_model())
        if actions:
            self.turn.transitions += self.alert_manager.apply(actions, now)

    # Intake

    def handle_batch(self, batch: Batch, now: float) -> None:
        """One read's worth of MQTT messages, each routed by its exact topic to its device's
        decoder; bad payloads and unknown devices are counted and logged, the rest flows."""
        self._now = now
        routes = self.routes
        for topic, payload in batch:
            route = routes.get(topic)
            if route is None:
                device_id = self._status_topics.get(topic)
                if device_id is not None:
                    try:
                        online = decode_status(payload)
                    except PayloadError as exc:
                        self._reject("bad_payload", device_id, str(exc))
                        continue
                    self._device_status(device_id, online, None, now)
                elif topic.startswith(self._prefix):
                    self._unknown_device(topic)
                continue
            device, decode = route
            try:
                events = decode(payload, device=device, store_id=self.store_id,
                                received_ts=now)
            except PayloadError as exc:
                self._reject("bad_payload", device.id, str(exc))
                continue
            self._dispatch(events)

    def handle_events(self, events: list[Any], now: float) -> None:
        """Events from a driver task (serial ports, cameras)."""
        self._now = now
        self._dispatch(events)

    def _dispatch(self, events: list[Any]) -> None:
        handlers = self._handlers
        counters = self.counters
        seen = self.device_health.seen
        listens = self.engine.listens
        low, high = PLAUSIBLE_EPOCH_S
        for event in events:
            kind = type(event)
            if kind is not DeviceStatus:
                device_ts = event.device_ts
                if device_ts is not None and not low <= device_ts < high:
                    event = self.device_time(event)
                counters["readings"] += 1
                counters[self._reading_key.get(event.source, "readings_other")] += 1
                change = seen(event.source, event.received_ts)
                if change is not None:
                    self._health(change)
            handler = handlers.get(kind)
            if handler is not None:
                handler(event)
            if listens(kind):  # most readings only reach the rules as the facts they make
                self._rules(event)

    def _rules(self, event: Event) -> None:
        engine = self.engine
        if not engine.listens(type(event)):
            return
        now = self._now
        actions = engine.handle(event, now)
        if actions:
            self.turn.transitions += self.alert_manager.apply(actions, now, event)

    def _fact(self, fact: Event) -> None:
        """A derived fact: journaled with this turn, and seen by the rules."""
        self.counters[f"fact_{fact.event_type}"] += 1
        self.turn.facts.append(fact)
        self._rules(fact)

    def _tag_read(self, read: TagRead) -> None:
        location = self._location_of[read.source](read.antenna)
        if location is None:
            return
        for change in self.presence.observe(read, location):
            self._fact(change)

    def _checkout(self, event: CheckoutEvent) -> None:
        reconciler = self.reconcilers.get(event.source)
        if reconciler is None:
            return
        if event.kind in SESSION_KINDS:
            # What a session sold is a fact: journaled before the kiosk's message is
            # acknowledged, so a crash before the next snapshot cannot book a short sale.
            self.turn.facts.append(event)
        self._checkout_outcome(reconciler.observe(event))

    def replay_checkout(self, events: list[CheckoutEvent]) -> None:
        """Re-apply journaled session events newer than the restored snapshot (those it holds
        are skipped by their seq). Their suspects were journaled the first time; a sale they
        complete is booked (idempotently, by its txn_id)."""
        for event in events:
            reconciler = self.reconcilers.get(event.source)
            if reconciler is None:
                continue
            for outcome in reconciler.observe(event):
                if isinstance(outcome, CheckoutSale):
                    self._kiosk_sale(outcome)

    def _checkout_outcome(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, CheckoutSale):
                self._kiosk_sale(event)
            else:
                self._fact(event)

    def _kiosk_sale(self, sale: CheckoutSale) -> None:
        if not sale.lines:
            log.error("kiosk %s session %s paid with no line the catalog knows (store %s)",
                      sale.kiosk, sale.session, self.store_id)
            return
        try:
            self.validate_sale(sale)
        except PayloadError as exc:
            self.counters["kiosk_sales_rejected"] += 1
            log.error("kiosk %s session %s not booked (store %s): %s", sale.kiosk, sale.session,
                      self.store_id, exc)
            return
        self.turn.sales.append(sale)

    def device_status(self, status: DeviceStatus) -> None:
        """A device's own word on its availability (a driver's port state, a last will)."""
        self._device_status(status.source, status.online, status.error, status.received_ts)

    def _device_status(self, device_id: str, online: bool, error: str | None, ts: float) -> None:
        if device_id in self.device_health:
            self._health(self.device_health.reported(device_id, online, error, ts))

    def _health(self, change: DeviceHealth | None) -> None:
        if change is None:
            return
        log.info("device %s is %s (store %s): %s", change.device, change.state.value,
                 self.store_id, change.reason)
        self.counters[f"device_{change.state.value}"] += 1
        self._fact(change)

    def device_time(self, event: E) -> E:
        """``event`` as it is when its ``device_ts`` is a plausible epoch time; else counted
        (``device_time_wrong_unit``), logged (rate-limited) and without it, so that it is
        stamped with its receive time instead of 1970 (a time sent in seconds where
        milliseconds are expected) or a far future (milliseconds where seconds are)."""
        device_ts = event.device_ts
        low, high = PLAUSIBLE_EPOCH_S
        if device_ts is None or low <= device_ts < high:
            return event
        self.counters["device_time_wrong_unit"] += 1
        self.bad_input.warning(
            f"device_time:{event.source}", "device %s (store %s): timestamp %r s is no "
            "plausible time (sent in the wrong unit?); stamped with its receive time",
            event.source, self.store_id, device_ts)
        return dataclasses.replace(event, device_ts=None)

    def _reject(self, reason: str, device_id: str, detail: str) -> None:
        self.counters[f"rejected_{reason}"] += 1
        if device_id in self.device_health:
            self._health(self.device_health.seen(device_id, self._now, good=False))
        self.bad_input.warning(f"{reason}:{device_id}", "rejected input from %s (store %s): %s",
                               device_id, self.store_id, detail)

    def _unknown_device(self, topic: str) -> None:
        # One log key for every unknown id: a flood of invented ids must neither write a line
        # each nor grow the limiter by one key each.
        self.counters["rejected_unknown_device"] += 1
        self.bad_input.warning("unknown_device", "rejected input (store %s): no device reads "
                               "topic %s", self.store_id, topic)

    def _weigh(self, reading: ShelfWeight) -> None:
        scale = self.scales.get(reading.lane)
        if scale is None:
            return
        change = scale.update(reading.grams, reading.received_ts, self.config.inventory.settling)
        if change is not None:
            self._on_change(scale, change, reading)

    def _camera(self, image: ShelfImage) -> None:
        self.camera_occupancy.update(image.occupancy)

    def _climate(self, sample: Climate) -> None:
        for problem in sample.rejected:  # the rest of the sample is good and kept
            self._reject("bad_field", sample.source, problem)
        zone = self._zone_of.get(sample.source, sample.source)
        self.climate[zone] = {"device": sample.source, "ts": sample.received_ts,
                              "temperature": sample.temperature, "humidity": sample.humidity,
                              "battery": sample.battery}

    def _scan(self, scan: Scan) -> None:
        self.last_scans = [scan, *self.last_scans[:19]]

    def _on_change(self, scale: LaneScale, change: Change, reading: ShelfWeight) -> None:
        self.counters[_STOCK_KEYS[change.cause]] += 1
        if self.restocks:
            self.restocks.counted(scale.lane, change.after)
        if change.after == 0 and (grams := scale.emptied()) is not None:
            log.info("lane %s (store %s) is empty: %s is counted at its new unit weight %.1f g "
                     "from now on", scale.lane, self.store_id, scale.sku, grams)
        if change.cause is StockCause.AMBIGUOUS:
            self.bad_input.warning(f"ambiguous:{scale.lane}",
                                   "lane %s (store %s): weight %.1f g is not a whole number of "
                                   "%s units; count kept at %d", scale.lane, self.store_id,
                                   change.grams, scale.sku, change.before)
        # Counts are state, not facts: the change goes to the rules, not to the journal.
        self._rules(StockChanged(
            store_id=self.store_id, source=reading.source, received_ts=reading.received_ts,
            device_ts=reading.device_ts, sku=scale.sku, location=scale.lane,
            before=change.before, after=change.after, cause=change.cause))

    def tick(self, now: float) -> None:
        """Time-driven state: device silence, tag departures, settled bagging weights, and the
        rules' own clocks (windows, cooldowns, escalation)."""
        self._now = now
        for change in self.device_health.tick(now):
            self._health(change)
        for departure in self.presence.tick(now):
            self._fact(departure)
        for reconciler in self.reconcilers.values():
            self._checkout_outcome(reconciler.tick(now))
        actions = self.engine.tick(now)
        if actions:
            self.turn.transitions += self.alert_manager.apply(actions, now)
        # escalations by an alert's own claim limit (problem reports); rule alerts escalate
        # by the engine's
        self.turn.transitions += self.alert_manager.tick(now)
        if self.restocks:
            reopened = [self.engine.reopen(a, now) for a in self.restocks.due(now)]
            if reopened:
                self.turn.transitions += self.alert_manager.apply(reopened, now)

    def raise_alerts(self, actions: list[Action], now: float) -> None:
        """Alerts from outside the rule engine: about the agent itself
        (``edge_agent.operations``), and pick tasks (``edge_agent.pickups``)."""
        self._now = now
        self.turn.transitions += self.alert_manager.apply(actions, now)

    def shift(self, delta: float) -> None:
        """The wall clock stepped by ``delta`` seconds (or time stood still while the agent was
        down): move the times the duration-keeping trackers hold by as much, so a step neither
        departs every tag nor silences every device."""
        self.presence.shift(delta)
        self.device_health.shift(delta)

    # Sales and staff

    def validate_sale(self, txn: PosTransaction) -> None:
        """PayloadError naming the line when a SKU is unknown or a quantity is 0."""
        for i, line in enumerate(txn.lines):
            if line.sku not in self.catalog:
                raise PayloadError(f"lines.{i}.sku: unknown SKU {line.sku!r}", source="pos")
            if line.qty == 0:
                raise PayloadError(f"lines.{i}.qty: must not be 0", source="pos")

    def check_catalog(self, txn: PosTransaction) -> None:
        """A sale the till made against the catalog: a SKU withdrawn from sale, or a price other
        than the shelf's, is counted and logged (the sale happened; it is booked as made)."""
        for line in txn.lines:
            sku = self.catalog.get(line.sku)
            if sku is None:
                continue
            if sku.stop_sell:
                self.counters["pos_stop_sell"] += 1
                self.bad_input.warning(f"stop_sell:{line.sku}", "store %s: %s was sold (%s) "
                                       "though it is withdrawn from sale", self.store_id,
                                       line.sku, txn.txn_id)
            if (sku.price is not None and line.qty > 0
                    and abs(line.unit_price - sku.price) >= 0.005):
                self.counters["pos_price_mismatch"] += 1
                self.bad_input.warning(f"price:{line.sku}", "store %s: %s sold at %.2f, the "
                                       "shelf price is %.2f (%s)", self.store_id, line.sku,
                                       line.unit_price, sku.price, txn.txn_id)

    def sold(self, txn: PosTransaction, now: float, rules: bool = True) -> None:
        """A booked sale: one ``Sale`` fact per SKU, seen by the rules (returns, negative
        lines, count in the net units sold only) unless they heard of it already
        (``picked``)."""
        self._now = now
        self.counters["sales"] += 1
        self.counters["sold_units"] += sum(line.qty for line in txn.lines)
        if rules:
            self.picked(txn, now)

    def picked(self, txn: PosTransaction, now: float) -> None:
        """Units taken off the shelves for a sale: the rules hear them as sold (a pick they
        explain is no loss)."""
        self._now = now
        for sale, _ in sales_per_sku(txn):
            if sale.qty > 0:  # a return explains no pick and is no demand
                self._rules(sale)

    def claim(self, alert_id: str, actor: Actor, now: float) -> Alert:
        self._staff(self.alert_manager.claim(alert_id, actor, now))
        return self.alert_manager.get(alert_id)

    def resolve(self, alert_id: str, actor: Actor, outcome: Outcome, note: str | None,
                now: float) -> Alert:
        self._staff(self.alert_manager.resolve(alert_id, actor, outcome, now, note))
        alert = self.alert_manager.get(alert_id)
        if outcome is Outcome.RESTOCKED:
            scale = self.scales.get(alert.location or "")
            self.restocks.resolved(alert, scale.units if scale else None, now)
        return alert

    def confirm_scan(self, code: str, actor: Actor, now: float) -> dict[str, Any]:
        match = self.alert_manager.scan(code, actor, now, self.catalog.barcodes())
        self._staff(list(match.transitions))
        return match.to_dict()

    def _staff(self, transitions: list[Alert]) -> None:
        """Staff actions: their transitions go in the turn, and the rules hear of them."""
        self.turn.transitions += transitions
        for a in transitions:
            if a.detail.get("transition") in ("claimed", "confirmed"):
                self.engine.claimed(a.rule, a.subject)
            elif a.state is AlertState.RESOLVED:
                self.engine.resolved(a.rule, a.subject, a.received_ts)

    def alert_counter(self, alert: Alert) -> str:
        """The counter name of a transition, made once per (rule, state)."""
        key = self._alert_keys.get((alert.rule, alert.state))
        if key is None:
            key = self._alert_keys[(alert.rule, alert.state)] = (
                f"alert_{alert.rule}_{alert.state.value}")
        return key

    # Views

    def lanes(self) -> list[dict[str, Any]]:
        out = []
        for lane in self.config.lanes:
            scale = self.scales.get(lane.id)
            out.append({
                "id": lane.id, "sku": lane.sku, "capacity": lane.capacity,
                "low_stock": self.catalog.threshold(lane.id),
                "units": scale.units if scale else None,
                "grams": round(scale.last_grams, 1) if scale else None,
                "stable": scale.stable if scale else False,
                "camera_occupancy": self.camera_occupancy.get(lane.id),
            })
        return out

    def lane_samples(self) -> list[tuple[str, str, int, float]]:
        return [(s.lane, s.sku, s.units, s.last_grams) for s in self.scales.values()
                if s.units is not None]

    # State that survives a restart

    def snapshot(self, now: float) -> tuple[dict[str, Any], int]:
        """The state to save, and the rules' change count it holds (for ``saved``); the rules'
        state only when it changed since the last save."""
        state: dict[str, Any] = {
            "lanes": {k: s.snapshot() for k, s in self.scales.items()},
            "presence": self.presence.snapshot(),
            "checkout": {k: r.snapshot() for k, r in self.reconcilers.items()},
            "restocks": self.restocks.snapshot(),
            "clock": now,
        }
        changes = self.engine.changes
        if changes != self._rules_saved:
            state["rules"] = self.engine.snapshot()
        return state, changes

    def saved(self, changes: int) -> None:
        self._rules_saved = changes

    def restore(self, states: dict[str, Any], active: list[Alert], history: list[Alert],
                now: float) -> None:
        """Take back what ``snapshot`` saved (``states`` by key, ``catalog`` among them) and the
        journal's alerts. The trackers' times move by the time the agent was down: silence
        while nobody listened is not a departure."""
        self._now = now
        self.set_catalog([c.model_dump() for c in self.config.catalog]
                         + (states.get("catalog") or []), now)
        snaps = states.get("lanes") or {}
        for lane_id, scale in self.scales.items():
            if lane_id in snaps:
                scale.restore(snaps[lane_id])
        self.alert_manager.restore(active, history)
        for key, target in (("rules", self.engine), ("presence", self.presence)):
            snap = states.get(key)
            if snap:
                try:
                    target.restore(snap)
                except StoreEdgeError as exc:
                    log.warning("%s state not restored (store %s): %s", key, self.store_id, exc)
        self.engine.reconcile(self.alert_manager.active(), now)
        self.restocks.restore(states.get("restocks") or [])
        for kiosk, snap in (states.get("checkout") or {}).items():
            if kiosk in self.reconcilers:
                self.reconcilers[kiosk].restore(snap)
        saved_at = states.get("clock")
        if isinstance(saved_at, int | float):
            self.presence.shift(now - saved_at)
        log.info("state restored: %d lanes, %d active alerts, %d tags present, store %s",
                 len(self.scales), len(self.alert_manager), len(self.presence.present()),
                 self.store_id)


def sales_per_sku(txn: PosTransaction) -> list[tuple[Sale, float]]:
    """A transaction as one ``Sale`` per SKU, each with its amount."""
    qty: Counter[str] = Counter()
    amount: dict[str, float] = {}
    for line in txn.lines:
        qty[line.sku] += line.qty
        amount[line.sku] = amount.get(line.sku, 0.0) + line.qty * line.unit_price
    return [(Sale(store_id=txn.store_id, source=txn.source, received_ts=txn.received_ts,
                  device_ts=txn.device_ts, sku=sku, qty=n, txn_id=txn.txn_id),
             round(amount[sku], 2)) for sku, n in qty.items()]
