"""A fuzz of the agent's HTTP API from its own OpenAPI schema (schemathesis), as each role and
as nobody: no 5xx, every status the schema declares, every body (4xx included) as it declares.

Bounded: a few dozen examples per operation and role set, the alert stream ends after its
snapshot (the feed is closed), and a watchdog dumps the stacks and fails the run if a request
ever hangs.
"""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis import checks

from edge_agent.config import HttpSection, HttpToken
from edge_agent.web import AlertFeed, create_app
from rules.trackers.alerts import AlertNotFound
from storeedge.errors import PayloadError, UsageError
from tests.unit.test_web import FakeAgent

TOKENS = {"T_POS": ("till-1", "pos", "pos-S3cret-Xq7Lw2Zp9k"),
          "T_ANA": ("ana", "staff", "ana-S3cret-Xq7Lw2Zp9k"),
          "T_MEI": ("mei", "manager", "mei-S3cret-Xq7Lw2Zp9k"),
          "T_HQ": ("hq-dash", "hq", "hq-S3cret-Xq7Lw2Zp9k")}
ROLES: dict[str, dict[str, str]] = {
    "nobody": {},
    "wrong": {"Authorization": "Bearer not-a-token"},
    **{role: {"Authorization": f"Bearer {token}"} for _, role, token in TOKENS.values()},
}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


class Agent(FakeAgent):
    """Every lifecycle call answers as the agent does when the alert is not there."""

    def alert(self, alert_id: str, *args: object) -> None:
        raise AlertNotFound(f"no alert {alert_id}")

    claim_alert = resolve_alert = alert_history = alert

    def confirm_scan(self, code: str, caller: object) -> dict[str, object]:
        return {"matched": False, "code": code}

    def alert_summary(self) -> dict[str, object]:
        return {"open": [], "rules": {}, "people": {}, "recent": []}

    def devices(self) -> dict[str, dict[str, object]]:
        return {}

    def count_proposals(self, state: str | None = None) -> list[dict[str, object]]:
        return []

    async def propose_counts(self) -> list[dict[str, object]]:
        raise UsageError("no ERP is configured to count against")

    def decide_count(self, *args: object) -> None:
        raise UsageError("no ERP is configured for this")

    def orders(self, state: str | None = None) -> list[dict[str, object]]:
        return []

    def order(self, order_id: int) -> None:
        return None

    async def propose_order(self) -> None:
        raise UsageError("no ERP is configured for this")

    decide_order = receive = received = decide_count

    def new_pickup(self, order_id: str, *args: object) -> bool:
        return True

    def pickups(self, state: str | None = None) -> list[dict[str, object]]:
        return []

    def pickup_picked(self, order_id: str, actor: object) -> None:
        return None

    pickup_handed_over = pickup_cancelled = pickup_picked

    def report_problem(self, *args: object) -> None:
        raise PayloadError("photo: not a JPEG, PNG or WebP image")

    def problem_photo(self, report_id: str) -> None:
        return None

    def sign_in_pin(self, name: str, pin: str) -> None:
        return None

    def sign_in_qr(self, code: str) -> None:
        return None

    def staff_qr(self, name: str) -> None:
        return None

    def staff(self) -> list[dict[str, object]]:
        return []

    def set_staff(self, name: str, role: str, zones: list[str], pin: str | None,
                  ) -> dict[str, object]:
        return {"name": name, "role": role, "zones": zones, "pin": pin is not None,
                "qr": False, "updated_at": 0.0}

    def remove_staff(self, name: str) -> bool:
        return False

    def trends(self, hours: float) -> dict[str, object]:
        return {"sales_per_hour": [], "alerts_per_hour": [], "time_to_claim_s": {},
                "stock": {}, "devices_offline": [], "open_problems": []}


def _app() -> object:
    http = HttpSection(
        tokens=[HttpToken(name=name, role=role, token_env=env)  # type: ignore[arg-type]
                for env, (name, role, _) in TOKENS.items()],
        # The limits are tested on their own; here they would turn everything into 429.
        sign_in_attempts=1000, public_docs=True)
    feed = AlertFeed()
    feed.close()
    return create_app(Agent(), feed, http, CollectorRegistry(), None,
                      {env: token for env, (_, _, token) in TOKENS.items()})


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


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
