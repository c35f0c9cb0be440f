"""Fill a freshly initialised Tryton database with what a store needs.

Run in a subprocess, with trytond's own Python API (trytond is imported only there, so importing
``cloud_bridge.tryton`` never needs it)::

    python -m cloud_bridge.tryton.provision TRYTOND_CONF DATABASE SPEC_JSON

SPEC_JSON holds ``{"catalog": [{"sku", "name", "barcode", "unit_grams"}, ...],
"initial_stock": {sku: qty}, "warehouses": {code: {sku: qty}}}`` (``warehouses`` optional: a
chain's stores, each its own warehouse). The script creates, in one transaction: the currency
CNY, the company (set as the admin user's company), the products (template code = SKU, an EAN
identifier, the weight in grams), the customer party ``Walk-in customer`` with an address, each
warehouse not there yet (Tryton's own is ``WH``) with its input, output and storage locations,
and per warehouse a done ``stock.inventory`` that puts its initial stock in its storage location
(``initial_stock`` goes to ``WH``).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

COMPANY_NAME = "Storeedge Retail"
CUSTOMER_NAME = "Walk-in customer"
WAREHOUSE_CODE = "WH"


def provision(config_file: str, database: str, spec: dict[str, Any]) -> None:
    """Create the company, products, customer and initial stock in ``database``."""
    from trytond.config import config

    config.update_etc(config_file)

    from trytond.pool import Pool
    from trytond.transaction import Transaction

    Pool.start()
    pool = Pool(database)
    pool.init()
    with Transaction().start(database, 0, context={}) as transaction:
        company = _company(pool)
        with transaction.set_context(company=company.id):
            products = _products(pool, spec["catalog"])
            _customer(pool)
            stock = {WAREHOUSE_CODE: spec.get("initial_stock", {}), **spec.get("warehouses", {})}
            for code, initial in stock.items():
                _initial_stock(pool, company, products, _warehouse(pool, code), initial)


def _company(pool: Any) -> Any:
    Currency = pool.get("currency.currency")
    Party = pool.get("party.party")
    Company = pool.get("company.company")
    User = pool.get("res.user")

    (cny,) = Currency.create([{
        "name": "Yuan Renminbi", "code": "CNY", "symbol": "¥", "rounding": Decimal("0.01"),
        "digits": 2,
    }])
    (party,) = Party.create([{"name": COMPANY_NAME}])
    (company,) = Company.create([{"party": party.id, "currency": cny.id}])
    admin, = User.search([("login", "=", "admin")])
    User.write([admin], {"companies": [("add", [company.id])], "company": company.id})
    return company


def _products(pool: Any, catalog: list[dict[str, Any]]) -> dict[str, Any]:
    ModelData = pool.get("ir.model.data")
    Template = pool.get("product.template")
    unit = ModelData.get_id("product", "uom_unit")
    gram = ModelData.get_id("product", "uom_gram")
    values = []
    for item in catalog:
        variant: dict[str, Any] = {}
        if item.get("barcode"):
            variant["identifiers"] = [("create", [{"type": "ean", "code": item["barcode"]}])]
        template: dict[str, Any] = {
            "name": item.get("name") or item["sku"],
            "code": item["sku"],
            "type": "goods",
            "default_uom": unit,
            "list_price": Decimal(str(item.get("list_price", 0))),
            "products": [("create", [variant])],
        }
        if item.get("unit_grams") and "weight" in Template._fields:
            template.update(weight=float(item["unit_grams"]), weight_uom=gram)
        values.append(template)
    # in batches: SQLite's parser overflows on Tryton's checks of about 50 records at once
    templates = [t for i in range(0, len(values), 40) for t in Template.create(values[i:i + 40])]
    return {t.code: t.products[0] for t in templates}


def _customer(pool: Any) -> None:
    Party = pool.get("party.party")
    Party.create([{
        "name": CUSTOMER_NAME,
        "addresses": [("create", [{"street": "Store counter"}])],
    }])


def _warehouse(pool: Any, code: str) -> Any:
    Location = pool.get("stock.location")
    found = Location.search([("code", "=", code), ("type", "=", "warehouse")])
    if found:
        return found[0]
    input_, output, storage = Location.create([
        {"name": f"{code} {part}", "code": f"{code}-{part[:3].upper()}", "type": "storage"}
        for part in ("Input", "Output", "Storage")])
    # Tryton makes the three children of the warehouse itself; inventories need a lost and
    # found: the one Tryton ships
    (lost_found,) = Location.search([("type", "=", "lost_found")], limit=1)
    (warehouse,) = Location.create([{
        "name": f"Store {code}", "code": code, "type": "warehouse",
        "input_location": input_.id, "output_location": output.id,
        "storage_location": storage.id, "lost_found_location": lost_found.id,
    }])
    return warehouse


def _initial_stock(pool: Any, company: Any, products: dict[str, Any], warehouse: Any,
                   initial_stock: dict[str, int]) -> None:
    if not initial_stock:
        return
    Inventory = pool.get("stock.inventory")
    Date = pool.get("ir.date")
    (inventory,) = Inventory.create([{
        "location": warehouse.storage_location.id,
        "company": company.id,
        "date": Date.today(),
        "lines": [("create", [
            {"product": products[sku].id, "quantity": float(qty)}
            for sku, qty in sorted(initial_stock.items())
        ])],
    }])
    Inventory.confirm([inventory])


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m cloud_bridge.tryton.provision CONF DATABASE SPEC_JSON",
              file=sys.stderr)
        return 2
    config_file, database, spec_file = argv
    provision(config_file, database, json.loads(Path(spec_file).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
