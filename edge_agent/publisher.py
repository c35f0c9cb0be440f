"""Tells the world what the journal holds: alert transitions on MQTT (the stream and each alert's
retained state) and to the handhelds' live streams, device health as retained MQTT state, and
alerts, sales and the sampled state (lanes, devices, climate, the agent's figures) to the
time-series sink. It is handed only what was committed.

Sales and alert transitions reach the sink from the journal itself (``catch_up``): the sink
records, with each batch it buffers, the journal row it reached. A buffer that cannot be
written (its disk full) or an agent killed in between delays those points; it never loses or
doubles them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cloud_bridge import tsdb
from edge_agent.committer import alert_json
from edge_agent.journal import Journal, alert_from_json, sale_from_json
from edge_agent.mqtt import MqttLink
from edge_agent.pipeline import sales_per_sku
from edge_agent.web import AlertFeed
from rules.trackers.alerts import ACTIVE_STATES
from storeedge.errors import StoreEdgeError
from storeedge.events import Alert, DeviceHealth, Event
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

CATCH_UP_ROWS = 1_000  # journal rows per buffered batch
CATCH_UP_BATCHES = 5  # per call, so a long backlog does not hold the event loop


class Publisher:
    def __init__(self, store_id: str, mqtt: MqttLink, feed: AlertFeed, journal: Journal,
                 sink: tsdb.TimeSeriesSink | None, points: tsdb.Points | None = None) -> None:
        self.store_id = store_id
        self._prefix = f"store/{store_id}/"
        self.mqtt = mqtt
        self.feed = feed
        self.journal = journal
        self.sink = sink
        self._log_behind = RateLimitedLog(log, 60.0)
        self.points = points or tsdb.Points(store_id)
        self._climate_sent: dict[str, float] = {}  # zone -> time of the last sample sent

    def alerts(self, alerts: list[tuple[Alert, bytes]]) -> None:
        """Committed transitions, each with its JSON: every one on the stream and the live
        feed, the last of each alert as its retained state (the stream's order per alert holds:
        both go on one QoS 1 connection)."""
        if not alerts:
            return
        stream = f"{self._prefix}alerts"
        messages = []
        latest: dict[str, tuple[Alert, bytes]] = {}
        for alert, body in alerts:
            messages.append((stream, body, False))
            latest[alert.alert_id] = (alert, body)
        self.feed.publish([alert for alert, _ in alerts])
        messages += [self._retained(alert, body) for alert, body in latest.values()]
        self.mqtt.publish_many(messages)

    def facts(self, facts: list[Event]) -> None:
        """Committed facts: a device's health change becomes its retained state."""
        for fact in facts:
            if isinstance(fact, DeviceHealth):
                self.mqtt.publish(f"{self._prefix}state/devices/{fact.device}",
                                  json.dumps(fact.to_dict(), default=str).encode(), qos=1,
                                  retain=True)

    def catch_up(self) -> bool:
        """Buffer for HQ every sale and alert transition journaled since the sink's marks.
        False when the buffer cannot be written now: the rows wait in the journal for the
        next call."""
        if self.sink is None:
            return True
        try:
            self._feed("sale", self.journal.sales_after, self._sale_points)
            self._feed("alert", self.journal.transitions_after,
                       lambda bodies: self.points.alerts(alert_from_json(b) for b in bodies))
        except StoreEdgeError as exc:
            self._log_behind.log("behind", logging.WARNING,
                                 "time-series points wait in the journal (store %s): %s",
                                 self.store_id, exc)
            return False
        return True

    def _feed(self, feed: str, rows_after: Callable[[int, int], list[tuple[int, str]]],
              points: Callable[[list[str]], list[str]]) -> None:
        assert self.sink is not None
        for _ in range(CATCH_UP_BATCHES):  # a long backlog is left to the next calls
            rows = rows_after(self.sink.marked(feed), CATCH_UP_ROWS)
            if not rows:
                return
            self.sink.add(points([body for _, body in rows]), mark=(feed, rows[-1][0]))

    def _sale_points(self, bodies: list[str]) -> list[str]:
        lines: list[str] = []
        for body in bodies:
            txn = sale_from_json(body)
            lines += self.points.sales(sales_per_sku(txn), txn.received_ts)
        return lines

    def lane_samples(self, samples: list[tuple[str, str, int, float]], now: float) -> None:
        """Samples of the lanes now (lost when the buffer cannot be written: the next sample
        says the same of the shelf)."""
        if self.sink is not None and samples:
            self._sampled(self.points.lanes(samples, now))

    def health_samples(self, agent: Mapping[str, int | None],
                       devices: Mapping[str, Mapping[str, Any]],
                       climate: Mapping[str, Mapping[str, Any]], now: float) -> None:
        """The sampled health of the store, to HQ: the agent's own figures (HQ sees a store
        that stopped reporting), each device's state, and each climate sensor's latest sample
        once (at the time it was received)."""
        if self.sink is None:
            return
        lines = [self.points.agent(now, agent), *self.points.devices(devices, now)]
        for zone, sample in climate.items():
            if self._climate_sent.get(zone) != sample["ts"]:
                self._climate_sent[zone] = sample["ts"]
                lines.append(self.points.climate(zone, sample))
        self._sampled(lines)

    def _sampled(self, lines: list[str]) -> None:
        assert self.sink is not None
        try:
            self.sink.add(lines)
        except StoreEdgeError as exc:
            self._log_behind.log("samples", logging.WARNING,
                                 "samples not buffered (store %s): %s", self.store_id, exc)

    def republish_state(self, active: list[Alert]) -> None:
        """After (re)connecting, refresh the retained state; the alert stream is not replayed."""
        self.mqtt.publish_many([self._retained(alert, alert_json(alert)) for alert in active])

    def replay(self, latest: list[Alert]) -> None:
        """After (re)connecting: each recent alert's latest transition again, on the stream
        and as its retained state. A transition is journaled before it is published, and a
        broker acknowledges before it has delivered, so an agent or a broker killed in between
        would otherwise leave consumers an alert open that has long ended; consumers keep the
        newest transition per alert, so hearing one twice is harmless."""
        stream = f"{self._prefix}alerts"
        messages = []
        for alert in latest:
            body = alert_json(alert)
            messages += [(stream, body, False), self._retained(alert, body)]
        self.mqtt.publish_many(messages)

    def _retained(self, alert: Alert, payload: bytes) -> tuple[str, bytes, bool]:
        # Retained per-alert state lets a handheld that (re)connects see what is open now;
        # an empty retained payload deletes a finished alert's entry.
        return (f"{self._prefix}state/alerts/{alert.alert_id}",
                payload if alert.state in ACTIVE_STATES else b"", True)

