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
                     ``last_error`` and ``oldest_pending_age_s`` make it visible)
        CommandFailed    (of :mod:`cloud_bridge.outbox`) any other server exception: the ERP
                         answered but failed on this call; retried, and quarantined by the
                         outbox when it fails the same way again and again
    ErpRejected      UserError/UserWarning (validation of our data), an unknown SKU, a
                     shipment with our key cancelled in the ERP

An expired session (HTTP 401) logs in again once, then retries the call.

Exactly once, by construction: storeedge's own Tryton module (``cloud_bridge/tryton/module``)
gives customer shipments and returns a ``storeedge_key`` with a unique index. The connector
creates first; the ERP refuses a second document with the same key, and that refusal is
recognised: the existing document is finished to done from any state a crash (or a clerk) left
it in and the command counts as delivered. So a create that committed in the ERP while our side
timed out is booked once, whoever else writes. A document takes five workflow steps (create,
wait, assign_force, pack, do); the module's ``storeedge_book`` does them in one call and one ERP
transaction, so our own booking never leaves a document half way. Even so the agent books
summarised windows, not single receipts.

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

from cloud_bridge.outbox import CommandFailed
from storeedge.errors import ErpRejected, ErpUnavailable

log = logging.getLogger(__name__)

# Workflow steps from each state of a customer shipment to done. A store sells from its shelves,
# so its shipments leave from the storage location itself (Tryton's one-step shipping: no
# inventory moves, no picking), which also saves a write transaction per sale.
# Every state a crash (or a clerk) can leave a shipment in is finished from where it stands.
_SHIPMENT = "stock.shipment.out"
_RETURN = "stock.shipment.out.return"
_INVENTORY = "stock.inventory"
_INTERNAL = "stock.shipment.internal"
_STEPS: dict[str, dict[str, tuple[str, ...]]] = {
    _SHIPMENT: {
        "draft": ("wait", "assign_force", "pack", "do"),
        "waiting": ("assign_force", "pack", "do"),
        "assigned": ("pack", "do"),
        "picked": ("pack", "do"),
        "packed": ("do",),
        "shipped": ("do",),
        "done": (),
    },
    _RETURN: {
        "draft": ("receive",),  # returns go straight to storage: receiving also does it
        "received": ("do",),
        "done": (),
    },
    _INVENTORY: {"done": ()},  # created and confirmed in one transaction, or not at all
}
_TRANSIENT_STATUS = {423, 429, 500, 502, 503, 504}


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class TrytonConnector:
    """One store's connection to Tryton: catalog in, sales out as done customer shipments."""

    def __init__(self, url: str, database: str, username: str, password: str,
                 warehouse_code: str = "WH", customer_name: str = "Walk-in customer",
                 timeout: float = 10.0, *, ca_file: str | None = None,
                 supply_warehouse_code: str = "DC") -> None:
        """``ca_file``: the CA that signed the ERP's certificate (default: the system's CAs);
        the certificate is verified either way."""
        self._endpoint = f"{url.rstrip('/')}/{database}/rpc/"
        self._username = username
        self._password = password
        self._warehouse_code = warehouse_code
        self._supply_code = supply_warehouse_code
        self._customer_name = customer_name
        self._client = httpx.AsyncClient(
            timeout=timeout, verify=ssl.create_default_context(cafile=ca_file) if ca_file else True)
        self._auth: str | None = None
        self._context: dict[str, Any] = {}
        self._request_id = 0
        self._setup: dict[str, Any] | None = None
        self._product_cache: dict[str, dict[str, Any]] = {}
        self.calls = 0  # ERP calls made, for the bench's calls per receipt
        self.duplicates_refused = 0  # creates the ERP refused as already booked

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
        """Every goods product with a code, as ``CatalogItem`` fields.

        ``low_stock`` is None (see the module docstring); ``unit_grams`` is None when the
        product has no weight or the ERP does not record weights; ``price`` is the list price;
        ``stop_sell`` says the product is deactivated in the ERP.
        """
        fields = ["code", "name", "identifiers", "template", "active", "template.active",
                  "template.list_price"]
        # deactivated products too: a product withdrawn in the ERP is one the store stops selling
        products = await self.call("product.product", "search_read",
                                   [("code", "!=", None), ("type", "=", "goods")],
                                   0, None, [("code", "ASC")], fields,
                                   context={"active_test": False})
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
            "price": _price((p.get("template.") or {}).get("list_price")),
            # a product is withdrawn with its template, or alone (a variant)
            "stop_sell": not (p.get("active", True)
                              and (p.get("template.") or {}).get("active", True)),
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

    async def book_sales(self, key: str, lines: list[tuple[str, int]],
                         receipts: list[str], at: float | None = None) -> str:
        """Book net sales per SKU as done documents keyed by ``key``; returns their ids.
        (``at``, the window's start, is not sent: Tryton dates a document when it is done.)

        Positive lines leave as one customer shipment (``storeedge_key`` = ``key``), negative
        lines (returns) come back as one customer return (``storeedge_key`` = ``key/return``);
        both carry ``receipts``. Exactly once by construction: the ERP's unique index on
        ``storeedge_key`` refuses a second create, and a refused create is recognised and the
        existing document finished to done from whatever state it was left in, so a create
        that committed in the ERP but timed out on our side is booked once.
        """
        if not lines:
            raise ErpRejected(f"{key}: a sale without lines", source="tryton")
        bad = [(sku, qty) for sku, qty in lines if qty == 0]
        if bad:
            raise ErpRejected(f"{key}: quantities must not be zero: {bad}", source="tryton")
        out = [(sku, qty) for sku, qty in lines if qty > 0]
        back = [(sku, -qty) for sku, qty in lines if qty < 0]
        ids = []
        if out:
            ids.append(await self._book(_SHIPMENT, key, out, receipts))
        if back:
            ids.append(await self._book(_RETURN, f"{key}/return", back, receipts))
        return ",".join(ids)

    async def book_count(self, key: str, lines: list[tuple[str, int]]) -> str:
        """Book an approved count as one confirmed inventory of the store's storage keyed by
        ``key``: per SKU the difference (counted less expected) the ERP's quantity moves by.
        Exactly once: a second create is refused by the ERP's unique key and recognised."""
        if not lines or any(delta == 0 for _, delta in lines):
            raise ErpRejected(f"{key}: a count needs differences other than zero: {lines}",
                              source="tryton")
        setup = await self._store_setup()
        skus = sorted({sku for sku, _ in lines})
        products = await self._products(skus)
        unknown = [sku for sku in skus if sku not in products]
        if unknown:
            raise ErpRejected(f"{key}: unknown SKU {', '.join(unknown)}", source="tryton")
        deltas = {str(products[sku]["id"]): float(delta) for sku, delta in lines}
        values = {"location": setup["storage"], "company": setup["company"],
                  "storeedge_key": key}
        try:
            doc_id = int(await self.call(_INVENTORY, "storeedge_count", values, deltas))
        except _DuplicateKey:
            doc_id, state = await self._existing(_INVENTORY, key)
            self.duplicates_refused += 1
            await self._finish(_INVENTORY, doc_id, state)
        return str(doc_id)

    async def book_order(self, key: str, lines: list[tuple[str, int]]) -> str:
        """Request ``lines`` (SKU, units) from the distribution centre: one internal shipment
        from its storage to the store's, keyed by ``key`` and left waiting for the centre to
        assign, pack and ship. Exactly once by the ERP's unique key."""
        if not lines or any(qty < 1 for _, qty in lines):
            raise ErpRejected(f"{key}: an order needs lines of at least one unit: {lines}",
                              source="tryton")
        setup = await self._store_setup()
        supply = await self._supply_storage()
        products = await self._known(key, lines)
        values = {
            "company": setup["company"], "from_location": supply,
            "to_location": setup["storage"], "reference": key, "storeedge_key": key,
            "moves": [["create", [{
                "product": products[sku]["id"], "unit": products[sku]["default_uom"],
                "quantity": float(qty), "from_location": supply, "to_location": setup["storage"],
                "company": setup["company"]} for sku, qty in lines]]],
        }
        try:
            (doc_id,) = await self.call(_INTERNAL, "storeedge_book", [values])
        except _DuplicateKey:
            doc_id, _ = await self._existing(_INTERNAL, key)
            self.duplicates_refused += 1
        return str(doc_id)

    async def book_receipt(self, key: str, received: list[tuple[str, int]]) -> str:
        """Receive the order keyed ``key`` with the units that arrived per SKU (an ordered SKU
        missing from ``received`` arrived not at all), in one ERP transaction (the storeedge
        module's ``storeedge_receive``): to done, shipped first if the centre had not booked
        that. Goods not on the order are not booked here; the store's count corrects those.
        Idempotent: a done shipment is left as it is."""
        units = {sku: int(qty) for sku, qty in received}
        return str(await self.call(_INTERNAL, "storeedge_receive", key, units))

    async def _known(self, key: str, lines: list[tuple[str, int]]) -> dict[str, dict[str, Any]]:
        skus = sorted({sku for sku, _ in lines})
        products = await self._products(skus)
        unknown = [sku for sku in skus if sku not in products]
        if unknown:
            raise ErpRejected(f"{key}: unknown SKU {', '.join(unknown)}", source="tryton")
        return products

    async def _supply_storage(self) -> int:
        found = await self.call("stock.location", "search_read",
                                [("code", "=", self._supply_code), ("type", "=", "warehouse")],
                                0, 1, None, ["storage_location"])
        if not found:
            raise ErpRejected(f"Tryton has no supply warehouse with code {self._supply_code!r}",
                              source="tryton")
        return int(found[0]["storage_location"])

    async def _book(self, model: str, key: str, lines: list[tuple[str, int]],
                    receipts: list[str]) -> str:
        try:
            doc_id, state = await self._create(model, key, lines, receipts), "done"
        except _DuplicateKey:
            doc_id, state = await self._existing(model, key)
            self.duplicates_refused += 1
            log.info("%s %s already holds %s (state %s): finishing it, not booking again",
                     model, doc_id, key, state)
        await self._finish(model, doc_id, state)
        return str(doc_id)

    async def _existing(self, model: str, key: str) -> tuple[int, str]:
        found = await self.call(model, "search_read", [("storeedge_key", "=", key)],
                                0, 1, None, ["state"])
        if not found:
            # refused as a duplicate yet not visible: another transaction is still writing it
            raise ErpUnavailable(f"Tryton refused {key} as booked but does not show it yet")
        doc_id, state = found[0]["id"], found[0]["state"]
        if state == "cancelled":
            raise ErpRejected(f"{model} {doc_id} for {key} was cancelled in the ERP",
                              source="tryton")
        return int(doc_id), state

    async def _create(self, model: str, key: str, lines: list[tuple[str, int]],
                      receipts: list[str]) -> int:
        values = await self._document(model, key, lines, receipts)
        # one call, one ERP transaction: created and done, or nothing (storeedge module)
        (doc_id,) = await self.call(model, "storeedge_book", [values])
        return int(doc_id)

    async def _document(self, model: str, key: str, lines: list[tuple[str, int]],
                        receipts: list[str]) -> dict[str, Any]:
        """The ``create`` values of a shipment (or return) of ``lines`` keyed by ``key``."""
        setup = await self._store_setup()
        skus = sorted({sku for sku, _ in lines})
        products = await self._products(skus)
        unknown = [sku for sku in skus if sku not in products]
        if unknown:
            raise ErpRejected(f"{key}: unknown SKU {', '.join(unknown)}", source="tryton")
        zero = {"__class__": "Decimal", "decimal": str(Decimal(0))}
        outgoing = model == _SHIPMENT
        moves = [{
            "product": products[sku]["id"],
            "unit": products[sku]["default_uom"],
            "quantity": float(qty),
            "from_location": setup["storage"] if outgoing else setup["customer_location"],
            "to_location": setup["customer_location"] if outgoing else setup["storage"],
            "company": setup["company"],
            "unit_price": zero,
            "currency": setup["currency"],
        } for sku, qty in lines]
        values: dict[str, Any] = {
            "company": setup["company"],
            "customer": setup["customer"],
            "warehouse": setup["warehouse"],
            "warehouse_storage": setup["storage"],
            "reference": key,
            "storeedge_key": key,
            "storeedge_receipts": "\n".join(receipts),
        }
        if outgoing:
            # one-step shipping: the goods leave from the shelves (storage) themselves
            values.update(delivery_address=setup["address"], warehouse_output=setup["storage"],
                          outgoing_moves=[["create", moves]])
        else:
            values.update(warehouse_input=setup["storage"], incoming_moves=[["create", moves]])
        return values

    async def _products(self, skus: list[str]) -> dict[str, dict[str, Any]]:
        missing = [sku for sku in skus if sku not in self._product_cache]
        if missing:
            for p in await self.call("product.product", "search_read", [("code", "in", missing)],
                                     0, None, None, ["code", "default_uom"]):
                self._product_cache[p["code"]] = p
        return {sku: self._product_cache[sku] for sku in skus if sku in self._product_cache}

    async def _finish(self, model: str, doc_id: int, state: str) -> None:
        steps = _STEPS[model]
        if state not in steps:
            raise ErpRejected(f"{model} {doc_id} is in unexpected state {state!r}",
                              source="tryton")
        for step in steps[state]:
            # assign_force: the goods physically left the store, whatever the ERP's stock says
            await self.call(model, step, [doc_id])

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
        """Net units per SKU sold through done customer shipments less done customer returns
        (of documents whose reference starts with a prefix), across every warehouse."""
        sold: dict[str, int] = defaultdict(int)
        for model, sign in ((_SHIPMENT, 1), (_RETURN, -1)):
            domain: list[Any] = [("shipment", "like", f"{model},%"), ("state", "=", "done")]
            domain.append(("to_location.type" if sign > 0 else "from_location.type", "=",
                           "customer"))
            if reference_prefix is not None:
                domain.append(("shipment.reference", "like", _like_prefix(reference_prefix),
                               model))
            moves = await self.call("stock.move", "search_read", domain, 0, None, None,
                                    ["product.code", "quantity"])
            for move in moves:
                sold[move["product."]["code"]] += sign * round(move["quantity"])
        return {sku: n for sku, n in sold.items() if n}

    async def stock_units(self) -> dict[str, int]:
        """Units per SKU on hand in this store's warehouse, as the ERP computes them."""
        setup = await self._store_setup()
        products = await self.call("product.product", "search_read",
                                   [("code", "!=", None), ("type", "=", "goods")],
                                   0, None, None, ["code", "quantity"],
                                   context={"locations": [setup["warehouse"]],
                                            "with_childs": True})
        return {p["code"]: round(p["quantity"]) for p in products}

    async def call(self, model: str, method: str, *args: Any,
                   context: dict[str, Any] | None = None) -> Any:
        """Call ``model.<model>.<method>(*args, context)``, logging in first if needed.

        ``context`` adds to the user's preferences (e.g. ``locations`` for stock quantities).
        """
        if self._auth is None:
            await self.login()
        try:
            return await self._post(f"model.{model}.{method}",
                                    [*args, {**self._context, **(context or {})}])
        except _SessionExpired:
            log.info("Tryton session expired; logging in again")
            await self.login()
            return await self._post(f"model.{model}.{method}",
                                    [*args, {**self._context, **(context or {})}])

    async def _post(self, method: str, params: list[Any]) -> Any:
        self._request_id += 1
        self.calls += 1
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


class _DuplicateKey(ErpRejected):
    """The ERP refused a create because a document already holds our key (not an error of the
    command: the document exists and is finished instead)."""


# the text of the storeedge module's message msg_storeedge_key_unique
_DUPLICATE_KEY_TEXT = "storeedge document with this key is already booked"


def _translate(method: str, error: list[Any]) -> Exception:
    name = error[0] if error else "unknown"
    detail = error[1] if len(error) > 1 else None
    if name in ("UserError", "UserWarning"):
        message = " - ".join(str(part) for part in (detail or [])[:2] if part)
        if _DUPLICATE_KEY_TEXT in message:
            return _DuplicateKey(f"{method}: {message}", source="tryton")
        return ErpRejected(f"{method}: {message or name}", source="tryton")
    if name == "ConcurrencyException":
        return ErpUnavailable(f"Tryton {method}: concurrent update: {detail}")
    if name == "LoginException":
        return ErpUnavailable(f"Tryton {method}: login needs {detail}")
    # the ERP is up but failed on this call: retried, then quarantined by the outbox
    return CommandFailed(f"Tryton {method}: server error: {name}")


def _price(value: Any) -> float | None:
    """A list price as Tryton's JSON-RPC sends it (``{"__class__": "Decimal", ...}``); None for
    none, or 0 (Tryton's default for a product nobody priced)."""
    if isinstance(value, dict) and value.get("__class__") == "Decimal":
        value = float(value["decimal"])
    return float(value) if isinstance(value, int | float) and value > 0 else None
