"""A client of the Prometheus query API (``/api/v1/query``, ``/api/v1/query_range``) as
VictoriaMetrics serves it. Every failure (refused, timed out, 4xx/5xx, an ``error`` status)
becomes ``TimeSeriesUnavailable`` naming the query, so an HQ page shows the server as down
instead of failing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from storeedge.errors import TimeSeriesUnavailable


@dataclass(frozen=True, slots=True)
class Series:
    """One result series: its labels and its ``(unix seconds, value)`` points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]

    @property
    def last(self) -> float:
        return self.points[-1][1]


class PromQuery:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self.last_error: str | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def instant(self, query: str, at: float) -> list[Series]:
        """An instant query at ``at``: one point per series (or raw samples for a range
        selector)."""
        return await self._get("/api/v1/query", {"query": query, "time": f"{at:.3f}"}, query)

    async def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        return await self._get("/api/v1/query_range", {
            "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}s",
            # A chart of the last minutes must show the newest samples, not a cached past.
            "nocache": "1"}, query)

    async def _get(self, path: str, params: dict[str, str], query: str) -> list[Series]:
        try:
            resp = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TimeSeriesUnavailable(
                f"time-series server {self.url}: {self.last_error}") from exc
        body: dict[str, Any] | None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error") if isinstance(body, dict) else resp.text[:200]
            self.last_error = f"HTTP {resp.status_code}: {detail}"
            raise TimeSeriesUnavailable(
                f"time-series server {self.url} refused {query!r}: {self.last_error}")
        self.last_error = None
        data = body["data"]
        out = []
        for item in data.get("result", []):
            if "values" in item:
                points = [(float(t), float(v)) for t, v in item["values"]]
            else:
                t, v = item["value"]
                points = [(float(t), float(v))]
            out.append(Series(item.get("metric", {}), points))
        return out
