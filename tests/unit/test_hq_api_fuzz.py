"""A fuzz of HQ's HTTP API from its own OpenAPI schema (schemathesis), as an HQ user, as a
store's staff token, with a wrong token and as nobody: no 5xx, every status the schema declares,
every body as it declares. The time-series server is unreachable (its answers are 503s the
schema declares); the broker is not followed."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from edge_agent.services import free_port
from hq.config import HqConfig
from hq.web import create_app

HQ_TOKEN = "hq-S3cret-Xq7Lw2Zp9k-fuzz"
ROLES: dict[str, dict[str, str]] = {
    "nobody": {},
    "wrong": {"Authorization": "Bearer not-a-token"},
    "store staff": {"Authorization": "Bearer ana-S3cret-Xq7Lw2Zp9k"},
    "hq": {"Authorization": f"Bearer {HQ_TOKEN}"},
}


def only_a_declared_outage(ctx: object, response: schemathesis.Response,
                           case: schemathesis.Case) -> None:
    """No 5xx but the 503 that says the time-series server cannot answer (it cannot, here)."""
    if response.status_code >= 500:
        assert response.status_code == 503, response.text[:200]
        assert response.json()["detail"].startswith("time-series server "), response.text


CHECKS = [only_a_declared_outage, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


def _app() -> object:
    config = HqConfig.model_validate({
        "users": [{"name": "ops", "token_env": "STOREEDGE_FUZZ_HQ_TOKEN"}],
        # The limits are tested on their own; here they would turn everything into 429.
        "http": {"sign_in_attempts": 1000, "public_docs": True},
        "timeseries": {"url": f"http://127.0.0.1:{free_port()}", "timeout_seconds": 1},
        "stores": [{"id": "fuzz-01", "name": "Fuzz"}, {"id": "fuzz-02"}]})
    return create_app(config, follow=False)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture(autouse=True)
def hq_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREEDGE_FUZZ_HQ_TOKEN", HQ_TOKEN)  # read as the app starts


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_role_gets_a_declared_answer(case: schemathesis.Case) -> None:
    for headers in ROLES.values():
        case.call_and_validate(headers={**(case.headers or {}), **headers}, checks=CHECKS)
