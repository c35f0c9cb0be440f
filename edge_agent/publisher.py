"""Tells the world what the journal holds: alert transitions on MQTT (the stream and each alert's
retained state) and to the handhelds' live streams, device health as retained MQTT state, and
alerts, sales and the sampled state (lanes, devices, climate, the agent's figures) to the
time-series sink. It is handed only what was committed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cloud_bridge import tsdb
from edge_agent.committer import alert_json
from edge_agent.mqtt import MqttLink
from edge_agent.web import ACTIVE_STATES, AlertFeed
from storeedge.events import Alert, DeviceHealth, Event, Sale


class Publisher:
    def __init__(self, store_id: str, mqtt: MqttLink, feed: AlertFeed,
                 sink: tsdb.TimeSeriesSink | None, points: tsdb.Points | None = None) -> None:
        self.store_id = store_id
        self._prefix = f"store/{store_id}/"
        self.mqtt = mqtt
        self.feed = feed
        self.sink = sink
        self.points = points or tsdb.Points(store_id)
        self._climate_sent: dict[str, float] = {}  # zone -> time of the last sample sent

    def alerts(self, alerts: list[tuple[Alert, bytes]]) -> None:
        """Committed transitions, each with its JSON: every one on the stream and the live
        feed, the last of each alert as its retained state (the stream's order per alert holds:
        both go on one QoS 1 connection)."""
        if not alerts:
            return
        if self.sink is not None:
            self.sink.add(self.points.alerts(a for a, _ in alerts))
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

    def sales(self, sold: list[tuple[Sale, float]], ts: float) -> None:
        """A booked sale's per-SKU quantities and amounts, to HQ."""
        if self.sink is not None and sold:
            self.sink.add(self.points.sales(sold, ts))

    def lane_samples(self, samples: list[tuple[str, str, int, float]], now: float) -> None:
        if self.sink is not None and samples:
            self.sink.add(self.points.lanes(samples, now))

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
        self.sink.add(lines)

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
