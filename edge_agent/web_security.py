"""The web app's guards: who a request comes from (a bearer token or a session cookie), limits on
failed sign-ins, request body limits, security headers, error bodies that echo nothing large,
and the append-only audit log.

- Tokens come from the environment and must be long and varied enough (``check_token``): a
  short or guessable one stops the agent at start with a config error naming it.
- A caller presents ``Authorization: Bearer <token>`` or the session cookie that
  ``POST /api/session`` sets (HttpOnly, SameSite=Strict, Secure over TLS); never a URL query.
  The handheld and manager pages keep separate sessions (``session_cookie``): a manager signed
  in at the office screen does not sign in a handheld lying beside it, nor the reverse.
  The cookie holds the person's name, its expiry and a MAC keyed by their token: it survives an
  agent restart and dies with a changed token; signing out refuses it from then on.
  Every refusal is the same 401, whatever was wrong with the credentials.
- Failed sign-ins count per client address and per account name; past
  ``http.sign_in_attempts`` within the window every further try is 429 with ``Retry-After``,
  doubling up to 15 minutes. Failures are logged at most once a minute per kind, with a count.
- ``SecurityMiddleware`` (pure ASGI) refuses bodies over the endpoint's limit with 413: before
  reading them where ``Content-Length`` says so, else after reading no more than the limit;
  adds CSP, X-Frame-Options, Referrer-Policy, nosniff (and HSTS over TLS); and writes one audit
  record per action of a person and per refused request.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import ipaddress
import logging
import math
import re
import secrets
import sqlite3
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.config import HttpSection
from rules.trackers.alerts import Actor
from storeedge.errors import ConfigError

log = logging.getLogger(__name__)

SESSION_COOKIE = "storeedge_session"  # the handheld page's, and any other caller's
MANAGER_COOKIE = "storeedge_manager_session"  # the manager page's
MIN_TOKEN_LENGTH = 20
MIN_TOKEN_BITS = 100.0
MIN_TOKEN_DISTINCT = 10
MAX_BACKOFF_SECONDS = 900.0
UNAUTHORIZED = "not signed in"  # the one 401 body: it confirms nothing about what was presented

#: Largest request body per path prefix (first match wins); anything else takes DEFAULT.
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/api/pos/transactions", 128 * 1024),  # 500 lines at most
    ("/api/session", 1024),
    ("/api/scan", 1024),
    ("/api/alerts/", 4096),
    ("/api/problems", 3 * 1024 * 1024),  # a photo of at most 2 MB, in base64
)
DEFAULT_BODY_LIMIT = 16 * 1024


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


def tls_server_options(http: HttpSection) -> dict[str, Any]:
    """uvicorn's options for HTTPS when ``http.tls_cert_file`` and ``tls_key_file`` are set."""
    if http.tls_cert_file is None or http.tls_key_file is None:
        return {}
    return {"ssl_certfile": str(http.tls_cert_file), "ssl_keyfile": str(http.tls_key_file)}


def session_cookie(request: Request) -> str:
    """The session cookie a request's page signs in with: the manager page's for what the
    manager page asks (its fetches, stream, images and downloads name it in ``Referer``, which
    the agent's pages send to the agent alone: Referrer-Policy same-origin), else the handheld
    page's."""
    page = urlsplit(request.headers.get("referer", "")).path
    return MANAGER_COOKIE if page == "/manager" else SESSION_COOKIE


def page_csp(page: str) -> str:
    """A CSP that lets the page run exactly its own inline script and style, the agent's own
    script and style files, and talk only to the agent that served it."""
    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest())
                        .decode() + "'" for b in blocks) or "'none'"
    return (f"default-src 'none'; script-src 'self' {hashes('script')}; "
            f"style-src 'self' {hashes('style')}; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")


# Tokens


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


@dataclass(frozen=True)
class _Token:
    caller: Actor
    secret: SecretStr


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


class RateLimitedLog:
    """At most one log line per ``kind`` every ``interval`` seconds, saying how many it held
    back since the last one."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = self.clock()
        if now - self._last.get(kind, -math.inf) < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        held = self._held.pop(kind, 0)
        self._last[kind] = now
        if held:
            msg += " (and %d more since the last such line)"
            args = (*args, held)
        self.logger.warning(msg, *args)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


#: A person kept in the journal by name (``edge_agent.staff``): who they are and a version that
#: changes whenever they are changed or removed (which ends their sessions).
People = Callable[[str], tuple[Actor, str] | None]


class Guard:
    """Who a request comes from: tokens, sessions and the failed-attempt limits."""

    def __init__(self, http: HttpSection, store_id: str, tokens: list[tuple[Actor, SecretStr]],
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, *, people: People | None = None,
                 session_key: bytes = b"") -> None:
        self.http = http
        self.store_id = store_id
        self._tokens = [_Token(caller, secret) for caller, secret in tokens]
        self._people = people
        self._session_key = session_key  # signs the sessions of people without a token
        self.limiter = AttemptLimiter(http.sign_in_attempts, http.sign_in_window_seconds,
                                      http.sign_in_backoff_seconds, clock)
        self.failures = RateLimitedLog(log)
        self.wall = wall
        self._ended: dict[str, float] = {}  # signed-out session -> when it would have expired

    @property
    def open(self) -> bool:
        return not self._tokens

    def by_token(self, presented: str) -> Actor | None:
        found = None
        given = presented.encode()
        for token in self._tokens:  # no early exit: the time spent tells nothing
            if hmac.compare_digest(token.secret.get_secret_value().encode(), given):
                found = token.caller
        return found

    def _keys(self, request: Request, account: str | None = None) -> list[str]:
        keys = [f"client:{_network_of(client_address(request))}"]
        if account:
            keys.append(f"account:{account}")
        return keys

    def refuse_if_limited(self, request: Request, account: str | None = None) -> None:
        wait = self.limiter.retry_after(self._keys(request, account))
        if wait > 0:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                "too many failed sign-ins; try again later",
                                headers={"Retry-After": str(math.ceil(wait))})

    def refuse(self, request: Request, account: str | None = None) -> HTTPException:
        """Count a failed sign-in and build the uniform 401."""
        self.limiter.failed(self._keys(request, account))
        self.failures.warning("sign-in", "store %s: a sign-in failed from %s", self.store_id,
                              client_address(request))
        return HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED,
                             headers={"WWW-Authenticate": "Bearer"})

    def authenticate(self, request: Request, bearer: str | None) -> Actor:
        """The caller of a request, from its bearer token or session cookie; 429 while its
        client is locked out, 401 otherwise. Only credentials presented and wrong count as a
        failed sign-in: a page opened before signing in presents none and guesses nothing."""
        self.refuse_if_limited(request)
        session = request.cookies.get(session_cookie(request))
        if not bearer and not session:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED,
                                headers={"WWW-Authenticate": "Bearer"})
        caller = self.by_token(bearer) if bearer else self.by_session(session)
        if caller is None:
            raise self.refuse(request)
        return caller

    # A session is ``name.expires.nonce.mac``, the MAC keyed by the person's own token: it
    # holds across agent restarts, and ends when the token is changed. Nothing secret in it.
    # For a person kept in the journal (PIN, QR card), the MAC is keyed by the store's session
    # key (in the journal too) over the person's version: changing or removing them ends it.

    def _mac(self, token: _Token, name: str, expires: int, nonce: str) -> str:
        message = f"storeedge-session|{self.store_id}|{name}|{expires}|{nonce}".encode()
        digest = hmac.new(token.secret.get_secret_value().encode(), message, "sha256").digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def by_session(self, session: str | None) -> Actor | None:
        if not session or session in self._ended:
            return None
        try:
            encoded, expires_text, nonce, mac = session.split(".")
            name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            expires = int(expires_text)
        except (ValueError, UnicodeDecodeError):
            return None
        if expires <= self.wall():
            return None
        found = None
        for token in self._tokens:  # every entry, as by_token
            if token.caller.name == name and hmac.compare_digest(
                    self._mac(token, name, expires, nonce), mac):
                found = token.caller
        person = self._people(name) if found is None and self._people else None
        if person is not None and hmac.compare_digest(
                self._person_mac(name, person[1], expires, nonce), mac):
            found = person[0]
        return found

    def start_session(self, caller: Actor) -> tuple[str, int]:
        """A session for ``caller`` (open mode: an unsigned one) and its lifetime in seconds."""
        lifetime = int(self.http.session_hours * 3600)
        expires = int(self.wall()) + lifetime
        nonce = secrets.token_urlsafe(9)
        name = base64.urlsafe_b64encode(caller.name.encode()).decode().rstrip("=")
        token = next((t for t in self._tokens if t.caller == caller), None)
        person = self._people(caller.name) if token is None and self._people else None
        if token is not None:
            mac = self._mac(token, caller.name, expires, nonce)
        elif person is not None and person[0] == caller:
            mac = self._person_mac(caller.name, person[1], expires, nonce)
        else:
            mac = "-"
        return f"{name}.{expires}.{nonce}.{mac}", lifetime

    def _person_mac(self, name: str, version: str, expires: int, nonce: str) -> str:
        message = (f"storeedge-person-session|{self.store_id}|{name}|{version}|{expires}|"
                   f"{nonce}").encode()
        digest = hmac.new(self._session_key, message, "sha256").digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def end_session(self, session: str | None) -> None:
        """Refuse this session from now on (until it would have expired anyway)."""
        if not session:
            return
        now = self.wall()
        for ended in [s for s, until in self._ended.items() if until <= now]:
            del self._ended[ended]
        expires = session.split(".")[1] if session.count(".") == 3 else ""
        self._ended[session] = float(expires) if expires.isdigit() else now + 86_400

    def signed_in(self, request: Request, account: str | None) -> None:
        self.limiter.succeeded(self._keys(request, account)[1:])  # the account's strikes only


def _network_of(address: str) -> str:
    """IPv6 clients are limited per /64: one host holds a whole /64 to rotate through."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def load_tokens(http: HttpSection, environ: dict[str, str]) -> list[tuple[Actor, SecretStr]]:
    """The configured tokens, each checked; ConfigError naming the first unset or weak one."""
    entries = []
    for i, entry in enumerate(http.tokens):
        key = f"http.tokens.{i}.token_env"
        secret = environ.get(entry.token_env, "")
        if not secret:
            raise ConfigError("<environment>", key,
                              f"environment variable {entry.token_env} is unset or empty")
        check_token(secret, key, entry.token_env)
        entries.append((Actor(entry.name, entry.role, frozenset(entry.zones)), SecretStr(secret)))
    return entries


# Audit


AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    status INTEGER NOT NULL,
    client TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

AUDIT_FIELDS = ("seq", "ts", "who", "role", "action", "status", "client")


class AuditRecord(BaseModel):
    seq: int
    ts: float
    who: str
    role: str
    action: str
    status: int
    client: str


class AuditLog:
    """Who did what, when and from where: one row per action, in an SQLite file whose triggers
    refuse every UPDATE and DELETE. ``path=None`` keeps it in memory (tests)."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None,
                                   check_same_thread=False)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(AUDIT_SCHEMA)

    def record(self, who: str, role: str, action: str, status_code: int, client: str) -> None:
        self._db.execute("INSERT INTO audit (ts, who, role, action, status, client) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (self.clock(), who, role, action[:300], status_code, client))

    def records(self, after: int = 0, limit: int = 1000) -> list[AuditRecord]:
        rows = self._db.execute(
            f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit))
        return [AuditRecord(**dict(zip(AUDIT_FIELDS, row, strict=True))) for row in rows]

    def csv(self, after: int = 0) -> Iterator[str]:
        """Every record after ``after`` as CSV, header first."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(AUDIT_FIELDS)
        while True:
            page = self.records(after, 1000)
            for r in page:
                writer.writerow([r.seq, f"{r.ts:.3f}", r.who, r.role, r.action, r.status,
                                 r.client])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(page) < 1000:
                return
            after = page[-1].seq

    def close(self) -> None:
        self._db.close()


# Middleware


def _body_limit(path: str) -> int:
    return next((limit for prefix, limit in BODY_LIMITS if path.startswith(prefix)),
                DEFAULT_BODY_LIMIT)


_API_CSP = "default-src 'none'; frame-ancestors 'none'"
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REFUSED = frozenset({401, 403, 413, 429})


class SecurityMiddleware:
    """Body limits, security headers and the audit trail around the whole app."""

    def __init__(self, app: ASGIApp, audit: AuditLog, tls: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.audit = audit
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
        limit = _body_limit(path)
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
        caller: Actor | None = state.get("caller")
        if status_code not in _REFUSED:
            if caller is None or caller.role == "pos":
                return  # the POS's sales are facts in the journal already
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
