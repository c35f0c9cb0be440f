"""The handheld and manager pages in a real headless Chromium, against the app served by a real
uvicorn over a real AlertManager and journal (``JournaledStore``, the agent's composition)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from edge_agent.config import HttpSection
from edge_agent.journal import Journal
from edge_agent.services import free_port
from edge_agent.web import AlertFeed, create_app
from storeedge.events import Severity
from tests.integration.test_lifecycle_api import TOKENS, JournaledStore, http_section

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STORE = "sh-0042"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")
R = TypeVar("R")


class AgentServer:
    """uvicorn serving the web app on a loopback port, from its own thread and event loop, as
    the agent would; ``call`` runs store work on that loop, as the agent's rules do."""

    def __init__(self, store: JournaledStore, port: int, http: HttpSection | None = None) -> None:
        self.store = store
        self.port = port
        store.feed = AlertFeed()
        app = create_app(store, store.feed, http or HttpSection(port=port), CollectorRegistry())
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

    def call(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on the server's event loop and wait for its result."""
        assert self.loop is not None

        async def run() -> R:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=5)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.store.feed.close)  # open streams would hold the graceful shutdown
            self.server.should_exit = True
            self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


class WallClock:
    """The real clock, which a test may set back to make an alert look older."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


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
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def store(tmp_path: Path, clock: WallClock) -> Iterator[JournaledStore]:
    journal = Journal(tmp_path / "journal.db")
    yield JournaledStore(journal, AlertFeed(), clock)
    journal.close()


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for env, (name, _, _) in TOKENS.items():
        monkeypatch.setenv(env, f"S3cret-Of-Xq7Lw2Zp-{name}")


@pytest.fixture
def servers() -> Iterator[list[AgentServer]]:
    """Servers a test started; each is stopped after the test, whatever happened."""
    started: list[AgentServer] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[AgentServer], store: JournaledStore, port: int,
          http: HttpSection | None = None) -> AgentServer:
    server = AgentServer(store, port, http)
    servers.append(server)
    return server.start()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def sign_in(page: Any, url: str, token: str) -> None:
    """What a person does: open the page, type their token, press Enter."""
    page.goto(url)
    page.fill("#token", token)
    page.press("#token", "Enter")


def card(page: Any, alert_id: str) -> Any:
    return page.locator(f'[data-alert-id="{alert_id}"]')


def journaled(store: JournaledStore, alert_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = store.journal.execute("SELECT state, body FROM alert_transition WHERE alert_id = ? "
                                 "ORDER BY seq", (alert_id,))
    return [(state, json.loads(body)["detail"]) for state, body in rows]


def test_alerts_appear_within_a_second_by_priority_and_leave_when_cleared(
    page: Any, servers: list[AgentServer], store: JournaledStore, clock: WallClock,
) -> None:
    from playwright.sync_api import expect

    server = start(servers, store, free_port())
    page.goto(server.url)
    expect(page.locator("#store")).to_have_text(STORE)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#summary")).to_have_attribute("data-count", "0")

    clock.offset = -750  # raised 12.5 minutes ago
    published = time.monotonic()
    a1 = server.call(lambda: store.low("A1-3"))
    expect(card(page, a1.alert_id)).to_be_visible(timeout=1000)
    shown_after = time.monotonic() - published
    clock.offset = -60
    f2 = server.call(lambda: store.low("F2-1", units=0))
    server.call(lambda: store.record(store.manager.apply(
        [_worse(store, "F2-1", Severity.CRITICAL)], clock())))
    cards = page.locator("#alerts > .card")
    expect(cards).to_have_count(2, timeout=1000)

    # The critical one leads, though it is younger; the page was never reloaded.
    expect(card(page, f2.alert_id)).to_have_attribute("data-severity", "critical")
    assert cards.evaluate_all("cards => cards.map(c => c.dataset.alertId)") == [
        f2.alert_id, a1.alert_id]
    first = card(page, a1.alert_id)
    assert (first.get_attribute("data-rule"), first.get_attribute("data-state")) == (
        "low_stock", "open")
    expect(first).to_contain_text("12 min")
    expect(first.locator(".bring b")).to_have_text("7")  # what to bring: 8 - 1
    screenshot(page, "handheld-two-alerts.png")

    server.call(lambda: store.clear("A1-3"))
    expect(first).to_have_count(0, timeout=1000)
    expect(page.locator("#summary")).to_have_attribute("data-count", "1")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    print(f"\nalert shown on the handheld {shown_after * 1000:.0f} ms after it was raised")


def _worse(store: JournaledStore, lane: str, severity: Severity) -> Any:
    from rules.actions import OpenAlert
    current = next(a for a in store.alerts() if a.subject == lane)
    return OpenAlert(rule=current.rule, subject=lane, severity=severity, message=current.message,
                     sku=current.sku, location=current.location,
                     detail={"units": 0, "threshold": 2, "bring": 8})


def test_staff_claim_and_resolve_by_tapping_and_the_manager_sees_it(
    page: Any, browser: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port))
    mine = server.call(lambda: store.low("A1-3"))
    theirs = server.call(lambda: store.low("F2-1"))

    sign_in(page, server.url, "S3cret-Of-Xq7Lw2Zp-ana")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#who")).to_contain_text("ana · zones drinks")
    ours = card(page, mine.alert_id)
    expect(ours).to_be_visible()
    expect(card(page, theirs.alert_id)).to_have_count(0)  # another zone's task

    ours.locator("button.claim").tap()
    expect(ours).to_have_attribute("data-state", "claimed", timeout=2000)
    expect(ours).to_contain_text("Claimed by")
    screenshot(page, "handheld-claimed.png")
    ours.locator('button[data-outcome="restocked"]').tap()
    expect(ours).to_have_count(0, timeout=2000)
    screenshot(page, "handheld-resolved.png")

    assert [(state, d["transition"], d["by"]) for state, d in journaled(store, mine.alert_id)] \
        == [("open", "opened", "rule"), ("claimed", "claimed", "ana"),
            ("resolved", "resolved", "ana")]
    assert journaled(store, mine.alert_id)[-1][1]["outcome"] == "restocked"

    context = browser.new_context(viewport={"width": 1024, "height": 768}, locale="en-US")
    try:
        manager = context.new_page()
        manager.goto(f"{server.url}manager")
        expect(manager.locator("#conn")).to_have_attribute("data-state", "denied", timeout=5000)
        manager.fill("#token", "S3cret-Of-Xq7Lw2Zp-mei")
        manager.press("#token", "Enter")
        expect(manager.locator('#people tr[data-key="ana"]')).to_contain_text("restocked 1",
                                                                               timeout=5000)
        expect(manager.locator(f'#open tr[data-key="{theirs.alert_id}"]')).to_be_visible()
        # Live: cy claims the frozen task and the manager's view follows without a reload.
        server.call(lambda: store.claim_alert(theirs.alert_id, _actor("cy")))
        expect(manager.locator(f'#open tr[data-key="{theirs.alert_id}"]')).to_contain_text(
            "cy", timeout=3000)
        screenshot(manager, "manager-summary.png")
    finally:
        context.close()


def _actor(name: str) -> Any:
    from rules.trackers.alerts import Actor
    _, role, zones = next(v for v in TOKENS.values() if v[0] == name)
    return Actor(name, role, frozenset(zones))


def test_a_wedge_scan_confirms_the_product_at_the_lane(
    page: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port))
    cola = server.call(lambda: store.low("A1-3"))
    sign_in(page, server.url, "S3cret-Of-Xq7Lw2Zp-ana")
    expect(card(page, cola.alert_id)).to_be_visible(timeout=5000)
    page.locator("#store").tap()  # a tap anywhere leaves the scanner's input focused
    expect(page.locator("#wedge")).to_be_focused()

    # What the scanner's keyboard wedge does: type the code, then Enter.
    page.keyboard.type("4006381333931", delay=5)
    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_have_attribute("data-kind", "error", timeout=2000)
    page.keyboard.type("6901234567892", delay=5)
    page.keyboard.press("Enter")

    expect(page.locator("#toast")).to_contain_text("lane A1-3 · bring 7", timeout=2000)
    expect(page.locator("#toast")).to_have_attribute("data-kind", "ok")
    expect(card(page, cola.alert_id)).to_have_attribute("data-state", "claimed")
    expect(page.locator("#wedge")).to_have_value("")
    screenshot(page, "handheld-scan-confirmed.png")
    last = journaled(store, cola.alert_id)[-1][1]
    assert (last["transition"], last["confirmed_by"], last["confirmed_code"]) == (
        "confirmed", "ana", "6901234567892")


def test_page_recovers_and_catches_up_after_the_agent_restarts(
    page: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port))
    a1 = server.call(lambda: store.low("A1-3"))
    sign_in(page, server.url, "S3cret-Of-Xq7Lw2Zp-ana")
    expect(card(page, a1.alert_id)).to_be_visible(timeout=5000)

    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=5000)
    # While the agent is down, A1-3 is restocked and A1-4 runs low.
    store.clear("A1-3")
    a4 = store.low("A1-4")
    restarted = JournaledStore(store.journal, AlertFeed(), store.clock)
    server = start(servers, restarted, port, http_section(port))

    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15000)
    expect(card(page, a4.alert_id)).to_be_visible()
    expect(card(page, a1.alert_id)).to_have_count(0)
    # The restarted agent serves the claim: the session outlived it.
    card(page, a4.alert_id).locator("button.claim").tap()
    expect(card(page, a4.alert_id)).to_have_attribute("data-state", "claimed", timeout=2000)
    screenshot(page, "handheld-after-restart.png")


def test_sign_in_with_a_token_once_and_say_when_it_is_rejected(
    page: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port))

    page.goto(server.url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "denied", timeout=5000)
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#token", "S3cret-Of-Xq7Lw2Zp-nobody")
    page.press("#token", "Enter")
    expect(page.locator("#conn")).to_have_attribute("data-state", "denied")
    screenshot(page, "handheld-sign-in.png")

    page.fill("#token", "S3cret-Of-Xq7Lw2Zp-bo")
    page.locator("#signin button").tap()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#signin")).to_be_hidden()

    # The session outlives a reload; the token is kept nowhere the page's scripts reach.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#who")).to_contain_text("bo")
    assert page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]") \
        == [0, 0, ""]
    page.locator("#signout").tap()
    expect(page.locator("#signin")).to_be_visible()
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "denied", timeout=5000)
