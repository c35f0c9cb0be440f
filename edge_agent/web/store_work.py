"""Store work against the ERP: counts, store orders and their receiving, online orders to
pick (``edge_agent.store_work``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from edge_agent.web.deps import ActingCaller, ContextDep, ManagerCaller, OrderTaker, StaffCaller
from edge_agent.web.people import ScanIn
from edge_agent.web.pos import MAX_QTY, MAX_UNIT_PRICE
from storeedge.errors import (
    ConflictError,
    JournalUnavailable,
    PayloadError,
    Unavailable,
    UsageError,
)
from storeedge.events import PosLine
from storeedge.httpsec import Problem

audit = logging.getLogger("storeedge.audit")


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
    ctx: ContextDep, _: StaffCaller,
    state: Literal["proposed", "approved", "dismissed", "superseded", "received"] | None = None,
) -> list[dict[str, Any]]:
    """Store orders on the distribution centre, newest first (staff see the deliveries they
    receive)."""
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
