"""Managers' operations: the ERP outbox's dead letter, the audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from edge_agent.web.deps import ContextDep, ManagerCaller
from storeedge.audit import AuditRecord
from storeedge.errors import UsageError
from storeedge.httpsec import Problem

audit = logging.getLogger("storeedge.audit")


outbox_router = APIRouter(prefix="/api/outbox", tags=["outbox"], responses={
    404: {"model": Problem, "description": "No such command"},
    409: {"model": Problem, "description": "Only a dead command can be retried or dropped"},
})


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
