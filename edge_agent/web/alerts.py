"""Alerts: the list, the live stream, one alert with its history, claim and resolve."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from edge_agent.api import AgentApi
from edge_agent.web.deps import (
    LIFECYCLE_RESPONSES,
    ActingCaller,
    Caller,
    ContextDep,
    StaffCaller,
    lifecycle_errors,
)
from edge_agent.web.feed import Resync
from rules.trackers.alerts import ACTIVE_STATES, NotPermitted, Outcome
from storeedge.events import AlertState

_RECONNECT_MS = 2000  # how soon a browser reconnects after the stream drops


alerts_router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=LIFECYCLE_RESPONSES)


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


@alerts_router.get("/{alert_id}")
async def get_alert(ctx: ContextDep, caller: StaffCaller, alert_id: str) -> dict[str, Any]:
    """An alert's latest transition and its history, oldest first."""
    with lifecycle_errors(ctx, caller, None):
        alert = ctx.api.alert(alert_id)
        if not caller.can_see(alert):
            raise NotPermitted(f"alert {alert_id} is routed to another zone")
        history = ctx.api.alert_history(alert_id)
    return {"alert": alert.to_dict(), "history": [a.to_dict() for a in history]}


@alerts_router.post("/{alert_id}/claim")
async def claim_alert(ctx: ContextDep, caller: ActingCaller, alert_id: str) -> dict[str, Any]:
    """Take an alert: 409 when it is resolved, cleared or someone else's; 403 outside one's
    zones. Claiming one's own claim again is a no-op."""
    with lifecycle_errors(ctx, caller, f"claim of alert {alert_id}"):
        return ctx.api.claim_alert(alert_id, caller).to_dict()


@alerts_router.post("/{alert_id}/resolve")
async def resolve_alert(
    ctx: ContextDep, caller: ActingCaller, alert_id: str, body: Resolution,
) -> dict[str, Any]:
    """Close an alert with an outcome: staff their own claims, managers any active alert."""
    with lifecycle_errors(ctx, caller, f"resolve of alert {alert_id} as {body.outcome}"):
        return ctx.api.resolve_alert(alert_id, caller, body.outcome, body.note).to_dict()
