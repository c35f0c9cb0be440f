"""The figures HQ shows: the chain overview, a store's page, the charts and the reports, from the
live broker state (``hq.live``) and the time series the stores write (docs/timeseries.md).

Queries are MetricsQL, a superset of PromQL that VictoriaMetrics serves; ``tlast_over_time`` and
``count_le_over_time`` have no exact PromQL equivalent. Windows are ``(t - d, t]``, so the
buckets of a report tile its range without counting a point twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from hq.config import HqConfig
from hq.live import UNCLAIMED_STATES, ChainLive
from hq.timeseries import PromQuery, Series
from storeedge.errors import ErpUnavailable, TimeSeriesUnavailable

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning", "info")
Group = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: float
    end: float

    @property
    def seconds(self) -> int:
        return max(1, round(self.end - self.start))


def _by(series: list[Series], *labels: str) -> dict[Any, float]:
    key = labels[0] if len(labels) == 1 else None
    return {(s.labels.get(key, "") if key else tuple(s.labels.get(k, "") for k in labels)): s.last
            for s in series}


def _sel(store: str | None, **extra: str) -> str:
    pairs = ([f'store="{store}"'] if store else []) + [f'{k}="{v}"' for k, v in extra.items()]
    return "{" + ",".join(pairs) + "}" if pairs else ""


@dataclass(frozen=True, slots=True)
class ChainFigures:
    """The time-series figures of every store, as of ``at``; ``figures`` None: the server could
    not answer (``error`` says why)."""

    at: float
    figures: dict[str, dict[str, float]] | None
    error: str | None
    took: float  # seconds the server took to answer


class Figures:
    def __init__(self, config: HqConfig, live: ChainLive, tsq: PromQuery,
                 erp: Any | None = None) -> None:
        self.chain: ChainFigures | None = None
        self.config = config
        self.live = live
        self.tsq = tsq
        self.erp = erp  # an ErpStock, or None when HQ has no ERP

    def midnight(self, now: float) -> float:
        zone = self.config.chain.zone()
        local = datetime.fromtimestamp(now, zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    # Overview

    async def refresh_chain(self, now: float) -> None:
        """Ask the time-series server for every store's overview figures and keep the answer.

        One request: the server runs the parts in parallel. The overview reads the kept answer,
        so what it costs the server grows with the refresh rate, not with how many people
        watch, and a slow or loaded server delays the figures, not the page.
        """
        ts = self.config.timeseries
        today = max(1, round(now - self.midnight(now)))
        stale = round(ts.stale_seconds)
        queries = {
            "units": f"sum by (store) (sum_over_time(sale_qty[{today}s]))",
            "amount": f"sum by (store) (sum_over_time(sale_amount[{today}s]))",
            "oos": f"count by (store) (last_over_time(shelf_stock_units[{stale}s]) == 0)",
            "erp": f"max by (store) (last_over_time(agent_erp_backlog[{stale}s]))",
            "tsdb": f"max by (store) (last_over_time(agent_tsdb_backlog[{stale}s]))",
            "seen": "max by (store) (tlast_over_time(agent_readings_total[1d]))",
        }
        union = "union(" + ", ".join(f'label_set({q}, "figure", "{name}")'
                                     for name, q in queries.items()) + ")"
        got: dict[str, dict[str, float]] = {name: {} for name in queries}
        started = time.monotonic()
        try:
            for s in await self.tsq.instant(union, now):
                got[s.labels.get("figure", "")][s.labels.get("store", "")] = s.last
        except TimeSeriesUnavailable as exc:
            self.chain = ChainFigures(now, None, str(exc), time.monotonic() - started)
        else:
            self.chain = ChainFigures(now, got, None, time.monotonic() - started)

    async def keep_refreshed(self, every: float) -> None:
        """Refresh the chain's figures every ``every`` seconds until cancelled."""
        while True:
            started = time.monotonic()
            await self.refresh_chain(time.time())
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    async def overview(self, now: float) -> dict[str, Any]:
        if self.chain is None:
            await self.refresh_chain(now)
        chain = self.chain
        assert chain is not None
        got = chain.figures or {}
        tsdb_ok = chain.figures is not None
        rows = [self._row(entry.id, entry.name, got, tsdb_ok) for entry in self.config.stores]
        rows.sort(key=lambda r: (-r["trouble_score"], r["id"]))
        return {
            "chain": self.config.chain.name, "now": now,
            "today_start": self.midnight(chain.at),
            "broker": {"connected": self.live.connected},
            "timeseries": {"ok": tsdb_ok, "error": chain.error, "url": self.tsq.url,
                           "figures_at": chain.at, "figures_took_s": round(chain.took, 3)},
            "stores": rows,
        }

    def _row(self, sid: str, name: str, got: dict[str, dict[str, float]],
             tsdb_ok: bool) -> dict[str, Any]:
        store = self.live.stores[sid]
        alerts = dict.fromkeys(SEVERITIES, 0)
        unclaimed = []
        for alert in store.alerts.values():
            sev = alert.get("severity")
            if sev in alerts:
                alerts[sev] += 1
            if alert.get("state") in UNCLAIMED_STATES:
                unclaimed.append(float(alert.get("received_ts") or 0))
        seen = [t for t in (store.last_message, got.get("seen", {}).get(sid)) if t]

        def figure(name: str) -> float | None:
            return got[name].get(sid, 0.0) if tsdb_ok else None

        oos, erp, tsdb = figure("oos"), figure("erp"), figure("tsdb")
        devices_offline = store.devices_offline()
        trouble = []
        score = 0.0
        for reason, weight, hit in (
                ("offline", 1000, not store.online),
                ("critical alerts", 100 * alerts["critical"], alerts["critical"]),
                ("unclaimed alerts", 10 * len(unclaimed), unclaimed),
                ("out of stock", 5 * (oos or 0), oos),
                ("devices offline", 5 * len(devices_offline), devices_offline),
                ("ERP backlog", 1, erp),
                ("time-series backlog", 1, tsdb)):
            if hit:
                trouble.append(reason)
                score += weight
        return {
            "id": sid, "name": name or sid, "online": store.online,
            "agent": store.agent, "bridge": store.bridge,
            "last_seen": max(seen) if seen else None,
            "sales_units": figure("units"), "sales_amount": figure("amount"),
            "lanes_out_of_stock": oos,
            "alerts": alerts, "oldest_unclaimed": min(unclaimed) if unclaimed else None,
            "devices_offline": devices_offline,
            "erp_backlog": erp, "tsdb_backlog": tsdb,
            "trouble": trouble, "trouble_score": score,
        }

    # One store

    async def store_page(self, sid: str, span: TimeRange, step: float) -> dict[str, Any]:
        store = self.live.stores[sid]
        sel = _sel(sid)
        out: dict[str, Any] = {
            "id": sid, "online": store.online, "agent": store.agent, "bridge": store.bridge,
            "devices": [{"device": d, **h} for d, h in sorted(store.devices.items())],
            "open_alerts": sorted((_alert_row(a) for a in store.alerts.values()),
                                  key=lambda a: a["since"] or 0),
        }
        try:
            lanes, sales, alerts = await asyncio.gather(
                self.tsq.range(f"last_over_time(shelf_stock_units{sel}[{step:g}s])",
                               span.start, span.end, step),
                self._hourly(f"sum(sum_over_time(sale_qty{sel}[$w]))", span),
                self.tsq.range(
                    f"sum by (rule) (sum_over_time(alert_count{_sel(sid, transition='opened')}"
                    f"[{step:g}s]))", span.start, span.end, step))
        except TimeSeriesUnavailable as exc:
            out["timeseries"] = {"ok": False, "error": str(exc)}
            return out
        out["timeseries"] = {"ok": True, "error": None}
        out["lanes"] = [{"lane": s.labels.get("lane"), "sku": s.labels.get("sku"),
                         "points": s.points} for s in lanes]
        out["sales_per_hour"] = sales[0].points if sales else []
        out["alerts_per_rule"] = [{"rule": s.labels.get("rule"), "points": s.points}
                                  for s in alerts]
        return out

    async def _hourly(self, template: str, span: TimeRange) -> list[Series]:
        """``template`` (a query with ``$w`` for its window) per hour of ``span``, each point
        stamped with its hour's end. The hours at either end count only their part inside the
        range (the current hour: what has passed of it), so the points add up to the range."""
        first = (span.start // 3600 + 1) * 3600  # the end of the hour holding the start
        last = span.end // 3600 * 3600  # the end of the last whole hour
        parts: list[tuple[float, list[Series]]] = []
        if last <= first or span.end <= first:  # the range lies within one or two hours
            edges = sorted({span.start, min(first, span.end), span.end})
            for a, b in itertools.pairwise(edges):
                got = await self.tsq.instant(_window(template, f"{max(1, round(b - a))}s"), b)
                parts.append(((a // 3600 + 1) * 3600, got))
        else:
            head, whole = await asyncio.gather(
                self.tsq.instant(_window(template, f"{max(1, round(first - span.start))}s"),
                                 first),
                self.tsq.range(_window(template, "3600s"), first + 3600, last, 3600)
                if last > first else _none())
            parts.append((first, head))
            for s in whole:
                parts += [(t, [Series(s.labels, [(t, v)])]) for t, v in s.points]
            if span.end > last:
                parts.append((last + 3600, await self.tsq.instant(
                    _window(template, f"{max(1, round(span.end - last))}s"), span.end)))
        merged: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
        for stamp, result in parts:
            for s in result:
                into = merged.setdefault(tuple(sorted(s.labels.items())), {})
                into[stamp] = into.get(stamp, 0.0) + s.last
        return [Series(dict(k), sorted(v.items())) for k, v in merged.items()]

    # Charts

    async def charts(self, span: TimeRange) -> dict[str, Any]:
        r, at = span.seconds, span.end
        sample = self.config.timeseries.sample_seconds
        sales, top, oos, rules = await asyncio.gather(
            self._hourly("sum by (store) (sum_over_time(sale_qty[$w]))", span),
            self.tsq.instant(f"topk(10, sum by (sku) (sum_over_time(sale_qty[{r}s])))", at),
            self.tsq.instant(
                f"sum by (store) (count_le_over_time(shelf_stock_units[{r}s], 0)) * {sample:g}"
                " / 60", at),
            self.tsq.instant(
                f"sum by (rule) (sum_over_time(alert_count{{transition=\"opened\"}}[{r}s]))",
                at))
        return {
            "sales_per_hour": [{"store": s.labels.get("store"), "points": s.points}
                               for s in sales],
            "top_skus": sorted(({"sku": s.labels.get("sku"), "units": s.last} for s in top),
                               key=lambda x: -x["units"]),
            "out_of_stock_minutes": sorted(
                ({"store": s.labels.get("store"), "minutes": round(s.last, 1)} for s in oos),
                key=lambda x: -x["minutes"]),
            "alerts_per_rule": sorted(({"rule": s.labels.get("rule"), "alerts": s.last}
                                       for s in rules), key=lambda x: -x["alerts"]),
        }

    # Reports: each a list of flat rows (the same for the page, CSV and XLSX)

    def buckets(self, span: TimeRange, group: Group) -> list[tuple[float, float]]:
        """The hours or days (in the chain's time zone) the range touches; a report counts only
        the part of the first and last inside the range, so its rows add up to the range."""
        zone = self.config.chain.zone()
        if group == "hour":
            first = span.start // 3600 * 3600
            return [(t, t + 3600) for t in range(int(first), int(span.end), 3600)]
        day = datetime.fromtimestamp(span.start, zone).replace(hour=0, minute=0, second=0,
                                                               microsecond=0)
        out = []
        while day.timestamp() < span.end:
            nxt = (day + timedelta(days=1, hours=3)).replace(hour=0)  # DST-proof
            out.append((day.timestamp(), nxt.timestamp()))
            day = nxt
        return out

    async def sales_report(self, span: TimeRange, group: Group) -> list[dict[str, Any]]:
        zone = self.config.chain.zone()
        buckets = self.buckets(span, group)
        rows: dict[tuple[str, str, float], dict[str, Any]] = {}
        if group == "hour" and buckets:
            units, amount = await asyncio.gather(*(self._hourly(
                f"sum by (store, sku) (sum_over_time(sale_{f}[$w]))", span)
                for f in ("qty", "amount")))
            per: list[tuple[str, list[Series]]] = [("units", units), ("amount", amount)]
            for field, result in per:
                for s in result:
                    for t, v in s.points:
                        self._add(rows, s, t - 3600, field, v)
        else:
            async def day(b: tuple[float, float]) -> tuple[float, list[Series], list[Series]]:
                # Clipped to the range, so the rows add up to the range's sales.
                t0, t1 = max(b[0], span.start), min(b[1], span.end)
                r = max(1, round(t1 - t0))
                u, a = await asyncio.gather(*(self.tsq.instant(
                    f"sum by (store, sku) (sum_over_time(sale_{f}[{r}s]))", t1)
                    for f in ("qty", "amount")))
                return b[0], u, a
            for start, units_d, amount_d in await _bounded([day(b) for b in buckets]):
                for s in units_d:
                    self._add(rows, s, start, "units", s.last)
                for s in amount_d:
                    self._add(rows, s, start, "amount", s.last)
        fmt = "%Y-%m-%d %H:00" if group == "hour" else "%Y-%m-%d"
        known = {s.id for s in self.config.stores}
        return [{"store": k[0], "sku": k[1],
                 "period": datetime.fromtimestamp(k[2], zone).strftime(fmt),
                 "units": round(v.get("units", 0)), "amount": round(v.get("amount", 0.0), 2)}
                for k, v in sorted(rows.items()) if k[0] in known and v.get("units")]

    @staticmethod
    def _add(rows: dict[tuple[str, str, float], dict[str, Any]], s: Series, start: float,
             field: str, value: float) -> None:
        key = (s.labels.get("store", ""), s.labels.get("sku", ""), start)
        rows.setdefault(key, {})[field] = value

    async def out_of_stock_report(self, span: TimeRange) -> list[dict[str, Any]]:
        sample = self.config.timeseries.sample_seconds
        result = await self.tsq.instant(
            f"count_le_over_time(shelf_stock_units[{span.seconds}s], 0) > 0", span.end)
        known = {s.id for s in self.config.stores}
        return sorted(({"store": s.labels.get("store"), "lane": s.labels.get("lane"),
                        "sku": s.labels.get("sku"), "minutes": round(s.last * sample / 60, 1)}
                       for s in result if s.labels.get("store") in known),
                      key=lambda r: (r["store"], -r["minutes"], r["lane"]))

    async def alert_response_report(self, span: TimeRange) -> list[dict[str, Any]]:
        """Alerts opened, claimed and closed per store and rule, with the time from opening
        to claim and to resolution (each transition's point carries its ``age_s``)."""
        r = span.seconds
        closed = 'state=~"resolved|cleared"'
        names = ("opened", "claimed", "claim_s", "max_claim_s", "closed", "resolve_s")
        got = await asyncio.gather(*(self.tsq.instant(q, span.end) for q in (
            f'sum by (store, rule) (sum_over_time(alert_count{{transition="opened"}}[{r}s]))',
            f"sum by (store, rule) (sum_over_time(alert_claims[{r}s]))",
            f"sum by (store, rule) (sum_over_time(alert_claim_s[{r}s]))",
            f"max by (store, rule) (max_over_time(alert_claim_s[{r}s]))",
            f"sum by (store, rule) (sum_over_time(alert_count{{{closed}}}[{r}s]))",
            f"sum by (store, rule) (sum_over_time(alert_age_s{{{closed}}}[{r}s]))")))
        figures = {name: _by(result, "store", "rule") for name, result in zip(names, got,
                                                                               strict=True)}
        known = {s.id for s in self.config.stores}
        keys = sorted({k for f in figures.values() for k in f if k[0] in known})
        rows = []
        for key in keys:
            f = {name: figures[name].get(key, 0.0) for name in names}
            rows.append({"store": key[0], "rule": key[1], "opened": round(f["opened"]),
                         "claimed": round(f["claimed"]),
                         "mean_claim_s": _ratio(f["claim_s"], f["claimed"]),
                         "max_claim_s": round(f["max_claim_s"], 1) if f["claimed"] else None,
                         "closed": round(f["closed"]),
                         "mean_resolve_s": _ratio(f["resolve_s"], f["closed"])})
        return rows

    async def stock_accuracy_report(self, at: float) -> list[dict[str, Any]]:
        stale = round(self.config.timeseries.stale_seconds)
        shelf = _by(await self.tsq.instant(
            f"sum by (store, sku) (last_over_time(shelf_stock_units[{stale}s]))", at),
            "store", "sku")
        erp: dict[tuple[str, str], float] = {}
        erp_error = None
        if self.erp is not None:
            try:
                erp = await self.erp.quantities(
                    {s.id: s.warehouse for s in self.config.stores if s.warehouse})
            except ErpUnavailable as exc:
                erp_error = str(exc)
        rows = []
        for entry in self.config.stores:
            skus = {sku for (st, sku) in shelf if st == entry.id} | {
                sku for (st, sku) in erp if st == entry.id}
            for sku in sorted(skus):
                on_shelf = shelf.get((entry.id, sku))
                in_erp = erp.get((entry.id, sku))
                rows.append({"store": entry.id, "sku": sku,
                             "shelf_units": None if on_shelf is None else round(on_shelf),
                             "erp_units": None if in_erp is None else round(in_erp),
                             "difference": None if on_shelf is None or in_erp is None
                             else round(on_shelf - in_erp),
                             "erp": erp_error or ("ok" if self.erp else "not configured")})
        return rows


def _alert_row(alert: dict[str, Any]) -> dict[str, Any]:
    detail = alert.get("detail") or {}
    return {"alert_id": alert.get("alert_id"), "rule": alert.get("rule"),
            "severity": alert.get("severity"), "state": alert.get("state"),
            "subject": alert.get("subject"), "message": alert.get("message"),
            "since": alert.get("received_ts"),
            "claimed_by": detail.get("by") if alert.get("state") == "claimed" else None}


def _window(template: str, window: str) -> str:
    return template.replace("$w", window)


async def _none() -> list[Series]:
    return []


def _ratio(total: float, count: float) -> float | None:
    return round(total / count, 1) if count else None


async def _bounded(aws: list[Awaitable[Any]], limit: int = 8) -> list[Any]:
    """Await all, at most ``limit`` at a time, in order (a month of days is 60 queries)."""
    gate = asyncio.Semaphore(limit)

    async def one(aw: Awaitable[Any]) -> Any:
        async with gate:
            return await aw
    return list(await asyncio.gather(*(one(a) for a in aws)))
