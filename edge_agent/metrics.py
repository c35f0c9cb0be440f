"""The agent's Prometheus metrics, read at scrape time from what the agent keeps anyway (plain
counters, cheap to bump on the hot path). A family that cannot be read (a journal that fails,
a bug) is left out of that scrape, logged and counted: ``/metrics`` itself never fails."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cloud_bridge.outbox import OutboxCollector
from storeedge.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from edge_agent.agent import StoreAgent

log = logging.getLogger(__name__)


class AgentCollector:
    def __init__(self, agent: StoreAgent) -> None:
        self.agent = agent
        self.errors = 0
        self._log = RateLimitedLog(log, interval=60.0)

    def collect(self) -> Iterator[Metric]:
        families: list[Callable[[], Iterator[Metric]]] = [
            self._events, self._alerts, self._erp, self._outbox, self._tsdb, self._devices,
            self._tasks, self._journal]
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

    def _outbox(self) -> Iterator[Metric]:
        """The ERP outbox's own families: backlog, bytes, age, delivered, retried, dead."""
        yield from OutboxCollector(self.agent.outbox, self.agent.store_id).collect()

    def _events(self) -> Iterator[Metric]:
        a = self.agent
        c = CounterMetricFamily("storeedge_events", "Events handled by kind",
                                labels=["store", "kind"])
        for kind, n in list(a.counters.items()):
            c.add_metric([a.store_id, kind], n)
        yield c

    def _alerts(self) -> Iterator[Metric]:
        a = self.agent
        g = GaugeMetricFamily("storeedge_open_alerts", "Open alerts", labels=["store"])
        g.add_metric([a.store_id], len(a.pipeline.alert_manager))
        yield g

    def _erp(self) -> Iterator[Metric]:
        a = self.agent
        g = GaugeMetricFamily("storeedge_erp_backlog", "ERP commands not yet delivered",
                              labels=["store"])
        g.add_metric([a.store_id], a.outbox.stats().pending)
        yield g

    def _tsdb(self) -> Iterator[Metric]:
        a = self.agent
        if a.sink is not None:
            g = GaugeMetricFamily("storeedge_tsdb_backlog", "Points buffered for HQ",
                                  labels=["store"])
            g.add_metric([a.store_id], a.sink.stats().get("buffered", 0))
            yield g

    def _devices(self) -> Iterator[Metric]:
        a = self.agent
        g = GaugeMetricFamily("storeedge_device_online", "Device online (1) or not (0)",
                              labels=["store", "device"])
        for dev_id, dev in a.pipeline.device_health.view().items():
            g.add_metric([a.store_id, dev_id], 1.0 if dev["online"] else 0.0)
        yield g

    def _tasks(self) -> Iterator[Metric]:
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

    def _journal(self) -> Iterator[Metric]:
        a = self.agent
        g = GaugeMetricFamily("storeedge_journal_writable", "Journal takes writes (1) or not (0)",
                              labels=["store"])
        g.add_metric([a.store_id], 1.0 if a.committer.writable else 0.0)
        yield g
        g = GaugeMetricFamily("storeedge_journal_pending", "Facts, transitions and sales "
                              "waiting for the journal", labels=["store"])
        g.add_metric([a.store_id], a.committer.pending)
        yield g
