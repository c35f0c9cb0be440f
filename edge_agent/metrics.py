"""The agent's Prometheus metrics: one family per concept, labelled (``device_type``, ``rule``,
``state``, ...), read at scrape time from what the agent keeps anyway; latency histograms; and
the process's own metrics.

The hot path only bumps the pipeline's plain counters (``StorePipeline.counters``, one flat
``Counter`` of names such as ``readings_shelf_mqtt`` or ``alert_low_stock_open``); the names are
split into families and labels here, at scrape time, so counting costs a reading nothing more.
A family that cannot be read (a journal that fails, a bug) is left out of that scrape, logged
and counted: ``/metrics`` itself never fails."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from cloud_bridge.outbox import OutboxCollector
from storeedge.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from edge_agent.agent import StoreAgent

log = logging.getLogger(__name__)

# Pipeline counters that are a family of their own: name -> (family, help).
_SINGLE = {
    "sales": ("storeedge_sales", "Sales booked (POS transactions and paid kiosk sessions)"),
    "sold_units": ("storeedge_sold_units", "Units sold"),
    "sales_duplicate": ("storeedge_sales_duplicate", "POS transactions sent again (idempotent)"),
    "kiosk_sales_rejected": ("storeedge_kiosk_sales_rejected", "Paid kiosk sessions not booked"),
    "device_time_wrong_unit": ("storeedge_device_time_wrong_unit", "Readings whose device "
                               "timestamp was in the wrong unit (stamped with receive time)"),
}
# Pipeline counters named prefix + label value: prefix -> (family, help, label).
_PREFIXED = (
    ("readings_", "storeedge_readings", "Readings from devices, by device type", "device_type"),
    ("rejected_", "storeedge_rejected", "Input rejected, by reason", "reason"),
    ("fact_", "storeedge_facts", "Store facts derived, by type", "type"),
    ("stock_", "storeedge_stock_changes", "Lane count changes, by cause", "cause"),
    ("device_", "storeedge_device_transitions", "Device health changes, by new state", "state"),
)
_ALERT = "alert_"  # alert_{rule}_{state}: the state has no underscore, a rule may
_TOTAL = "readings"  # the sum of storeedge_readings_total, not exported twice

_ERP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Latencies:
    """The agent's latency histograms (seconds), each labelled with the store."""

    def __init__(self, store_id: str) -> None:
        def histogram(name: str, doc: str, **kw: Any) -> Histogram:
            return Histogram(name, doc, ["store"], registry=None, **kw)

        self.families = [
            histogram("storeedge_alert_latency_seconds", "From receiving what made an alert "
                      "transition (a reading, a tick, a staff action) to publishing it, "
                      "journal commit included"),
            histogram("storeedge_pos_request_seconds", "Accepting a POS transaction: "
                      "validation, journal commit and hand-over to the ERP bridge"),
            histogram("storeedge_erp_delivery_seconds", "One outbox command's delivery "
                      "attempt to the ERP", buckets=_ERP_BUCKETS),
        ]
        self.alert, self.pos, self.erp = (h.labels(store_id) for h in self.families)


class AgentCollector:
    def __init__(self, agent: StoreAgent) -> None:
        self.agent = agent
        self.errors = 0
        self._log = RateLimitedLog(log, interval=60.0)
        self._process = ProcessCollector(registry=None)

    def collect(self) -> Iterable[Metric]:
        families: list[Callable[[], Iterable[Metric]]] = [
            self._counters, self._alerts, self._outbox, self._tsdb, self._devices,
            self._tasks, self._journal, self._latencies, self._process.collect]
        for family in families:
            try:
                yield from list(family())
            except Exception as exc:
                self.errors += 1
                self._log.log(family.__name__, logging.ERROR, "metrics %s not collected "
                              "(store %s): %r", family.__name__, self.agent.store_id, exc)
        c = CounterMetricFamily("storeedge_metrics_errors", "Metric families that failed to "
                                "collect", labels=["store"])
        c.add_metric([self.agent.store_id], self.errors)
        yield c

    def _counters(self) -> Iterable[Metric]:
        """The pipeline's counters, split into their families."""
        yield from counter_families(self.agent.store_id, self.agent.counters)

    def _outbox(self) -> Iterable[Metric]:
        """The ERP outbox's own families: backlog, bytes, age, delivered, retried, dead."""
        yield from OutboxCollector(self.agent.outbox, self.agent.store_id).collect()

    def _alerts(self) -> Iterable[Metric]:
        a = self.agent
        g = GaugeMetricFamily("storeedge_open_alerts", "Active alerts, by rule and state",
                              labels=["store", "rule", "state"])
        active = Counter((alert.rule, alert.state.value)
                         for alert in a.pipeline.alert_manager.active())
        for (rule, state), n in sorted(active.items()):
            g.add_metric([a.store_id, rule, state], n)
        yield g

    def _tsdb(self) -> Iterable[Metric]:
        a = self.agent
        if a.sink is None:
            return
        s = a.sink.stats()
        labels = [a.store_id]
        for name, doc, value in (
                ("storeedge_tsdb_backlog", "Points buffered for HQ", s["buffered"]),
                ("storeedge_tsdb_oldest_age_seconds", "Age of the oldest buffered point",
                 s["oldest_buffered_age_s"] or 0.0)):
            g = GaugeMetricFamily(name, doc, labels=["store"])
            g.add_metric(labels, value)
            yield g
        for name, doc, value in (
                ("storeedge_tsdb_written", "Points the time-series server took", s["written"]),
                ("storeedge_tsdb_dropped", "Oldest points dropped from a full buffer",
                 s["dropped"]),
                ("storeedge_tsdb_rejected", "Points the server refused alone", s["rejected"])):
            c = CounterMetricFamily(name, doc, labels=["store"])
            c.add_metric(labels, value)
            yield c

    def _devices(self) -> Iterable[Metric]:
        a = self.agent
        view = a.pipeline.device_health.view()
        online = GaugeMetricFamily("storeedge_device_online", "Device online (1) or not (0)",
                                   labels=["store", "device", "device_type"])
        states = GaugeMetricFamily("storeedge_devices", "Devices, by type and health state",
                                   labels=["store", "device_type", "state"])
        for dev_id, dev in view.items():
            online.add_metric([a.store_id, dev_id, dev["type"]], 1.0 if dev["online"] else 0.0)
        for (kind, state), n in sorted(Counter((d["type"], d["state"])
                                               for d in view.values()).items()):
            states.add_metric([a.store_id, kind, state], n)
        yield online
        yield states

    def _tasks(self) -> Iterable[Metric]:
        a = self.agent
        view: dict[str, dict[str, Any]] = a.supervisor.view()
        up = GaugeMetricFamily("storeedge_task_up", "Background task running (1) or down (0)",
                               labels=["store", "task"])
        restarts = CounterMetricFamily("storeedge_task_restarts", "Background task restarts",
                                       labels=["store", "task"])
        for name, task in view.items():
            up.add_metric([a.store_id, name], 1.0 if task["state"] == "running" else 0.0)
            restarts.add_metric([a.store_id, name], task["restarts"])
        yield up
        yield restarts

    def _journal(self) -> Iterable[Metric]:
        a = self.agent
        g = GaugeMetricFamily("storeedge_journal_writable", "Journal takes writes (1) or not (0)",
                              labels=["store"])
        g.add_metric([a.store_id], 1.0 if a.committer.writable else 0.0)
        yield g
        g = GaugeMetricFamily("storeedge_journal_pending", "Facts, transitions and sales "
                              "waiting for the journal", labels=["store"])
        g.add_metric([a.store_id], a.committer.pending)
        yield g

    def _latencies(self) -> Iterable[Metric]:
        for histogram in self.agent.latency.families:
            yield from histogram.collect()


def agent_figures(agent: StoreAgent) -> dict[str, int | None]:
    """The agent's own figures for the time series' ``agent`` point; a figure that cannot be
    read now (the outbox's database failing) is None, so the point still says the agent runs."""
    def read(probe: Callable[[], int]) -> int | None:
        try:
            return probe()
        except Exception as exc:
            log.warning("agent figure not read (store %s): %r", agent.store_id, exc)
            return None

    pipeline, sink = agent.pipeline, agent.sink
    return {
        "readings_total": pipeline.counters[_TOTAL],
        "erp_backlog": read(lambda: agent.outbox.stats().pending),
        "tsdb_backlog": read(lambda: sink.stats()["buffered"]) if sink is not None else None,
        "journal_pending": agent.committer.pending,
        "open_alerts": len(pipeline.alert_manager),
        "devices_offline": pipeline.device_health.states().get("offline", 0),
    }


def counter_families(store_id: str, counters: Mapping[str, int]) -> Iterable[Metric]:
    """``counters`` (the pipeline's names) as labelled counter families; a name no family
    claims goes to ``storeedge_agent_events_total{kind}``, so none is lost."""
    single = {name: CounterMetricFamily(family, doc, labels=["store"])
              for name, (family, doc) in _SINGLE.items()}
    prefixed = [(prefix, CounterMetricFamily(family, doc, labels=["store", label]))
                for prefix, family, doc, label in _PREFIXED]
    alerts = CounterMetricFamily("storeedge_alert_transitions", "Alert transitions, by rule "
                                 "and the state they entered", labels=["store", "rule", "state"])
    other = CounterMetricFamily("storeedge_agent_events", "Other agent counters, by name",
                                labels=["store", "kind"])
    for name, n in sorted(counters.items()):
        if name in single:
            single[name].add_metric([store_id], n)
        elif name.startswith(_ALERT):
            rule, _, state = name[len(_ALERT):].rpartition("_")
            alerts.add_metric([store_id, rule, state], n)
        elif name != _TOTAL:
            for prefix, family in prefixed:
                if name.startswith(prefix):
                    family.add_metric([store_id, name[len(prefix):]], n)
                    break
            else:
                other.add_metric([store_id, name], n)
    yield from single.values()
    yield from (family for _, family in prefixed)
    yield alerts
    yield other
