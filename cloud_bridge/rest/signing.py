"""Request signing of REST ERPs: small pluggable schemes, pure functions of the request, the
time and a nonce (no I/O, no clock of their own).

``md5_sorted`` (the Taobao-TOP style that JST, WDT and many Chinese ERPs follow): the request's
query parameters plus ``app_key``, ``timestamp`` (epoch seconds), ``nonce`` and
``sign_method=md5``, and the body's exact text as ``body`` when there is one, sorted by name::

    sign = upper(hex(md5(secret + name1 + value1 + name2 + value2 + ... + secret)))

``sign`` and the other added parameters (not ``body``) go in the query string.

``hmac_sha256`` (the Kingdee / Yonyou / cloud-gateway style): a canonical request of six lines
joined by ``\\n``::

    METHOD
    /path
    a=1&b=x%20y                  (query sorted by name, RFC 3986 percent-encoding)
    1764300000000                (timestamp, epoch milliseconds)
    nonce
    hex(sha256(body))            (of empty bytes when there is no body)

    X-Signature = base64(hmac_sha256(secret, canonical))

sent with ``X-App-Key``, ``X-Timestamp`` and ``X-Nonce``.

A server checks the timestamp against its clock and refuses a nonce it has seen, so a captured
request cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from storeedge.errors import UsageError


@dataclass(frozen=True, slots=True)
class Request:
    """What a scheme signs: the method, the URL's path, the query and the body's bytes."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Signature:
    """What a scheme adds to the request."""

    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class Scheme(Protocol):
    def sign(self, request: Request, now: float, nonce: str) -> Signature: ...


@dataclass(frozen=True, slots=True)
class Md5SortedParams:
    app_key: str
    secret: str = field(repr=False)

    def params(self, request: Request, now: float, nonce: str) -> dict[str, str]:
        """Every parameter the signature covers."""
        params = {**request.query, "app_key": self.app_key, "timestamp": str(int(now)),
                  "nonce": nonce, "sign_method": "md5"}
        if request.body:
            params["body"] = request.body.decode()
        return params

    def sign(self, request: Request, now: float, nonce: str) -> Signature:
        params = self.params(request, now, nonce)
        text = self.secret + "".join(k + v for k, v in sorted(params.items())) + self.secret
        params.pop("body", None)
        params["sign"] = hashlib.md5(text.encode()).hexdigest().upper()
        return Signature(query=params)


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                    for k, v in sorted(query.items()))


@dataclass(frozen=True, slots=True)
class HmacSha256Canonical:
    app_key: str
    secret: str = field(repr=False)

    @staticmethod
    def canonical(request: Request, timestamp: str, nonce: str) -> str:
        return "\n".join([request.method.upper(), request.path, canonical_query(request.query),
                          timestamp, nonce, hashlib.sha256(request.body).hexdigest()])

    def sign(self, request: Request, now: float, nonce: str) -> Signature:
        timestamp = str(int(now * 1000))
        digest = hmac.new(self.secret.encode(), self.canonical(request, timestamp, nonce).encode(),
                          hashlib.sha256).digest()
        return Signature(headers={"X-App-Key": self.app_key, "X-Timestamp": timestamp,
                                  "X-Nonce": nonce,
                                  "X-Signature": base64.b64encode(digest).decode()})


def scheme(name: str, app_key: str, secret: str) -> Scheme:
    """The scheme a mapping's ``signing`` names."""
    if name == "md5_sorted":
        return Md5SortedParams(app_key, secret)
    if name == "hmac_sha256":
        return HmacSha256Canonical(app_key, secret)
    raise UsageError(f"no signing scheme {name!r}")
