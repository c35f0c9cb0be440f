"""The agent's web app: POS intake, alert and lane reads, the live alert stream the store's
handhelds show, the alert lifecycle (sign-in, claim, resolve, scan to confirm, the manager's
summary), the handheld and manager pages, health probes and Prometheus metrics.

Each route translates HTTP to one ``AgentApi`` call and back, on the event loop that runs the
agent. Callers present a bearer token listed in ``http.tokens`` or the session cookie that signing
in sets (the pages use the cookie: a browser's EventSource cannot send headers); never a token in
a URL. A token's role says what it may do and its zones which alerts a staff member sees and acts
on. With no tokens configured everything is open (development) and every caller is an anonymous
manager. Sign-in limits, body limits, security headers and the audit log are
``edge_agent.web_security``'s.

Lifecycle errors map to statuses: ``AlertNotFound`` 404, ``NotPermitted`` 403,
``IllegalTransition`` 409, ``PayloadError`` 422. A POS sale the agent cannot take now (the ERP
outbox at its bound) is a 503 with the reason and ``Retry-After``. Managers operate the ERP
outbox's dead letter under ``/api/outbox`` (list, show, retry, drop).
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field, field_validator
from swagger_ui_bundle import swagger_ui_path

from edge_agent.api import AgentApi
from edge_agent.config import HttpSection
from edge_agent.web_security import (
    ERROR_RESPONSES,
    SESSION_COOKIE,
    AuditLog,
    AuditRecord,
    Guard,
    Problem,
    SecurityMiddleware,
    invalid_request,
    json_errors,
    load_tokens,
    page_csp,
)
from rules.trackers.alerts import (
    ALL_ZONES,
    OUTCOMES,
    Actor,
    AlertError,
    AlertNotFound,
    IllegalTransition,
    NotPermitted,
    Outcome,
    outcomes_for,
)
from storeedge.errors import (
    ConflictError,
    JournalUnavailable,
    PayloadError,
    Unavailable,
    UsageError,
)
from storeedge.events import Alert, AlertState, PosLine, PosTransaction

log = logging.getLogger(__name__)
audit = logging.getLogger("storeedge.audit")

#: States in which an alert still asks something of the staff; the others end it.
ACTIVE_STATES = frozenset({AlertState.OPEN, AlertState.CLAIMED, AlertState.ESCALATED})

_STATIC = Path(__file__).with_name("static")
# Files the pages load besides themselves, by the name they are asked for: the app's icons, and
# Swagger UI's script and style for /docs from the swagger-ui-bundle package (no CDN: stores in
# mainland China cannot reach the public ones).
_ICON_SIZES = {"icon-192.png": 192, "icon-512.png": 512}
_ICONS = {name: _STATIC / name for name in _ICON_SIZES}
_DOCS_ASSETS = {name: Path(str(swagger_ui_path)) / name
                for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")}
_RECONNECT_MS = 2000  # how soon a browser reconnects after the stream drops


# Live alert fan-out


class Resync:
    """Marker a subscriber receives in place of transitions it fell too far behind to get."""

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = Resync()


@dataclass(eq=False)
class _Subscriber:
    """One live stream's backlog: the transitions it has not read yet, in publish order."""

    pending: deque[Alert] = field(default_factory=deque)
    resync: bool = False
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Subscription:
    """Async iterator over one subscriber's alert transitions, in publish order: each step
    gives every transition published since the last one (a list, at least one), or ``RESYNC``;
    it ends when the feed closes."""

    def __init__(self, subscriber: _Subscriber) -> None:
        self._sub = subscriber

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Alert] | Resync:
        sub = self._sub
        while True:
            if sub.closed:
                raise StopAsyncIteration
            if sub.resync:
                sub.resync = False
                return RESYNC
            if sub.pending:
                batch = list(sub.pending)
                sub.pending.clear()
                return batch
            sub.wake.clear()
            await sub.wake.wait()


class AlertFeed:
    """Fans alert transitions out to live subscribers (the handhelds' streams).

    The agent publishes each loop turn's transitions at once, and a subscriber reads all that
    arrived since its last read as one batch, so an alert storm costs one stream event per
    turn, not one per transition. ``publish`` never blocks and never grows memory: a
    subscriber holds at most ``max_pending`` unread transitions, and one that falls further
    behind has its backlog replaced by a single ``RESYNC``, on which it re-reads the current
    alerts. Use it from the event loop that serves the app.
    """

    def __init__(self, max_pending: int = 65_536) -> None:
        if max_pending < 1:
            raise UsageError("max_pending must leave room for one transition")
        self._max_pending = max_pending
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def publish(self, alerts: Sequence[Alert]) -> None:
        """Hand one turn's transitions to every subscriber, without waiting for any."""
        if not alerts:
            return
        for sub in self._subscribers:
            if len(sub.pending) + len(alerts) > self._max_pending:
                sub.pending.clear()
                if not sub.resync:
                    sub.resync = True
                    log.warning("store %s: an alert subscriber fell %d transitions behind; "
                                "it will re-read the snapshot", alerts[0].store_id,
                                self._max_pending)
            else:
                sub.pending.extend(alerts)
            sub.wake.set()

    def close(self) -> None:
        """End every subscription, open or future. Call it when the agent stops, before the
        HTTP server: an open stream would otherwise hold the server's graceful shutdown."""
        self._closed = True
        for sub in self._subscribers:
            sub.pending.clear()
            sub.closed = True
            sub.wake.set()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Receive transitions published from now on, until the block exits or the feed closes."""
        sub = _Subscriber(closed=self._closed)
        self._subscribers.add(sub)
        try:
            yield Subscription(sub)
        finally:
            self._subscribers.discard(sub)


# Schemas


# Bounds no real sale reaches: a line beyond them is a till's bug or an attack, and once booked
# it would be sent to the ERP (which stored qty 10**20 as a done shipment) and to HQ.
MAX_QTY = 100_000
MAX_UNIT_PRICE = 10_000_000.0
TS_MIN_MS = 946_684_800_000  # 2000-01-01
TS_MAX_AHEAD_MS = 86_400_000  # a till's clock a day ahead of ours is wrong, not early


class PosLineCreate(BaseModel):
    """One line: units sold, or returned as a negative quantity."""

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[int, Field(strict=True, ge=-MAX_QTY, le=MAX_QTY)]
    unit_price: Annotated[float, Field(ge=0, le=MAX_UNIT_PRICE, allow_inf_nan=False)]

    @field_validator("qty")
    @classmethod
    def _not_zero(cls, qty: int) -> int:
        if qty == 0:
            raise ValueError("must not be 0 (a return is a negative quantity)")
        return qty


class PosTransactionCreate(BaseModel):
    """A completed POS transaction as the register sends it; ``ts`` is epoch milliseconds,
    from 2000 to a day ahead of the agent's clock."""

    txn_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: Annotated[int, Field(strict=True, ge=TS_MIN_MS)]
    lines: Annotated[list[PosLineCreate], Field(min_length=1, max_length=500)]

    @field_validator("ts")
    @classmethod
    def _not_in_the_future(cls, ts: int) -> int:
        if ts > time.time() * 1000 + TS_MAX_AHEAD_MS:
            raise ValueError("more than a day ahead of the store's clock")
        return ts


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


@dataclass(frozen=True, slots=True)
class _Context:
    api: AgentApi
    feed: AlertFeed
    guard: Guard
    http: HttpSection
    audit: AuditLog
    registry: CollectorRegistry
    pages: dict[str, tuple[str, str]]  # name -> (html, its Content-Security-Policy)


def _context(request: Request) -> _Context:
    ctx: _Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[_Context, Depends(_context)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def _identify(request: Request, ctx: _Context, credentials: HTTPAuthorizationCredentials | None,
              roles: tuple[str, ...]) -> Caller:
    if ctx.guard.open:
        request.state.caller = ANONYMOUS
        return ANONYMOUS  # development: anyone may do anything
    found = ctx.guard.authenticate(request, credentials.credentials if credentials else None)
    request.state.caller = found  # for the audit record
    if found.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {found.role} may not do this")
    return found


def _require(*roles: str) -> Callable[..., Caller]:
    def caller(request: Request, ctx: ContextDep, credentials: BearerDep) -> Caller:
        return _identify(request, ctx, credentials, roles)

    return caller


def _require_unless(switch: str, *roles: str) -> Callable[..., Caller | None]:
    """Like ``_require``, except that anyone passes while ``http.{switch}`` is on."""
    def caller(request: Request, ctx: ContextDep, credentials: BearerDep) -> Caller | None:
        if getattr(ctx.http, switch):
            return None
        return _identify(request, ctx, credentials, roles)

    return caller


_STAFF = ("staff", "manager", "hq")
PosCaller = Annotated[Caller, Depends(_require("pos"))]
OrderTaker = Annotated[Caller, Depends(_require("pos", "manager"))]  # the online shop's token
StaffCaller = Annotated[Caller, Depends(_require(*_STAFF))]
ActingCaller = Annotated[Caller, Depends(_require("staff", "manager"))]
ManagerCaller = Annotated[Caller, Depends(_require("manager", "hq"))]
DocsReader = Annotated[Caller | None, Depends(_require_unless("public_docs", "manager", "hq"))]
MetricsReader = Annotated[Caller | None,
                          Depends(_require_unless("public_metrics", "manager", "hq"))]


# Routes

pos_router = APIRouter(prefix="/api/pos", tags=["pos"])
_LIFECYCLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such alert"},
    409: {"model": Problem, "description": "Not from the alert's current state"},
}
alerts_router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=_LIFECYCLE_RESPONSES)
lanes_router = APIRouter(prefix="/api/lanes", tags=["lanes"])
devices_router = APIRouter(prefix="/api/devices", tags=["devices"])
session_router = APIRouter(prefix="/api", tags=["people"], responses=_LIFECYCLE_RESPONSES)
ops_router = APIRouter(tags=["ops"])
counts_router = APIRouter(prefix="/api/counts", tags=["counts"], responses={
    404: {"model": Problem, "description": "No such proposal"},
    409: {"model": Problem, "description": "Decided already, or no ERP to count against"},
    503: {"model": Problem, "description": "The ERP cannot be asked now"},
})
orders_router = APIRouter(prefix="/api/orders", tags=["orders"], responses={
    404: {"model": Problem, "description": "No such order"},
    409: {"model": Problem, "description": "Not in the state this needs, or no ERP"},
    503: {"model": Problem, "description": "The ERP cannot be asked now"},
})
pickups_router = APIRouter(prefix="/api/pickups", tags=["pickups"], responses={
    404: {"model": Problem, "description": "No such order"},
    409: {"model": Problem, "description": "Not in the state this needs, or came before "
          "with other lines"},
    503: {"model": Problem, "description": "Not accepted now; retry after Retry-After"},
})
outbox_router = APIRouter(prefix="/api/outbox", tags=["outbox"], responses={
    404: {"model": Problem, "description": "No such command"},
    409: {"model": Problem, "description": "Only a dead command can be retried or dropped"},
})


@pos_router.post(
    "/transactions", status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": PosAccepted, "description": "Already accepted; nothing changed"},
        409: {"model": Problem, "description": "This txn_id was accepted with other content"},
        503: {"model": Problem, "description": "Not accepted now (the journal cannot write, "
              "or the ERP backlog is at its bound); retry after Retry-After"},
    },
)
async def accept_transaction(
    body: PosTransactionCreate, response: Response, ctx: ContextDep, caller: PosCaller,
) -> PosAccepted:
    """Accept a completed transaction once: 201 when new, 200 with ``duplicate`` on a replay,
    409 when its ``txn_id`` came before with other content, 503 while the journal cannot
    write (nothing was accepted)."""
    try:
        new = ctx.api.accept_pos(_to_event(body, ctx.api.store_id))
    except PayloadError as exc:
        log.warning("store %s: POS transaction %s from %s rejected: %s",
                    ctx.api.store_id, body.txn_id, caller.name, exc)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except ConflictError as exc:
        log.warning("store %s: POS transaction %s from %s refused: %s",
                    ctx.api.store_id, body.txn_id, caller.name, exc)
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except JournalUnavailable as exc:  # not acknowledged: the till keeps it and retries
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"not accepted: the store's journal cannot write now ({exc}); "
                            "retry later", headers={"Retry-After": "5"}) from exc
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
async def stream_alerts(ctx: ContextDep, caller: StaffCaller) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events of the alerts the caller may see: ``snapshot`` (the active alerts)
    first and again whenever this client fell behind, then ``alerts``: a list of the
    transitions since the last event, in order; FastAPI adds a keep-alive comment after 15 s
    of silence."""
    async with ctx.feed.subscribe() as transitions:
        # Subscribed before the snapshot is read, so no transition can fall between the two.
        yield _snapshot(ctx.api, caller)
        async for item in transitions:
            if isinstance(item, Resync):
                yield _snapshot(ctx.api, caller)
                continue
            visible = [alert.to_dict() for alert in item if caller.can_see(alert)]
            if visible:
                yield ServerSentEvent(event="alerts", data=visible)


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
    # Whose token it is; when given, failed tries also count against this account.
    name: Annotated[str, Field(max_length=64)] | None = None


class Who(BaseModel):
    name: str
    role: str | None
    zones: list[str]
    store_id: str


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


def _who(ctx: _Context, caller: Caller) -> Who:
    return Who(name=caller.name, role=caller.role, zones=sorted(caller.zones),
               store_id=ctx.api.store_id)


@session_router.post("/session")
async def sign_in(ctx: ContextDep, body: SignIn, request: Request, response: Response) -> Who:
    """Sign a person in with their token: who it belongs to (name, role, zones), and a session
    cookie (HttpOnly, SameSite=Strict, Secure over TLS) the pages use from then on. The same 401
    for every token that signs nobody in (unknown, a till's, another account's); 429 with
    Retry-After after too many failures from this client or for this account."""
    guard = ctx.guard
    request.state.account = body.name
    guard.refuse_if_limited(request, body.name)
    caller = ANONYMOUS if guard.open else guard.by_token(body.token)
    if caller is None or caller.role not in _STAFF or body.name not in (None, caller.name):
        raise guard.refuse(request, body.name)
    guard.signed_in(request, body.name)
    request.state.caller = caller
    session_id, lifetime = guard.start_session(caller)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=lifetime, path="/", httponly=True,
                        secure=ctx.http.tls, samesite="strict")
    audit.info("store %s: %s (%s) signed in", ctx.api.store_id, caller.name, caller.role)
    return _who(ctx, caller)


@session_router.get("/session")
async def whoami(ctx: ContextDep, caller: StaffCaller) -> Who:
    """Who the session cookie (or bearer token) belongs to; 401 when nobody is signed in."""
    return _who(ctx, caller)


@session_router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(ctx: ContextDep, request: Request, response: Response) -> None:
    """End this browser's session (idempotent)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    caller = ctx.guard.by_session(session_id)
    if caller is not None:
        request.state.caller = caller
    ctx.guard.end_session(session_id)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=ctx.http.tls,
                           samesite="strict")


@session_router.post("/scan")
async def scan(ctx: ContextDep, caller: ActingCaller, body: ScanIn) -> dict[str, Any]:
    """Confirm the product at a lane: which of the caller's active tasks the scanned code
    matches (``matched``, ``alert``, ``lane``, ``sku``, ``bring``); a matched task is claimed."""
    with _lifecycle_errors(ctx, caller, f"scan of {body.code!r}"):
        return ctx.api.confirm_scan(body.code, caller)


class Labels(BaseModel):
    """What the pages call things, beside the words of their own language."""

    store_id: str
    store: str  # the store's name; empty when the config gives none
    zones: dict[str, str]  # zone id -> name
    products: dict[str, str]  # SKU -> catalog name
    outcomes: dict[str, list[Outcome]]  # rule -> the outcomes that may close its alerts
    any_outcome: list[Outcome]  # for a rule not in ``outcomes``


@session_router.get("/labels")
async def labels(ctx: ContextDep, _: StaffCaller) -> Labels:
    """The store's, zones' and products' names, and which outcomes fit each rule's alerts (a
    resolve with another is 422)."""
    names = ctx.api.labels()
    return Labels(store_id=ctx.api.store_id, store=names.get("store") or "",
                  zones=names.get("zones") or {}, products=names.get("products") or {},
                  outcomes={rule: list(outcomes_for(rule)) for rule in OUTCOMES},
                  any_outcome=list(Outcome))


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
async def list_outbox(
    ctx: ContextDep, _: ManagerCaller,
    state: Literal["pending", "delivered", "rejected"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
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


@counts_router.get("")
async def list_counts(
    ctx: ContextDep, _: ManagerCaller,
    state: Literal["proposed", "approved", "dismissed", "superseded"] | None = None,
) -> list[dict[str, Any]]:
    """Count proposals, newest first: where the store's count and the ERP's quantity (less
    the sales it has not booked yet) differ per SKU."""
    with _count_errors():
        return ctx.api.count_proposals(state)


@counts_router.post("/compare")
async def compare_counts(ctx: ContextDep, caller: ManagerCaller) -> list[dict[str, Any]]:
    """Compare now; returns the open proposals (503 when the ERP cannot be asked)."""
    with _count_errors():
        found = await ctx.api.propose_counts()
    audit.info("store %s: counts compared with the ERP by %s (%d open proposals)",
               ctx.api.store_id, caller.name, len(found))
    return found


@counts_router.post("/{proposal_id}/{decision}")
async def decide_count(ctx: ContextDep, caller: ManagerCaller, proposal_id: int,
                       decision: Literal["approve", "dismiss"]) -> dict[str, Any]:
    """Approve (booked in the ERP as one inventory, once) or dismiss an open proposal."""
    with _count_errors():
        found = ctx.api.decide_count(proposal_id, decision == "approve", caller.name)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no count proposal {proposal_id}")
    audit.info("store %s: count proposal %d (%s %+d) %sd by %s", ctx.api.store_id, proposal_id,
               found["sku"], found["difference"], decision, caller.name)
    return found


class OrderLineIn(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[int, Field(strict=True, ge=0, le=MAX_QTY)]


class OrderApproval(BaseModel):
    """The manager's own quantities, if the proposal's are not the ones to order."""

    lines: Annotated[list[OrderLineIn], Field(max_length=500)] | None = None


@orders_router.get("")
async def list_orders(
    ctx: ContextDep, _: ManagerCaller,
    state: Literal["proposed", "approved", "dismissed", "superseded", "received"] | None = None,
) -> list[dict[str, Any]]:
    """Store orders on the distribution centre, newest first."""
    return ctx.api.orders(state)


@orders_router.post("/propose")
async def propose_order(ctx: ContextDep, caller: ManagerCaller) -> dict[str, Any] | None:
    """The order the replenishment policy asks for now (null when nothing needs ordering)."""
    with _count_errors():
        order = await ctx.api.propose_order()
    audit.info("store %s: order proposed for %s: %s", ctx.api.store_id, caller.name,
               order["lines"] if order else "nothing needed")
    return order


@orders_router.get("/{order_id}")
async def get_order(ctx: ContextDep, _: ActingCaller, order_id: int) -> dict[str, Any]:
    """An order with what has arrived of it so far and how that differs."""
    return _order(ctx.api.order(order_id), order_id)


@orders_router.post("/{order_id}/approve")
async def approve_order(ctx: ContextDep, caller: ManagerCaller, order_id: int,
                        body: OrderApproval | None = None) -> dict[str, Any]:
    """Order it from the distribution centre (booked in the ERP once)."""
    lines = None if body is None or body.lines is None else [(x.sku, x.qty) for x in body.lines]
    with _count_errors():
        order = _order(ctx.api.decide_order(order_id, True, caller.name, lines), order_id)
    audit.info("store %s: order %d approved by %s: %s", ctx.api.store_id, order_id,
               caller.name, order["lines"])
    return order


@orders_router.post("/{order_id}/dismiss")
async def dismiss_order(ctx: ContextDep, caller: ManagerCaller, order_id: int) -> dict[str, Any]:
    with _count_errors():
        order = _order(ctx.api.decide_order(order_id, False, caller.name), order_id)
    audit.info("store %s: order %d dismissed by %s", ctx.api.store_id, order_id, caller.name)
    return order


@orders_router.post("/{order_id}/scan")
async def receive_scan(ctx: ContextDep, caller: ActingCaller, order_id: int,
                       body: ScanIn) -> dict[str, Any]:
    """One unit of the delivery scanned (its barcode): the receipt so far, with what is over,
    under or not ordered."""
    with _count_errors():
        return _order(ctx.api.receive(order_id, body.code, caller.name), order_id)


@orders_router.post("/{order_id}/received")
async def receive_done(ctx: ContextDep, caller: ActingCaller, order_id: int) -> dict[str, Any]:
    """The delivery is all scanned: booked in the ERP with what arrived."""
    with _count_errors():
        order = _order(ctx.api.received(order_id, caller.name), order_id)
    audit.info("store %s: order %d received by %s: %s", ctx.api.store_id, order_id,
               caller.name, order["discrepancies"] or "as ordered")
    return order


class PickupLineIn(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[int, Field(strict=True, ge=1, le=MAX_QTY)]
    unit_price: Annotated[float, Field(ge=0, le=MAX_UNIT_PRICE, allow_inf_nan=False)]


class PickupCreate(BaseModel):
    """An online order to pick in the store and hand to the customer (idempotent on
    ``order_id``)."""

    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    lines: Annotated[list[PickupLineIn], Field(min_length=1, max_length=200)]
    customer: Annotated[str, Field(max_length=120)] | None = None


@pickups_router.post("", status_code=status.HTTP_201_CREATED,
                     responses={200: {"description": "Already here; nothing changed"}})
async def new_pickup(body: PickupCreate, response: Response, ctx: ContextDep,
                     caller: OrderTaker) -> dict[str, Any]:
    """The online shop (or the ERP) hands the store an order: a pick task on the handhelds.
    201 when new, 200 on a replay, 409 when the id came with other lines."""
    lines = [PosLine(sku=x.sku, qty=x.qty, unit_price=x.unit_price) for x in body.lines]
    with _count_errors():
        new = ctx.api.new_pickup(body.order_id, lines, body.customer)
    audit.info("store %s: online order %s from %s%s", ctx.api.store_id, body.order_id,
               caller.name, "" if new else " (again)")
    if not new:
        response.status_code = status.HTTP_200_OK
    return {"order_id": body.order_id, "duplicate": not new}


@pickups_router.get("")
async def list_pickups(
    ctx: ContextDep, _: StaffCaller,
    state: Literal["open", "picked", "handed_over", "cancelled"] | None = None,
) -> list[dict[str, Any]]:
    """Online orders to pick, newest first."""
    return ctx.api.pickups(state)


@pickups_router.post("/{order_id}/{step}")
async def pickup_step(ctx: ContextDep, caller: ActingCaller, order_id: str,
                      step: Literal["picked", "handed_over", "cancelled"]) -> dict[str, Any]:
    """``picked`` (the task closes; the units leaving the shelf are no loss), ``handed_over``
    (booked as a sale, once), or ``cancelled`` (a manager; the units stay store stock)."""
    if step == "cancelled" and not caller.is_manager:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only a manager cancels an order")
    act = {"picked": ctx.api.pickup_picked, "handed_over": ctx.api.pickup_handed_over,
           "cancelled": ctx.api.pickup_cancelled}[step]
    with _count_errors():
        order = act(order_id, caller)
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no online order {order_id!r}")
    audit.info("store %s: online order %s %s by %s", ctx.api.store_id, order_id, step,
               caller.name)
    return order


def _order(order: dict[str, Any] | None, order_id: int) -> dict[str, Any]:
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id}")
    return order


@contextmanager
def _count_errors() -> Iterator[None]:
    """Counts and orders: 409 decided already or no ERP, 422 a bad code, 503 ERP down."""
    try:
        yield
    except PayloadError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except (ConflictError, UsageError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except JournalUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"not done: {exc}",
                            headers={"Retry-After": "5"}) from exc
    except Unavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc


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


@ops_router.get("/readyz", responses={
    503: {"description": "Not ready"}, 401: ERROR_RESPONSES[401], 429: ERROR_RESPONSES[429]})
async def readiness(ctx: ContextDep, request: Request, credentials: BearerDep) -> JSONResponse:
    """The agent's status, 503 unless ``ok``; the detail (devices, counters, ERP, broker) only
    for a manager or HQ, or to anyone with ``http.public_health_detail``."""
    health = ctx.api.health()
    ok = health.get("status") == "ok"
    code = status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
    detailed = ctx.http.public_health_detail or ctx.guard.open
    if not detailed and (credentials or request.cookies.get(SESSION_COOKIE)):
        detailed = _identify(request, ctx, credentials, ("pos", *_STAFF)).role in ("manager",
                                                                                   "hq")
    body = health if detailed else {"status": health.get("status")}
    return JSONResponse(jsonable_encoder(body), code)


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(ctx: ContextDep, _: MetricsReader) -> Response:
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/openapi.json", include_in_schema=False)
async def openapi_schema(request: Request, _: DocsReader) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@ops_router.get("/docs", include_in_schema=False)
async def docs_page(request: Request, _: DocsReader) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json", title=request.app.title,
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png")
    # Swagger UI runs an inline script that starts it, and sets inline styles.
    return HTMLResponse(page.body, headers={"Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'")})


@ops_router.get("/docs/assets/{name}", include_in_schema=False)
async def docs_asset(name: str) -> FileResponse:
    return _file(_DOCS_ASSETS, name)


@ops_router.get("/static/{name}", include_in_schema=False)
async def icon(name: str) -> FileResponse:
    return _file(_ICONS, name)


def _file(files: dict[str, Path], name: str) -> FileResponse:
    path = files.get(name)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no file {name!r}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


@ops_router.get("/manifest.webmanifest", include_in_schema=False)
async def manifest(ctx: ContextDep) -> JSONResponse:
    """The web app manifest: the handheld page installs as an app (over HTTPS)."""
    return JSONResponse({
        "name": f"storeedge {ctx.api.store_id}", "short_name": ctx.api.store_id,
        "lang": ctx.http.language, "start_url": "/", "scope": "/", "display": "standalone",
        "background_color": "#eef1f5", "theme_color": "#12324a",
        "icons": [{"src": f"/static/{name}", "sizes": f"{px}x{px}", "type": "image/png",
                   "purpose": "any maskable"} for name, px in _ICON_SIZES.items()],
    }, media_type="application/manifest+json", headers={"Cache-Control": "no-cache"})


@ops_router.get("/sw.js", include_in_schema=False)
async def service_worker() -> FileResponse:
    # The worker's own CSP governs what it fetches: only this agent.
    return FileResponse(_STATIC / "sw.js", media_type="text/javascript", headers={
        "Cache-Control": "no-cache",
        "Content-Security-Policy": "default-src 'none'; connect-src 'self'"})


@ops_router.get("/", include_in_schema=False)
async def handheld_page(ctx: ContextDep) -> HTMLResponse:
    return _page(ctx, "handheld")


@ops_router.get("/manager", include_in_schema=False)
async def manager_page(ctx: ContextDep) -> HTMLResponse:
    return _page(ctx, "manager")


def _page(ctx: _Context, name: str) -> HTMLResponse:
    body, csp = ctx.pages[name]
    return HTMLResponse(body, headers={"Cache-Control": "no-cache",
                                       "Content-Security-Policy": csp})


audit_router = APIRouter(prefix="/api/audit", tags=["audit"])


@audit_router.get("")
async def audit_records(ctx: ContextDep, request: Request, _: ManagerCaller,
                        after: Annotated[int, Query(ge=0)] = 0,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
                        ) -> list[AuditRecord]:
    """The audit log from record ``after`` on, oldest first: who (a token's name), role, when
    (epoch seconds), what (method and path), the HTTP status, and from which address. Nothing
    in the API changes or removes a record."""
    request.state.audited_read = True
    return ctx.audit.records(after, limit)


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


@audit_router.get("/export.csv", response_class=CsvResponse)
async def audit_export(ctx: ContextDep, request: Request, _: ManagerCaller,
                       after: Annotated[int, Query(ge=0)] = 0) -> CsvResponse:
    """The whole audit log (from record ``after`` on) as CSV."""
    request.state.audited_read = True
    return CsvResponse(ctx.audit.csv(after))


def create_app(
    api: AgentApi, feed: AlertFeed, http: HttpSection, registry: CollectorRegistry,
    audit_log: AuditLog | None = None, environ: dict[str, str] | None = None,
) -> FastAPI:
    """Build the web app over a running agent; ``audit_log`` defaults to one in memory.

    Raises ``ConfigError`` when a configured token's environment variable is unset or empty, or
    its token too weak.
    """
    store = html.escape(api.store_id)
    words = (_STATIC / "i18n.js").read_text(encoding="utf-8")
    pages = {}
    for name in ("handheld", "manager"):
        page = ((_STATIC / f"{name}.html").read_text(encoding="utf-8")
                .replace("__STORE_ID__", store).replace("__LANG__", http.language)
                .replace("/*__I18N__*/", words))
        pages[name] = (page, page_csp(page) + "; manifest-src 'self'; worker-src 'self'")
    guard = Guard(http, api.store_id, load_tokens(http, dict(os.environ if environ is None
                                                             else environ)))
    audit_log = audit_log or AuditLog(None)
    app = FastAPI(title=f"storeedge agent {api.store_id}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.ctx = _Context(api, feed, guard, http, audit_log, registry, pages)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.add_middleware(SecurityMiddleware, audit=audit_log, tls=http.tls)
    if not http.tokens:
        log.warning("store %s: no HTTP tokens configured; the API is open to anyone who can "
                    "reach %s:%d", api.store_id, http.host, http.port)
    for router in (pos_router, alerts_router, lanes_router, devices_router, session_router,
                   audit_router, outbox_router, counts_router, orders_router,
                   pickups_router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(ops_router)
    app.openapi_schema = json_errors(app.openapi())
    return app
