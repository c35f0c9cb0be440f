"""The store's bridge to a REST ERP, as its mapping (:mod:`cloud_bridge.rest.mapping`) declares.

Every request is signed by the mapping's scheme (:mod:`cloud_bridge.rest.signing`) with a fresh
timestamp and nonce, so a retry is a new request the ERP does not take for a replay. With a
``token`` section, an access token is fetched from the token endpoint, renewed
``refresh_margin_seconds`` before it expires, and fetched again once when a call answers 401.

Exactly once: each command carries our idempotency key in its body (``key_field``) and in the
``idempotency_header``, the same on every attempt. The ERP answers a key it already booked with
``duplicate_status`` (409), or a ``duplicate`` code of the mapping's ``answer``, and that counts
as delivered: a booking that committed while our side timed out is booked once.

An ERP that answers HTTP 200 with a result code in the body (``answer`` in the mapping) is
judged by that code too: ``ok``, ``duplicate``, ``retry`` (ErpUnavailable, honouring a
Retry-After) or anything else (ErpRejected); a 2xx answer without the code is ErpUnavailable,
as we cannot tell whether it booked (the retry, under the same key, finds out).

Errors, all from :mod:`storeedge.errors`:

    ErpUnavailable   connection refused, timeout, HTTP 5xx, 408, 429 (the next request waits
                     for its Retry-After), 401 or 403 (our credentials, signature or clock are
                     refused: a misconfiguration keeps the commands queued and visible rather
                     than dead-lettering them), 404 (the mapping names no endpoint there), a
                     token endpoint that refuses us, an answer that is not JSON
    ErpRejected      any other 4xx: the ERP refused this command for good, with its reason
                     (``message_path`` of the answer); a stock answer without the mapped fields
    UsageError       a command the mapping declares no endpoint for
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from cloud_bridge.rest.mapping import Command, RestMapping, dig
from cloud_bridge.rest.signing import Request, scheme
from storeedge.errors import ErpRejected, ErpUnavailable, UsageError

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class RestConnector:
    """One store's connection to a signed REST ERP."""

    def __init__(self, url: str, mapping: RestMapping, app_secret: str, *,
                 timeout: float = 10.0, ca_file: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``ca_file``: the CA that signed the ERP's certificate (default: the system's CAs);
        the certificate is verified either way. ``clock`` gives the signatures' timestamps."""
        self._base = httpx.URL(url.rstrip("/") + "/")
        self.mapping = mapping
        self._scheme = scheme(mapping.signing, mapping.app_key, app_secret)
        self._clock = clock
        self._client = httpx.AsyncClient(
            timeout=timeout, verify=ssl.create_default_context(cafile=ca_file) if ca_file else True)
        self._token: str | None = None
        self._token_renew_at = 0.0  # monotonic
        self._token_lock = asyncio.Lock()
        self._not_before = 0.0  # monotonic: no request before this (a 429's Retry-After)
        self.duplicates_refused = 0  # bookings the ERP answered as already booked
        self.tokens_fetched = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def book_sales(self, key: str, lines: list[tuple[str, int]], receipts: list[str],
                         at: float | None = None) -> str:
        """Book the net sales per SKU (returns as negative units) of the window starting ``at``
        as one document keyed by ``key``; returns its id in the ERP."""
        return await self._book(self.mapping.commands.book_sales, "book_sales", key, key,
                                lines, at, receipts)

    async def book_count(self, key: str, lines: list[tuple[str, int]]) -> str:
        """Book an approved count: per SKU the difference the ERP's quantity moves by."""
        return await self._book(self.mapping.commands.book_count, "book_count", key, key, lines)

    async def book_order(self, key: str, lines: list[tuple[str, int]]) -> str:
        """Order ``lines`` from the distribution centre."""
        return await self._book(self.mapping.commands.book_order, "book_order", key, key, lines)

    async def book_receipt(self, key: str, received: list[tuple[str, int]]) -> str:
        """Receive the order keyed ``key`` with the units that arrived; its own idempotency
        key is ``{key}/receipt``."""
        return await self._book(self.mapping.commands.book_receipt, "book_receipt", key,
                                f"{key}/receipt", received)

    async def stock_units(self) -> dict[str, int]:
        """Units per SKU on hand in the store, as the ERP gives them, page by page where the
        mapping pages. Raises ErpUnavailable for any failure: nothing is booked by a read, and
        an answer we cannot read is a mapping to fix, not a command to drop."""
        query = self.mapping.commands.stock_units
        params = {k: _text(v) for k, v in query.params.items()}
        out: dict[str, int] = {}
        page = query.page
        pages = range(page.first, page.first + page.max_pages) if page else range(1)
        try:
            for number in pages:
                if page is not None:
                    params.update({page.param: str(number), page.size_param: str(page.size)})
                items = self._stock_items(_json((await self._send("GET", query.path,
                                                                  query=params))[0]))
                for i, item in enumerate(items):
                    sku = item.get(query.lines.sku) if isinstance(item, dict) else None
                    if not isinstance(sku, str):
                        raise ErpRejected(f"stock item {i} has no {query.lines.sku!r}",
                                          source="rest")
                    units = query.lines.ours(item.get(query.lines.qty), f"stock item {i} ({sku})")
                    out[sku] = out.get(sku, 0) + units
                if page is None or len(items) < page.size:
                    return out
        except ErpRejected as exc:
            raise ErpUnavailable(f"ERP stock (erp.rest.commands.stock_units): {exc}") from exc
        raise ErpUnavailable(f"ERP stock has more than {len(pages)} pages (erp.rest.commands."
                             "stock_units.page.max_pages)")

    def _stock_items(self, answer: Any) -> list[Any]:
        field = self.mapping.commands.stock_units.lines.field
        items = dig(answer, field)
        if not isinstance(items, list):
            raise ErpRejected(f"the answer has no list at {field!r}", source="rest")
        return items

    async def _book(self, command: Command | None, name: str, key: str, idempotency: str,
                    lines: list[tuple[str, int]], at: float | None = None,
                    receipts: list[str] | None = None) -> str:
        if command is None:
            raise UsageError(f"the ERP mapping declares no endpoint for {name} "
                             f"(erp.rest.commands.{name})")
        if not lines:
            raise ErpRejected(f"{key}: a document without lines", source="rest")
        body = command.body(key, lines, self._clock() if at is None else at, receipts)
        response, duplicate = await self._send(command.method, command.path, body=body,
                                               idempotency=idempotency)
        if duplicate:
            self.duplicates_refused += 1
            log.info("ERP already holds %s: counted as delivered", idempotency)
        found = dig(_json(response), command.id_path) if command.id_path else None
        return str(found) if found is not None else idempotency

    async def _send(self, method: str, path: str, *, query: dict[str, str] | None = None,
                    body: dict[str, Any] | None = None, idempotency: str | None = None,
                    signed_in: bool = True) -> tuple[httpx.Response, bool]:
        """One signed request and whether the ERP says it already holds our key; a 401 fetches
        a new token and tries once more."""
        response = await self._attempt(method, path, query or {}, body, idempotency, signed_in)
        if response.status_code == 401 and signed_in and self.mapping.token is not None:
            log.info("ERP answered 401 to %s %s; fetching a new access token", method, path)
            self._token = None
            response = await self._attempt(method, path, query or {}, body, idempotency, True)
        return response, self._judge(response, f"{method} {path}")

    async def _attempt(self, method: str, path: str, query: dict[str, str],
                       body: dict[str, Any] | None, idempotency: str | None,
                       signed_in: bool) -> httpx.Response:
        headers: dict[str, str] = {}
        token = self.mapping.token
        if signed_in and token is not None:
            headers[token.header] = token.prefix + await self._access_token()
        wait = self._not_before - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        url = self._base.join(path.lstrip("/"))
        content = b"" if body is None else json.dumps(
            body, ensure_ascii=False, separators=(",", ":")).encode()
        signature = self._scheme.sign(Request(method, url.path, query, content), self._clock(),
                                      secrets.token_hex(16))
        if content:
            headers["Content-Type"] = "application/json"
        if idempotency is not None and self.mapping.idempotency_header:
            headers[self.mapping.idempotency_header] = idempotency
        try:
            return await self._client.request(
                method, url, params={**query, **signature.query}, content=content or None,
                headers={**headers, **signature.headers})
        except httpx.HTTPError as exc:
            raise ErpUnavailable(f"ERP {method} {path}: {exc!r}") from exc

    def _judge(self, response: httpx.Response, what: str) -> bool:
        """True for "already booked", False for a success; raises what anything else means."""
        status = response.status_code
        if status == self.mapping.duplicate_status:
            return True
        if status < 300:
            return self._judge_code(response, what)
        reason = self._reason(response)
        if status in (429, 503):
            self._hold(response)
        if status in _TRANSIENT_STATUS or status >= 500:
            raise ErpUnavailable(f"ERP {what}: HTTP {status}: {reason}")
        if status in (401, 403):
            raise ErpUnavailable(f"ERP {what} refused our credentials: HTTP {status}: {reason}")
        if status == 404:
            raise ErpUnavailable(f"ERP {what}: no such endpoint (HTTP 404): {reason}")
        raise ErpRejected(f"{what}: HTTP {status}: {reason}", source="rest")

    def _judge_code(self, response: httpx.Response, what: str) -> bool:
        """The result code of a 2xx answer, where the mapping declares one."""
        answer = self.mapping.answer
        if answer is None:
            return False
        code = dig(_json(response), answer.code_path)
        if code is None:
            raise ErpUnavailable(f"ERP {what}: the answer has no {answer.code_path!r}")
        meaning = answer.means(code)
        if meaning in ("ok", "duplicate"):
            return meaning == "duplicate"
        reason = self._reason(response)
        if meaning == "retry":
            self._hold(response)
            raise ErpUnavailable(f"ERP {what}: code {code}: {reason}")
        raise ErpRejected(f"{what}: code {code}: {reason}", source="rest")

    def _hold(self, response: httpx.Response) -> None:
        """No request before the answer's Retry-After, where it gives one."""
        if "Retry-After" in response.headers:
            self._not_before = time.monotonic() + retry_after(
                response.headers["Retry-After"], self._clock(),
                self.mapping.max_retry_after_seconds)

    def _reason(self, response: httpx.Response) -> str:
        try:
            found = dig(response.json(), self.mapping.message_path)
        except ValueError:
            found = None
        return str(found) if found is not None else response.text[:200]

    async def _access_token(self) -> str:
        token = self.mapping.token
        assert token is not None
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_renew_at:
                return self._token
            try:
                response, _ = await self._send("POST", token.path, body=dict(token.body),
                                               signed_in=False)
            except ErpRejected as exc:  # no command's fault: keep them queued
                raise ErpUnavailable(f"ERP token endpoint refused us: {exc}") from exc
            answer = _json(response)
            value, lifetime = dig(answer, token.token_path), dig(answer, token.expires_path)
            if not isinstance(value, str) or not isinstance(lifetime, int | float):
                raise ErpUnavailable(f"ERP token answer has no {token.token_path!r} and "
                                     f"{token.expires_path!r}")
            self._token = value
            self._token_renew_at = time.monotonic() + max(
                float(lifetime) - token.refresh_margin_seconds, 0.0)
            self.tokens_fetched += 1
            log.info("fetched an ERP access token, valid %.0f s", lifetime)
            return value


def retry_after(value: str, now: float, cap: float) -> float:
    """Seconds a ``Retry-After`` asks for (RFC 9110 10.2.3: seconds, or an HTTP date), within
    0 and ``cap``; one second when it is neither."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            seconds = 1.0
    return min(max(seconds, 0.0), cap)


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise ErpUnavailable(f"ERP answer to {response.request.method} "
                             f"{response.request.url.path} is not JSON") from exc


def _text(value: str | int | float | bool) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)
