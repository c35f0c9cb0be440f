"""The pages as a Beijing store's staff and manager see them, in a real headless Chromium
(tests/fixtures/chromium.py): every visible string in the page's language (zh-CN and en-US)
with an alert of every rule and the store's work (orders, a delivery scanned in, a count, an
online order) on screen, the language switch, cards that keep their place,
notices apart from tasks, attention for a new task, outcomes that fit the rule, the installable
app, and API docs served by the agent itself."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_bridge import counts, orders
from edge_agent import operations, pickups, problems
from edge_agent.config import HttpSection
from edge_agent.services import free_port
from rules.actions import OpenAlert
from rules.library import RULES
from rules.trackers.alerts import Outcome
from storeedge.events import Alert, Severity
from tests.fixtures.chromium import ARTIFACTS, CHROMIUM, AgentServer, card, sign_in, start
from tests.integration.test_lifecycle_api import BARCODES, JournaledStore, http_section

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
MANAGER = "S3cret-Of-Xq7Lw2Zp-mei"
ANA = "S3cret-Of-Xq7Lw2Zp-ana"
WARN, CRIT, INFO = Severity.WARNING, Severity.CRITICAL, Severity.INFO

# Text a person reads that is not in the page's language: a raw key (low_stock), a template's
# hole (undefined), Latin letters on a Chinese page, Chinese on an English one. Data (codes,
# SKUs, names) is marked data-raw by the page; the language switch names the other language in
# its own (lang=...).
UNTRANSLATED = """() => {
  const zh = document.documentElement.lang === "zh-CN";
  const foreign = zh ? /[A-Za-z]/ : /[\\u3000-\\u9fff\\uff00-\\uffef]/;
  const bad = [];
  const check = (text, where) => {
    text = text.trim();
    if (text && (/\\b[a-z]+(_[a-z]+)+\\b|undefined|null|NaN|\\[object/.test(text)
                 || foreign.test(text))) bad.push(`${where}: ${text}`);
  };
  const skip = (el) => el.closest("[data-raw], script, style")
    || el.closest("[lang]") !== document.documentElement;
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const el = n.parentElement;
    if (!el || skip(el) || el.getClientRects().length === 0) continue;
    check(n.textContent, el.id || el.className || el.tagName);
  }
  for (const el of document.body.querySelectorAll("[placeholder], [title], [aria-label]")) {
    if (skip(el)) continue;
    for (const a of ["placeholder", "title", "aria-label"]) check(el.getAttribute(a) ?? "", a);
  }
  check(document.title.replace(document.getElementById("store").textContent, ""), "title");
  return bad;
}"""


def every_rule(now: float) -> list[OpenAlert]:
    """One alert of each rule in the library, with the detail that rule gives."""
    def a(rule: str, subject: str, severity: Severity, **kw: Any) -> OpenAlert:
        return OpenAlert(rule=rule, subject=subject, severity=severity,
                         message=f"{rule} {subject} (the agent's English)", **kw)
    return [
        a("low_stock", "A1-3", WARN, sku="COLA-330", location="A1-3",
          detail={"units": 1, "threshold": 2, "bring": 7}),
        a("out_of_stock", "A1-4", CRIT, sku="CHIPS-70", location="A1-4",
          detail={"units": 0, "bring": 8}),
        a("days_of_cover", "COLA-330", INFO, sku="COLA-330", zone="drinks",
          detail={"stock": 5, "per_hour": 3.0, "cover_hours": 1.67}),
        a("shrink", "CHIPS-70:2026-11-28", WARN, sku="CHIPS-70", zone="drinks", role="manager",
          detail={"units": 2, "day": "2026-11-28"}),
        a("misplaced", "tag:3034257BF7194E4000001A85", INFO, sku="ICE-1", location="A1-3",
          zone="drinks", detail={"epc": "3034257BF7194E4000001A85", "lane_sku": "COLA-330"}),
        a("misplaced", "lane:A1-4", INFO, sku="CHIPS-70", location="A1-4", zone="drinks"),
        a("shelf_camera", "A1-4", INFO, sku="CHIPS-70", location="A1-4",
          detail={"occupancy": 0.9, "count": 1}),
        a("sensor_stuck", "shelf-a1", WARN, location="shelf-a1", role="manager"),
        a("sensor_noisy", "fridge-1/t", INFO, location="fridge-1", zone="frozen", role="manager",
          detail={"median_step": 1.8}),
        a("sensor_drift", "A1-3", INFO, sku="COLA-330", location="A1-3", role="manager",
          detail={"drift_grams": 12.5}),
        a("device_offline", "shelf-b1", WARN, location="shelf-b1", role="manager",
          detail={"since": now - 300}),
        a("checkout_suspect", "kiosk-1/S-1", WARN, location="kiosk-1",
          detail={"session": "S-1", "unexplained_grams": 350.0}),
        a("checkout_voids", "kiosk-1/S-2", WARN, location="kiosk-1",
          detail={"session": "S-2", "voids": 4}),
        a("cold_chain", "fridge-1", CRIT, location="fridge-1", zone="frozen",
          detail={"temperature": -12.5, "min_c": -22.0, "max_c": -16.0}),
        a("expiry", "06901234567892/L23", WARN, sku="COLA-330", zone="drinks",
          detail={"gtin": "06901234567892", "batch": "L23", "expiry": "2026-11-30"}),
    ]


def store_work(store: JournaledStore) -> None:
    """An order to approve, one on its way, a count to decide and an online order to pick."""
    policy = orders.Policy()
    coming = orders.propose(store.work, policy, {"CHIPS-70": 4.0}, {"CHIPS-70": 1},
                            {"CHIPS-70": 2})
    assert coming is not None
    orders.decide(store.work, store.store_id, coming["id"], True, "mei")
    orders.propose(store.work, policy, {"COLA-330": 6.0}, {"COLA-330": 3}, {"COLA-330": 2})
    counts.propose(store.work, {"CHIPS-70": 7}, {"CHIPS-70": 10}, Counter({"CHIPS-70": 1}), 1)
    pickups.create(store.work, "WEB-1001", [{"sku": "COLA-330", "qty": 2, "unit_price": 3.5}],
                   "王芳")


def raise_all(server: AgentServer, store: JournaledStore) -> list[Alert]:
    return server.call(lambda: store.record(store.manager.apply(every_rule(store.clock()),
                                                                store.clock())))


def keep(page: Any, name: str) -> None:
    """A screenshot of what the screen shows, in the artifacts; with STOREEDGE_DOCS_SCREENSHOTS=1
    also in docs/img, for the README (a plain run leaves the work tree clean)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name))
    if os.environ.get("STOREEDGE_DOCS_SCREENSHOTS") == "1":
        shutil.copy(ARTIFACTS / name, DOCS_IMG / name)


@pytest.mark.parametrize("language", ["zh-CN", "en-US"])
def test_every_visible_string_is_in_the_pages_language(
    language: str, browser: Any, servers: list[AgentServer], store: JournaledStore,
    tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port), language=language)
    alerts = raise_all(server, store)
    store_work(store)
    # The browser's own language is the other one: the store's default decides.
    context = browser.new_context(viewport={"width": 360, "height": 640}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True,
                                  locale="en-US" if language == "zh-CN" else "zh-CN")
    try:
        page = context.new_page()
        page.goto(server.url)
        expect(page.locator("#signin")).to_be_visible(timeout=5000)
        assert page.evaluate(UNTRANSLATED) == [], "sign-in"
        sign_in(page, server.url, MANAGER)
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
        tasks = [a for a in alerts if a.severity is not Severity.INFO]
        expect(page.locator("#alerts > .card")).to_have_count(len(tasks))
        expect(page.locator("#infos > .card")).to_have_count(len(alerts) - len(tasks))
        claimed = card(page, alerts[0].alert_id)
        claimed.locator("button.claim").tap()
        expect(claimed).to_have_attribute("data-state", "claimed", timeout=5000)
        page.locator("#info > summary").tap()
        expect(page.locator("#infos > .card").first).to_be_visible()
        assert page.evaluate(UNTRANSLATED) == [], "handheld"
        assert page.evaluate("document.documentElement.scrollWidth") == 360  # no sideways scroll
        if language == "zh-CN":  # drawn in a CJK font, not as empty boxes
            assert page.evaluate("document.fonts.check('20px \"Noto Sans CJK SC\"', '库存不足')")
            expect(claimed.locator(".message")).to_contain_text(
                "可口可乐 330ml 罐装 在货道 A1-3 仅剩 1 件（阈值 2），请补 7 件")  # noqa: RUF001
        else:
            expect(claimed.locator(".message")).to_contain_text(
                "可口可乐 330ml 罐装 at lane A1-3: 1 left (threshold 2); bring 7")
        page.locator("#store").tap()
        keep(page, f"handheld-{language}.png")

        # A delivery scanned in: one unit of two, and one that was not ordered.
        expect(page.locator("#pickups .pickup")).to_have_count(1)
        page.locator("#receiving button.receive").tap()
        for sku in ("CHIPS-70", "COLA-330"):
            page.keyboard.type(BARCODES[sku], delay=2)
            page.keyboard.press("Enter")
            expect(page.locator(f"#receiving tr[data-sku={sku}] td.scanned")).to_have_text("1")
        assert page.evaluate(UNTRANSLATED) == [], "receiving"
        page.locator("#receiving button.back").tap()

        manager = context.new_page()
        manager.set_viewport_size({"width": 1280, "height": 900})
        manager.goto(f"{server.url}manager")  # a session of its own: the handheld's is not it
        expect(manager.locator("#signin")).to_be_visible(timeout=5000)
        assert manager.evaluate(UNTRANSLATED) == [], "manager sign-in"
        sign_in(manager, f"{server.url}manager", MANAGER)
        expect(manager.locator("#open tr[data-key]")).to_have_count(len(alerts), timeout=5000)
        expect(manager.locator("#people tr[data-key]")).to_have_count(1)
        expect(manager.locator("#orders .proposal tr[data-sku]")).to_have_count(1)
        expect(manager.locator("#orders tr[data-state=approved]")).to_have_count(1)
        expect(manager.locator("#counts tr[data-state=proposed]")).to_have_count(1)
        expect(manager.locator("#conn")).to_have_attribute("data-state", "live")
        assert manager.evaluate(UNTRANSLATED) == [], "manager"
        keep(manager, f"manager-{language}.png")
    finally:
        context.close()


def test_every_rule_and_outcome_has_words_in_both_languages(
    page: Any, servers: list[AgentServer], store: JournaledStore,
) -> None:
    """A rule added to the library without its name and message template here fails this."""
    server = start(servers, store, free_port())
    page.goto(server.url)
    words = page.evaluate("""() => Object.fromEntries(Object.entries(WORDS).map(([lang, w]) =>
      [lang, [Object.keys(w.rule), Object.keys(w.message), Object.keys(w.outcome)]]))""")
    assert {a.rule for a in every_rule(0)} == set(RULES)  # the screens above show them all
    rules = {*RULES, operations.JOURNAL_QUARANTINED, operations.ERP_DEAD_LETTER, pickups.RULE,
             problems.RULE}
    for lang, (names, messages, outcomes) in words.items():
        assert rules <= set(names) and rules <= set(messages), lang
        assert set(outcomes) == {o.value for o in Outcome}, lang


def test_the_language_chosen_on_the_page_is_kept_by_this_browser_only(
    page: Any, browser: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port), language="en-US")
    low = server.call(lambda: store.low("A1-3"))
    sign_in(page, server.url, ANA)
    message = card(page, low.alert_id).locator(".message")
    expect(message).to_contain_text("left (threshold 2)", timeout=5000)

    page.locator("#lang").tap()
    expect(message).to_contain_text("仅剩 1 件")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#lang")).to_have_text("English")
    page.reload()
    expect(card(page, low.alert_id).locator(".message")).to_contain_text("仅剩 1 件",
                                                                         timeout=5000)
    expect(page.locator("#summary")).to_have_text("1 项待处理")

    other = browser.new_context(locale="zh-CN")  # another handheld: the store's English
    try:
        fresh = other.new_page()
        fresh.goto(server.url)
        expect(fresh.locator("#signin label")).to_have_text("Staff token", timeout=5000)
    finally:
        other.close()


def test_a_new_card_waits_while_a_finger_is_on_the_list_and_nothing_is_redrawn(
    page: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port))
    first = server.call(lambda: store.low("A1-3"))
    sign_in(page, server.url, ANA)
    touched = card(page, first.alert_id)
    expect(touched).to_be_visible(timeout=5000)
    page.evaluate("id => { window.touched = document.querySelector(`[data-alert-id='${id}']`); }",
                  first.alert_id)
    box = touched.bounding_box()

    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()  # a finger on the card
    second = server.call(lambda: store.low("A1-4"))
    expect(page.locator("#held")).to_be_visible(timeout=5000)
    expect(page.locator("#held")).to_contain_text("1 new task")
    assert touched.bounding_box() == box  # it did not move under the finger
    expect(card(page, second.alert_id)).to_have_count(0)
    page.mouse.up()

    # Released: the new card lands on top, the touched card is the same node, never redrawn.
    expect(page.locator("#alerts > .card").first).to_have_attribute(
        "data-alert-id", second.alert_id, timeout=5000)
    expect(page.locator("#held")).to_be_hidden()
    server.call(lambda: store.claim_alert(first.alert_id, _ana()))
    expect(touched).to_have_attribute("data-state", "claimed", timeout=5000)
    assert page.evaluate("id => document.querySelector(`[data-alert-id='${id}']`) === "
                         "window.touched", first.alert_id)

    # A card above the finger that ends stays, faded, until the finger lifts.
    box = touched.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    server.call(lambda: store.clear("A1-4"))
    expect(card(page, second.alert_id)).to_have_attribute("data-gone", "", timeout=5000)
    assert touched.bounding_box() == box
    page.mouse.up()
    expect(card(page, second.alert_id)).to_have_count(0, timeout=5000)


def _ana() -> Any:
    from rules.trackers.alerts import Actor
    return Actor("ana", "staff", frozenset({"drinks"}))


def test_a_new_task_in_my_zone_vibrates_and_beeps_and_a_notice_does_not(
    page: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    page.add_init_script("""
      window.buzz = [];
      navigator.vibrate = (pattern) => { window.buzz.push(["vibrate", pattern]); return true; };
      const start = OscillatorNode.prototype.start;
      OscillatorNode.prototype.start = function (...args) {
        window.buzz.push(["tone", this.frequency.value]);
        return start.apply(this, args);
      };
    """)
    port = free_port()
    server = start(servers, store, port, http_section(port))
    sign_in(page, server.url, ANA)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    page.locator("#store").tap()  # browsers play sound only after a touch

    task = server.call(lambda: store.low("A1-3"))
    expect(card(page, task.alert_id)).to_be_visible(timeout=5000)
    assert page.evaluate("window.buzz") == [["vibrate", [200, 100, 200]], ["tone", 880]]

    notice = server.call(lambda: store.record(store.manager.apply([OpenAlert(
        rule="days_of_cover", subject="CHIPS-70", severity=INFO, message="selling fast",
        sku="CHIPS-70", zone="drinks", detail={"stock": 4, "per_hour": 3.0,
                                               "cover_hours": 1.3})], store.clock())))[0]
    other_zone = server.call(lambda: store.low("F2-1"))  # frozen: not ana's
    expect(page.locator(f'#infos [data-alert-id="{notice.alert_id}"]')).to_have_count(1,
                                                                                        timeout=5000)
    assert other_zone.detail["zone"] == "frozen"
    assert len(page.evaluate("window.buzz")) == 2  # neither the notice nor frozen's task
    expect(page.locator("#summary")).to_have_attribute("data-count", "1")


def test_outcomes_fit_the_rule_on_the_card_and_at_the_agent(
    page: Any, servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, http_section(port))
    alerts = {a.rule: a for a in raise_all(server, store)}
    sign_in(page, server.url, MANAGER)
    suspect = card(page, alerts["checkout_suspect"].alert_id)
    expect(suspect).to_be_visible(timeout=5000)
    outcomes = suspect.locator("button.resolve")
    assert outcomes.evaluate_all("bs => bs.map(b => [b.dataset.outcome, b.textContent])") == [
        ["fixed", "Checked with shopper"], ["false_alarm", "False alarm"], ["other", "Other"]]
    expect(suspect.locator(".facts")).to_contain_text("Kiosk")
    low = card(page, alerts["low_stock"].alert_id)
    expect(low.locator('button[data-outcome="restocked"]')).to_have_count(1)

    refused = httpx.post(f"{server.url}api/alerts/{alerts['checkout_suspect'].alert_id}/resolve",
                         json={"outcome": "restocked"}, timeout=5,
                         headers={"Authorization": f"Bearer {MANAGER}"})
    assert refused.status_code == 422
    assert "'restocked' does not fit a checkout_suspect alert" in refused.json()["detail"]
    suspect.locator('button[data-outcome="fixed"]').tap()
    expect(suspect).to_have_count(0, timeout=5000)


def test_the_handheld_installs_as_an_app(
    browser: Any, servers: list[AgentServer], store: JournaledStore, tmp_path: Path,
) -> None:
    port = free_port()
    server = start(servers, store, port)
    # A profile of its own: Chromium installs nothing from an incognito context.
    context = browser.browser_type.launch_persistent_context(
        tmp_path / "profile", executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
    try:
        page = context.new_page()
        page.goto(server.url)  # loopback is a secure context, as HTTPS is
        scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
        assert scope == server.url
        cdp = context.new_cdp_session(page)
        deadline = time.monotonic() + 10
        while (errors := cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]):
            assert time.monotonic() < deadline, errors
            page.wait_for_timeout(200)
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [] and manifest["url"] == f"{server.url}manifest.webmanifest"
    finally:
        context.close()


def test_api_docs_load_nothing_from_outside_the_agent(
    page: Any, servers: list[AgentServer], store: JournaledStore,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    server = start(servers, store, port, HttpSection(port=port, public_docs=True))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{server.url}docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("storeedge agent",
                                                                     timeout=10000)
    expect(page.locator(".opblock").first).to_be_visible()
    assert asked and all(url.startswith(server.url) for url in asked), asked


def test_labels_name_the_store_zones_and_products_for_signed_in_people(
    servers: list[AgentServer], store: JournaledStore, tokens: None,
) -> None:
    port = free_port()
    server = start(servers, store, port, http_section(port))
    nobody = httpx.get(f"{server.url}api/labels", timeout=5)
    ana = httpx.get(f"{server.url}api/labels", timeout=5,
                    headers={"Authorization": f"Bearer {ANA}"})

    assert nobody.status_code == 401
    body = ana.json()
    assert (body["store"], body["zones"]["drinks"], body["products"]["COLA-330"]) == (
        "朝阳大悦城店", "饮料区", "可口可乐 330ml 罐装")
    assert body["outcomes"]["checkout_suspect"] == ["fixed", "false_alarm", "other"]
