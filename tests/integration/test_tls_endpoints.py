"""TLS where the store serves or calls HTTP: the agent's web app over HTTPS with the store's
certificates, and the ERP connector verifying the ERP's certificate against a configured CA.
Real uvicorn servers on loopback ports, real TLS handshakes."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse

from cloud_bridge.tryton.connector import TrytonConnector
from edge_agent.certs import StoreCerts, write_store_certs
from edge_agent.config import HttpSection, HttpToken
from edge_agent.services import free_port
from edge_agent.web import AlertFeed, create_app
from storeedge.errors import ErpUnavailable
from storeedge.httpsec import tls_server_options
from tests.unit.test_web import FakeAgent

TOKEN = "ana-S3cret-Xq7Lw2Zp9k"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> StoreCerts:
    return write_store_certs(tmp_path_factory.mktemp("certs"), "s1")


@asynccontextmanager
async def serving(app: Any, http: HttpSection) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", **tls_server_options(http.tls_cert_file,
                                                                              http.tls_key_file)))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_the_web_app_serves_https_with_secure_cookies(certs: StoreCerts,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("T_ANA", TOKEN)
    http = HttpSection(tokens=[HttpToken(name="ana", role="staff", token_env="T_ANA")],
                       tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    app = create_app(FakeAgent(), AlertFeed(), http, CollectorRegistry())
    trust = ssl.create_default_context(cafile=str(certs.ca_cert))
    async with serving(app, http) as port:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trust) as c:
            signed_in = await c.post("/api/session", json={"token": TOKEN})
            lanes = await c.get("/api/lanes")  # with the cookie just set
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets nowhere
            async with httpx.AsyncClient() as plain:
                await plain.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            async with httpx.AsyncClient() as untrusting:  # the system's CAs: not ours
                await untrusting.get(f"https://127.0.0.1:{port}/healthz", timeout=5)

    assert signed_in.status_code == 200
    cookie = signed_in.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie
    assert lanes.status_code == 200
    assert signed_in.headers["strict-transport-security"].startswith("max-age=")


def _fake_tryton() -> Any:
    """Answers the two calls of a Tryton login, as Tryton's JSON-RPC does."""
    async def rpc(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = json.loads(await request.body())
        result: Any = [1, "session-key"] if body["method"] == "common.db.login" else {}
        await JSONResponse({"id": body["id"], "result": result})(scope, receive, send)
    return rpc


async def test_the_erp_connector_verifies_the_erps_certificate(certs: StoreCerts,
                                                               tmp_path: Path) -> None:
    http = HttpSection(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    other = write_store_certs(tmp_path / "other", "s2")  # a CA that did not sign the ERP's cert
    async with serving(_fake_tryton(), http) as port:
        url = f"https://127.0.0.1:{port}/"
        trusting = TrytonConnector(url, "db", "admin", "pw", ca_file=str(certs.ca_cert))
        wrong_ca = TrytonConnector(url, "db", "admin", "pw", ca_file=str(other.ca_cert))
        system = TrytonConnector(url, "db", "admin", "pw")
        try:
            await trusting.login()
            for connector in (wrong_ca, system):
                with pytest.raises(ErpUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                    await connector.login()
        finally:
            for connector in (trusting, wrong_ca, system):
                await connector.aclose()
