"""The declarative mapping of a REST ERP (``erp.rest`` in the store config): which of their
endpoints each of our commands goes to, what their fields are called, their units and their
date format, and how requests are signed. Validated at start like the rest of the config, so
a mistyped key is named (``erp.rest.commands.book_sales.lines.qtty: unknown key; did you mean
'qty'?``).

What a command's body becomes (:meth:`Command.body`), for ``book_sales`` of lines
``[("COLA", 2)]`` with the mapping of docs/erp.md::

    {"out_no": "<key>", "items": [{"sku_id": "COLA", "qty": 2000}],
     "biz_time": "2025-11-28 17:00:00", "remark": ["<receipt>"], "shop_id": "BJ01"}
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storeedge.errors import ErpRejected

Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lines(_Strict):
    """How our lines (SKU, units) appear in their body or answer."""

    field: str = "lines"  # the list's key in their body (a dotted path in an answer)
    sku: str = "sku"
    qty: str = "qty"
    # their quantity per unit of ours: 1000 when they count in thousandths of a unit
    factor: Annotated[float, Field(gt=0)] = 1.0

    def theirs(self, units: int) -> int | float:
        value = units * self.factor
        return int(value) if value == int(value) else value

    def ours(self, value: Any, where: str) -> int:
        try:
            return round(float(value) / self.factor)
        except (TypeError, ValueError) as exc:
            raise ErpRejected(f"{where}: quantity {value!r} is not a number",
                              source="rest") from exc


class DateField(_Strict):
    """A date the command carries: the sales window's start, or the time of sending."""

    field: str
    # "iso" (ISO 8601 with offset), "epoch_s", "epoch_ms", or a strftime pattern
    format: str = "iso"
    timezone: str = "UTC"

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in ("iso", "epoch_s", "epoch_ms") and "%" not in value:
            raise ValueError(f"date format {value!r}: 'iso', 'epoch_s', 'epoch_ms' or a "
                             "strftime pattern such as '%Y-%m-%d %H:%M:%S'")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}: an IANA name such as "
                             "Asia/Shanghai") from exc
        return value

    def render(self, ts: float) -> str | int:
        if self.format == "epoch_s":
            return int(ts)
        if self.format == "epoch_ms":
            return int(ts * 1000)
        when = dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(self.timezone))
        return when.isoformat() if self.format == "iso" else when.strftime(self.format)


class Command(_Strict):
    """One of our commands as a request to one of their endpoints."""

    path: str
    method: Literal["POST", "PUT"] = "POST"
    key_field: str = "key"  # our idempotency key, in the body too
    lines: Lines = Lines()
    date: DateField | None = None
    receipts_field: str | None = None  # the POS receipts a sales document covers, as a list
    fixed: dict[str, Scalar] = {}  # constant fields (their shop or warehouse code...)
    id_path: str | None = "id"  # where their answer gives the document id (dotted)

    def body(self, key: str, lines: list[tuple[str, int]], at: float,
             receipts: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {**self.fixed, self.key_field: key, self.lines.field: [
            {self.lines.sku: sku, self.lines.qty: self.lines.theirs(qty)} for sku, qty in lines]}
        if self.date is not None:
            body[self.date.field] = self.date.render(at)
        if self.receipts_field is not None and receipts is not None:
            body[self.receipts_field] = receipts
        return body


class Paging(_Strict):
    """Query parameters of a paged list: pages are asked for until one comes back short."""

    param: str = "page"
    size_param: str = "page_size"
    size: Annotated[int, Field(ge=1, le=10_000)] = 100
    first: Annotated[int, Field(ge=0)] = 1  # the first page's number
    max_pages: Annotated[int, Field(ge=1)] = 1000  # a guard against an ERP that never ends


class StockQuery(_Strict):
    """Their stock on hand: a GET whose answer lists SKU and quantity."""

    path: str
    params: dict[str, Scalar] = {}
    lines: Lines = Lines(field="items")
    page: Paging | None = None  # None: one answer holds every SKU


class Commands(_Strict):
    book_sales: Command
    stock_units: StockQuery
    book_count: Command | None = None
    book_order: Command | None = None
    book_receipt: Command | None = None


class Token(_Strict):
    """An access token from their token endpoint (a signed POST), sent on every call."""

    path: str
    body: dict[str, Scalar] = {"grant_type": "client_credentials"}
    token_path: str = "access_token"
    expires_path: str = "expires_in"  # seconds
    refresh_margin_seconds: Annotated[float, Field(ge=0)] = 60.0
    header: str = "Authorization"
    prefix: str = "Bearer "


class Answer(_Strict):
    """For ERPs that answer HTTP 200 with a result code in the body (``{"code": 0, ...}``):
    which codes mean what. Any other code is a refusal for good, with its reason."""

    code_path: str = "code"
    ok: list[Scalar] = [0]
    duplicate: list[Scalar] = []  # "a document with this key is already booked"
    retry: list[Scalar] = []  # busy, rate limited: try again later

    def means(self, code: Any) -> str:
        """``ok``, ``duplicate``, ``retry``, or ``refused``; codes compare as text (0 == "0")."""
        text = str(code)
        for meaning, codes in (("ok", self.ok), ("duplicate", self.duplicate),
                               ("retry", self.retry)):
            if any(text == str(c) for c in codes):
                return meaning
        return "refused"


class RestMapping(_Strict):
    """``erp.rest``: a generic signed REST ERP."""

    app_key: str
    app_secret_env: str = "STOREEDGE_ERP_APP_SECRET"
    signing: Literal["md5_sorted", "hmac_sha256"]
    token: Token | None = None
    idempotency_header: str | None = "Idempotency-Key"
    # the answer that says a document with our key is already booked: counts as delivered
    duplicate_status: Annotated[int, Field(ge=400, le=499)] = 409
    message_path: str = "message"  # the reason in a refusal's JSON body
    answer: Answer | None = None  # result codes in the body; None: HTTP statuses alone
    # a Retry-After longer than this is taken as this
    max_retry_after_seconds: Annotated[float, Field(gt=0)] = 300.0
    commands: Commands


def dig(data: Any, path: str) -> Any:
    """The value at dotted ``path`` of a JSON answer; None where it is not there."""
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
