"""The agent's web app: POS intake, alert and lane reads, the live alert stream the store's
handhelds show, the alert lifecycle (sign-in, claim, resolve, scan to confirm, the manager's
summary), the handheld and manager pages, health probes and Prometheus metrics.

Each route translates HTTP to one ``AgentApi`` call and back, on the event loop that runs the
agent. Callers present a bearer token listed in ``http.tokens``; on the alert stream the token may
also come as ``?token=``, since a browser's EventSource cannot send headers. A token's role says
what it may do and its zones which alerts a staff member sees and acts on. With no tokens
configured everything is open (development) and every caller is an anonymous manager.

Lifecycle errors map to statuses: ``AlertNotFound`` 404, ``NotPermitted`` 403,
``IllegalTransition`` 409, ``PayloadError`` 422. A POS sale the agent cannot take now (the ERP
outbox at its bound) is a 503 with the reason and ``Retry-After``. Managers operate the ERP
outbox's dead letter under ``/api/outbox`` (list, show, retry, drop).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
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

from edge_agent.alerts import (
    ALL_ZONES,
    Actor,
    AlertError,
    AlertNotFound,
    IllegalTransition,
    NotPermitted,
    Outcome,
)
from edge_agent.api import AgentApi
from edge_agent.config import HttpSection
from storeedge.errors import ConfigError, PayloadError, Unavailable, UsageError
from storeedge.events import Alert, AlertState, PosLine, PosTransaction

log = logging.getLogger(__name__)
audit = logging.getLogger("storeedge.audit")

#: States in which an alert still asks something of the staff; the others end it.
ACTIVE_STATES = frozenset({AlertState.OPEN, AlertState.CLAIMED, AlertState.ESCALATED})

_STATIC = Path(__file__).with_name("static")
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

    def __init__(self, max_pending: int = 4096) -> None:
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


#: Who sent a request: the name, role and zones of its token.
Caller = Actor

#: Every caller when no tokens are configured (development): it may do anything staff may.
ANONYMOUS = Caller("anonymous", "manager", frozenset({ALL_ZONES}))


class _Tokens:
    def __init__(self, http: HttpSection) -> None:
        self._entries: list[tuple[Caller, bytes]] = []
        for i, entry in enumerate(http.tokens):
            secret = os.environ.get(entry.token_env, "")
            if not secret:
                raise ConfigError("<environment>", f"http.tokens.{i}.token_env",
                                  f"environment variable {entry.token_env} is unset or empty")
            zones = frozenset(entry.zones)
            self._entries.append((Caller(entry.name, entry.role, zones), secret.encode()))

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
    pages: dict[str, str]


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
ActingCaller = Annotated[Caller, Depends(_require("staff", "manager"))]
ManagerCaller = Annotated[Caller, Depends(_require("manager", "hq"))]


# Routes

pos_router = APIRouter(prefix="/api/pos", tags=["pos"])
alerts_router = APIRouter(prefix="/api/alerts", tags=["alerts"])
lanes_router = APIRouter(prefix="/api/lanes", tags=["lanes"])
devices_router = APIRouter(prefix="/api/devices", tags=["devices"])
session_router = APIRouter(prefix="/api", tags=["people"])
ops_router = APIRouter(tags=["ops"])
outbox_router = APIRouter(prefix="/api/outbox", tags=["outbox"])


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
    except Unavailable as exc:  # e.g. the ERP outbox at its bound: the POS keeps it, retries
        log.error("store %s: POS transaction %s refused: %s", ctx.api.store_id, body.txn_id, exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc),
                            headers={"Retry-After": "60"}) from exc
    audit.info("store %s: POS transaction %s accepted from token %s (%d lines%s)",
               ctx.api.store_id, body.txn_id, caller.name, len(body.lines),
               "" if new else ", duplicate")
    if not new:
        response.status_code = status.HTTP_200_OK
    return PosAccepted(txn_id=body.txn_id, accepted=True, duplicate=not new)


@alerts_router.get("")
async def list_alerts(
    ctx: ContextDep, caller: StaffCaller, state: AlertState | None = None,
) -> list[dict[str, Any]]:
    """The latest transition of each alert the caller may see, newest first, optionally of one
    state."""
    return [alert.to_dict() for alert in ctx.api.alerts(state) if caller.can_see(alert)]


@alerts_router.get("/stream", response_class=EventSourceResponse)
async def stream_alerts(ctx: ContextDep, caller: StreamCaller) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events of the alerts the caller may see: ``snapshot`` (the active alerts)
    first and again whenever this client fell behind, then one ``alert`` per transition;
    FastAPI adds a keep-alive comment after 15 s of silence."""
    async with ctx.feed.subscribe() as transitions:
        # Subscribed before the snapshot is read, so no transition can fall between the two.
        yield _snapshot(ctx.api, caller)
        async for item in transitions:
            if isinstance(item, Resync):
                yield _snapshot(ctx.api, caller)
            elif caller.can_see(item):
                yield ServerSentEvent(event="alert", data=item.to_dict())


def _snapshot(api: AgentApi, caller: Caller) -> ServerSentEvent:
    alerts = [alert.to_dict() for alert in api.alerts()
              if alert.state in ACTIVE_STATES and caller.can_see(alert)]
    # ``now`` lets the page count alert ages on the agent's clock, not the handheld's.
    data = {"store_id": api.store_id, "now": time.time(), "alerts": alerts}
    return ServerSentEvent(event="snapshot", data=data, retry=_RECONNECT_MS)


class Resolution(BaseModel):
    outcome: Outcome
    note: Annotated[str, Field(max_length=500)] | None = None


class ScanIn(BaseModel):
    """A code as the handheld's scanner typed it (keyboard wedge)."""

    code: Annotated[str, Field(min_length=1, max_length=128)]


class SignIn(BaseModel):
    token: Annotated[str, Field(max_length=256)] = ""


@contextmanager
def _lifecycle_errors(ctx: _Context, caller: Caller, action: str | None) -> Iterator[None]:
    """Lifecycle errors as HTTP statuses; a successful ``action`` goes to the audit log."""
    try:
        yield
    except AlertNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except NotPermitted as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except IllegalTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except (AlertError, PayloadError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if action is not None:
        audit.info("store %s: %s by %s (%s)", ctx.api.store_id, action, caller.name, caller.role)


@alerts_router.get("/{alert_id}")
async def get_alert(ctx: ContextDep, caller: StaffCaller, alert_id: str) -> dict[str, Any]:
    """An alert's latest transition and its history, oldest first."""
    with _lifecycle_errors(ctx, caller, None):
        alert = ctx.api.alert(alert_id)
        if not caller.can_see(alert):
            raise NotPermitted(f"alert {alert_id} is routed to another zone")
        history = ctx.api.alert_history(alert_id)
    return {"alert": alert.to_dict(), "history": [a.to_dict() for a in history]}


@alerts_router.post("/{alert_id}/claim")
async def claim_alert(ctx: ContextDep, caller: ActingCaller, alert_id: str) -> dict[str, Any]:
    """Take an alert: 409 when it is resolved, cleared or someone else's; 403 outside one's
    zones. Claiming one's own claim again is a no-op."""
    with _lifecycle_errors(ctx, caller, f"claim of alert {alert_id}"):
        return ctx.api.claim_alert(alert_id, caller).to_dict()


@alerts_router.post("/{alert_id}/resolve")
async def resolve_alert(
    ctx: ContextDep, caller: ActingCaller, alert_id: str, body: Resolution,
) -> dict[str, Any]:
    """Close an alert with an outcome: staff their own claims, managers any active alert."""
    with _lifecycle_errors(ctx, caller, f"resolve of alert {alert_id} as {body.outcome}"):
        return ctx.api.resolve_alert(alert_id, caller, body.outcome, body.note).to_dict()


@session_router.post("/session")
async def sign_in(ctx: ContextDep, body: SignIn) -> dict[str, Any]:
    """Who a token belongs to: name, role, zones. 401 for an unknown token, 403 for one that is
    not for people (a POS till's)."""
    caller = ANONYMOUS if ctx.tokens.open else ctx.tokens.caller(body.token)
    if caller is None:
        log.warning("store %s: sign-in with an unknown token", ctx.api.store_id)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token",
                            headers={"WWW-Authenticate": "Bearer"})
    if caller.role not in _STAFF:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"token {caller.name!r} is not for people")
    audit.info("store %s: %s (%s) signed in", ctx.api.store_id, caller.name, caller.role)
    return {"name": caller.name, "role": caller.role, "zones": sorted(caller.zones),
            "store_id": ctx.api.store_id}


@session_router.post("/scan")
async def scan(ctx: ContextDep, caller: ActingCaller, body: ScanIn) -> dict[str, Any]:
    """Confirm the product at a lane: which of the caller's active tasks the scanned code
    matches (``matched``, ``alert``, ``lane``, ``sku``, ``bring``); a matched task is claimed."""
    with _lifecycle_errors(ctx, caller, f"scan of {body.code!r}"):
        return ctx.api.confirm_scan(body.code, caller)


@session_router.get("/manager/summary")
async def manager_summary(ctx: ContextDep, _: ManagerCaller) -> dict[str, Any]:
    """Open alerts, per rule counts and time to claim and resolve, per person what they did."""
    return ctx.api.alert_summary()


@lanes_router.get("")
async def list_lanes(ctx: ContextDep, _: StaffCaller) -> list[dict[str, Any]]:
    """Per lane: id, sku, units, grams, stable, capacity, low_stock."""
    return ctx.api.lanes()


@devices_router.get("")
async def list_devices(ctx: ContextDep, _: StaffCaller) -> dict[str, dict[str, Any]]:
    """Per device: kind, state (online, degraded, offline) and why, last seen, good and bad
    message counts, recent state changes."""
    return ctx.api.devices()


@outbox_router.get("")
async def list_outbox(ctx: ContextDep, _: ManagerCaller, state: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
    """ERP commands, oldest first; ``state``: pending, delivered or rejected (the dead letter)."""
    return ctx.api.outbox.list(state, limit)


@outbox_router.get("/{key}")
async def show_outbox(ctx: ContextDep, _: ManagerCaller, key: str) -> dict[str, Any]:
    """One ERP command with its payload, attempts and last error."""
    return _found(ctx.api.outbox.show(key), key)


@outbox_router.post("/{key}/retry")
async def retry_outbox(ctx: ContextDep, caller: ManagerCaller, key: str) -> dict[str, Any]:
    """Put a dead command back in the queue: 409 unless it is dead."""
    with _outbox_errors():
        found = _found(ctx.api.outbox.retry(key), key)
    audit.info("store %s: outbox retry of %s by %s", ctx.api.store_id, key, caller.name)
    return found


@outbox_router.delete("/{key}")
async def drop_outbox(ctx: ContextDep, caller: ManagerCaller, key: str) -> dict[str, Any]:
    """Drop a dead command for good: 409 unless it is dead (pending work is never dropped)."""
    with _outbox_errors():
        found = _found(ctx.api.outbox.drop(key), key)
    audit.info("store %s: outbox drop of %s by %s", ctx.api.store_id, key, caller.name)
    return found


def _found(row: dict[str, Any] | None, key: str) -> dict[str, Any]:
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no outbox command {key!r}")
    return row


@contextmanager
def _outbox_errors() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


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
    return HTMLResponse(ctx.pages["handheld"], headers={"Cache-Control": "no-cache"})


@ops_router.get("/manager", include_in_schema=False)
async def manager_page(ctx: ContextDep) -> HTMLResponse:
    return HTMLResponse(ctx.pages["manager"], headers={"Cache-Control": "no-cache"})


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
    store = html.escape(api.store_id)
    pages = {name: (_STATIC / f"{name}.html").read_text(encoding="utf-8")
             .replace("__STORE_ID__", store) for name in ("handheld", "manager")}
    app = FastAPI(title=f"storeedge agent {api.store_id}")
    app.state.ctx = _Context(api, feed, _Tokens(http), registry, pages)
    app.exception_handler(RequestValidationError)(_invalid_request)
    if not http.tokens:
        log.warning("store %s: no HTTP tokens configured; the API is open to anyone who can "
                    "reach %s:%d", api.store_id, http.host, http.port)
    for router in (pos_router, alerts_router, lanes_router, devices_router, session_router,
                   outbox_router, ops_router):
        app.include_router(router)
    return app
