"""HQ's web app: the chain overview, store pages, charts and reports, as pages and as a JSON API
under ``/api/``.

Callers sign in with an HQ user's token (``users`` in hq.yaml; each checked for strength at
start): as a bearer token, or through ``POST /api/session``, which sets a signed session cookie
for the pages (HttpOnly, SameSite=Strict, Secure over TLS; never the token itself). Every HQ user
sees every store; any other token (a store's staff or manager token) gets the same 401 as a wrong
one, and failed sign-ins per client are limited (429 with ``Retry-After``). With no users
configured everything is open (development only). The safety every storeedge app has (body
limits, security headers, the append-only audit log of every action and refusal) is
``storeedge.httpsec``'s.

Statuses: 401 not signed in, 404 unknown store, 413 body too large, 422 bad input naming the field
(a malformed or inverted time range), 429 too many failed sign-ins, 503 when the time-series
server (or the ERP) cannot answer. The overview and store pages still answer with the time-series
server down, showing it as down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, SecretStr

import storeedge
from cloud_bridge.tryton.connector import TrytonConnector
from hq.config import HqConfig
from hq.erp import ErpStock
from hq.figures import Figures, TimeRange
from hq.live import ChainLive, follow_broker
from hq.timeseries import PromQuery
from storeedge import tables
from storeedge.audit import AuditLog
from storeedge.errors import ErpUnavailable, TimeSeriesUnavailable
from storeedge.httpsec import (
    DOCS_ASSETS,
    ERROR_RESPONSES,
    UNAUTHORIZED,
    AttemptLimiter,
    Problem,
    SecurityMiddleware,
    check_token,
    client_address,
    docs_page,
    invalid_request,
    json_errors,
    make_session,
    network_of,
    page_csp,
    read_session,
    session_mac,
)
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

_STATIC = Path(__file__).with_name("static")
VENDOR_DIR = Path(storeedge.__file__).parent / "static" / "vendor"  # the chart library
COOKIE = "storeedge_hq"
SESSION_REALM = "storeedge-hq-session"
BODY_LIMITS = (("/api/session", 1024),)
MAX_RANGE_S = 93 * 86_400  # a quarter: the longest report a page asks for


@dataclass(frozen=True)
class HqCaller:
    name: str
    role: str = "hq"


def user_tokens(config: HqConfig) -> list[tuple[str, SecretStr]]:
    """Each HQ user's token from its environment variable; ConfigError naming a weak one. A
    user whose variable is unset cannot sign in (logged)."""
    tokens = []
    for i, user in enumerate(config.users):
        token = user.token()
        if token is None:
            log.warning("HQ user %s has no token in %s: they cannot sign in", user.name,
                        user.token_env)
            continue
        check_token(token.get_secret_value(), f"users.{i}.token_env", user.token_env)
        tokens.append((user.name, token))
    return tokens


class Hq:
    """What the routes share: the config, the live broker state and the figures."""

    def __init__(self, config: HqConfig, tokens: list[tuple[str, SecretStr]]) -> None:
        self.config = config
        self.live = ChainLive(s.id for s in config.stores)
        self.tsq = PromQuery(config.timeseries.url, config.timeseries.timeout_seconds)
        self.erp: ErpStock | None = None
        e = config.erp
        if e.kind == "tryton":
            self.erp = ErpStock(TrytonConnector(e.url, e.database, e.username,
                                                _reveal(e.password()), timeout=e.timeout_seconds,
                                                ca_file=str(e.ca_file) if e.ca_file else None))
        self.figures = Figures(config, self.live, self.tsq, self.erp)
        self.tokens = tokens
        h = config.http
        self.limiter = AttemptLimiter(h.sign_in_attempts, h.sign_in_window_seconds,
                                      h.sign_in_backoff_seconds)
        self.failures = RateLimitedLog(log, 60.0)
        self._ended: dict[str, float] = {}  # signed-out sessions -> when they would expire

    def by_token(self, presented: str) -> str | None:
        found = None
        for name, token in self.tokens:  # no early exit: the time spent tells nothing
            if hmac.compare_digest(token.get_secret_value().encode(), presented.encode()):
                found = name
        return found

    def by_session(self, value: str | None) -> str | None:
        parsed = read_session(value, time.time()) if value not in self._ended else None
        if parsed is None:
            return None
        name, expires, nonce, mac = parsed
        found = None
        for user, token in self.tokens:
            if user == name and hmac.compare_digest(session_mac(
                    token.get_secret_value().encode(), SESSION_REALM, name, expires, nonce), mac):
                found = name
        return found

    def start_session(self, name: str) -> tuple[str, int]:
        lifetime = int(self.config.http.session_hours * 3600)
        token = next(t for user, t in self.tokens if user == name)
        return make_session(token.get_secret_value().encode(), SESSION_REALM, name,
                            int(time.time()) + lifetime), lifetime

    def end_session(self, value: str | None) -> None:
        now = time.time()
        for ended in [v for v, until in self._ended.items() if until <= now]:
            del self._ended[ended]
        parsed = read_session(value, now)
        if value and parsed:
            self._ended[value] = parsed[1]

    def refuse_if_limited(self, request: Request) -> None:
        wait = self.limiter.retry_after([_client_key(request)])
        if wait > 0:
            raise HTTPException(429, "too many failed sign-ins; try again later",
                                headers={"Retry-After": str(math.ceil(wait))})

    def refuse(self, request: Request, strike: bool = True) -> HTTPException:
        """Count a failed sign-in (``strike``) and build the uniform 401."""
        if not strike:
            return HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        self.limiter.failed([_client_key(request)])
        self.failures.warning("sign-in", "HQ: a sign-in failed from %s", client_address(request))
        return HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

    async def aclose(self) -> None:
        await self.tsq.aclose()
        if self.erp is not None:
            await self.erp.aclose()


def _reveal(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret else ""


def hq_of(request: Request) -> Hq:
    hq: Hq = request.app.state.hq
    return hq


State = Annotated[Hq, Depends(hq_of)]
_bearer = HTTPBearer(auto_error=False)


def _client_key(request: Request) -> str:
    return f"client:{network_of(client_address(request))}"


def hq_user(request: Request, hq: State,
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The signed-in HQ user's name; 401 for no token or a token HQ does not know, 429 while
    the client is locked out."""
    name = "anonymous"
    if hq.config.users:
        hq.refuse_if_limited(request)
        session = request.cookies.get(COOKIE)
        found = hq.by_token(creds.credentials) if creds else hq.by_session(session)
        if found is None:  # a page opened before signing in guesses nothing: not a strike
            raise hq.refuse(request, strike=bool(creds or session))
        name = found
    request.state.caller = HqCaller(name)
    return name


HqUser = Annotated[str, Depends(hq_user)]


def docs_reader(request: Request, hq: State,
                creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """The API's schema and docs: for HQ users, or anyone with ``http.public_docs``."""
    if not hq.config.http.public_docs:
        hq_user(request, hq, creds)


DocsReader = Annotated[None, Depends(docs_reader)]


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
def sign_in(body: SignIn, hq: State, request: Request, response: Response) -> dict[str, str]:
    hq.refuse_if_limited(request)
    name = hq.by_token(body.token)
    if name is None:
        raise hq.refuse(request)
    request.state.caller = HqCaller(name)
    hq.limiter.succeeded([_client_key(request)])
    session, lifetime = hq.start_session(name)
    response.set_cookie(COOKIE, session, max_age=lifetime, httponly=True, samesite="strict",
                        secure=hq.config.http.tls)
    return {"user": name}


@api.delete("/session", summary="Sign out: the session cookie is refused from now on")
def sign_out(hq: State, request: Request, response: Response) -> dict[str, bool]:
    hq.end_session(request.cookies.get(COOKIE))
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=hq.config.http.tls)
    return {"signed_out": True}


@api.get("/audit", summary="The audit log as CSV: every action and refused access",
         response_class=StreamingResponse,
         responses={200: {"content": {"text/csv": {}}}})
def audit_export(user: HqUser, request: Request,
                 after: Annotated[int, Query(ge=0)] = 0) -> StreamingResponse:
    request.state.audited_read = True  # who read the audit log is itself recorded
    audit_log: AuditLog = request.app.state.audit
    return StreamingResponse(audit_log.csv(after), media_type="text/csv; charset=utf-8")


@api.get("/me")
def me(user: HqUser) -> dict[str, str]:
    return {"user": user, "role": "hq"}


@api.get("/overview", summary="One row per store, stores in trouble first")
async def overview(user: HqUser, hq: State) -> dict[str, Any]:
    return await hq.figures.overview(time.time())


@api.get("/stores", summary="The chain's stores as configured")
def stores(user: HqUser, hq: State) -> list[dict[str, Any]]:
    return [s.model_dump() for s in hq.config.stores]


@api.get("/stores/{store_id}", summary="A store's lanes, sales, alerts and devices",
         responses={404: {"model": Problem, "description": "No such store in this chain"}})
async def store_page(user: HqUser, hq: State, span: Span,
                     store_id: Annotated[str, Depends(store_of)],
                     step: Annotated[float | None, Query(gt=0, le=86_400)] = None
                     ) -> dict[str, Any]:
    step = step or max(hq.config.timeseries.sample_seconds, round(span.seconds / 240))
    return await hq.figures.store_page(store_id, span, step)


UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "The time-series server (or the ERP) cannot answer"}}


@api.get("/charts", summary="Sales per hour per store, top SKUs, out-of-stock minutes, alerts",
         responses=UNAVAILABLE)
async def charts(user: HqUser, hq: State, span: Span) -> dict[str, Any]:
    return await _answer(hq.figures.charts(span))


@api.get("/reports/{kind}", summary="A report as JSON rows, CSV or XLSX", responses=UNAVAILABLE)
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
    """The HQ app; ``follow=False`` leaves the broker alone (tests feed ``ChainLive``).
    ConfigError naming a weak user token, before anything starts."""
    tokens = user_tokens(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hq = app.state.hq = Hq(config, tokens)
        tasks = [asyncio.create_task(
            hq.figures.keep_refreshed(config.timeseries.refresh_seconds), name="hq-figures")]
        if follow:
            b = config.broker
            tasks.append(asyncio.create_task(follow_broker(
                hq.live, b.host, b.port, client_id=b.client_id, username=b.username,
                password=_reveal(b.password()) or None,
                ca_file=str(b.ca_file) if b.ca_file else None),
                name="hq-broker"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await hq.aclose()  # the audit log lives with the app: each row is committed

    app = FastAPI(title=f"storeedge HQ: {config.chain.name}", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.audit = audit_log = AuditLog(config.http.audit_file)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.add_middleware(SecurityMiddleware, audit=audit_log, tls=config.http.tls,
                       body_limits=BODY_LIMITS, audit_role_exempt="")
    app.include_router(api, responses=ERROR_RESPONSES)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(_: DocsReader) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(_: DocsReader) -> HTMLResponse:
        return docs_page(app.title)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        if name not in DOCS_ASSETS:
            raise HTTPException(404, f"no file {name!r}")
        return FileResponse(DOCS_ASSETS[name])

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
    app.mount("/static/vendor", StaticFiles(directory=VENDOR_DIR), name="vendor")
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.openapi_schema = json_errors(app.openapi())
    return app


def _page(name: str) -> Any:
    text = (_STATIC / name).read_text(encoding="utf-8")
    csp = page_csp(text)

    def page() -> HTMLResponse:
        return HTMLResponse(text, headers={"Content-Security-Policy": csp})
    return page
