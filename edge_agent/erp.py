"""The store's ERP connector, built from its ``erp`` config section. Each kind's module is
imported only when a store has that kind: the connectors' HTTP client and what it loads are
~5 MB of an agent without an ERP."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.config import ErpSection, reveal

if TYPE_CHECKING:
    from cloud_bridge.rest.connector import RestConnector
    from cloud_bridge.tryton.connector import TrytonConnector


def erp_connector(e: ErpSection,
                  clock: Callable[[], float]) -> TrytonConnector | RestConnector | None:
    """The configured connector, or None for a store without an ERP."""
    if e.kind == "tryton":
        from cloud_bridge.tryton.connector import TrytonConnector

        return TrytonConnector(e.url, e.database, e.username, reveal(e.password()) or "",
                               e.warehouse, e.customer, e.timeout_seconds,
                               ca_file=str(e.ca_file) if e.ca_file else None,
                               supply_warehouse_code=e.supply_warehouse)
    if e.kind == "rest" and e.rest is not None:
        from cloud_bridge.rest.connector import RestConnector

        return RestConnector(e.url, e.rest, reveal(e.app_secret()) or "",
                             timeout=e.timeout_seconds,
                             ca_file=str(e.ca_file) if e.ca_file else None, clock=clock)
    return None
