"""People: sign-in and out (the session cookie), who am I, scan to confirm, the page's labels,
the manager's summary; and what staff read of the store (lanes, devices)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import segno
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, Field

from edge_agent.web.deps import (
    ANONYMOUS,
    LIFECYCLE_RESPONSES,
    STAFF,
    ActingCaller,
    AppContext,
    Caller,
    ContextDep,
    ManagerCaller,
    StaffCaller,
    lifecycle_errors,
)
from edge_agent.web_security import session_cookie
from rules.trackers.alerts import OUTCOMES, Outcome, outcomes_for
from storeedge.errors import PayloadError
from storeedge.httpsec import Problem

audit = logging.getLogger("storeedge.audit")


class ScanIn(BaseModel):
    """A code as the handheld's scanner typed it (keyboard wedge)."""

    code: Annotated[str, Field(min_length=1, max_length=128)]


class SignIn(BaseModel):
    """A token (``http.tokens``), a name and PIN, or a QR card's code (``edge_agent.staff``)."""

    token: Annotated[str, Field(max_length=256)] = ""
    # Whose token or PIN it is; when given, failed tries also count against this account.
    name: Annotated[str, Field(max_length=64)] | None = None
    pin: Annotated[str, Field(max_length=16)] | None = None
    qr: Annotated[str, Field(max_length=128)] | None = None


class Person(BaseModel):
    role: Literal["staff", "manager"] = "staff"
    zones: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                     Field(min_length=1, max_length=50)] = ["*"]
    pin: Annotated[str, Field(max_length=16)] | None = None  # set or change it; kept if absent


class Who(BaseModel):
    name: str
    role: str | None
    zones: list[str]
    store_id: str


lanes_router = APIRouter(prefix="/api/lanes", tags=["lanes"])
devices_router = APIRouter(prefix="/api/devices", tags=["devices"])
session_router = APIRouter(prefix="/api", tags=["people"], responses=LIFECYCLE_RESPONSES)


def _who(ctx: AppContext, caller: Caller) -> Who:
    return Who(name=caller.name, role=caller.role, zones=sorted(caller.zones),
               store_id=ctx.api.store_id)


@session_router.post("/session")
async def sign_in(ctx: ContextDep, body: SignIn, request: Request, response: Response) -> Who:
    """Sign a person in with their token, name and PIN, or QR card: who it is (name, role,
    zones), and a session
    cookie (HttpOnly, SameSite=Strict, Secure over TLS) the pages use from then on. The same 401
    for every token that signs nobody in (unknown, a till's, another account's); 429 with
    Retry-After after too many failures from this client or for this account."""
    guard = ctx.guard
    request.state.account = body.name
    guard.refuse_if_limited(request, body.name)
    if body.pin is not None:
        caller = ctx.api.sign_in_pin(body.name, body.pin) if body.name else None
    elif body.qr is not None:
        caller = ctx.api.sign_in_qr(body.qr)
    else:
        caller = ANONYMOUS if guard.open else guard.by_token(body.token)
    if caller is None or caller.role not in STAFF or body.name not in (None, caller.name):
        raise guard.refuse(request, body.name)
    guard.signed_in(request, body.name)
    request.state.caller = caller
    session_id, lifetime = guard.start_session(caller)
    response.set_cookie(session_cookie(request), session_id, max_age=lifetime, path="/",
                        httponly=True, secure=ctx.http.tls, samesite="strict")
    audit.info("store %s: %s (%s) signed in", ctx.api.store_id, caller.name, caller.role)
    return _who(ctx, caller)


@session_router.get("/session")
async def whoami(ctx: ContextDep, caller: StaffCaller) -> Who:
    """Who the session cookie (or bearer token) belongs to; 401 when nobody is signed in."""
    return _who(ctx, caller)


@session_router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(ctx: ContextDep, request: Request, response: Response) -> None:
    """End this browser's session (idempotent)."""
    cookie = session_cookie(request)
    session_id = request.cookies.get(cookie)
    caller = ctx.guard.by_session(session_id)
    if caller is not None:
        request.state.caller = caller
    ctx.guard.end_session(session_id)
    response.delete_cookie(cookie, path="/", httponly=True, secure=ctx.http.tls,
                           samesite="strict")


@session_router.post("/scan")
async def scan(ctx: ContextDep, caller: ActingCaller, body: ScanIn) -> dict[str, Any]:
    """Confirm the product at a lane: which of the caller's active tasks the scanned code
    matches (``matched``, ``alert``, ``lane``, ``sku``, ``bring``); a matched task is claimed."""
    with lifecycle_errors(ctx, caller, f"scan of {body.code!r}"):
        return ctx.api.confirm_scan(body.code, caller)


class Labels(BaseModel):
    """What the pages call things, beside the words of their own language."""

    store_id: str
    store: str  # the store's name; empty when the config gives none
    zones: dict[str, str]  # zone id -> name
    products: dict[str, str]  # SKU -> catalog name
    prices: dict[str, float] = {}  # SKU -> shelf price, where the catalog has one
    stop_sell: list[str] = []  # SKUs withdrawn from sale
    outcomes: dict[str, list[Outcome]]  # rule -> the outcomes that may close its alerts
    any_outcome: list[Outcome]  # for a rule not in ``outcomes``


@session_router.get("/labels")
async def labels(ctx: ContextDep, _: StaffCaller) -> Labels:
    """The store's, zones' and products' names (products' prices, and those withdrawn from
    sale), and which outcomes fit each rule's alerts (a resolve with another is 422)."""
    names = ctx.api.labels()
    return Labels(store_id=ctx.api.store_id, store=names.get("store") or "",
                  zones=names.get("zones") or {}, products=names.get("products") or {},
                  prices=names.get("prices") or {}, stop_sell=names.get("stop_sell") or [],
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


staff_router = APIRouter(prefix="/api/staff", tags=["people"], responses={
    404: {"model": Problem, "description": "Nobody active has that name"}})


@staff_router.get("")
async def list_staff(ctx: ContextDep, _: ManagerCaller) -> list[dict[str, Any]]:
    """The store's people (kept in the journal), without secrets: whether each has a PIN and
    a QR card."""
    return ctx.api.staff()


@staff_router.put("/{name}")
async def set_staff(ctx: ContextDep, caller: ManagerCaller,
                    name: Annotated[str, Path(min_length=1, max_length=64)],
                    body: Person) -> dict[str, Any]:
    """Add a person or change their role, zones and PIN (4 to 8 digits, not an easy one);
    no restart."""
    try:
        person = ctx.api.set_staff(name, body.role, body.zones, body.pin)
    except PayloadError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    audit.info("store %s: %s set person %s (%s, zones %s%s)", ctx.api.store_id, caller.name,
               name, body.role, ",".join(body.zones), ", new PIN" if body.pin else "")
    return person


@staff_router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_staff(ctx: ContextDep, caller: ManagerCaller, name: str) -> None:
    """Their PIN and QR card stop working."""
    if not ctx.api.remove_staff(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"nobody active is called {name!r}")
    audit.info("store %s: %s removed person %s", ctx.api.store_id, caller.name, name)


class QrCard(BaseModel):
    name: str
    code: str  # what the card's QR code holds; shown once
    svg: str  # the QR code to print


@staff_router.post("/{name}/qr")
async def new_qr_card(ctx: ContextDep, caller: ManagerCaller, name: str) -> QrCard:
    """A new QR card for a person to sign in with by scanning it (the old card stops working)."""
    code = ctx.api.staff_qr(name)
    if code is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"nobody active is called {name!r}")
    audit.info("store %s: %s made a new QR card for %s", ctx.api.store_id, caller.name, name)
    svg = segno.make_qr(code, error="m").svg_inline(scale=6, title=name)
    return QrCard(name=name, code=code, svg=svg)
