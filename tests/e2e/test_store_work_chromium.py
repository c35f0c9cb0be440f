"""The store's work against the ERP done on its pages, end to end: a real agent
(``storeedge agent``) on a real Mosquitto, booking into a real Tryton that holds the store's
warehouse and the chain's distribution centre, driven in a real headless Chromium as the manager
and the staff use the manager page and the handheld. Each flow is checked where it lands (the
ERP's documents and stock) and on the page, and every view's words in both languages. Each test
works on SKUs of its own, so their stock figures in the shared ERP do not meet."""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer
from edge_agent.services import Service, free_port
from tests.fixtures.chromium import ARTIFACTS, CHROMIUM
from tests.fixtures.tryton import ADMIN_PASSWORD, CATALOG, connector_for
from tests.integration.hq_chain import poll
from tests.integration.test_pages_chromium import DOCS_IMG, UNTRANSLATED

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")]

R = TypeVar("R")
TOKENS = {role: secrets.token_urlsafe(24) for role in ("manager", "staff", "pos")}
BARCODE = {item["sku"]: item["barcode"] for item in CATALOG}
NAME = {item["sku"]: item["name"] for item in CATALOG}
UNKNOWN_CODE = "4006381333931"  # a valid EAN-13 of no product of the store's


def in_erp(server: TrytonServer, work: Callable[[TrytonConnector], Awaitable[R]]) -> R:
    """``work`` with a connector of its own, on a thread (Playwright's sync API keeps an event
    loop running on this one)."""
    async def run() -> R:
        erp = connector_for(server)
        try:
            return await work(erp)
        finally:
            await erp.aclose()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=120)


def stock(server: TrytonServer) -> dict[str, int]:
    return in_erp(server, lambda erp: erp.stock_units())


def documents(server: TrytonServer, model: str, key: str) -> list[dict[str, Any]]:
    """The ERP's documents under storeedge's key ``key``, with a shipment's outgoing moves
    (SKU, units) as ``lines``."""
    async def read(erp: TrytonConnector) -> list[dict[str, Any]]:
        fields = ["state"] + (["outgoing_moves"] if model != "stock.inventory" else [])
        docs = await erp.call(model, "search_read", [("storeedge_key", "=", key)], 0, None, None,
                              fields)
        for doc in docs:
            moves = await erp.call("stock.move", "search_read",
                                   [("id", "in", doc.get("outgoing_moves", []))], 0, None, None,
                                   ["product.code", "quantity"])
            doc["lines"] = sorted((m["product."]["code"], round(m["quantity"])) for m in moves)
        return docs
    return in_erp(server, read)


@dataclass
class Agent:
    id: str
    url: str
    process: subprocess.Popen[bytes]
    broker_port: int

    def api(self, method: str, path: str, role: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {TOKENS[role]}"})

    def sell(self, txn_id: str, sku: str, units: int) -> None:
        sale = {"txn_id": txn_id, "ts": int(time.time() * 1000),
                "lines": [{"sku": sku, "qty": units, "unit_price": 3.5}]}
        assert self.api("POST", "/api/pos/transactions", "pos", sale).status_code == 201

    def weigh(self, lane: str, grams: float) -> None:
        """The wireless shelf's reading, once (the agent counts every sample as settled)."""
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", self.broker_port)
        client.loop_start()
        try:
            body = {"lane": lane, "grams": grams, "seq": 1, "ts": int(time.time() * 1000)}
            client.publish(f"store/{self.id}/dev/shelf-1/weight", json.dumps(body),
                           qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    def drained(self) -> bool:
        """Every ERP command delivered (none pending, none in the dead letter)."""
        rows = self.api("GET", "/api/outbox", "manager").json()
        return all(row["state"] == "delivered" for row in rows)


@pytest.fixture
def agents(tmp_path: Path, mosquitto: Service, chain_erp: TrytonServer,
           store_id: str) -> Iterator[Callable[..., Agent]]:
    """Start the store's agent with ``lanes`` (SKU -> lane id, all on one wireless shelf in the
    drinks zone); each is stopped after the test."""
    started: list[Agent] = []

    def start(lanes: dict[str, str], window_seconds: int = 3600) -> Agent:
        port = free_port()
        config = tmp_path / "store.yaml"
        config.write_text(yaml.safe_dump({
            "store": {"id": store_id, "name": "Store"},
            "broker": {"host": "127.0.0.1", "port": mosquitto.port, "keepalive": 5},
            "journal": {"path": str(tmp_path / "journal.db")},
            "http": {"host": "127.0.0.1", "port": port, "language": "en-US", "tokens": [
                {"name": "mei", "role": "manager", "token_env": "T_MANAGER"},
                {"name": "ana", "role": "staff", "token_env": "T_STAFF", "zones": ["drinks"]},
                {"name": "web-shop", "role": "pos", "token_env": "T_POS"}]},
            "erp": {"kind": "tryton", "url": chain_erp.url, "database": chain_erp.database,
                    "password_env": "T_ERP", "supply_warehouse": "DC",
                    "count_tolerance_units": 1, "summary_window_seconds": window_seconds},
            "inventory": {"settle_seconds": 0},
            "catalog": [{k: item[k] for k in ("sku", "name", "barcode", "unit_grams")}
                        for item in CATALOG],
            "zones": [{"id": "drinks", "name": "Drinks"}],
            "lanes": [{"id": lane, "sku": sku, "capacity": 200, "low_stock": 3,
                       "zone": "drinks"} for sku, lane in lanes.items()],
            "devices": [{"type": "shelf_mqtt", "id": "shelf-1", "lanes": sorted(lanes.values())}],
        }, sort_keys=False))
        env = {**os.environ, "T_MANAGER": TOKENS["manager"], "T_STAFF": TOKENS["staff"],
               "T_POS": TOKENS["pos"], "T_ERP": ADMIN_PASSWORD, "PYTHONUNBUFFERED": "1"}
        with open(tmp_path / "agent.log", "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "--log-format", "text", "agent",
                 "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                env=env, start_new_session=True)
        agent = Agent(store_id, f"http://127.0.0.1:{port}", process, mosquitto.port)
        started.append(agent)

        def healthy() -> bool:
            assert process.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
            try:
                return httpx.get(f"{agent.url}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False
        poll(healthy, bool, within=60)
        return agent

    yield start
    for agent in started:
        agent.process.terminate()
        try:
            agent.process.wait(20)
        except subprocess.TimeoutExpired:
            agent.process.kill()
            agent.process.wait()


@pytest.fixture
def manager_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        yield context.new_page()
    finally:
        context.close()


def signed_in(page: Any, url: str, role: str) -> Any:
    """What a person does: open the page, type their token, press Enter."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#token")).to_be_visible(timeout=10_000)
    page.fill("#token", TOKENS[role])
    page.press("#token", "Enter")
    return page


def in_both_languages(page: Any, view: Any, name: str) -> None:
    """Every visible string of the page (``view`` on it) in English, then in Chinese, and back;
    a picture of ``view`` in each (with STOREEDGE_DOCS_SCREENSHOTS=1 also in docs/img)."""
    from playwright.sync_api import expect

    for lang in ("en-US", "zh-CN"):
        if page.locator("html").get_attribute("lang") != lang:
            page.locator("#lang").click()
            expect(page.locator("html")).to_have_attribute("lang", lang)
        assert page.evaluate(UNTRANSLATED) == [], f"{name} {lang}"
        keep(view, f"{name}-{lang}.png")
    page.locator("#lang").click()  # back to the store's English
    expect(page.locator("html")).to_have_attribute("lang", "en-US")


def keep(view: Any, name: str) -> None:
    """A picture of ``view`` (a page: all of it) in the artifacts, and in docs/img for the README
    with STOREEDGE_DOCS_SCREENSHOTS=1 (a plain run leaves the work tree clean)."""
    ARTIFACTS.mkdir(exist_ok=True)
    whole = {"full_page": True} if hasattr(view, "goto") else {}
    view.screenshot(path=str(ARTIFACTS / name), **whole)
    if os.environ.get("STOREEDGE_DOCS_SCREENSHOTS") == "1":
        shutil.copy(ARTIFACTS / name, DOCS_IMG / name)


def test_a_manager_reviews_adjusts_and_approves_the_proposed_order(
        agents: Callable[..., Agent], manager_page: Any, chain_erp: TrytonServer) -> None:
    from playwright.sync_api import expect

    agent = agents({"COLA-330": "A1"})
    held = 5
    sold = stock(chain_erp)["COLA-330"] - held
    agent.sell("T-1", "COLA-330", sold)  # its window stays open: the ERP has not booked it
    page = signed_in(manager_page, f"{agent.url}/manager", "manager")
    orders = page.locator("#orders")
    expect(orders).to_be_visible(timeout=15_000)
    orders.locator("button.propose").click()

    proposal = orders.locator(".proposal[data-state=proposed]")
    expect(proposal).to_have_count(1, timeout=15_000)
    order_id = int(proposal.get_attribute("data-order-id"))
    line = proposal.locator("tr[data-sku=COLA-330]")
    # four days of the week's demand plus the shelf's minimum, less what the store holds
    expect(line.locator("input")).to_have_value(str(math.ceil(sold / 7 * 4) + 3 - held))
    expect(line.locator("td.held")).to_have_text(str(held))
    expect(line.locator("td.reorder")).to_have_text(str(math.ceil(sold / 7) + 3))
    in_both_languages(page, orders, "manager-orders")

    line.locator("input").fill("30")
    proposal.locator("button.approve").click()
    approved = orders.locator(f"tr[data-order-id='{order_id}'][data-state=approved]")
    expect(approved).to_be_visible(timeout=15_000)
    expect(approved.locator("td.lines")).to_have_text("30 x Cola 330 ml")
    expect(orders.locator(".note")).to_have_text(
        f"Order #{order_id} approved: the distribution centre ships it")
    expect(orders.locator(".proposal")).to_have_count(0)

    key = f"{agent.id}:order:{order_id}"
    poll(agent.drained, bool, within=60)
    (shipment,) = documents(chain_erp, "stock.shipment.internal", key)
    assert shipment["state"] == "waiting"
    assert shipment["lines"] == [("COLA-330", 30)]
    again = agent.api("POST", f"/api/orders/{order_id}/approve", "manager")
    assert again.status_code == 409
    assert len(documents(chain_erp, "stock.shipment.internal", key)) == 1


def test_staff_receive_a_delivery_by_scanning_it_on_the_handheld(
        agents: Callable[..., Agent], page: Any, chain_erp: TrytonServer) -> None:
    from playwright.sync_api import expect

    agent = agents({"CHIPS-70": "B1"})
    before = stock(chain_erp)
    agent.sell("T-1", "CHIPS-70", before["CHIPS-70"] - 5)
    order = agent.api("POST", "/api/orders/propose", "manager").json()
    approved = agent.api("POST", f"/api/orders/{order['id']}/approve", "manager",
                         {"lines": [{"sku": "CHIPS-70", "qty": 12},
                                    {"sku": "COLA-330", "qty": 6}]})
    assert approved.status_code == 200
    key = f"{agent.id}:order:{order['id']}"
    poll(lambda: documents(chain_erp, "stock.shipment.internal", key),
         lambda docs: [d["state"] for d in docs] == ["waiting"], within=60)
    (shipment,) = documents(chain_erp, "stock.shipment.internal", key)

    async def ship(erp: TrytonConnector) -> None:  # the centre's staff, in the ERP
        for step in ("assign_force", "pack", "ship"):
            await erp.call("stock.shipment.internal", step, [shipment["id"]])
    in_erp(chain_erp, ship)

    signed_in(page, agent.url + "/", "staff")
    receiving = page.locator("#receiving")
    delivery = receiving.locator(f".delivery[data-order-id='{order['id']}']")
    expect(delivery).to_contain_text("18 units", timeout=15_000)
    delivery.locator("button.receive").click()
    expect(receiving).to_have_class("active")
    expect(page.locator("#wedge")).to_be_focused()

    def scan(code: str) -> None:  # the scanner's keyboard wedge: the code, then Enter
        page.keyboard.type(code, delay=2)
        page.keyboard.press("Enter")

    chips = receiving.locator("tr[data-sku=CHIPS-70]")
    for _ in range(11):  # one bag short
        scan(BARCODE["CHIPS-70"])
    expect(chips.locator("td.scanned")).to_have_text("11", timeout=15_000)
    expect(receiving.locator(".last")).to_have_text("✓ Chips 70 g: 11 of 12")
    cola = receiving.locator("tr[data-sku=COLA-330]")
    for _ in range(7):  # a can too many
        scan(BARCODE["COLA-330"])
    expect(cola.locator("td.scanned")).to_have_text("7", timeout=15_000)
    scan(BARCODE["WATER-550"])  # a bottle that was never ordered
    expect(receiving.locator(".last")).to_have_text("⚠ Water 550 ml is not on the order",
                                                    timeout=15_000)
    scan(UNKNOWN_CODE)
    expect(receiving.locator(".last")).to_have_text(
        f"✗ {UNKNOWN_CODE}: That barcode is no product of ours", timeout=15_000)
    # Flagged before confirming: one short, one over, one not ordered.
    expect(chips).to_have_attribute("data-kind", "under")
    expect(chips.locator("td.status")).to_have_text("1 short")
    expect(cola).to_have_attribute("data-kind", "over")
    expect(cola.locator("td.status")).to_have_text("1 over")
    water = receiving.locator("tr[data-sku=WATER-550]")
    expect(water).to_have_attribute("data-kind", "not_ordered")
    expect(water.locator("td.ordered")).to_have_text("0")
    confirm = receiving.locator("button.confirm")
    expect(confirm).to_have_text("Confirm receipt (3 differences)")
    assert page.evaluate("document.documentElement.scrollWidth") == 360  # no sideways scroll
    in_both_languages(page, page, "handheld-receiving")

    confirm.click()
    expect(receiving.locator(".last")).to_have_text(
        f"Order #{order['id']} received, 3 differences recorded", timeout=15_000)
    expect(receiving).not_to_have_class("active")
    expect(receiving.locator(".delivery")).to_have_count(0)

    poll(agent.drained, bool, within=60)
    (done,) = documents(chain_erp, "stock.shipment.internal", key)
    assert done["state"] == "done"
    after = stock(chain_erp)
    assert after["CHIPS-70"] == before["CHIPS-70"] + 11  # the sale is not booked yet
    assert after["COLA-330"] == before["COLA-330"] + 7
    assert after["WATER-550"] == before["WATER-550"]  # not ordered: the store's count books it
    assert agent.api("POST", f"/api/orders/{order['id']}/received", "staff").status_code == 409
    recorded = agent.api("GET", f"/api/orders/{order['id']}", "staff").json()
    assert recorded["discrepancies"] == [
        {"sku": "CHIPS-70", "ordered": 12, "received": 11, "kind": "under"},
        {"sku": "COLA-330", "ordered": 6, "received": 7, "kind": "over"},
        {"sku": "WATER-550", "ordered": 0, "received": 1, "kind": "not_ordered"}]


def test_an_online_order_is_picked_and_handed_over_once_on_the_handheld(
        agents: Callable[..., Agent], page: Any, chain_erp: TrytonServer) -> None:
    from playwright.sync_api import expect

    agent = agents({"WATER-550": "C1"}, window_seconds=0)  # one ERP document per receipt
    before = stock(chain_erp)
    order = {"order_id": "WEB-1001", "customer": "Wang Fang",
             "lines": [{"sku": "WATER-550", "qty": 3, "unit_price": 2.0}]}
    assert agent.api("POST", "/api/pickups", "pos", order).status_code == 201

    signed_in(page, agent.url + "/", "staff")
    pickup = page.locator("#pickups .pickup[data-order-id='WEB-1001']")
    expect(pickup).to_have_attribute("data-state", "open", timeout=15_000)
    expect(pickup.locator("li")).to_have_text("3 x Water 550 ml (lane C1)")
    task = page.locator("#alerts .card[data-rule=click_collect]")
    expect(task).to_be_visible()
    in_both_languages(page, page, "handheld-pickup")

    pickup.locator("button.picked").click()
    expect(pickup).to_have_attribute("data-state", "picked", timeout=15_000)
    expect(pickup.locator(".by")).to_have_text("Picked by ana")
    expect(task).to_have_count(0)  # the pick task is done
    pickup.locator("button.handed-over").click()
    expect(pickup).to_have_count(0, timeout=15_000)
    expect(page.locator("#pickups .note")).to_have_text("Order WEB-1001 handed over")
    # pressed again from elsewhere: nothing more is sold
    again = agent.api("POST", "/api/pickups/WEB-1001/handed_over", "staff")
    assert again.status_code == 200 and again.json()["state"] == "handed_over"

    poll(lambda: in_erp(chain_erp, lambda erp: erp.sold_units(f"{agent.id}:")),
         lambda sold: sold == {"WATER-550": 3}, within=60)
    poll(agent.drained, bool, within=60)
    assert in_erp(chain_erp, lambda erp: erp.sold_units(f"{agent.id}:")) == {"WATER-550": 3}
    assert stock(chain_erp)["WATER-550"] == before["WATER-550"] - 3


def test_a_manager_approves_a_count_and_the_erp_moves_by_its_difference_once_or_dismisses_it(
        agents: Callable[..., Agent], manager_page: Any, chain_erp: TrytonServer) -> None:
    from playwright.sync_api import expect

    agent = agents({"NOODLE-BEEF": "D1", "CHIPS-70": "E1"})
    before = stock(chain_erp)
    erp_units = before["NOODLE-BEEF"]
    counted = erp_units - 4  # four packs gone from the shelf with no sale
    chips = before["CHIPS-70"] + 2  # and two bags more than the ERP knows of

    def shelf() -> dict[str, int]:
        agent.weigh("D1", counted * 118.0)
        agent.weigh("E1", chips * 75.0)
        return {lane["id"]: lane["units"] for lane in agent.api("GET", "/api/lanes",
                                                                 "manager").json()}
    poll(shelf, lambda units: units == {"D1": counted, "E1": chips}, within=30)

    page = signed_in(manager_page, f"{agent.url}/manager", "manager")
    counts = page.locator("#counts")
    expect(counts.locator(".none")).to_have_text("The shelves agree with the ERP", timeout=15_000)
    counts.locator("button.compare").click()
    row = counts.locator("tr[data-sku=NOODLE-BEEF][data-state=proposed]")
    expect(row.locator("td.difference")).to_have_text("-4", timeout=15_000)
    expect(row.locator("td.counted")).to_have_text(str(counted))
    expect(row.locator("td.erp")).to_have_text(str(erp_units))
    proposal_id = row.get_attribute("data-proposal-id")
    extra = counts.locator("tr[data-sku=CHIPS-70][data-state=proposed]")
    expect(extra.locator("td.difference")).to_have_text("+2")
    extra_id = extra.get_attribute("data-proposal-id")
    in_both_languages(page, counts, "manager-counts")

    extra.locator("button.dismiss").click()  # the manager will look at the bags first
    expect(counts.locator(f"tr[data-proposal-id='{extra_id}'][data-state=dismissed]")
           ).to_be_visible(timeout=15_000)

    row.locator("button.approve").click()
    decided = counts.locator(f"tr[data-proposal-id='{proposal_id}'][data-state=approved]")
    expect(decided.locator("td.by")).to_have_text("mei", timeout=15_000)
    expect(counts.locator(".note")).to_have_text("Approved: Beef noodles -4")

    poll(agent.drained, bool, within=60)
    (inventory,) = documents(chain_erp, "stock.inventory", f"{agent.id}:count:{proposal_id}")
    assert inventory["state"] == "done"
    after = stock(chain_erp)
    assert after["NOODLE-BEEF"] == erp_units - 4
    assert after["CHIPS-70"] == before["CHIPS-70"]  # dismissed: nothing booked
    assert documents(chain_erp, "stock.inventory", f"{agent.id}:count:{extra_id}") == []
    assert agent.api("POST", f"/api/counts/{proposal_id}/approve", "manager").status_code == 409
    # the ERP now equals the noodles' shelf; the bags, dismissed, are proposed again
    counts.locator("button.compare").click()
    expect(counts.locator("tr[data-state=proposed]")).to_have_count(1, timeout=15_000)
    expect(counts.locator("tr[data-state=proposed]")).to_have_attribute("data-sku", "CHIPS-70")
    assert len(documents(chain_erp, "stock.inventory", f"{agent.id}:count:{proposal_id}")) == 1
