"""The agent's web app: POS intake, alert and lane reads, the live alert stream the store's
handhelds show, health probes and Prometheus metrics.

Each route translates HTTP to one ``AgentApi`` call and back, on the event loop that runs the
agent. Callers present a bearer token listed in ``http.tokens``; on the alert stream the token may
also come as ``?token=``, since a browser's EventSource cannot send headers. With no tokens
configured everything is open (development).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from edge_agent.api import AgentApi
from edge_agent.config import HttpSection
from storeedge.errors import ConfigError, PayloadError, UsageError
from storeedge.events import Alert, AlertState, PosLine, PosTransaction

log = logging.getLogger(__name__)
audit = logging.getLogger("storeedge.audit")

#: States in which an alert still asks something of the staff; the others end it.
ACTIVE_STATES = frozenset({AlertState.OPEN, AlertState.CLAIMED, AlertState.ESCALATED})

_PAGE = Path(__file__).with_name("static") / "handheld.html"
_RECONNECT_MS = 2000  # how soon a browser reconnects after the stream drops


# Live alert fan-out


class Resync:
    """Marker a subscriber receives in place of transitions it fell too far behind to get."""

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = Resync()


class _Closed:
    pass


_CLOSED = _Closed()


class Subscription:
    """Async iterator over one subscriber's alert transitions (or ``RESYNC``), in publish
    order, ending when the feed closes."""

    def __init__(self, queue: asyncio.Queue[Alert | Resync | _Closed]) -> None:
        self._queue = queue

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Alert | Resync:
        item = await self._queue.get()
        if isinstance(item, _Closed):
            self._queue.put_nowait(item)  # a later read ends too instead of waiting forever
            raise StopAsyncIteration
        return item


class AlertFeed:
    """Fans alert transitions out to live subscribers (the handhelds' streams).

    ``publish`` never blocks and never grows memory: each subscriber has a bounded queue, and one
    that falls behind has its backlog replaced by a single ``RESYNC``, on which it re-reads the
    current alerts. Use it from the event loop that serves the app.
    """

    def __init__(self, max_pending: int = 256) -> None:
        if max_pending < 2:
            raise UsageError("max_pending must leave room for RESYNC and one transition")
        self._max_pending = max_pending
        self._queues: set[asyncio.Queue[Alert | Resync | _Closed]] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._queues)

    def publish(self, alert: Alert) -> None:
        """Hand one transition to every subscriber, without waiting for any."""
        for queue in self._queues:
            try:
                queue.put_nowait(alert)
            except asyncio.QueueFull:
                _empty(queue)
                queue.put_nowait(RESYNC)
                log.warning("store %s: an alert subscriber fell %d transitions behind; "
                            "it will re-read the snapshot", alert.store_id, self._max_pending)

    def close(self) -> None:
        """End every subscription, open or future. Call it when the agent stops, before the
        HTTP server: an open stream would otherwise hold the server's graceful shutdown."""
        self._closed = True
        for queue in self._queues:
            _empty(queue)
            queue.put_nowait(_CLOSED)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Receive transitions published from now on, until the block exits or the feed closes."""
        queue: asyncio.Queue[Alert | Resync | _Closed] = asyncio.Queue(self._max_pending)
        if self._closed:
            queue.put_nowait(_CLOSED)
        self._queues.add(queue)
        try:
            yield Subscription(queue)
        finally:
            self._queues.discard(queue)


def _empty(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        queue.get_nowait()


# Schemas


class PosLineCreate(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[int, Field(strict=True, ge=1)]
    unit_price: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class PosTransactionCreate(BaseModel):
    """A completed POS transaction as the register sends it; ``ts`` is epoch milliseconds."""

    txn_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: Annotated[int, Field(strict=True, ge=0)]
    lines: Annotated[list[PosLineCreate], Field(min_length=1, max_length=500)]


class PosAccepted(BaseModel):
    txn_id: str
    accepted: bool
    duplicate: bool


def _to_event(body: PosTransactionCreate, store_id: str) -> PosTransaction:
    return PosTransaction(
        store_id=store_id, source="pos", received_ts=time.time(), device_ts=body.ts / 1000,
        txn_id=body.txn_id,
        lines=tuple(PosLine(sku=x.sku, qty=x.qty, unit_price=x.unit_price) for x in body.lines),
    )


# Dependencies


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the name and role of its token (``anonymous`` when none are set)."""

    name: str
    role: str | None


ANONYMOUS = Caller("anonymous", None)


class _Tokens:
    def __init__(self, http: HttpSection) -> None:
        self._entries: list[tuple[Caller, bytes]] = []
        for i, entry in enumerate(http.tokens):
            secret = os.environ.get(entry.token_env, "")
            if not secret:
                raise ConfigError("<environment>", f"http.tokens.{i}.token_env",
                                  f"environment variable {entry.token_env} is unset or empty")
            self._entries.append((Caller(entry.name, entry.role), secret.encode()))

    @property
    def open(self) -> bool:
        return not self._entries

    def caller(self, presented: str) -> Caller | None:
        found = None
        given = presented.encode()
        for caller, secret in self._entries:  # no early exit: the time spent tells nothing
            if hmac.compare_digest(secret, given):
                found = caller
        return found


@dataclass(frozen=True, slots=True)
class _Context:
    api: AgentApi
    feed: AlertFeed
    tokens: _Tokens
    registry: CollectorRegistry
    page: str


def _context(request: Request) -> _Context:
    ctx: _Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[_Context, Depends(_context)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def _require(*roles: str, query_token: bool = False) -> Callable[..., Caller]:
    def caller(request: Request, ctx: ContextDep, credentials: BearerDep) -> Caller:
        if ctx.tokens.open:
            return ANONYMOUS
        presented = credentials.credentials if credentials else None
        if presented is None and query_token:
            presented = request.query_params.get("token")
        found = ctx.tokens.caller(presented) if presented else None
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        if found.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"token {found.name!r} (role {found.role}) may not do this")
        return found

    return caller


_STAFF = ("staff", "manager", "hq")
PosCaller = Annotated[Caller, Depends(_require("pos"))]
StaffCaller = Annotated[Caller, Depends(_require(*_STAFF))]
StreamCaller = Annotated[Caller, Depends(_require(*_STAFF, query_token=True))]


# Routes

pos_router = APIRouter(prefix="/api/pos", tags=["pos"])
alerts_router = APIRouter(prefix="/api/alerts", tags=["alerts"])
lanes_router = APIRouter(prefix="/api/lanes", tags=["lanes"])
ops_router = APIRouter(tags=["ops"])


@pos_router.post(
    "/transactions", status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PosAccepted, "description": "Already accepted; nothing changed"}},
)
async def accept_transaction(
    body: PosTransactionCreate, response: Response, ctx: ContextDep, caller: PosCaller,
) -> PosAccepted:
    """Accept a completed transaction once: 201 when new, 200 with ``duplicate`` on a replay."""
    try:
        new = ctx.api.accept_pos(_to_event(body, ctx.api.store_id))
    except PayloadError as exc:
        log.warning("store %s: POS transaction %s from %s rejected: %s",
                    ctx.api.store_id, body.txn_id, caller.name, exc)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    audit.info("store %s: POS transaction %s accepted from token %s (%d lines%s)",
               ctx.api.store_id, body.txn_id, caller.name, len(body.lines),
               "" if new else ", duplicate")
    if not new:
        response.status_code = status.HTTP_200_OK
    return PosAccepted(txn_id=body.txn_id, accepted=True, duplicate=not new)


@alerts_router.get("")
async def list_alerts(
    ctx: ContextDep, _: StaffCaller, state: AlertState | None = None,
) -> list[dict[str, Any]]:
    """The latest transition of each alert, newest first, optionally of one state."""
    return [alert.to_dict() for alert in ctx.api.alerts(state)]


@alerts_router.get("/stream", response_class=EventSourceResponse)
async def stream_alerts(ctx: ContextDep, _: StreamCaller) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``snapshot`` (the active alerts) first and again whenever this client
    fell behind, then one ``alert`` per transition; FastAPI adds a keep-alive comment after
    15 s of silence."""
    async with ctx.feed.subscribe() as transitions:
        # Subscribed before the snapshot is read, so no transition can fall between the two.
        yield _snapshot(ctx.api)
        async for item in transitions:
            if isinstance(item, Resync):
                yield _snapshot(ctx.api)
            else:
                yield ServerSentEvent(event="alert", data=item.to_dict())


def _snapshot(api: AgentApi) -> ServerSentEvent:
    alerts = [alert.to_dict() for alert in api.alerts() if alert.state in ACTIVE_STATES]
    # ``now`` lets the page count alert ages on the agent's clock, not the handheld's.
    data = {"store_id": api.store_id, "now": time.time(), "alerts": alerts}
    return ServerSentEvent(event="snapshot", data=data, retry=_RECONNECT_MS)


@lanes_router.get("")
async def list_lanes(ctx: ContextDep, _: StaffCaller) -> list[dict[str, Any]]:
    """Per lane: id, sku, units, grams, stable, capacity, low_stock."""
    return ctx.api.lanes()


@ops_router.get("/healthz")
async def liveness() -> dict[str, str]:
    """200 while the process serves HTTP."""
    return {"status": "ok"}


@ops_router.get("/readyz")
async def readiness(ctx: ContextDep) -> JSONResponse:
    """The agent's health; 503 unless its status is ``ok``."""
    health = ctx.api.health()
    ok = health.get("status") == "ok"
    code = status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(jsonable_encoder(health), code)


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(ctx: ContextDep) -> Response:
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/", include_in_schema=False)
async def handheld_page(ctx: ContextDep) -> HTMLResponse:
    return HTMLResponse(ctx.page, headers={"Cache-Control": "no-cache"})


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422, except that inputs JSON cannot carry are echoed as text: Python's
    parser accepts ``NaN`` and ``Infinity``, and echoing them as numbers would be a 500."""
    detail = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def create_app(
    api: AgentApi, feed: AlertFeed, http: HttpSection, registry: CollectorRegistry,
) -> FastAPI:
    """Build the web app over a running agent.

    Raises ``ConfigError`` when a configured token's environment variable is unset or empty.
    """
    page = _PAGE.read_text(encoding="utf-8").replace("__STORE_ID__", html.escape(api.store_id))
    app = FastAPI(title=f"storeedge agent {api.store_id}")
    app.state.ctx = _Context(api, feed, _Tokens(http), registry, page)
    app.exception_handler(RequestValidationError)(_invalid_request)
    if not http.tokens:
        log.warning("store %s: no HTTP tokens configured; the API is open to anyone who can "
                    "reach %s:%d", api.store_id, http.host, http.port)
    for router in (pos_router, alerts_router, lanes_router, ops_router):
        app.include_router(router)
    return app
