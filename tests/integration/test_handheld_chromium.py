"""The handheld and manager pages in a real headless Chromium (tests/fixtures/chromium.py), in
English (the store's language set to en-US): live alerts, claim and resolve, scan, restart,
sign-in."""

from __future__ import annotations

import time
from typing import Any

from edge_agent.services import free_port
from edge_agent.web import AlertFeed
from storeedge.events import Severity
from tests.fixtures.chromium import (
    AgentServer,
    WallClock,
    card,
    journaled,
    screenshot,
    sign_in,
    start,
)
from tests.integration.test_lifecycle_api import STORE_NAME, TOKENS, JournaledStore, http_section


def test_alerts_appear_within_a_second_by_priority_and_leave_when_cleared(
    page: Any, servers: list[AgentServer], store: JournaledStore, clock: WallClock,
) -> None:
    from playwright.sync_api import expect

    server = start(servers, store, free_port())
    page.goto(server.url)
    expect(page.locator("#store")).to_have_text(STORE_NAME)
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
    expect(page.locator("#who")).to_contain_text("ana · zones 饮料区")
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
        expect(manager.locator('#people tr[data-key="ana"]')).to_contain_text("Restocked 1",
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
