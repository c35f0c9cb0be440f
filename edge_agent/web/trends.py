"""The manager's trends (``edge_agent.trends``) and their export as CSV or XLSX."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from edge_agent.web.deps import ContextDep, ManagerCaller
from storeedge import tables

trends_router = APIRouter(prefix="/api/trends", tags=["trends"])

Hours = Annotated[float, Query(gt=0, le=24 * 93, description="the window, hours back from now")]


@trends_router.get("")
async def get_trends(ctx: ContextDep, _: ManagerCaller, hours: Hours = 24) -> dict[str, Any]:
    """Sales and alerts per hour, time to claim per rule, stock per lane over the window; the
    devices offline and the problems open now."""
    return ctx.api.trends(hours)


@trends_router.get("/{table}.{fmt}", response_class=Response, responses={
    200: {"content": {"text/csv": {}, tables.XLSX: {}}}})
async def export_trends(ctx: ContextDep, _: ManagerCaller,
                        table: Literal["sales_per_hour", "alerts_per_hour"],
                        fmt: Literal["csv", "xlsx"], hours: Hours = 24) -> Response:
    """One table of the trends as a file."""
    rows = ctx.api.trends(hours)[table]
    cols = sorted({c for row in rows for c in row} - {"hour"})
    cols = ["hour", *cols]
    name = f"{ctx.api.store_id}-{table}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return Response(tables.to_csv(rows, cols), media_type="text/csv; charset=utf-8",
                        headers=headers)
    return Response(tables.to_xlsx(rows, cols, table), media_type=tables.XLSX, headers=headers)
