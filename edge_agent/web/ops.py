"""Operations and pages: health probes, metrics, the API's docs served locally, the app's
icons, manifest and service worker, the handheld and manager pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge_agent.web.deps import (
    STAFF,
    AppContext,
    BearerDep,
    ContextDep,
    DocsReader,
    MetricsReader,
    identify,
)
from edge_agent.web_security import SESSION_COOKIE
from storeedge.httpsec import DOCS_ASSETS, ERROR_RESPONSES, docs_page

STATIC_DIR = Path(__file__).parent.parent / "static"
# Files the pages load besides themselves, by the name they are asked for: the app's icons and
# each feature's script.
_ICON_SIZES = {"icon-192.png": 192, "icon-512.png": 512}
_STATIC = {name: STATIC_DIR / name for name in _ICON_SIZES} | {
    path.name: path for path in STATIC_DIR.glob("*.js") if path.name not in ("i18n.js", "sw.js")
}


ops_router = APIRouter(tags=["ops"])


@ops_router.get("/healthz")
async def liveness() -> dict[str, str]:
    """200 while the process serves HTTP."""
    return {"status": "ok"}


@ops_router.get("/readyz", responses={
    503: {"description": "Not ready"}, 401: ERROR_RESPONSES[401], 429: ERROR_RESPONSES[429]})
async def readiness(ctx: ContextDep, request: Request, credentials: BearerDep) -> JSONResponse:
    """The agent's status, 503 unless ``ok``; the detail (devices, counters, ERP, broker) only
    for a manager or HQ, or to anyone with ``http.public_health_detail``."""
    health = ctx.api.health()
    ok = health.get("status") == "ok"
    code = status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
    detailed = ctx.http.public_health_detail or ctx.guard.open
    if not detailed and (credentials or request.cookies.get(SESSION_COOKIE)):
        detailed = identify(request, ctx, credentials, ("pos", *STAFF)).role in ("manager",
                                                                                   "hq")
    body = health if detailed else {"status": health.get("status")}
    return JSONResponse(jsonable_encoder(body), code)


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(ctx: ContextDep, _: MetricsReader) -> Response:
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/openapi.json", include_in_schema=False)
async def openapi_schema(request: Request, _: DocsReader) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@ops_router.get("/docs", include_in_schema=False)
async def docs(request: Request, _: DocsReader) -> HTMLResponse:
    return docs_page(request.app.title)


@ops_router.get("/docs/assets/{name}", include_in_schema=False)
async def docs_asset(name: str) -> FileResponse:
    return _file(DOCS_ASSETS, name)


@ops_router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    return _file(_STATIC, name)


def _file(files: dict[str, Path], name: str) -> FileResponse:
    path = files.get(name)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no file {name!r}")
    # Scripts change with the agent's pages: the browser revalidates them (ETag) on each load.
    cache = "no-cache" if name.endswith((".js", ".css")) else "public, max-age=86400"
    return FileResponse(path, headers={"Cache-Control": cache})


@ops_router.get("/manifest.webmanifest", include_in_schema=False)
async def manifest(ctx: ContextDep) -> JSONResponse:
    """The web app manifest: the handheld page installs as an app (over HTTPS)."""
    return JSONResponse({
        "name": f"storeedge {ctx.api.store_id}", "short_name": ctx.api.store_id,
        "lang": ctx.http.language, "start_url": "/", "scope": "/", "display": "standalone",
        "background_color": "#eef1f5", "theme_color": "#12324a",
        "icons": [{"src": f"/static/{name}", "sizes": f"{px}x{px}", "type": "image/png",
                   "purpose": "any maskable"} for name, px in _ICON_SIZES.items()],
    }, media_type="application/manifest+json", headers={"Cache-Control": "no-cache"})


@ops_router.get("/sw.js", include_in_schema=False)
async def service_worker() -> FileResponse:
    # The worker's own CSP governs what it fetches: only this agent.
    return FileResponse(STATIC_DIR / "sw.js", media_type="text/javascript", headers={
        "Cache-Control": "no-cache",
        "Content-Security-Policy": "default-src 'none'; connect-src 'self'"})


@ops_router.get("/", include_in_schema=False)
async def handheld_page(ctx: ContextDep) -> HTMLResponse:
    return _page(ctx, "handheld")


@ops_router.get("/manager", include_in_schema=False)
async def manager_page(ctx: ContextDep) -> HTMLResponse:
    return _page(ctx, "manager")


def _page(ctx: AppContext, name: str) -> HTMLResponse:
    body, csp = ctx.pages[name]
    return HTMLResponse(body, headers={"Cache-Control": "no-cache",
                                       "Content-Security-Policy": csp})
