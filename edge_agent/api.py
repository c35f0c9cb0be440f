"""What the web app needs from the running agent. The agent implements it; the web layer
(``edge_agent.web``) only translates HTTP to these calls and back."""

from __future__ import annotations

from typing import Any, Protocol

from storeedge.events import Alert, PosTransaction


class AgentApi(Protocol):
    store_id: str

    def accept_pos(self, txn: PosTransaction) -> bool:
        """Journal a completed POS transaction and queue it for the ERP, durably, before
        returning. True when new, False when ``txn_id`` was already accepted (idempotent).
        Raises ``PayloadError`` naming the line when a SKU is unknown or a quantity is bad."""
        ...

    def alerts(self, state: str | None = None) -> list[Alert]:
        """The latest transition of each alert, newest first; ``state`` filters."""
        ...

    def lanes(self) -> list[dict[str, Any]]:
        """Per lane: id, sku, units, grams, stable, capacity, low_stock."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"status": "ok" | "degraded", ...}`` with per-component detail (broker, erp backlog,
        time-series backlog, devices)."""
        ...
