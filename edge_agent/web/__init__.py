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

import html
import logging
import os

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry

from edge_agent.api import AgentApi
from edge_agent.config import HttpSection
from edge_agent.web.admin import audit_router, outbox_router
from edge_agent.web.alerts import alerts_router
from edge_agent.web.deps import AppContext
from edge_agent.web.feed import RESYNC, AlertFeed
from edge_agent.web.ops import STATIC_DIR, ops_router
from edge_agent.web.people import devices_router, lanes_router, session_router, staff_router
from edge_agent.web.pos import pos_router
from edge_agent.web.problems import problems_router
from edge_agent.web.store_work import counts_router, orders_router, pickups_router
from edge_agent.web.trends import trends_router
from edge_agent.web_security import BODY_LIMITS, DEFAULT_BODY_LIMIT, Guard, load_tokens
from storeedge.audit import AuditLog
from storeedge.httpsec import (
    ERROR_RESPONSES,
    SecurityMiddleware,
    invalid_request,
    json_errors,
    page_csp,
)

__all__ = ["RESYNC", "AlertFeed", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    api: AgentApi, feed: AlertFeed, http: HttpSection, registry: CollectorRegistry,
    audit_log: AuditLog | None = None, environ: dict[str, str] | None = None,
) -> FastAPI:
    """Build the web app over a running agent; ``audit_log`` defaults to one in memory.

    Raises ``ConfigError`` when a configured token's environment variable is unset or empty, or
    its token too weak.
    """
    store = html.escape(api.store_id)
    words = (STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    pages = {}
    for name in ("handheld", "manager"):
        page = ((STATIC_DIR / f"{name}.html").read_text(encoding="utf-8")
                .replace("__STORE_ID__", store).replace("__LANG__", http.language)
                .replace("/*__I18N__*/", words))
        pages[name] = (page, page_csp(page) + "; manifest-src 'self'; worker-src 'self'")
    guard = Guard(http, api.store_id, load_tokens(http, dict(os.environ if environ is None
                                                             else environ)),
                  people=api.staff_person, session_key=api.session_key())
    audit_log = audit_log or AuditLog(None)
    app = FastAPI(title=f"storeedge agent {api.store_id}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.ctx = AppContext(api, feed, guard, http, audit_log, registry, pages)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.add_middleware(SecurityMiddleware, audit=audit_log, tls=http.tls, body_limits=BODY_LIMITS,
                       default_body_limit=DEFAULT_BODY_LIMIT)
    if not http.tokens:
        log.warning("store %s: no HTTP tokens configured; the API is open to anyone who can "
                    "reach %s:%d", api.store_id, http.host, http.port)
    for router in (pos_router, alerts_router, lanes_router, devices_router, session_router,
                   audit_router, outbox_router, counts_router, orders_router,
                   pickups_router, problems_router, trends_router, staff_router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(ops_router)
    app.openapi_schema = json_errors(app.openapi())
    return app
