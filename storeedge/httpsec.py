"""What every storeedge web app (a store's agent, HQ) does for its safety, whoever its users
are: error bodies that echo nothing large, strong tokens, signed session cookies, limits on failed
sign-ins, request body limits, security headers, the audit of who did what (its log is
``storeedge.audit``), and the API's docs served by the app itself (no CDN).

- ``check_token`` refuses a short or guessable token at start with a config error naming it.
- A session cookie is ``name.expires.nonce.mac`` (``make_session``, ``read_session``): the MAC
  over the realm is keyed by a secret of the holder's, so changing it ends their sessions.
- ``AttemptLimiter`` counts failed sign-ins per key (a client network, an account); past its
  attempts within the window every further try waits, doubling up to 15 minutes (429 with
  ``Retry-After``).
- ``SecurityMiddleware`` (pure ASGI) refuses bodies over the endpoint's limit with 413: before
  reading them where ``Content-Length`` says so, else after reading no more than the limit;
  adds CSP, X-Frame-Options, Referrer-Policy, nosniff (and HSTS over TLS); and writes one
  ``AuditLog`` record per action of a signed-in person and per refused request. The app puts
  the caller (anything with a ``name`` and a ``role``) in ``request.state.caller``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
import sqlite3
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from storeedge.audit import AuditLog
from storeedge.errors import ConfigError

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 20
MIN_TOKEN_BITS = 100.0
MIN_TOKEN_DISTINCT = 10
MAX_BACKOFF_SECONDS = 900.0
UNAUTHORIZED = "not signed in"  # the one 401 body: it confirms nothing about what was presented


class Caller(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str | None: ...


# Errors, as the OpenAPI schema describes them


class Problem(BaseModel):
    """Every 4xx but a schema violation: what went wrong, in words."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """422: either the fields that are wrong, or what the agent refused in the payload."""

    detail: list[FieldProblem] | str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON"},
    401: {"model": Problem, "description": "No valid token or session"},
    403: {"model": Problem, "description": "The caller's role may not do this"},
    413: {"model": Problem, "description": "The body is larger than this endpoint takes"},
    422: {"model": InvalidRequest, "description": "The request names fields that are wrong"},
    429: {"model": Problem, "description": "Too many failed sign-ins; see Retry-After"},
}

_ECHO_MAX = 64  # longest input a 422 repeats back


def json_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare every 4xx body as JSON in an OpenAPI schema, also on routes whose success is
    something else (the alert stream, a CSV export): FastAPI gives an added response the
    route's own media type."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content")
                if code.startswith("4") and content and "application/json" not in content:
                    response["content"] = {"application/json": next(iter(content.values()))}
    return schema


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each wrong field, repeating an input only when it is a short scalar (a 10 MB
    body must not come back as a 10 MB error)."""
    problems = []
    for error in exc.errors()[:20]:
        problem: dict[str, Any] = {"loc": [p if isinstance(p, int) else str(p)[:_ECHO_MAX]
                                           for p in error.get("loc", ())],
                                   "msg": str(error.get("msg", ""))[:200],
                                   "type": str(error.get("type", ""))}
        value = error.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            problem["input"] = str(value)  # JSON cannot carry NaN or Infinity as numbers
        elif isinstance(value, bool | int | float) or (
                isinstance(value, str) and len(value) <= _ECHO_MAX):
            problem["input"] = value
        problems.append(problem)
    return JSONResponse({"detail": jsonable_encoder(problems)},
                        status.HTTP_422_UNPROCESSABLE_CONTENT)


def tls_server_options(cert_file: Path | None, key_file: Path | None) -> dict[str, Any]:
    """uvicorn's options for HTTPS when both PEM files are given."""
    if cert_file is None or key_file is None:
        return {}
    return {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}


def page_csp(page: str) -> str:
    """A CSP that lets the page run exactly its own inline scripts and styles and the files its
    server serves, and talk only to that server."""
    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join(["'self'", *("'sha256-" + base64.b64encode(
            hashlib.sha256(b.encode()).digest()).decode() + "'" for b in blocks)])
    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")


# API docs, served by the app itself: no CDN (stores in mainland China cannot reach the public
# ones), behind a role unless the config opens them.

DOCS_ASSETS = {name: Path(str(swagger_ui_path)) / name
               for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")}


def docs_page(title: str) -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, its files under ``/docs/assets/``."""
    page = get_swagger_ui_html(
        openapi_url="/openapi.json", title=title,
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png")
    # Swagger UI runs an inline script that starts it, and sets inline styles.
    return HTMLResponse(page.body, headers={"Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'")})


# Tokens and sessions


def check_token(secret: str, key: str, env: str) -> None:
    """Refuse a token too short or too uniform to resist guessing: at least 20 characters, 10
    distinct, and about 100 bits by its length and the character classes it uses (what
    ``python -c 'import secrets; print(secrets.token_urlsafe(24))'`` gives passes)."""
    pool = sum(size for chars, size in ((string.ascii_lowercase, 26),
                                        (string.ascii_uppercase, 26), (string.digits, 10))
               if any(c in chars for c in secret))
    pool += 33 if any(not c.isascii() or not c.isalnum() for c in secret) else 0
    bits = len(secret) * math.log2(max(pool, 2))
    if (len(secret) < MIN_TOKEN_LENGTH or len(set(secret)) < MIN_TOKEN_DISTINCT
            or bits < MIN_TOKEN_BITS):
        raise ConfigError("<environment>", key,
                          f"the token in {env} is too weak (needs {MIN_TOKEN_LENGTH}+ characters, "
                          f"{MIN_TOKEN_DISTINCT}+ distinct, ~{MIN_TOKEN_BITS:.0f} bits; e.g. "
                          "secrets.token_urlsafe(24))")


def session_mac(key: bytes, realm: str, name: str, expires: int, nonce: str) -> str:
    """The MAC of a session cookie ``name.expires.nonce.mac``: over the realm (whose session
    it is: a store's, HQ's, a person's version), keyed by a secret of its holder's."""
    message = f"{realm}|{name}|{expires}|{nonce}".encode()
    digest = hmac.new(key, message, "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_session(key: bytes, realm: str, name: str, expires: int) -> str:
    nonce = secrets.token_urlsafe(9)
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"{encoded}.{expires}.{nonce}.{session_mac(key, realm, name, expires, nonce)}"


def read_session(value: str | None, now: float) -> tuple[str, int, str, str] | None:
    """A session cookie's name, expiry, nonce and MAC; None when malformed or expired (its MAC
    is for the caller to check)."""
    if not value:
        return None
    try:
        encoded, expires_text, nonce, mac = value.split(".")
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        expires = int(expires_text)
    except (ValueError, UnicodeDecodeError):
        return None
    return (name, expires, nonce, mac) if expires > now else None


@dataclass
class _Strikes:
    failures: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class AttemptLimiter:
    """Failed attempts per key (a client address, an account): after ``attempts`` failures
    within ``window`` seconds, the key waits ``backoff`` seconds, doubled for every further
    failure up to ``MAX_BACKOFF_SECONDS``. Memory stays bounded by ``max_keys``."""

    def __init__(self, attempts: int, window: float, backoff: float,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.attempts, self.window, self.backoff = attempts, window, backoff
        self.clock = clock
        self.max_keys = max_keys
        self._strikes: dict[str, _Strikes] = {}

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until any of ``keys`` may try again; 0 when all may now."""
        now = self.clock()
        waits = [s.blocked_until - now for k in keys if (s := self._strikes.get(k))]
        return max([0.0, *waits])

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            strikes = self._strikes.get(key)
            if strikes is None or (now - strikes.last > self.window
                                   and now >= strikes.blocked_until):
                strikes = self._strikes[key] = _Strikes()  # quiet for a window: start over
            strikes.failures += 1
            strikes.last = now
            over = strikes.failures - self.attempts
            if over >= 0:
                wait = min(self.backoff * 2 ** min(over, 30), MAX_BACKOFF_SECONDS)
                strikes.blocked_until = now + wait
        if len(self._strikes) > self.max_keys:
            oldest = sorted(self._strikes, key=lambda k: self._strikes[k].last)
            for key in oldest[: len(oldest) // 2]:
                del self._strikes[key]

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._strikes.pop(key, None)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def network_of(address: str) -> str:
    """IPv6 clients are limited per /64: one host holds a whole /64 to rotate through."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


# Middleware


_API_CSP = "default-src 'none'; frame-ancestors 'none'"
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REFUSED = frozenset({401, 403, 413, 429})


class SecurityMiddleware:
    """Body limits, security headers and the audit trail around the whole app."""

    def __init__(self, app: ASGIApp, audit: AuditLog, tls: bool, *,
                 body_limits: tuple[tuple[str, int], ...] = (),
                 default_body_limit: int = 16 * 1024, audit_role_exempt: str = "pos",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.audit = audit
        self.body_limits = body_limits  # (path prefix, bytes): the first match wins
        self.default_body_limit = default_body_limit
        self.audit_role_exempt = audit_role_exempt  # a machine whose calls are facts elsewhere
        self.clock = clock
        # A locked-out client flooding us is audited once a minute, not once a request: the
        # log must not become the way to fill the store's disk.
        self._limited_audited: dict[str, float] = {}
        self.headers = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
                        (b"x-content-type-options", b"nosniff")]
        if tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = next((n for prefix, n in self.body_limits if path.startswith(prefix)),
                     self.default_body_limit)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(scope, send, limit)
            return
        if length is None and scope["method"] in _MUTATING:
            # No length given (chunked): read up to the limit here, then hand it on.
            body = await _read_body(receive, limit)
            if body is None:
                await self._too_large(scope, send, limit)
                return
            receive = _replay(body, receive)
        status_code = 500

        async def secured_send(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in self.headers if h[0] not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", _API_CSP.encode()))
                if path.startswith("/api/") and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, secured_send)
        finally:
            self._audit(scope, status_code)

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        response = JSONResponse({"detail": f"request body over {limit} bytes"},
                                status.HTTP_413_CONTENT_TOO_LARGE,
                                headers={"connection": "close"})

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *self.headers,
                                                  (b"content-security-policy",
                                                   _API_CSP.encode())]}
            await send(message)

        await response(scope, _no_body, secured)
        self._audit(scope, status.HTTP_413_CONTENT_TOO_LARGE)

    def _audit(self, scope: Scope, status_code: int) -> None:
        state = scope.get("state", {})
        caller: Caller | None = state.get("caller")
        if status_code not in _REFUSED:
            if caller is None or caller.role == self.audit_role_exempt:
                return  # e.g. the POS's sales: facts in the journal already
            if scope["method"] not in _MUTATING and not state.get("audited_read"):
                return  # reads are not actions (but an audit export is)
        client = scope.get("client")
        if status_code == status.HTTP_429_TOO_MANY_REQUESTS:
            now = self.clock()
            key = client[0] if client else "unknown"
            if now - self._limited_audited.get(key, -math.inf) < 60:
                return
            if len(self._limited_audited) > 10_000:
                self._limited_audited.clear()
            self._limited_audited[key] = now
        who = caller.name if caller else state.get("account") or "-"
        try:
            self.audit.record(who, (caller.role or "-") if caller else "-",
                              f"{scope['method']} {scope['path']}", status_code,
                              client[0] if client else "unknown")
        except sqlite3.Error:
            log.exception("audit record of %s %s failed", scope["method"], scope["path"])


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then what comes after: a disconnect

    return replay
