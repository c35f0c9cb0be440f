"""HQ's web app: the chain overview, store pages, charts and reports, as pages and as a JSON API
under ``/api/``.

Callers sign in with an HQ user's token (``users`` in hq.yaml): as a bearer token, or through
``POST /api/session``, which sets an HttpOnly cookie for the pages. Every HQ user sees every
store; any other token (a store's staff or manager token) is refused with 401. With no users
configured everything is open (development only).

Statuses: 401 not signed in, 404 unknown store, 422 bad input naming the field (a malformed or
inverted time range), 503 when the time-series server (or the ERP) cannot answer. The overview
and store pages still answer with the time-series server down, showing it as down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from cloud_bridge.tryton.connector import TrytonConnector
from hq.config import HqConfig
from hq.erp import ErpStock
from hq.figures import Figures, TimeRange
from hq.live import ChainLive, follow_broker
from hq.timeseries import PromQuery
from storeedge import tables
from storeedge.errors import ErpUnavailable, TimeSeriesUnavailable

log = logging.getLogger(__name__)
audit = logging.getLogger("storeedge.audit")

_STATIC = Path(__file__).with_name("static")
COOKIE = "storeedge_hq"
MAX_RANGE_S = 93 * 86_400  # a quarter: the longest report a page asks for


class Hq:
    """What the routes share: the config, the live broker state and the figures."""

    def __init__(self, config: HqConfig) -> None:
        self.config = config
        self.live = ChainLive(s.id for s in config.stores)
        self.tsq = PromQuery(config.timeseries.url, config.timeseries.timeout_seconds)
        self.erp: ErpStock | None = None
        e = config.erp
        if e.kind == "tryton":
            self.erp = ErpStock(TrytonConnector(e.url, e.database, e.username,
                                                e.password() or "", timeout=e.timeout_seconds))
        self.figures = Figures(config, self.live, self.tsq, self.erp)
        self.tokens: dict[str, str] = {}
        for user in config.users:
            token = user.token()
            if token:
                self.tokens[token] = user.name
        missing = [u.name for u in config.users if not u.token()]
        if missing:
            log.warning("HQ users without a token in their environment variable: %s", missing)

    async def aclose(self) -> None:
        await self.tsq.aclose()
        if self.erp is not None:
            await self.erp.aclose()


def hq_of(request: Request) -> Hq:
    hq: Hq = request.app.state.hq
    return hq


State = Annotated[Hq, Depends(hq_of)]
_bearer = HTTPBearer(auto_error=False)


def hq_user(request: Request, hq: State,
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The signed-in HQ user's name; 401 for no token or a token HQ does not know."""
    if not hq.config.users:
        return "anonymous"
    token = creds.credentials if creds else request.cookies.get(COOKIE)
    if token:
        for known, name in hq.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return name
    raise HTTPException(401, "sign in with an HQ user's token",
                        headers={"WWW-Authenticate": "Bearer"})


HqUser = Annotated[str, Depends(hq_user)]


def _field_error(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", field),
                                    "msg": message, "input": value}])


def time_range(hq: State,
               start: Annotated[datetime | None, Query(
                   description="ISO 8601 (a time without offset is in the chain's time zone) or "
                               "Unix seconds; default: 24 h before end")] = None,
               end: Annotated[datetime | None, Query(description="default: now")] = None,
               ) -> TimeRange:
    zone = hq.config.chain.zone()

    def seconds(value: datetime) -> float:
        return (value if value.tzinfo else value.replace(tzinfo=zone)).timestamp()

    t1 = seconds(end) if end is not None else time.time()
    t0 = seconds(start) if start is not None else t1 - 86_400
    if t1 <= t0:
        raise _field_error("end", "end must be after start", end)
    if t1 - t0 > MAX_RANGE_S:
        raise _field_error("start", f"the range may span at most {MAX_RANGE_S // 86_400} days",
                           start)
    return TimeRange(t0, t1)


Span = Annotated[TimeRange, Depends(time_range)]


def store_of(hq: State, store_id: str) -> str:
    if store_id not in hq.live.stores:
        raise HTTPException(404, f"no store {store_id!r} in this chain")
    return store_id


class ReportKind(StrEnum):
    SALES = "sales"
    STOCK_ACCURACY = "stock-accuracy"
    OUT_OF_STOCK = "out-of-stock"
    ALERT_RESPONSE = "alert-response"


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


REPORT_COLUMNS = {
    ReportKind.SALES: ("store", "sku", "period", "units", "amount"),
    ReportKind.STOCK_ACCURACY: ("store", "sku", "shelf_units", "erp_units", "difference", "erp"),
    ReportKind.OUT_OF_STOCK: ("store", "lane", "sku", "minutes"),
    ReportKind.ALERT_RESPONSE: ("store", "rule", "opened", "claimed", "mean_claim_s",
                                "max_claim_s", "closed", "mean_resolve_s"),
}


class SignIn(BaseModel):
    token: str


api = APIRouter(prefix="/api")


@api.post("/session", summary="Sign in: sets the session cookie the pages use")
def sign_in(body: SignIn, hq: State, response: Response) -> dict[str, str]:
    for known, name in hq.tokens.items():
        if hmac.compare_digest(known.encode(), body.token.encode()):
            response.set_cookie(COOKIE, body.token, httponly=True, samesite="strict")
            audit.info("HQ sign-in by %s", name)
            return {"user": name}
    audit.warning("HQ sign-in refused")
    raise HTTPException(401, "not an HQ user's token")


@api.delete("/session", summary="Sign out")
def sign_out(response: Response) -> dict[str, bool]:
    response.delete_cookie(COOKIE)
    return {"signed_out": True}


@api.get("/me")
def me(user: HqUser) -> dict[str, str]:
    return {"user": user, "role": "hq"}


@api.get("/overview", summary="One row per store, stores in trouble first")
async def overview(user: HqUser, hq: State) -> dict[str, Any]:
    return await hq.figures.overview(time.time())


@api.get("/stores", summary="The chain's stores as configured")
def stores(user: HqUser, hq: State) -> list[dict[str, Any]]:
    return [s.model_dump() for s in hq.config.stores]


@api.get("/stores/{store_id}", summary="A store's lanes, sales, alerts and devices")
async def store_page(user: HqUser, hq: State, span: Span,
                     store_id: Annotated[str, Depends(store_of)],
                     step: Annotated[float | None, Query(gt=0, le=86_400)] = None
                     ) -> dict[str, Any]:
    step = step or max(hq.config.timeseries.sample_seconds, round(span.seconds / 240))
    return await hq.figures.store_page(store_id, span, step)


@api.get("/charts", summary="Sales per hour per store, top SKUs, out-of-stock minutes, alerts")
async def charts(user: HqUser, hq: State, span: Span) -> dict[str, Any]:
    return await _answer(hq.figures.charts(span))


@api.get("/reports/{kind}", summary="A report as JSON rows, CSV or XLSX")
async def report(user: HqUser, hq: State, span: Span, kind: ReportKind,
                 group: Annotated[str, Query(pattern="^(hour|day)$")] = "day",
                 format: ReportFormat = ReportFormat.JSON) -> Response:
    f = hq.figures
    if kind is ReportKind.SALES:
        rows = await _answer(f.sales_report(span, "hour" if group == "hour" else "day"))
    elif kind is ReportKind.STOCK_ACCURACY:
        rows = await _answer(f.stock_accuracy_report(span.end))
    elif kind is ReportKind.OUT_OF_STOCK:
        rows = await _answer(f.out_of_stock_report(span))
    else:
        rows = await _answer(f.alert_response_report(span))
    cols = REPORT_COLUMNS[kind]
    name = f"{kind.value}-{datetime.fromtimestamp(span.start):%Y%m%d}"
    if format is ReportFormat.CSV:
        return Response(tables.to_csv(rows, cols), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if format is ReportFormat.XLSX:
        return Response(
            tables.to_xlsx(rows, cols, kind.value),
            media_type=tables.XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    totals = {c: round(sum(r[c] or 0 for r in rows), 2) for c in ("units", "amount", "minutes")
              if rows and c in rows[0]}
    return JSONResponse({"kind": kind.value, "start": span.start, "end": span.end,
                         "columns": list(cols), "rows": rows, "totals": totals})


async def _answer(aw: Any) -> Any:
    try:
        return await aw
    except TimeSeriesUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    except ErpUnavailable as exc:
        raise HTTPException(503, f"ERP: {exc}") from exc


def create_app(config: HqConfig, *, follow: bool = True) -> FastAPI:
    """The HQ app; ``follow=False`` leaves the broker alone (tests feed ``ChainLive``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hq = app.state.hq = Hq(config)
        tasks = [asyncio.create_task(
            hq.figures.keep_refreshed(config.timeseries.refresh_seconds), name="hq-figures")]
        if follow:
            b = config.broker
            tasks.append(asyncio.create_task(follow_broker(
                hq.live, b.host, b.port, client_id=b.client_id, username=b.username,
                password=b.password(), ca_file=str(b.ca_file) if b.ca_file else None),
                name="hq-broker"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await hq.aclose()

    app = FastAPI(title=f"storeedge HQ: {config.chain.name}", lifespan=lifespan)
    app.include_router(api)

    @app.get("/health", summary="Liveness and what HQ can reach")
    async def health(hq: State) -> dict[str, Any]:
        try:
            await hq.tsq.instant("vector(1)", time.time())
            tsdb: dict[str, Any] = {"ok": True}
        except TimeSeriesUnavailable as exc:
            tsdb = {"ok": False, "error": str(exc)}
        return {"status": "ok" if tsdb["ok"] and hq.live.connected else "degraded",
                "broker": {"connected": hq.live.connected}, "timeseries": tsdb,
                "stores": len(hq.config.stores)}

    for path, page in (("/", "overview.html"), ("/stores/{store_id}", "store.html"),
                       ("/reports", "reports.html"), ("/signin", "signin.html")):
        app.add_api_route(path, _page(page), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    return app


def _page(name: str) -> Any:
    def page() -> FileResponse:
        return FileResponse(_STATIC / name, media_type="text/html")
    return page
