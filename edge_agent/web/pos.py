"""POS intake: a completed transaction, journaled with its ERP share before the 201."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field, field_validator

from edge_agent.web.deps import ContextDep, PosCaller
from storeedge.errors import ConflictError, JournalUnavailable, PayloadError, Unavailable
from storeedge.events import PosLine, PosTransaction
from storeedge.httpsec import Problem

log = logging.getLogger(__name__)
audit = logging.getLogger("storeedge.audit")


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


pos_router = APIRouter(prefix="/api/pos", tags=["pos"])


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
