"""One store's agent: the runtime that wires the pipeline, the committer and the publisher to
the devices, the journal, the broker, the ERP and HQ, and owns their lifecycle.

Each turn (an MQTT read, a driver's events, the tick, a staff action) runs the pure pipeline
(``edge_agent.pipeline``), commits what it produced (``edge_agent.committer``) and only then
publishes it (``edge_agent.publisher``); a turn the journal could not take stays pending and is
not acknowledged (``on_batch`` raises ``JournalUnavailable``, a POS gets a 503).

Setup runs in a fixed order: open the journal and restore state, read the catalog (ERP first,
then the last cached one, then the config's), connect the broker, start the drivers, then serve.
Every background loop runs under one ``Supervisor``; SIGTERM stops intake first, flushes what
was accepted, snapshots state and only then closes the journal.

Longer than the house's 400 lines for one reason: it is also the ``AgentApi`` facade the web app
calls, each method a few lines over the pipeline, the committer and the publisher. The store's
work with the ERP and its people (counts, orders, pick-ups, problems, trends) is apart, in
``edge_agent.store_work``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import uvicorn
from prometheus_client import CollectorRegistry

from cloud_bridge import outbox as outbox_mod
from cloud_bridge import tsdb
from cloud_bridge.bridge import SCHEMAS as ERP_SCHEMAS
from cloud_bridge.bridge import ErpBridge
from edge_agent import backup, device_kinds, operations, pickups, problems, staff, trends
from edge_agent.committer import Committed, Committer
from edge_agent.config import StoreConfig, reveal
from edge_agent.erp import erp_connector
from edge_agent.journal import Journal, alert_from_json
from edge_agent.metrics import AgentCollector, Latencies, agent_figures
from edge_agent.mqtt import Batch, BatchNotCommitted, MqttLink
from edge_agent.pipeline import StorePipeline
from edge_agent.publisher import Publisher
from edge_agent.store_work import StoreWork
from edge_agent.supervisor import Supervisor
from edge_agent.web import AlertFeed, create_app
from rules.config import DEFAULTS, load_rules
from rules.trackers.alerts import ACTIVE_STATES, Actor, Outcome
from rules.trackers.inventory import LaneScale
from rules.trackers.presence import PresenceTracker
from storeedge.audit import AuditLog
from storeedge.errors import (
    ConfigError,
    JournalUnavailable,
    StoreEdgeError,
)
from storeedge.events import (
    Alert,
    CheckoutEvent,
    CheckoutKind,
    DeviceStatus,
    PosTransaction,
)
from storeedge.httpsec import tls_server_options
from storeedge.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from cloud_bridge.tryton.connector import TrytonConnector

log = logging.getLogger(__name__)

# On (re)connecting, the alerts among this many latest transitions are published again (see
# Publisher.replay).
REPLAY_TRANSITIONS = 2_000

# The most MQTT messages one commit takes. A read of a backlog (256 KB, ~2,800 readings) made
# all its events, alerts and packets at once: ~8 MB of the agent's peak RSS in a flood.
BATCH_SLICE = 1_000

# A jump between the wall clock and the monotonic one larger than this is a clock step.
CLOCK_STEP_S = 2.0
PRUNE_SECONDS = 3_600.0
_STATE_KEYS = ("catalog", "lanes", "presence", "checkout", "restocks", "rules", "clock")


class StoreAgent(StoreWork):
    """Implements ``edge_agent.api.AgentApi`` for the web app.

    ``clock`` is the wall clock events are stamped with; ``monotonic`` the clock that tells a
    step of the wall clock from time passing (by default ``time.monotonic`` with the real wall
    clock, and ``clock`` itself with an injected one, which then never steps).
    """

    def __init__(self, config: StoreConfig, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.config = config
        self.store_id = config.store.id
        self.latency = Latencies(self.store_id)
        self.clock = clock
        self.monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self._wall_offset = clock() - self.monotonic()
        self.rule_files = [DEFAULTS] + (
            [(config.source.parent if config.source else Path()) / config.rules.file]
            if config.rules.file else [])
        self.pipeline = StorePipeline(config, load_rules(*self.rule_files),
                                      RateLimitedLog(log))
        self._rule_mtimes = self._mtimes()
        self._log_unreadable = RateLimitedLog(log, 60.0)
        self.journal = Journal(config.journal.path,
                               extra_schemas=(*ERP_SCHEMAS, pickups.SCHEMA, problems.SCHEMA,
                                              staff.SCHEMA, trends.SCHEMA))
        # the store work's own connection (edge_agent.store_work): pick-ups, problem photos
        self.store_db = sqlite3.connect(config.journal.path, timeout=30.0,
                                          check_same_thread=False)
        self.store_db.execute("PRAGMA synchronous=FULL")
        self.erp = erp_connector(config.erp, clock)
        self.erp_bridge: ErpBridge | None = None
        e = config.erp
        if self.erp is not None:
            self.erp_bridge = ErpBridge(
                config.journal.path, self.store_id, self.erp,
                window_s=e.summary_window_seconds, merge_s=e.summary_merge_seconds,
                quarantine_after=e.quarantine_after,
                limits=outbox_mod.Limits(e.outbox_max_items, e.outbox_max_bytes),
                retry_initial_s=e.retry_initial_seconds, retry_max_s=e.retry_max_seconds,
                clock=clock, observe_delivery=self.latency.erp.observe)
        self.outbox = (self.erp_bridge.outbox if self.erp_bridge is not None
                       else outbox_mod.Outbox(config.journal.path))
        self.committer = Committer(self.journal, self.store_id, erp=self.erp_bridge)
        b = config.journal.backup
        self.backups = (None if b is None else backup.Schedule(
            config.journal.path, b.to, self.store_id, b.every_hours * 3600, b.keep))
        ts = config.timeseries
        self.sink: tsdb.TimeSeriesSink | None = None
        if ts.enabled:
            self.sink = tsdb.TimeSeriesSink(
                config.journal.path.with_suffix(".tsdb.db"), ts.url, ts.org, ts.bucket,
                reveal(ts.token()), ts.batch_size, ts.flush_seconds, ts.buffer_max_points,
                ca_file=str(ts.ca_file) if ts.ca_file else None)
        prefix = f"store/{self.store_id}/"
        self.mqtt = MqttLink(
            host=config.broker.host, port=config.broker.port, client_id=config.client_id,
            subscriptions=self.pipeline.subscriptions(), on_batch=self.on_batch,
            username=config.broker.username, password=reveal(config.broker.password()),
            tls=config.broker.tls, tls_ca=str(config.broker.ca_file or "") or None,
            keepalive=config.broker.keepalive, max_packet_size=config.broker.max_packet_bytes,
            will=(f"{prefix}state/agent", b"offline"),
            online=(f"{prefix}state/agent", b"online"),
            on_connected=self._republish_state)
        self.feed = AlertFeed()
        self.publisher = Publisher(
            self.store_id, self.mqtt, self.feed, self.journal, self.sink, tsdb.Points(
                self.store_id, region=config.store.region, city=config.store.city,
                strings=ts.string_fields))
        self.supervisor = Supervisor(self.store_id)
        self.registry = CollectorRegistry()
        self.registry.register(AgentCollector(self))
        self._restored = False
        self._stopping = asyncio.Event()

    # The pipeline's state, as tests and tools read it

    @property
    def counters(self) -> Counter[str]:
        return self.pipeline.counters

    @property
    def scales(self) -> dict[str, LaneScale]:
        return self.pipeline.scales

    @property
    def presence(self) -> PresenceTracker:
        return self.pipeline.presence

    # Setup

    def restore(self) -> None:
        """Load the catalog and the state the journal holds (once; ``run`` calls it). Tests
        that drive an agent without its network call it themselves."""
        if self._restored:
            return
        self._restored = True
        now = self.clock()
        states = {key: self.journal.load_state(key) for key in _STATE_KEYS}
        history = [alert_from_json(body) for (body,) in self.journal.execute(
            "SELECT body FROM alert_transition WHERE ts >= ? ORDER BY seq", (now - 86_400,))]
        self.pipeline.restore(states, self.journal.active_alerts(), history, now)
        saved_at = states.get("clock")
        since = saved_at if isinstance(saved_at, int | float) else now - 86_400
        self.pipeline.replay_checkout([checkout_event(body) for (body,) in self.journal.execute(
            "SELECT body FROM fact WHERE kind = 'CheckoutEvent' AND ts > ? ORDER BY seq",
            (since,))])
        if self.journal.quarantined is not None:
            self.pipeline.raise_alerts([operations.journal_quarantined(self.journal.quarantined)],
                                       now)
        for order in pickups.pickups(self.store_db, "open"):  # a task lost to a crash
            if self.alert_manager.current(pickups.RULE, order["order_id"]) is None:
                self._pick_task(order)
        self._flush()

    async def _refresh_catalog(self) -> None:
        """Read the ERP catalog at start and every refresh period; an ERP that is down only
        delays this (the cached catalog serves meanwhile)."""
        erp = cast("TrytonConnector", self.erp)
        delay = self.config.erp.retry_initial_seconds
        while True:
            try:
                items = await erp.fetch_catalog()
            except StoreEdgeError as exc:
                log.warning("catalog refresh failed (store %s): %s; retry in %.0fs",
                            self.store_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.erp.retry_max_seconds)
                continue
            now = self.clock()
            self.pipeline.set_catalog(items, now)
            self.committer.save_states({"catalog": [
                dataclasses.asdict(s) for s in self.pipeline.catalog.items.values()]}, now)
            self._flush()
            log.info("catalog: %d SKUs from the ERP (store %s)", len(items), self.store_id)
            delay = self.config.erp.retry_initial_seconds
            await asyncio.sleep(self.config.erp.catalog_refresh_seconds)

    # Turns (event loop thread)

    def _now(self) -> float:
        """The wall clock, watched for steps: a step moves the trackers' times with it."""
        wall = self.clock()
        step = wall - self.monotonic() - self._wall_offset
        if step > CLOCK_STEP_S or step < -CLOCK_STEP_S:
            self._wall_offset += step
            log.warning("wall clock stepped by %+.1fs (store %s); durations keep counting",
                        step, self.store_id)
            self.pipeline.shift(step)
        return wall

    def on_batch(self, batch: Batch) -> None:
        """One MQTT read, committed and published ``BATCH_SLICE`` messages at a time. Raises
        BatchNotCommitted when what it produced could not be journaled: it waits in memory
        for the journal, and the link withholds the messages' acknowledgements (the broker
        sends them again) until a later call returns."""
        now = self._now()
        for start in range(0, len(batch), BATCH_SLICE):
            self.pipeline.handle_batch(batch[start:start + BATCH_SLICE], now)
            if start + BATCH_SLICE < len(batch):
                self._flush()  # what the journal refuses waits for the flush below
        try:
            self._flush(raising=True)
        except JournalUnavailable as exc:
            raise BatchNotCommitted(str(exc)) from exc

    def on_events(self, events: list[Any]) -> None:
        """Events from a driver task (serial ports, cameras)."""
        self.pipeline.handle_events(events, self._now())
        self._flush()

    def on_device_status(self, status: DeviceStatus) -> None:
        self.pipeline.device_status(status)
        self._flush()

    def tick(self, now: float | None = None) -> None:
        """Time-driven state at ``now`` (by default the agent's clock, watched for steps)."""
        if now is None:
            now = self._now()
        if self._mtimes() != self._rule_mtimes:
            self.reload_rules()
        self.pipeline.tick(now)
        self._flush()

    def _flush(self, raising: bool = False) -> bool:
        """Commit what the pipeline produced, then publish what was committed. False (or
        JournalUnavailable when ``raising``) when something is still waiting for the journal."""
        done = self.committer.commit(self.pipeline.take())
        if done is not None:
            self._publish(done)
            if done.sales and self.pipeline.turn:  # what the rules made of the kiosk sales
                again = self.committer.commit(self.pipeline.take())
                if again is not None:
                    self._publish(again)
        if self.committer.pending:
            if raising:
                raise JournalUnavailable(self.committer.last_error or "journal not writable")
            return False
        return True

    def _publish(self, done: Committed) -> None:
        if done.alerts:
            counters, key = self.pipeline.counters, self.pipeline.alert_counter
            now = self.clock()
            for alert, _ in done.alerts:
                counters[key(alert)] += 1
                self.latency.alert.observe(max(0.0, now - alert.received_ts))
            self.publisher.alerts(done.alerts)
        if done.facts:
            self.publisher.facts(done.facts)
        for sale in done.sales:
            self._sold(sale)
        if done.alerts or done.sales:
            self.publisher.catch_up()

    def _sold(self, txn: PosTransaction) -> None:
        if self.erp_bridge is not None:
            self.erp_bridge.accepted()
        self.pipeline.sold(txn, self.clock())

    def _republish_state(self) -> None:
        # On every connection: a transition published just before this process died, or just
        # before a broker died that had acknowledged it, may never have reached anyone.
        self.publisher.replay(self.journal.latest_transitions(REPLAY_TRANSITIONS))
        self.publisher.republish_state(self.pipeline.alert_manager.active())

    # AgentApi

    def accept_pos(self, txn: PosTransaction) -> bool:
        # received by the agent's clock, as every event is (the web layer's is the host's)
        txn = dataclasses.replace(txn, received_ts=self.clock())
        with self.latency.pos.time():
            return self._accept_pos(self.pipeline.device_time(txn))

    def _accept_pos(self, txn: PosTransaction) -> bool:
        self.pipeline.validate_sale(txn)
        # What waits for the journal goes first: a sale is not booked ahead of older facts.
        if self.committer.pending and not self._flush():
            raise JournalUnavailable(self.committer.last_error or "journal not writable")
        if not self.committer.book_sale(txn):
            self.pipeline.counters["sales_duplicate"] += 1
            return False
        self.pipeline.check_catalog(txn)
        self._sold(txn)
        self._flush()
        self.publisher.catch_up()
        return True

    def alerts(self, state: str | None = None) -> list[Alert]:
        return self.pipeline.alert_manager.alerts(state)

    def alert(self, alert_id: str) -> Alert:
        return self.pipeline.alert_manager.get(alert_id)

    def alert_history(self, alert_id: str) -> list[Alert]:
        return self.pipeline.alert_manager.history(alert_id)

    def claim_alert(self, alert_id: str, actor: Actor) -> Alert:
        alert = self.pipeline.claim(alert_id, actor, self.clock())
        self._flush()
        return alert

    def resolve_alert(self, alert_id: str, actor: Actor, outcome: Outcome,
                      note: str | None = None) -> Alert:
        task = self.alert_manager.get(alert_id)
        if (task.rule == pickups.RULE and outcome is Outcome.FIXED
                and task.state in ACTIVE_STATES):
            # a pick task's card says picked: the order is picked, so its units are no loss
            self.pickup_picked(task.subject, actor)
            task = self.alert_manager.get(alert_id)
            if task.state not in ACTIVE_STATES:
                return task
        alert = self.pipeline.resolve(alert_id, actor, outcome, note, self.clock())
        self._flush()
        return alert

    def alert_summary(self) -> dict[str, Any]:
        return self.pipeline.alert_manager.summary(self.clock())

    def confirm_scan(self, code: str, actor: Actor) -> dict[str, Any]:
        match = self.pipeline.confirm_scan(code, actor, self.clock())
        self._flush()
        return match

    def devices(self) -> dict[str, dict[str, Any]]:
        """Each device's kind, health state and why, last seen, good and bad message counts, and
        its recent state changes."""
        return self.pipeline.device_health.view()

    def lanes(self) -> list[dict[str, Any]]:
        return self.pipeline.lanes()

    def labels(self) -> dict[str, Any]:
        config = self.config
        return {"store": config.store.name,
                "zones": {z.id: z.name for z in config.zones if z.name},
                "products": {s.sku: s.name for s in self.pipeline.catalog.items.values()
                             if s.name},
                "prices": {s.sku: s.price for s in self.pipeline.catalog.items.values()
                           if s.price is not None},
                "stop_sell": sorted(s.sku for s in self.pipeline.catalog.items.values()
                                    if s.stop_sell)}

    def health(self) -> dict[str, Any]:
        """Every component's state; ``ok`` only while the broker is connected, the ERP backlog
        is fresh, the journal writes and no task is down or crash-looping. A component that
        cannot even say how it is makes the agent degraded, never the probe fail."""
        bridge = self.erp_bridge
        ob = _read(bridge.stats if bridge is not None
                   else lambda: dataclasses.asdict(self.outbox.stats()))
        sink = _read(self.sink.stats) if self.sink is not None else None
        broker_ok = self.mqtt.healthy
        erp_ok = "error" not in ob and (ob.get("oldest_pending_age_s") or 0) < 600
        down = self.supervisor.unhealthy()
        journal_ok = self.committer.writable
        status = "ok" if broker_ok and erp_ok and not down and journal_ok else "degraded"
        pipeline = self.pipeline
        return {
            "status": status,
            "store": self.store_id,
            "broker": self.mqtt.stats(),
            "journal": {"writable": journal_ok, "pending": self.committer.pending,
                        "last_error": self.committer.last_error,
                        "failures": self.committer.failures,
                        "quarantined": (str(self.journal.quarantined)
                                        if self.journal.quarantined else None),
                        "backup": self.backups.stats() if self.backups is not None else None},
            "tasks": self.supervisor.view(),
            "tasks_down": down,
            "erp": ob,
            "timeseries": sink,
            "devices": pipeline.device_health.view(),
            "device_states": pipeline.device_health.states(),
            "facts": _read(self.journal.fact_counts),
            "alerts": _read(self.journal.alert_counts),
            "open_alerts": len(pipeline.alert_manager),
            "tags_present": len(pipeline.presence.present()),
            "counters": dict(pipeline.counters),
        }

    # Run

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``stop()``), then shut down without losing anything
        accepted."""
        self.restore()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload_rules)
        app = create_app(self, self.feed, self.config.http, self.registry,
                         AuditLog(self.config.journal.path.with_suffix(".audit.db")))
        server = uvicorn.Server(uvicorn.Config(
            app, host=self.config.http.host, port=self.config.http.port, log_config=None,
            access_log=False, lifespan="off",
            **tls_server_options(self.config.http.tls_cert_file, self.config.http.tls_key_file)))
        # What start-up made (modules, config, catalog, the web app) lives as long as the
        # process: frozen out of the collector's sight, a full collection under load stalls the
        # loop ~1.5 ms, not the 30-50 ms it took to walk them all. Building the web app leaves
        # ~12,500 objects in reference cycles (FastAPI's route models): collected first, or the
        # first full collection under load stalls the loop for them.
        gc.collect()
        gc.freeze()
        self._supervise()
        try:
            async with asyncio.TaskGroup() as tg:
                supervised = tg.create_task(self.supervisor.run(), name="supervisor")
                http = tg.create_task(server.serve(), name="http")
                await self._stopping.wait()
                log.info("stopping store %s", self.store_id)
                self.feed.close()  # live alert streams would otherwise hold uvicorn open
                server.should_exit = True
                await http
                supervised.cancel()
        finally:
            self._flush()
            self.snapshot()
            await self.mqtt.aclose(final=(f"store/{self.store_id}/state/agent", b"offline"))
            if self.erp is not None:
                await self.erp.aclose()
            if self.erp_bridge is not None:
                self.erp_bridge.close()
            self.store_db.close()
            self.journal.close()
            log.info("stopped store %s", self.store_id)

    def _supervise(self) -> None:
        add = self.supervisor.add
        add("mqtt", self._run_mqtt)
        for name, driver in device_kinds.drivers(self.config.devices, self.store_id,
                                                 self.on_events, self.on_device_status,
                                                 self.clock):
            add(name, driver.run)
        if self.config.erp.kind == "tryton":  # a REST ERP's catalog is the config's
            add("catalog", self._refresh_catalog)
        if self.erp_bridge is not None:
            add("erp-outbox", self.erp_bridge.run)
        if self.sink is not None:
            add("tsdb-sink", self.sink.run)
            add("tsdb-sampler", self._sample_loop)
        if self.backups is not None:
            add("backup", self.backups.run)
        add("snapshot", self._snapshot_loop)
        add("trend-sampler", self._trend_loop)
        add("tick", self._tick_loop)

    async def _run_mqtt(self) -> None:
        """Both MQTT connections; their tasks outlive a cancel of this one, so that shutdown
        can still publish what it flushes (``aclose`` ends them)."""
        self.mqtt.start()
        tasks = [self.mqtt.connection.start(), self.mqtt.publisher.start()]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    def stop(self) -> None:
        self._stopping.set()

    def snapshot(self) -> None:
        """State, not facts: written every ``snapshot_seconds`` in one transaction; the rules'
        state only when it changed since the last snapshot."""
        now = self.clock()
        state, changes = self.pipeline.snapshot(now)
        if self.committer.save_states(state, now):
            self.pipeline.saved(changes)

    async def _snapshot_loop(self) -> None:
        """Snapshots and the dead letter's alert; once an hour the journal's retention."""
        pruned = self.monotonic()
        while True:
            await asyncio.sleep(self.config.journal.snapshot_seconds)
            self.snapshot()
            self.watch_dead_letter()
            if self.monotonic() - pruned >= PRUNE_SECONDS:
                pruned = self.monotonic()
                self.prune()

    def watch_dead_letter(self) -> None:
        """Keep the manager's alert about ERP commands in the dead letter current."""
        if self.erp_bridge is None:
            return
        try:
            count = self.outbox.stats().rejected
            alert = self.alert_manager.current(operations.ERP_DEAD_LETTER, "outbox")
            told = None if alert is None else int(alert.detail.get("dead", 0))
            if count == (told or 0):
                return
            oldest = self.outbox.rejected()[0] if count else None
        except sqlite3.Error as exc:  # the outbox's own task shows what is wrong with it
            self._log_unreadable.log("outbox", logging.WARNING,
                                     "dead letter not readable (store %s): %s", self.store_id, exc)
            return
        self.pipeline.raise_alerts([operations.dead_letter(count, told, oldest)], self.clock())
        self._flush()

    async def _trend_loop(self) -> None:
        """Lane counts into the journal for the manager's trends."""
        while True:
            await asyncio.sleep(self.config.journal.trend_sample_seconds)
            counted = [(lane, units) for lane, _, units, _ in self.pipeline.lane_samples()]
            try:
                trends.record(self.store_db, counted, self.clock())
            except sqlite3.Error as exc:  # a sample missed says little; the next one comes
                self._log_unreadable.log("trends", logging.WARNING,
                                         "lane counts not sampled (store %s): %s",
                                         self.store_id, exc)

    def prune(self) -> dict[str, int]:
        """Apply the journal's retention (nothing when ``journal.retention_days`` is None)."""
        days = self.config.journal.retention_days
        if days is None:
            return {}
        active = [a.alert_id for a in self.pipeline.alert_manager.active()]
        try:
            trends.prune(self.store_db, self.clock() - days * 86_400)
            deleted = self.journal.prune(self.clock() - days * 86_400, active)
        except (JournalUnavailable, sqlite3.Error) as exc:
            log.warning("journal retention not applied (store %s): %s", self.store_id, exc)
            return {}
        if any(deleted.values()):
            log.info("journal retention (store %s): deleted %s", self.store_id, deleted)
        return deleted

    async def _tick_loop(self) -> None:
        """Time-driven state, once a second; also retries a journal that could not write."""
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    async def _sample_loop(self) -> None:
        """Lane samples for HQ; also buffers what waits in the journal (after a start, or
        while the buffer's disk was full)."""
        while True:
            self.publisher.catch_up()
            await asyncio.sleep(self.config.timeseries.sample_seconds)
            now = self.clock()
            self.publisher.lane_samples(self.pipeline.lane_samples(), now)
            self.publisher.health_samples(agent_figures(self), self.pipeline.device_health.view(),
                                          self.pipeline.climate, now)

    def reload_rules(self) -> bool:
        """Re-read the rule files (SIGHUP, or a file changed). Open alerts stay open; a rule
        switched off clears its alerts. A file with an error is refused and the rules in force
        stay."""
        self._rule_mtimes = self._mtimes()
        try:
            config = load_rules(*self.rule_files)
        except ConfigError as exc:
            log.error("rules not reloaded (store %s): %s", self.store_id, exc)
            return False
        self.pipeline.reload_rules(config, self.clock())
        self._flush()
        log.info("rules reloaded from %s (store %s)", ", ".join(map(str, self.rule_files)),
                 self.store_id)
        return True

    def _mtimes(self) -> list[float]:
        return [p.stat().st_mtime if p.exists() else 0.0 for p in map(Path, self.rule_files)]


def checkout_event(body: str) -> CheckoutEvent:
    """A kiosk event back from its journaled JSON."""
    data = json.loads(body)
    data.pop("event", None)
    data["kind"] = CheckoutKind(data["kind"])
    return CheckoutEvent(**data)


def _read(probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return probe()
    except Exception as exc:
        log.warning("health: %r", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
