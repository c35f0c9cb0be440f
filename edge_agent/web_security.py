"""The store agent's guards: who a request comes from (a bearer token or a session cookie) and
the agent's request body limits. What any storeedge web app does for its safety (limits on failed
sign-ins, body limits, security headers, the audit log) is ``storeedge.httpsec``'s.

- Tokens come from the environment and must be long and varied enough (``check_token``): a
  short or guessable one stops the agent at start with a config error naming it.
- A caller presents ``Authorization: Bearer <token>`` or the session cookie that
  ``POST /api/session`` sets (HttpOnly, SameSite=Strict, Secure over TLS); never a URL query.
  The handheld and manager pages keep separate sessions (``session_cookie``): a manager signed
  in at the office screen does not sign in a handheld lying beside it, nor the reverse.
  The cookie holds the person's name, its expiry and a MAC keyed by their token: it survives an
  agent restart and dies with a changed token; signing out refuses it from then on.
  Every refusal is the same 401, whatever was wrong with the credentials.
- Failed sign-ins count per client network and per account name; past
  ``http.sign_in_attempts`` within the window every further try is 429 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from pydantic import SecretStr

from edge_agent.config import HttpSection
from rules.trackers.alerts import Actor
from storeedge.errors import ConfigError
from storeedge.httpsec import (
    UNAUTHORIZED,
    AttemptLimiter,
    check_token,
    client_address,
    make_session,
    network_of,
    read_session,
    session_mac,
)
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

SESSION_COOKIE = "storeedge_session"  # the handheld page's, and any other caller's
MANAGER_COOKIE = "storeedge_manager_session"  # the manager page's


def session_cookie(request: Request) -> str:
    """The session cookie a request's page signs in with: the manager page's for what the
    manager page asks (its fetches, stream, images and downloads name it in ``Referer``, which
    the agent's pages send to the agent alone: Referrer-Policy same-origin), else the handheld
    page's."""
    page = urlsplit(request.headers.get("referer", "")).path
    return MANAGER_COOKIE if page == "/manager" else SESSION_COOKIE

#: Largest request body per path prefix (first match wins); anything else takes DEFAULT.
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/api/pos/transactions", 128 * 1024),  # 500 lines at most
    ("/api/session", 1024),
    ("/api/scan", 1024),
    ("/api/alerts/", 4096),
    ("/api/problems", 3 * 1024 * 1024),  # a photo of at most 2 MB, in base64
)
DEFAULT_BODY_LIMIT = 16 * 1024


@dataclass(frozen=True)
class _Token:
    caller: Actor
    secret: SecretStr


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
        self.failures = RateLimitedLog(log, 60.0)  # a line a minute, however many fail
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
        keys = [f"client:{network_of(client_address(request))}"]
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
        return session_mac(token.secret.get_secret_value().encode(),
                           f"storeedge-session|{self.store_id}", name, expires, nonce)

    def by_session(self, session: str | None) -> Actor | None:
        if not session or session in self._ended:
            return None
        parsed = read_session(session, self.wall())
        if parsed is None:
            return None
        name, expires, nonce, mac = parsed
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
        token = next((t for t in self._tokens if t.caller == caller), None)
        person = self._people(caller.name) if token is None and self._people else None
        if token is not None:
            key = token.secret.get_secret_value().encode()
            realm = f"storeedge-session|{self.store_id}"
        elif person is not None and person[0] == caller:
            key, realm = self._session_key, self._person_realm(person[1])
        else:
            key, realm = b"", "open"  # no tokens: sessions only say who, nothing is checked
        return make_session(key, realm, caller.name, expires), lifetime

    def _person_mac(self, name: str, version: str, expires: int, nonce: str) -> str:
        return session_mac(self._session_key, self._person_realm(version), name, expires, nonce)

    def _person_realm(self, version: str) -> str:
        return f"storeedge-person-session|{self.store_id}|{version}"

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
