"""The handheld page in a real headless Chromium, against the app served by a real uvicorn."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from edge_agent.config import HttpSection, HttpToken
from edge_agent.services import free_port
from edge_agent.web import AlertFeed, create_app
from storeedge.events import Alert, AlertState, PosTransaction, Severity

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STORE = "sh-0042"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")


class StoreApi:
    """Just enough AgentApi: the alerts' latest transitions, kept in a dict."""

    store_id = STORE

    def __init__(self) -> None:
        self.latest: dict[str, Alert] = {}

    def accept_pos(self, txn: PosTransaction) -> bool:
        return True

    def alerts(self, state: str | None = None) -> list[Alert]:
        return [a for a in self.latest.values() if state is None or a.state == state]

    def lanes(self) -> list[dict[str, Any]]:
        return []

    def health(self) -> dict[str, Any]:
        return {"status": "ok"}


class AgentServer:
    """uvicorn serving the web app on a loopback port, from its own thread and event loop, as
    the agent would; ``publish`` hands it a transition the way the agent's rules do."""

    def __init__(self, api: StoreApi, port: int, http: HttpSection | None = None) -> None:
        self.api = api
        self.port = port
        self.feed = AlertFeed()
        app = create_app(api, self.feed, http or HttpSection(port=port), CollectorRegistry())
        self.server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),),
                                       name=f"uvicorn:{port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def start(self) -> AgentServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the server's event loop and wait for it."""
        assert self.loop is not None

        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=5)

    def publish(self, alert: Alert) -> None:
        def record_and_publish() -> None:
            self.api.latest[alert.alert_id] = alert
            self.feed.publish(alert)

        self.call(record_and_publish)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.feed.close)  # open streams would hold uvicorn's graceful shutdown
            self.server.should_exit = True
            self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def alert(alert_id: str, state: AlertState = AlertState.OPEN,
          severity: Severity = Severity.WARNING, *, age: float = 0.0, lane: str = "A1-3",
          rule: str = "low_stock", sku: str | None = "COLA-330",
          message: str = "Cola 330ml: 1 left on the shelf (low stock 2)") -> Alert:
    return Alert(store_id=STORE, source="rules", received_ts=time.time() - age,
                 alert_id=alert_id, rule=rule, severity=severity, subject=lane,
                 message=message, state=state, sku=sku, location=lane)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # A handheld scanner: a 360x640 phone screen.
    context = browser.new_context(viewport={"width": 360, "height": 640},
                                  device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="en-US")
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def servers() -> Iterator[list[AgentServer]]:
    """Servers a test started; each is stopped after the test, whatever happened."""
    started: list[AgentServer] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[AgentServer], api: StoreApi, port: int,
          http: HttpSection | None = None) -> AgentServer:
    server = AgentServer(api, port, http)
    servers.append(server)
    return server.start()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_alerts_appear_and_disappear_live(page: Any, servers: list[AgentServer]) -> None:
    from playwright.sync_api import expect

    server = start(servers, StoreApi(), free_port())
    page.goto(server.url)
    expect(page.locator("#store")).to_have_text(STORE)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#summary")).to_have_attribute("data-count", "0")

    server.publish(alert("a-1", age=750))
    expect(page.locator('[data-alert-id="a-1"]')).to_be_visible(timeout=1000)
    server.publish(alert("a-2", severity=Severity.CRITICAL, lane="F2-1", age=60,
                         rule="cold_chain", sku=None,
                         message="Freezer F2 at -9 °C for 5 min (limit -15 °C)"))
    cards = page.locator("#alerts > .card")
    expect(cards).to_have_count(2, timeout=1000)

    # The critical one leads, though it is younger; the page was never reloaded.
    assert cards.evaluate_all("cards => cards.map(c => c.dataset.alertId)") == ["a-2", "a-1"]
    first = page.locator('[data-alert-id="a-1"]')
    assert (first.get_attribute("data-rule"), first.get_attribute("data-state")) == (
        "low_stock", "open")
    expect(first).to_contain_text("12 min")
    expect(page.locator("#summary")).to_have_attribute("data-count", "2")
    screenshot(page, "handheld-two-alerts.png")

    server.publish(alert("a-1", AlertState.CLEARED))
    expect(first).to_have_count(0, timeout=1000)
    expect(page.locator("#summary")).to_have_attribute("data-count", "1")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_page_reconnects_after_the_agent_restarts(page: Any, servers: list[AgentServer]) -> None:
    from playwright.sync_api import expect

    api = StoreApi()
    port = free_port()
    server = start(servers, api, port)
    server.publish(alert("a-1"))
    page.goto(server.url)
    expect(page.locator('[data-alert-id="a-1"]')).to_be_visible(timeout=5000)

    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=5000)
    # While the agent is down, a-1 clears and a-3 opens.
    api.latest["a-1"] = alert("a-1", AlertState.CLEARED)
    api.latest["a-3"] = alert("a-3", severity=Severity.CRITICAL, lane="B2-1")
    start(servers, api, port)

    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15000)
    expect(page.locator('[data-alert-id="a-3"]')).to_be_visible()
    expect(page.locator('[data-alert-id="a-1"]')).to_have_count(0)
    screenshot(page, "handheld-after-restart.png")


def test_page_uses_a_token_given_once_and_says_when_it_is_rejected(
    page: Any, servers: list[AgentServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect

    monkeypatch.setenv("T_HANDHELD", "handheld-secret")
    port = free_port()
    http = HttpSection(port=port, tokens=[
        HttpToken(name="handheld-1", role="staff", token_env="T_HANDHELD")])
    server = start(servers, StoreApi(), port, http)

    page.goto(server.url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "denied", timeout=5000)

    page.goto(f"{server.url}?token=handheld-secret")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    assert "token" not in page.url  # kept on the device, not left in the address bar
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
