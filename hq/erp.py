"""Stock quantities per store and SKU from the ERP (Tryton), for the stock accuracy report."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cloud_bridge.tryton.connector import TrytonConnector
from storeedge.errors import ErpUnavailable


class ErpStock:
    """Read-only: HQ never writes to the ERP (the stores' agents do)."""

    def __init__(self, connector: TrytonConnector) -> None:
        self.connector = connector

    async def aclose(self) -> None:
        await self.connector.aclose()

    async def quantities(self, warehouses: dict[str, str]) -> dict[tuple[str, str], float]:
        """``{(store id, sku): units}`` in each store's warehouse storage: done moves in minus
        done moves out (moves inside the storage count both ways and cancel)."""
        out: dict[tuple[str, str], float] = defaultdict(float)
        for store, code in warehouses.items():
            found = await self.connector.call(
                "stock.location", "search_read",
                [("code", "=", code), ("type", "=", "warehouse")], 0, 1, None,
                ["storage_location"])
            if not found:
                raise ErpUnavailable(f"the ERP has no warehouse {code!r} (store {store})")
            storage = found[0]["storage_location"]
            for direction, sign in (("to_location", 1), ("from_location", -1)):
                moves: list[dict[str, Any]] = await self.connector.call(
                    "stock.move", "search_read",
                    [("state", "=", "done"), (direction, "child_of", [storage], "parent")],
                    0, None, None, ["product.code", "quantity"])
                for move in moves:
                    code_ = (move.get("product.") or {}).get("code")
                    if code_:
                        out[(store, code_)] += sign * float(move["quantity"])
        return dict(out)
