"""The pages staff and managers work with, through a real agent (``StoreAgent``) served by uvicorn
and driven in a real headless Chromium, in zh-CN and en-US: a manager adds a person and prints
their QR card; the person signs in on a handheld by PIN and by card, gets a new task (with its
attention event), claims it, scans the product and sees the task come back when the shelf did
not rise; a problem report goes from the handheld to the manager and escalates when its target
is missed; the manager's trends. Every visible string is in the page's language."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.services import free_port
from rules.trackers.alerts import Actor
from tests.fixtures.chromium import ARTIFACTS, AgentServer, WallClock, card, sign_in
from tests.integration.test_pages_chromium import DOCS_IMG, UNTRANSLATED, keep

STORE = "bj-7"
UNIT = 350.0
BARCODE = "4006381333931"
MANAGER = "Mgr-Xq7Lw2Zp-9fK3vT8nQ1rB"
TILL = "Pos-Xq7Lw2Zp-4hJ6wR2mS5tC"
# A phone camera's photo, 2400x1800 and megabytes more than a report may carry (noise does not
# compress).
CAMERA_PHOTO = cv2.imencode(".png", np.random.default_rng(13).integers(
    0, 256, (1800, 2400, 3), dtype=np.uint8))[1].tobytes()
# What a reopened task's message starts with (i18n.js ``unverified``).
UNVERIFIED = {"zh-CN": "已标记补货，但货架数量没有增加",  # noqa: RUF001
              "en-US": "Marked restocked, but the shelf did not rise"}
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def agent_server(tmp_path: Path, request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AgentServer, StoreAgent,
                                                                    WallClock]]:
    language = request.param
    monkeypatch.setenv("T_MEI", MANAGER)
    monkeypatch.setenv("T_TILL", TILL)
    port = free_port()
    clock = WallClock()
    config = StoreConfig.model_validate({
        "store": {"id": STORE, "name": "朝阳门店", "timezone": "Asia/Shanghai"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "http": {"port": port, "language": language, "tokens": [
            {"name": "mei", "role": "manager", "token_env": "T_MEI"},
            {"name": "till-1", "role": "pos", "token_env": "T_TILL"}]},
        "inventory": {"settle_seconds": 0, "verify_restock_seconds": 120},
        "problems": {"targets_minutes": {"wrong_price_or_label": 1}},
        "zones": [{"id": "drinks", "name": "饮料区"}, {"id": "frozen", "name": "冷冻区"}],
        "catalog": [{"sku": "COLA-330", "name": "可口可乐 330ml", "barcode": BARCODE,
                     "unit_grams": UNIT, "price": 3.5}],
        "lanes": [{"id": "A1", "sku": "COLA-330", "capacity": 24, "low_stock": 4,
                   "zone": "drinks"}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": ["A1"]}],
    })
    agent = StoreAgent(config, clock=clock)
    agent.restore()
    server = AgentServer(agent, port, config.http, feed=agent.feed)
    try:
        yield server.start(), agent, clock
    finally:
        server.stop()
        agent.store_db.close()
        agent.journal.close()


def both_languages() -> Any:
    return pytest.mark.parametrize("agent_server", ["zh-CN", "en-US"], indirect=True)


NOTIFICATIONS = """navigator.serviceWorker.ready.then((r) => r.getNotifications())
  .then((shown) => shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag })))"""
SHOWN = f"(tag) => ({NOTIFICATIONS}).then((shown) => shown.some((n) => n.tag === tag))"


@pytest.fixture
def handheld(browser: Any) -> Iterator[Any]:
    """A handheld of its own (its own cookies): a phone screen, the browser in English, and
    notifications allowed."""
    context = browser.new_context(viewport={"width": 360, "height": 640}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, locale="en-US")
    context.grant_permissions(["notifications"])
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def office(browser: Any) -> Iterator[Any]:
    """The manager's screen in the back office: another browser."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        yield context.new_page()
    finally:
        context.close()


def shelf(server: AgentServer, agent: StoreAgent, units: int) -> None:
    topic = f"store/{STORE}/dev/shelf-1/weight"
    payload = json.dumps({"lane": "A1", "grams": units * UNIT}).encode()
    server.call(lambda: agent.on_batch([(topic, payload)]))


def clean(page: Any, where: str) -> None:
    assert page.evaluate(UNTRANSLATED) == [], where


def manager_signs_in(page: Any, server: AgentServer) -> None:
    from playwright.sync_api import expect

    sign_in(page, f"{server.url}manager", MANAGER)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10000)


def pin_sign_in(page: Any, server: AgentServer, name: str, pin: str) -> None:
    from playwright.sync_api import expect

    page.goto(server.url)
    expect(page.locator("#signin-people")).to_be_visible(timeout=10000)
    page.fill("#sp-name", name)
    page.fill("#sp-pin", pin)
    page.press("#sp-pin", "Enter")
    expect(page.locator("#who")).to_be_visible(timeout=10000)
    expect(page.locator("#who")).to_contain_text(name)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10000)


@both_languages()
def test_a_person_the_manager_added_signs_in_by_pin_and_card_and_works_a_task(
    agent_server: tuple[AgentServer, StoreAgent, WallClock], handheld: Any, office: Any,
) -> None:
    from playwright.sync_api import expect

    server, agent, clock = agent_server
    language = agent.config.http.language
    # The manager adds li to the drinks zone with a PIN, then makes her a QR card.
    manager_signs_in(office, server)
    staff = office.locator("#staff-admin")
    expect(staff.locator(".sa-none")).to_be_visible(timeout=10000)
    staff.locator('input[name="name"]').fill("li")
    staff.locator('input[name="pin"]').fill("1234")
    staff.locator('fieldset input[value="*"]').uncheck()
    staff.locator('fieldset input[value="drinks"]').check()
    staff.locator('button[type="submit"]').click()
    expect(staff.locator(".sa-said")).to_contain_text("too easy", timeout=10000)  # the agent's
    expect(staff.locator('tr[data-key="li"]')).to_have_count(0)
    staff.locator('input[name="pin"]').fill("2580")
    staff.locator('button[type="submit"]').click()
    row = staff.locator('tr[data-key="li"]')
    expect(row).to_have_count(1, timeout=10000)
    expect(row.locator("td").nth(2)).to_have_text("饮料区")
    # Changed: the frozen zone too; her PIN is kept when none is typed.
    row.locator("button.edit").click()
    expect(staff.locator('input[name="name"]')).to_have_value("li")
    staff.locator('fieldset input[value="frozen"]').check()
    staff.locator('button[type="submit"]').click()
    expect(row.locator("td").nth(2)).to_have_text(
        {"zh-CN": "饮料区、冷冻区", "en-US": "饮料区, 冷冻区"}[language], timeout=10000)
    row.locator("button.qr").click()
    expect(staff.locator(".sa-card svg")).to_be_visible(timeout=10000)
    drawn = staff.locator(".sa-card svg path").bounding_box()  # drawn as SVG, not as text
    assert drawn is not None and drawn["width"] > 100 and drawn["height"] > 100, drawn
    code = staff.locator(".sa-code").inner_text()
    assert code.startswith("se1.")
    expect(row.locator("td").nth(4)).to_have_text({"zh-CN": "有", "en-US": "yes"}[language])
    clean(office, "manager with people")
    keep_part(staff, f"manager-staff-{language}.png")
    # The manager's session is the manager page's alone: the handheld page asks for a sign-in.
    other = office.context.new_page()
    other.goto(server.url)
    expect(other.locator("#signin-people")).to_be_visible(timeout=10000)
    other.close()

    # li signs in on her handheld by PIN (a wrong one first); that does not sign her in on its
    # manager page.
    handheld.goto(server.url)
    handheld.fill("#sp-name", "li")
    handheld.fill("#sp-pin", "2581")
    handheld.press("#sp-pin", "Enter")
    expect(handheld.locator("#signin-people .sp-said")).to_have_text(
        {"zh-CN": "姓名或个人密码不对", "en-US": "Name or PIN not right"}[language], timeout=10000)
    pin_sign_in(handheld, server, "li", "2580")
    mine = handheld.context.new_page()
    mine.goto(f"{server.url}manager")
    expect(mine.locator("#signin")).to_be_visible(timeout=10000)
    mine.close()
    handheld.locator("#signout").tap()
    expect(handheld.locator("#signin-people")).to_be_visible(timeout=10000)
    expect(handheld.locator("#who")).to_be_hidden()
    clean(handheld, "sign-in")
    keep(handheld, f"handheld-signin-{language}.png")
    # ...and by her card: the scanner types its code into the focused field, then Enter.
    expect(handheld.locator("#sp-qr")).to_be_focused()
    handheld.keyboard.type(code, delay=2)
    handheld.keyboard.press("Enter")
    expect(handheld.locator("#who")).to_be_visible(timeout=10000)  # then its stream starts
    expect(handheld.locator("#who")).to_contain_text("li")
    expect(handheld.locator("#conn")).to_have_attribute("data-state", "live", timeout=10000)

    # A new task in her zone: on screen, with its attention event.
    handheld.evaluate("""window.tasks = [];
      document.addEventListener("storeedge:task", (e) => window.tasks.push(e.detail))""")
    shelf(server, agent, 10)
    shelf(server, agent, 3)
    [task] = [a for a in server.call(agent.alerts) if a.rule == "low_stock"]
    cell = card(handheld, task.alert_id)
    expect(cell).to_be_visible(timeout=10000)
    assert handheld.evaluate("window.tasks") == [task.alert_id]
    # ...and a system notification through the service worker (loopback is a secure context,
    # as HTTPS is; the person allowed notifications).
    handheld.wait_for_function(SHOWN, arg=task.alert_id, timeout=10000)
    [shown] = handheld.evaluate(NOTIFICATIONS)
    title = {"zh-CN": "新任务：库存不足", "en-US": "New task: Low stock"}  # noqa: RUF001
    assert shown["title"] == title[language]
    assert "A1" in shown["body"] and "\u2068" not in shown["body"]
    cell.locator("button.claim").tap()
    expect(cell).to_have_attribute("data-state", "claimed", timeout=10000)
    handheld.locator("#store").tap()  # the wedge takes the scanner's keys again
    expect(handheld.locator("#wedge")).to_be_focused()
    handheld.keyboard.type(BARCODE, delay=2)
    handheld.keyboard.press("Enter")
    expect(handheld.locator("#toast")).to_contain_text("A1", timeout=10000)
    history = [a.detail.get("transition")
               for a in server.call(lambda: agent.alert_history(task.alert_id))]
    assert history[-1] == "confirmed", history
    cell.locator('button[data-outcome="restocked"]').tap()
    expect(cell).to_have_count(0, timeout=10000)

    # The shelf did not rise within the time allowed: the task is back, saying so.
    clock.offset += 121
    server.call(agent.tick)
    [again] = [a for a in server.call(agent.alerts) if a.rule == "low_stock"]
    assert again.detail["reopened_from"] == task.alert_id
    back = card(handheld, again.alert_id)
    expect(back.locator(".message")).to_contain_text(UNVERIFIED[language], timeout=10000)
    assert handheld.evaluate("window.tasks") == [task.alert_id, again.alert_id]
    clean(handheld, "reopened task")
    # Switched to the other language on the page, the new parts follow at once (a toast is
    # said in the language of its moment: it goes first).
    expect(handheld.locator("#toast")).to_be_hidden(timeout=10000)
    for page in (handheld, office):
        page.locator("#lang").click()
        clean(page, "switched language")
    handheld.locator("#signout").tap()
    expect(handheld.locator("#conn")).to_have_attribute("data-state", "denied")
    clean(handheld, "sign-in, switched language")


@both_languages()
def test_a_problem_goes_from_the_handheld_to_the_manager_and_escalates(
    agent_server: tuple[AgentServer, StoreAgent, WallClock], handheld: Any, office: Any,
) -> None:
    from playwright.sync_api import expect

    server, agent, clock = agent_server
    language = agent.config.http.language
    server.call(lambda: agent.set_staff("li", "staff", ["drinks"], "2580"))
    server.call(lambda: agent.set_staff("wang", "manager", ["*"], "863197"))
    pin_sign_in(handheld, server, "li", "2580")
    handheld.locator("#problem-report .pr-open").tap()
    form = handheld.locator("#problem-report form")
    expect(form).to_be_visible()
    form.locator("#pr-category").select_option("wrong_price_or_label")
    form.locator("#pr-lane").fill("A1")
    form.locator("#pr-text").fill("3.00 ≠ 3.50")
    form.locator("#pr-photo").set_input_files(
        files=[{"name": "label.png", "mimeType": "image/png", "buffer": CAMERA_PHOTO}])
    expect(form.locator(".pr-l-photo")).to_have_attribute("data-taken", "")
    clean(handheld, "problem form")
    keep(handheld, f"handheld-problem-{language}.png")
    form.locator(".pr-send").tap()
    expect(form).to_be_hidden(timeout=10000)
    expect(handheld.locator("#toast")).to_have_attribute("data-kind", "ok")

    # wang, a manager kept in the journal, signs in on the manager page by name and PIN.
    office.goto(f"{server.url}manager")
    office.fill("#sp-name", "wang")
    office.fill("#sp-pin", "863197")
    office.press("#sp-pin", "Enter")
    expect(office.locator("#conn")).to_have_attribute("data-state", "live", timeout=10000)
    row = office.locator("#problems tr[data-key]")
    expect(row).to_have_count(1, timeout=10000)
    expect(row).to_have_attribute("data-state", "open")
    expect(row.locator("td.category")).to_have_text(
        {"zh-CN": "价格或标签错误", "en-US": "Wrong price or label"}[language])
    expect(row.locator("td.text")).to_have_text("3.00 ≠ 3.50")
    # The camera's photo (too large to send as it is) arrived as a JPEG 1600 px wide.
    office.wait_for_function(
        "document.querySelector('#problems img')?.naturalWidth === 1600", timeout=10000)
    [report] = [a for a in server.call(agent.alerts) if a.rule == "problem"]
    kind, data = server.call(lambda: agent.problem_photo(report.subject))
    assert kind == "image/jpeg" and len(data) < 2_000_000 < len(CAMERA_PHOTO)

    # Nobody claimed it within its target (1 minute in this store): escalated, on the page.
    clock.offset += 61
    server.call(agent.tick)
    expect(row).to_have_attribute("data-state", "escalated", timeout=10000)
    expect(row.locator("td.state")).to_have_text(
        {"zh-CN": "已升级", "en-US": "Escalated"}[language])
    clean(office, "manager with an escalated problem")
    office.locator("#lang").click()
    clean(office, "escalated problem, switched language")
    office.locator("#lang").click()
    keep_part(office.locator("#problems"), f"manager-problems-{language}.png")
    row.locator("button.claim").click()
    expect(row).to_have_attribute("data-state", "claimed", timeout=10000)
    row.locator('button[data-outcome="fixed"]').click()
    expect(row).to_have_count(0, timeout=10000)
    expect(office.locator("#problems .pr-none")).to_be_visible()
    states = server.call(lambda: agent.journal.execute(
        "SELECT state FROM alert_transition WHERE rule = 'problem' ORDER BY seq"))
    assert [s for (s,) in states] == ["open", "escalated", "claimed", "resolved"]
    assert server.call(agent.alert_summary)["people"]["wang"]["resolved"] == 1


def keep_part(part: Any, name: str) -> None:
    """``keep`` for one part of a page: what the README shows of it."""
    ARTIFACTS.mkdir(exist_ok=True)
    part.scroll_into_view_if_needed()
    part.screenshot(path=str(ARTIFACTS / name))
    if os.environ.get("STOREEDGE_DOCS_SCREENSHOTS") == "1":
        shutil.copy(ARTIFACTS / name, DOCS_IMG / name)


@both_languages()
def test_the_manager_sees_trends_and_exports_them(
    agent_server: tuple[AgentServer, StoreAgent, WallClock], office: Any,
) -> None:
    from playwright.sync_api import expect

    server, agent, clock = agent_server
    language = agent.config.http.language
    till = {"Authorization": f"Bearer {TILL}"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for txn, qty in (("T-1", 2), ("T-2", 5)):
            sent = http.post("/api/pos/transactions", headers=till, json={
                "txn_id": txn, "ts": int(clock() * 1000),
                "lines": [{"sku": "COLA-330", "qty": qty, "unit_price": 3.5}]})
            assert sent.status_code == 201, sent.text
    shelf(server, agent, 10)
    shelf(server, agent, 3)
    [task] = [a for a in server.call(agent.alerts) if a.rule == "low_stock"]
    clock.offset += 90
    server.call(lambda: agent.claim_alert(task.alert_id,
                                          Actor("mei", "manager", frozenset({"*"}))))

    manager_signs_in(office, server)
    trends = office.locator("#trends")
    expect(trends).to_have_attribute("data-loaded", "24", timeout=10000)
    expect(trends.locator(".tr-sales .uplot canvas")).to_have_count(1)
    expect(trends.locator(".tr-alerts .uplot canvas")).to_have_count(1)
    expect(trends.locator(".tr-claim-chart .uplot canvas")).to_have_count(1)
    claim = trends.locator('.tr-claim tr[data-key="low_stock"] td')
    expect(claim.nth(1)).to_have_text("1")
    expect(claim.nth(2)).to_have_text({"zh-CN": "2 分钟", "en-US": "2 min"}[language])
    expect(trends.locator('.tr-devices tr[data-key="shelf-1"]')).to_have_attribute(
        "data-state", "online")
    gone = (f"store/{STORE}/dev/shelf-1/status", b"offline")  # its last will
    server.call(lambda: agent.on_batch([gone]))
    trends.locator("select").select_option("72")  # a new window reads again
    expect(trends).to_have_attribute("data-loaded", "72", timeout=10000)
    expect(trends.locator('.tr-devices tr[data-key="shelf-1"] td').nth(1)).to_have_text(
        {"zh-CN": "离线", "en-US": "offline"}[language])
    expect(trends.locator(".tr-online")).to_be_hidden()
    clean(office, "trends")
    office.locator("#lang").click()
    clean(office, "trends, switched language")
    office.locator("#lang").click()
    keep_part(trends, f"manager-trends-{language}.png")

    trends.locator("select").select_option("8")
    expect(trends).to_have_attribute("data-loaded", "8", timeout=10000)
    link = trends.locator('.tr-export a[data-table="sales_per_hour"][data-fmt="csv"]')
    with office.expect_download() as download:
        link.click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))  # one hour, or two if it struck between
    assert (sum(int(r["units"]) for r in rows), sum(float(r["amount"]) for r in rows)) == (7, 24.5)
    xlsx = trends.locator('.tr-export a[data-table="alerts_per_hour"][data-fmt="xlsx"]')
    assert xlsx.get_attribute("href") == "/api/trends/alerts_per_hour.xlsx?hours=8"
