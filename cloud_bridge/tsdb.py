"""The time-series sink for HQ: our events as InfluxDB line protocol, buffered on disk, drained
to any server speaking the InfluxDB v2 write API (InfluxDB in production, VictoriaMetrics here).

Line protocol follows https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/
(sections "Special Characters" and "Escaping backslashes"). Timestamps are nanoseconds since the
epoch, taken from the device where it gave one, so backfilled data keeps its real time. The
schema HQ's dashboards rely on is in docs/timeseries.md.

Delivery (``TimeSeriesSink``):

- ``add()`` commits lines to the sink's own SQLite file (WAL, one transaction per call) and
  returns; ``run()`` sends them in order, in batches, and deletes a batch only once the server
  answered 2xx.
- Server down, 5xx, 429, timeout, or a refused token (401/403/404): the batch stays, the sink
  waits a random, capped, growing delay and retries. Nothing is dropped for a server-side fault.
- 400 (malformed line protocol), 413 (too large) or 422 (partial write): the batch itself is bad.
  The sink bisects it and drops only the lines the server refuses alone (counter ``rejected``).
- Buffer full (``buffer_max_points``): the OLDEST lines are dropped to make room (counter
  ``dropped``, a warning). Fresh data is what a live dashboard needs; history beyond the buffer
  is what an outage of that length costs.
- A crash between the server's 2xx and our delete re-sends that batch. It lands once in effect:
  InfluxDB overwrites a point with the same measurement, tag set and timestamp, and
  VictoriaMetrics deduplicates samples of one series within -dedup.minScrapeInterval (which
  ``start_victoria_metrics`` sets). Builders here are deterministic for that reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storeedge.errors import PeerError, StoreEdgeError, TimeSeriesUnavailable, UsageError
from storeedge.events import Alert, AlertState, Sale
from storeedge.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from influxdb_client.client.write_api import WriteApi

log = logging.getLogger(__name__)

# Newlines cannot appear in any element ("Line protocol does not support the newline character
# \n in tag or field values"), so they become spaces; every buffered row is exactly one line.
_ESCAPE_MEASUREMENT = str.maketrans(
    {"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "}
)
_ESCAPE_KEY = str.maketrans(
    {"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "}
)
_ESCAPE_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": " ", "\r": " "})

FieldValue = bool | int | float | str | None


@functools.lru_cache(maxsize=64)
def _measurement(text: str) -> str:
    return text.translate(_ESCAPE_MEASUREMENT)


@functools.lru_cache(maxsize=8192)
def _key(text: str) -> str:
    """A tag key, tag value or field key, escaped. Cached: ``translate`` looks each character
    up in the table, and the same few hundred names (store, rules, states, lanes, SKUs) come
    back in every point (an alert point took 25 us escaping them each time, 9 us cached)."""
    return text.translate(_ESCAPE_KEY)


def to_ns(ts: float) -> int:
    """Epoch seconds to epoch nanoseconds, exact to the microsecond (a float carries no more)."""
    return round(ts * 1_000_000) * 1000


def encode_line(measurement: str, tags: Mapping[str, str | None],
                fields: Mapping[str, FieldValue], time_ns: int | None = None) -> str:
    """One point in line protocol. Tags are sorted by key; empty or None tags and None or
    non-finite float fields are left out (line protocol has no way to say them)."""
    parts = [_measurement(measurement)]
    for key in sorted(tags):
        tag = tags[key]
        if tag:
            parts.append(f",{_key(key)}={_key(tag)}")
    rendered = []
    for key, value in fields.items():
        text = _field_value(value)
        if text is not None:
            rendered.append(f"{_key(key)}={text}")
    if not rendered:
        raise UsageError(f"point {measurement!r} has no field with a value: {dict(fields)!r}")
    parts.append(" ")
    parts.append(",".join(rendered))
    if time_ns is not None:
        parts.append(f" {time_ns}")
    return "".join(parts)


def _field_value(value: FieldValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return f'"{value.translate(_ESCAPE_STRING)}"'
    raise UsageError(f"unsupported field type {type(value).__name__}")


class Points:
    """The points of one store (docs/timeseries.md is the schema): every point carries the
    store's tags (``store``, and ``region`` and ``city`` where the config names them).

    Tags stay bounded per store (lanes, SKUs, devices, rules, states), so an alert is tagged
    by its ``location`` and ``sku``, never its ``subject``, which can hold a kiosk session, a
    tag's EPC or a day. Fields are numbers: VictoriaMetrics stores a string field as an
    all-zero series. ``strings`` adds the ids and texts (``txn_id``, ``alert_id``,
    ``message``) as string fields, for servers that keep them (InfluxDB).
    """

    def __init__(self, store: str, *, region: str = "", city: str = "",
                 strings: bool = False) -> None:
        self.store = store
        self._tags = {"store": store, "region": region, "city": city}
        self._strings = strings

    def sales(self, sold: Iterable[tuple[Sale, float]], ts: float) -> list[str]:
        """``sale`` points, one per ``(sale, amount)``: qty and amount, tagged by SKU. Stamped
        with the device's time when the sale carries one, else ``ts`` (epoch seconds)."""
        out = []
        for sale, amount in sold:
            fields: dict[str, FieldValue] = {"qty": sale.qty, "amount": float(amount)}
            if self._strings:
                fields["txn_id"] = sale.txn_id
            when = sale.device_ts if sale.device_ts is not None else ts
            out.append(encode_line("sale", {**self._tags, "sku": sale.sku}, fields, to_ns(when)))
        return out

    def alerts(self, alerts: Iterable[Alert]) -> list[str]:
        """``alert`` points for alert transitions, at the device's time if known, else the
        agent's. Transitions that fall on one point (same tags, same instant) are summed into
        it: ``count`` transitions, ``age_s`` their seconds since the alert opened, and, where
        one claimed the alert (by hand or by a scan), ``claims`` and their ``claim_s``."""
        groups: dict[tuple[tuple[tuple[str, str | None], ...], int], list[Alert]] = {}
        for alert in alerts:
            tags = {**self._tags, "rule": alert.rule, "severity": str(alert.severity),
                    "state": str(alert.state), "transition": alert.detail.get("transition"),
                    "location": alert.location, "sku": alert.sku}
            when = alert.device_ts if alert.device_ts is not None else alert.received_ts
            groups.setdefault((tuple(tags.items()), to_ns(when)), []).append(alert)
        out = []
        for (tag_items, time_ns), group in groups.items():
            fields: dict[str, FieldValue] = {"count": len(group), "age_s": sum(map(_age, group))}
            claims = [a for a in group if _claims(a)]
            if claims:
                fields.update(claims=len(claims), claim_s=sum(map(_age, claims)))
            if self._strings:
                fields.update(alert_id=group[0].alert_id, message=group[0].message)
            out.append(encode_line("alert", dict(tag_items), fields, time_ns))
        return out

    def lanes(self, samples: Iterable[tuple[str, str, int, float]], ts: float) -> list[str]:
        """``shelf_stock`` points, one per ``(lane, sku, units, grams)`` sample taken at ``ts``."""
        time_ns = to_ns(ts)
        return [encode_line("shelf_stock", {**self._tags, "lane": lane, "sku": sku},
                            {"units": int(units), "grams": float(grams)}, time_ns)
                for lane, sku, units, grams in samples]

    def agent(self, ts: float, figures: Mapping[str, int | None]) -> str:
        """The ``agent`` point, sampled at ``ts``: the agent's own figures (``readings_total``,
        ``erp_backlog``, ``tsdb_backlog``, ...), integers; None ones are left out."""
        return encode_line("agent", self._tags, dict(figures), to_ns(ts))

    def devices(self, devices: Mapping[str, Mapping[str, Any]], ts: float) -> list[str]:
        """``device`` points sampled at ``ts``, one per device of ``HealthTracker.view()``:
        its state one-hot (``online``, ``degraded``, ``offline``: 1 for the state it is in, all 0
        while unknown) and its good and bad message counts."""
        time_ns = to_ns(ts)
        out = []
        for device, view in devices.items():
            state = view.get("state")
            fields: dict[str, FieldValue] = {s: int(state == s) for s in _DEVICE_STATES}
            fields.update(readings=int(view.get("readings") or 0), bad=int(view.get("bad") or 0))
            out.append(encode_line("device", {**self._tags, "device": device,
                                              "device_type": view.get("type")}, fields, time_ns))
        return out

    def climate(self, zone: str, sample: Mapping[str, Any]) -> str:
        """A ``climate`` point for one sensor's sample (``StorePipeline.climate``), at the time
        it was received: temperature (°C), humidity (%) and battery (%) where it gave them."""
        return encode_line(
            "climate", {**self._tags, "zone": zone, "device": sample.get("device")},
            {key: _number(sample.get(key)) for key in ("temperature", "humidity", "battery")},
            to_ns(sample["ts"]))


_DEVICE_STATES = ("online", "degraded", "offline")


def _age(alert: Alert) -> float:
    """Seconds from the alert's opening to this transition."""
    return max(0.0, alert.received_ts - alert.detail.get("opened_at", alert.received_ts))


def _claims(alert: Alert) -> bool:
    """Whether this transition claimed the alert (a later confirming scan claims nothing)."""
    return (alert.state is AlertState.CLAIMED
            and alert.detail.get("claimed_at") == alert.received_ts)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


class _Rejected(PeerError):
    """The server refused the batch itself (400/413/422); retrying it unchanged cannot help."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a batch's id range stays its own
    added REAL NOT NULL,
    line TEXT NOT NULL
);
-- How far each feed of journaled rows has been buffered (see ``TimeSeriesSink.add``).
CREATE TABLE IF NOT EXISTS mark (
    feed TEXT PRIMARY KEY,
    row INTEGER NOT NULL
)
"""


class TimeSeriesSink:
    """Buffers line protocol on disk and drains it to an InfluxDB v2 write API.

    ``add()`` may be called from any thread; run ``run()`` as one task. Cancelling ``run()``
    leaves every unsent line in ``buffer_path``; a new sink on that file resumes in order.
    The file is committed with ``synchronous=FULL``: an added line survives a power cut.
    """

    def __init__(self, buffer_path: str | Path, url: str, org: str, bucket: str,
                 token: str | None, batch_size: int = 5_000, flush_seconds: float = 1.0,
                 buffer_max_points: int = 2_000_000, *, timeout_seconds: float = 10.0,
                 retry_initial_seconds: float = 0.5, retry_max_seconds: float = 30.0,
                 ca_file: str | None = None) -> None:
        if batch_size < 1 or buffer_max_points < 1:
            raise UsageError("batch_size and buffer_max_points must be at least 1")
        self._url = url
        self._org = org
        self._bucket = bucket
        self._token = token or ""
        self._ca_file = ca_file  # the server's CA (default: the system's); always verified
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._max_points = buffer_max_points
        self._timeout_ms = int(timeout_seconds * 1000)
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(buffer_path, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._buffered: int = self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreEdgeError(f"time-series buffer {buffer_path}: {exc}") from exc
        self._written = 0
        self._dropped = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._log_unavailable = RateLimitedLog(log, 60.0)
        self._log_dropped = RateLimitedLog(log, 60.0)
        self._log_rejected = RateLimitedLog(log, 10.0)

    def add(self, lines: list[str], mark: tuple[str, int] | None = None) -> None:
        """Append lines to the buffer in one transaction; drop the oldest if it overflows.

        ``mark`` (feed, row) records in the same transaction that the lines of ``feed`` up to
        ``row`` are buffered: a caller feeding rows of a journal reads ``marked(feed)`` to
        carry on after a crash or a failed ``add``, each row buffered once. StoreEdgeError
        when the buffer cannot be written (a full disk): nothing of the call was kept.
        """
        if not lines and mark is None:
            return
        keep = lines[-self._max_points:]
        now = time.time()
        with self._lock:
            excess = max(self._buffered + len(keep) - self._max_points, 0)
            try:
                with self._db:  # one transaction: trim and insert together or not at all
                    self._db.execute("BEGIN IMMEDIATE")
                    if excess:
                        self._db.execute("DELETE FROM points WHERE id IN "
                                         "(SELECT id FROM points ORDER BY id LIMIT ?)", (excess,))
                    self._db.executemany("INSERT INTO points (added, line) VALUES (?, ?)",
                                         ((now, line) for line in keep))
                    if mark is not None:
                        self._db.execute("INSERT OR REPLACE INTO mark (feed, row) VALUES (?, ?)",
                                         mark)
            except sqlite3.Error as exc:
                raise StoreEdgeError(f"time-series buffer: cannot add: {exc}") from exc
            self._buffered += len(keep) - excess
            dropped = excess + len(lines) - len(keep)
            self._dropped += dropped
        if dropped:
            self._log_dropped.log("dropped", logging.WARNING,
                              "time-series buffer full (%d points): dropped the %d oldest; "
                              "%d dropped since start", self._max_points, dropped, self._dropped)

    def marked(self, feed: str) -> int:
        """The last row of ``feed`` buffered (0 for none)."""
        with self._lock:
            row = self._db.execute("SELECT row FROM mark WHERE feed = ?", (feed,)).fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> dict[str, Any]:
        """Counters for health and metrics (JSON-ready): ``buffered`` points on disk, ``written``
        and ``rejected`` (refused alone, malformed) and ``dropped`` (oldest, buffer full) since
        start, ``last_error`` while the server is failing, ``oldest_buffered_age_s``."""
        with self._lock:
            row = self._db.execute("SELECT added FROM points ORDER BY id LIMIT 1").fetchone()
            return {
                "buffered": self._buffered, "written": self._written,
                "dropped": self._dropped, "rejected": self._rejected,
                "last_error": self._last_error,
                "oldest_buffered_age_s": max(0.0, time.time() - row[0]) if row else None,
            }

    async def run(self) -> None:
        """Drain the buffer forever: batches in order, retrying while the server is away."""
        # Imported here: the client and its dependencies weigh ~25 MB, only for stores that
        # send time series.
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        client = InfluxDBClient(url=self._url, token=self._token, org=self._org,
                                timeout=self._timeout_ms, verify_ssl=True,
                                ssl_ca_cert=self._ca_file)
        write_api = client.write_api(write_options=SYNCHRONOUS)
        failures = 0
        try:
            while True:
                if self._buffered < self._batch_size:
                    await asyncio.sleep(self._flush_seconds)  # let a partial batch fill up
                batch = self._read_batch()
                if not batch:
                    continue
                try:
                    await self._deliver(write_api, batch)
                except TimeSeriesUnavailable as exc:
                    failures += 1
                    self._last_error = str(exc)
                    self._log_unavailable.log(
                        "unavailable", logging.WARNING,
                        "time-series server %s unavailable (%s); %d points kept on disk, retrying",
                        self._url, exc, self._buffered)
                    cap = min(self._retry_max, self._retry_initial * 2 ** min(failures, 30))
                    await asyncio.sleep(random.uniform(cap / 2, cap))
                    continue
                if failures:
                    log.info("time-series server %s reachable again after %d failed attempts",
                             self._url, failures)
                    failures = 0
                    self._last_error = None
        finally:
            client.close()

    def close(self) -> None:
        """Close the buffer file. Unsent lines stay in it."""
        with self._lock:
            self._db.close()

    def _read_batch(self) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute("SELECT id, line FROM points ORDER BY id LIMIT ?",
                                    (self._batch_size,)).fetchall()

    def _forget(self, first_id: int, last_id: int) -> None:
        with self._lock:
            deleted = self._db.execute("DELETE FROM points WHERE id BETWEEN ? AND ?",
                                       (first_id, last_id)).rowcount
            self._buffered -= deleted

    async def _deliver(self, write_api: WriteApi, batch: list[tuple[int, str]]) -> None:
        """Send ``batch``; on rejection bisect it until the bad lines stand alone and drop them.

        Each part is deleted as soon as the server took it, so a later outage re-sends nothing.
        """
        body = "\n".join(line for _, line in batch).encode()
        try:
            await asyncio.to_thread(self._post, write_api, body)
        except _Rejected as exc:
            if len(batch) > 1:
                mid = len(batch) // 2
                await self._deliver(write_api, batch[:mid])
                await self._deliver(write_api, batch[mid:])
                return
            self._rejected += 1
            self._log_rejected.log("rejected", logging.ERROR,
                                   "time-series server %s rejected a line, dropped it "
                                   "(%d rejected since start): %s: %.200s",
                                   self._url, self._rejected, exc, batch[0][1])
        else:
            self._written += len(batch)
        self._forget(batch[0][0], batch[-1][0])

    def _post(self, write_api: WriteApi, body: bytes) -> None:
        import urllib3
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            write_api.write(bucket=self._bucket, org=self._org, record=body,
                            # The client annotates its own precision constants as the class.
                            write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except ApiException as exc:
            detail = f"HTTP {exc.status}: {_text(exc.body) or exc.reason}"
            if exc.status in (400, 413, 422):
                raise _Rejected(detail) from exc
            raise TimeSeriesUnavailable(detail) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TimeSeriesUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _text(body: object) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return str(body or "").strip()[:300]
