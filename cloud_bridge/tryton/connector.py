"""The store's bridge to a real Tryton, over Tryton's JSON-RPC (``POST /{database}/rpc/``).

Protocol (trytond/protocols/dispatcher.py and jsonrpc.py): ``common.db.login`` with
``[login, {"password": ...}, language]`` returns ``[user_id, session, ...]``; later calls send
``Authorization: Session base64(login:user_id:session)`` and call ``model.<name>.<method>``
with the method's arguments followed by a context. A Tryton exception comes back as
``{"error": [name, args]}`` (``UserError``, ``ConcurrencyException``...), any other server
exception as ``{"error": [message, traceback]}``; an invalid or expired session is HTTP 401.

Errors, all from :mod:`storeedge.errors`:

    ErpUnavailable   connection refused, timeout, HTTP 5xx/423/429, database not found,
                     ConcurrencyException, a failed login or a store setup missing in the ERP
                     (warehouse, customer, company: a misconfiguration must not dead-letter
                     every sale, it keeps them queued until someone fixes it), and
                     any other server exception (a crash or a locked database is retried;
                     the outbox's ``last_error`` and ``oldest_pending_age_s`` make it visible)
    ErpRejected      UserError/UserWarning (validation of our data), an unknown SKU, a
                     shipment with our key cancelled in the ERP

An expired session (HTTP 401) logs in again once, then retries the call.

Exactly once: a sale is one customer shipment (``stock.shipment.out``) whose ``reference`` is
the command's idempotency key. Before creating, the connector looks the key up; a shipment
found in any state is pushed on to done instead of creating another, so a crash between two
ERP calls is finished on the next delivery. This relies on a single writer per key (the
outbox delivers one command at a time). A sale costs five write transactions (create, wait,
assign_force, pack, do): 4.6 shipments/s on Tryton with SQLite on an idle 2-core machine, so
the agent should summarise sales per window rather than send one shipment per receipt.

Catalog fields: the SKU is the product's ``code``; the barcode its first ``ean`` identifier;
the unit weight is ``weight`` in grams from the ``product_measurements`` module (None where the
module is not activated: the store config must then give ``unit_grams``). The low-stock threshold
is always None, left to the store config: the real Tryton concept, ``stock.order_point`` from
``stock_supply``, drags in account, account_invoice, account_invoice_stock, account_product,
purchase and purchase_request; measured here, it raises ``trytond-admin`` database
initialisation from 10 s to 23 s, for one integer per SKU.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx

from storeedge.errors import ErpRejected, ErpUnavailable

log = logging.getLogger(__name__)

# Workflow steps from each state of a customer shipment to done. A store sells from its shelves,
# so its shipments leave from the storage location itself (Tryton's one-step shipping: no
# inventory moves, no picking), which also saves a write transaction per sale.
_STEPS = {
    "draft": ("wait", "assign_force", "pack", "do"),
    "waiting": ("assign_force", "pack", "do"),
    "assigned": ("pack", "do"),
    "packed": ("do",),
    "shipped": ("do",),
    "done": (),
}
_SHIPMENT = "stock.shipment.out"
_TRANSIENT_STATUS = {423, 429, 500, 502, 503, 504}


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class TrytonConnector:
    """One store's connection to Tryton: catalog in, sales out as done customer shipments."""

    def __init__(self, url: str, database: str, username: str, password: str,
                 warehouse_code: str = "WH", customer_name: str = "Walk-in customer",
                 timeout: float = 10.0, *, ca_file: str | None = None) -> None:
        """``ca_file``: the CA that signed the ERP's certificate (default: the system's CAs);
        the certificate is verified either way."""
        self._endpoint = f"{url.rstrip('/')}/{database}/rpc/"
        self._username = username
        self._password = password
        self._warehouse_code = warehouse_code
        self._customer_name = customer_name
        self._client = httpx.AsyncClient(
            timeout=timeout, verify=ssl.create_default_context(cafile=ca_file) if ca_file else True)
        self._auth: str | None = None
        self._context: dict[str, Any] = {}
        self._request_id = 0
        self._setup: dict[str, Any] | None = None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def login(self) -> None:
        """Open a session and load the user's preferences as the call context."""
        result = await self._post("common.db.login",
                                  [self._username, {"password": self._password}, "en"])
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{self._username}:{user_id}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        self._context = await self._post("model.res.user.get_preferences", [True, {}])
        log.info("logged in to Tryton %s as %s", self._endpoint, self._username)

    async def fetch_catalog(self) -> list[dict[str, Any]]:
        """Every active goods product with a code, as ``CatalogItem`` fields.

        ``low_stock`` is None (see the module docstring); ``unit_grams`` is None when the
        product has no weight or the ERP does not record weights.
        """
        fields = ["code", "name", "identifiers", "template"]
        products = await self.call("product.product", "search_read",
                                   [("code", "!=", None), ("type", "=", "goods")],
                                   0, None, [("code", "ASC")], fields)
        weights = await self._weights([p["template"] for p in products])
        identifier_ids = [i for p in products for i in p["identifiers"]]
        eans: dict[int, str] = {}
        if identifier_ids:
            for ident in await self.call("product.identifier", "read", identifier_ids,
                                         ["product", "type", "code"]):
                if ident["type"] == "ean":
                    eans.setdefault(ident["product"], ident["code"])
        return [{
            "sku": p["code"],
            "name": p["name"],
            "barcode": eans.get(p["id"]),
            "unit_grams": weights.get(p["template"]),
            "low_stock": None,
        } for p in products]

    async def _weights(self, template_ids: list[int]) -> dict[int, float]:
        fields = await self.call("product.template", "fields_get", ["weight", "weight_uom"])
        if "weight" not in fields or not template_ids:
            return {}
        rows = await self.call("product.template", "read", template_ids,
                               ["weight", "weight_uom.factor"])
        # factor of the gram unit is 0.001 (to kg); a weight in kg has factor 1
        return {
            r["id"]: round(r["weight"] * r["weight_uom."]["factor"] * 1000, 3)
            for r in rows if r["weight"] and r.get("weight_uom.")
        }

    async def deliver_sale(self, key: str, lines: list[tuple[str, int]], reference: str) -> str:
        """Book ``lines`` (sku, qty) as one done customer shipment whose reference is ``key``.

        Idempotent on ``key``: returns the id of the existing shipment (finished to done if a
        previous attempt stopped half way) instead of creating a second. ``reference`` (the
        agent's own label, e.g. the POS transaction) only goes to the log: the shipment's one
        free-text field, ``reference``, holds the key.
        """
        found = await self.call(_SHIPMENT, "search_read", [("reference", "=", key)],
                                0, None, [("id", "ASC")], ["state"])
        if found:
            shipment_id, state = found[0]["id"], found[0]["state"]
            if state == "cancelled":
                raise ErpRejected(f"shipment {shipment_id} for {key} was cancelled in the ERP",
                                  source="tryton")
            if state != "done":
                log.info("finishing shipment %s for %s from state %s", shipment_id, key, state)
        else:
            shipment_id, state = await self._create_shipment(key, lines, reference), "draft"
        await self._finish(shipment_id, state)
        if state != "done":
            log.info("shipment %s done for %s (%s)", shipment_id, key, reference)
        return str(shipment_id)

    async def _create_shipment(self, key: str, lines: list[tuple[str, int]],
                               reference: str) -> int:
        setup = await self._store_setup()
        if not lines:
            raise ErpRejected(f"{key}: a sale without lines", source="tryton")
        skus = sorted({sku for sku, _ in lines})
        products = await self.call("product.product", "search_read", [("code", "in", skus)],
                                   0, None, None, ["code", "default_uom"])
        by_sku = {p["code"]: p for p in products}
        unknown = [sku for sku in skus if sku not in by_sku]
        if unknown:
            raise ErpRejected(f"{key}: unknown SKU {', '.join(unknown)}", source="tryton")
        bad = [(sku, qty) for sku, qty in lines if qty <= 0]
        if bad:
            raise ErpRejected(f"{key}: quantities must be positive: {bad}", source="tryton")
        zero = {"__class__": "Decimal", "decimal": str(Decimal(0))}
        moves = [{
            "product": by_sku[sku]["id"],
            "unit": by_sku[sku]["default_uom"],
            "quantity": float(qty),
            "from_location": setup["storage"],
            "to_location": setup["customer_location"],
            "company": setup["company"],
            "unit_price": zero,
            "currency": setup["currency"],
        } for sku, qty in lines]
        (shipment_id,) = await self.call(_SHIPMENT, "create", [{
            "company": setup["company"],
            "customer": setup["customer"],
            "delivery_address": setup["address"],
            "warehouse": setup["warehouse"],
            "warehouse_storage": setup["storage"],
            "warehouse_output": setup["storage"],
            "reference": key,
            "outgoing_moves": [["create", moves]],
        }])
        return int(shipment_id)

    async def _finish(self, shipment_id: int, state: str) -> None:
        if state not in _STEPS:
            raise ErpRejected(f"shipment {shipment_id} is in unexpected state {state!r}",
                              source="tryton")
        for step in _STEPS[state]:
            # assign_force: the goods physically left the store, whatever the ERP's stock says
            await self.call(_SHIPMENT, step, [shipment_id])

    async def _store_setup(self) -> dict[str, Any]:
        """Ids of the warehouse, its locations, the customer and the company (looked up once)."""
        if self._setup is not None:
            return self._setup
        if self._auth is None:
            await self.login()
        company = self._context.get("company")
        if company is None:
            raise ErpUnavailable(f"Tryton user {self._username} has no company")
        warehouses = await self.call("stock.location", "search_read",
                                     [("code", "=", self._warehouse_code),
                                      ("type", "=", "warehouse")],
                                     0, 1, None, ["storage_location"])
        if not warehouses:
            raise ErpUnavailable(f"Tryton has no warehouse with code {self._warehouse_code!r}")
        parties = await self.call("party.party", "search_read",
                                  [("name", "=", self._customer_name)],
                                  0, 1, None, ["customer_location", "addresses"])
        if not parties or not parties[0]["addresses"]:
            raise ErpUnavailable(f"Tryton has no customer {self._customer_name!r} with an address")
        (currency,) = await self.call("company.company", "read", [company], ["currency"])
        wh, party = warehouses[0], parties[0]
        self._setup = {
            "company": company,
            "currency": currency["currency"],
            "warehouse": wh["id"],
            "storage": wh["storage_location"],
            "customer": party["id"],
            "customer_location": party["customer_location"],
            "address": party["addresses"][0],
        }
        return self._setup

    async def sold_units(self, reference_prefix: str | None = None) -> dict[str, int]:
        """Units per SKU in done customer shipments (of references starting with a prefix)."""
        domain: list[Any] = [
            ("shipment", "like", f"{_SHIPMENT},%"),
            ("state", "=", "done"),
            ("to_location.type", "=", "customer"),
        ]
        if reference_prefix is not None:
            domain.append(("shipment.reference", "like", _like_prefix(reference_prefix),
                           _SHIPMENT))
        moves = await self.call("stock.move", "search_read", domain, 0, None, None,
                                ["product.code", "quantity"])
        sold: dict[str, int] = defaultdict(int)
        for move in moves:
            sold[move["product."]["code"]] += round(move["quantity"])
        return dict(sold)

    async def call(self, model: str, method: str, *args: Any) -> Any:
        """Call ``model.<model>.<method>(*args, context)``, logging in first if needed."""
        if self._auth is None:
            await self.login()
        params = [*args, self._context]
        try:
            return await self._post(f"model.{model}.{method}", params)
        except _SessionExpired:
            log.info("Tryton session expired; logging in again")
            await self.login()
            return await self._post(f"model.{model}.{method}", [*args, self._context])

    async def _post(self, method: str, params: list[Any]) -> Any:
        self._request_id += 1
        headers = {"Authorization": self._auth} if self._auth else {}
        body = {"id": self._request_id, "method": method, "params": params}
        try:
            response = await self._client.post(self._endpoint, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ErpUnavailable(f"Tryton {method}: {exc!r}") from exc
        if response.status_code == 401:
            if method == "common.db.login":
                raise ErpUnavailable(f"Tryton refused the login of {self._username}")
            raise _SessionExpired
        if response.status_code in _TRANSIENT_STATUS or response.status_code == 404:
            raise ErpUnavailable(f"Tryton {method}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise ErpRejected(f"{method}: HTTP {response.status_code}: {response.text[:200]}",
                              source="tryton")
        try:
            data = response.json()
        except ValueError as exc:
            raise ErpUnavailable(f"Tryton {method}: response is not JSON") from exc
        if "error" in data:
            raise _translate(method, data["error"])
        return data.get("result")


class _SessionExpired(Exception):
    """HTTP 401 on a model call: log in again."""


def _translate(method: str, error: list[Any]) -> Exception:
    name = error[0] if error else "unknown"
    detail = error[1] if len(error) > 1 else None
    if name in ("UserError", "UserWarning"):
        message = " - ".join(str(part) for part in (detail or [])[:2] if part)
        return ErpRejected(f"{method}: {message or name}", source="tryton")
    if name == "ConcurrencyException":
        return ErpUnavailable(f"Tryton {method}: concurrent update: {detail}")
    if name == "LoginException":
        return ErpUnavailable(f"Tryton {method}: login needs {detail}")
    return ErpUnavailable(f"Tryton {method}: server error: {name}")
