"""What every route depends on: the app's context and who is calling (a token's role and
zones), as reusable ``Annotated`` aliases; and the lifecycle errors as statuses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from edge_agent.api import AgentApi
from edge_agent.config import HttpSection
from edge_agent.web.feed import AlertFeed
from edge_agent.web_security import Guard
from rules.trackers.alerts import (
    ALL_ZONES,
    Actor,
    AlertError,
    AlertNotFound,
    IllegalTransition,
    NotPermitted,
)
from storeedge.audit import AuditLog
from storeedge.errors import PayloadError
from storeedge.httpsec import Problem

audit = logging.getLogger("storeedge.audit")


#: Who sent a request: the name, role and zones of its token.
Caller = Actor

#: Every caller when no tokens are configured (development): it may do anything staff may.
ANONYMOUS = Caller("anonymous", "manager", frozenset({ALL_ZONES}))


@dataclass(frozen=True, slots=True)
class AppContext:
    api: AgentApi
    feed: AlertFeed
    guard: Guard
    http: HttpSection
    audit: AuditLog
    registry: CollectorRegistry
    pages: dict[str, tuple[str, str]]  # name -> (html, its Content-Security-Policy)


def app_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(app_context)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def identify(request: Request, ctx: AppContext, credentials: HTTPAuthorizationCredentials | None,
              roles: tuple[str, ...]) -> Caller:
    if ctx.guard.open:
        request.state.caller = ANONYMOUS
        return ANONYMOUS  # development: anyone may do anything
    found = ctx.guard.authenticate(request, credentials.credentials if credentials else None)
    request.state.caller = found  # for the audit record
    if found.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {found.role} may not do this")
    return found


def require(*roles: str) -> Callable[..., Caller]:
    def caller(request: Request, ctx: ContextDep, credentials: BearerDep) -> Caller:
        return identify(request, ctx, credentials, roles)

    return caller


def require_unless(switch: str, *roles: str) -> Callable[..., Caller | None]:
    """Like ``require``, except that anyone passes while ``http.{switch}`` is on."""
    def caller(request: Request, ctx: ContextDep, credentials: BearerDep) -> Caller | None:
        if getattr(ctx.http, switch):
            return None
        return identify(request, ctx, credentials, roles)

    return caller


STAFF = ("staff", "manager", "hq")
PosCaller = Annotated[Caller, Depends(require("pos"))]
OrderTaker = Annotated[Caller, Depends(require("pos", "manager"))]  # the online shop's token
StaffCaller = Annotated[Caller, Depends(require(*STAFF))]
ActingCaller = Annotated[Caller, Depends(require("staff", "manager"))]
ManagerCaller = Annotated[Caller, Depends(require("manager", "hq"))]
DocsReader = Annotated[Caller | None, Depends(require_unless("public_docs", "manager", "hq"))]
MetricsReader = Annotated[Caller | None,
                          Depends(require_unless("public_metrics", "manager", "hq"))]


# Routes


LIFECYCLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such alert"},
    409: {"model": Problem, "description": "Not from the alert's current state"},
}


@contextmanager
def lifecycle_errors(ctx: AppContext, caller: Caller, action: str | None) -> Iterator[None]:
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
