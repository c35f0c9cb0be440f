"""HQ in a real headless Chromium over a real chain: three stores, each a real agent behind its own
Mosquitto bridged to the HQ broker, selling into Tryton and writing to VictoriaMetrics. HQ signs
in, sees the three stores, sees one go offline when its agent is killed and come back when it
restarts, and downloads a sales report whose total equals the ERP's."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_bridge.tryton.server import TrytonServer
from edge_agent.services import Service
from tests.e2e.chain import STAFF_TOKEN, Store, start_store
from tests.fixtures.tryton import connector_for
from tests.fixtures.victoria import victoria_url
from tests.integration.hq_chain import HQ_TOKEN, free_port, hq_service, poll, write_hq_config

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420),
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")]

SALES = {  # store index -> lines (sku, qty, unit price)
    0: [("COLA-330", 2, 3.5)],
    1: [("CHIPS-70", 3, 6.0), ("COLA-330", 1, 3.5)],
    2: [("WATER-550", 1, 2.0)],
}


@pytest.fixture
def stores(tmp_path: Path, store_id: str, mosquitto: Service, victoria: Service,
           tryton: TrytonServer) -> Iterator[list[Store]]:
    started: list[Store] = []
    try:
        for i in range(3):
            started.append(start_store(tmp_path / f"store-{i}", f"{store_id}-s{i}",
                                       hq_broker_port=mosquitto.port,
                                       tsdb_url=victoria_url(victoria), erp=tryton))
        yield started
    finally:
        for store in started:
            store.stop()


@pytest.fixture
def hq(tmp_path: Path, stores: list[Store], mosquitto: Service, victoria: Service
       ) -> Iterator[str]:
    port = free_port()
    config = write_hq_config(tmp_path / "hq.yaml", [{"id": s.id} for s in stores],
                             broker_port=mosquitto.port, tsdb_url=victoria_url(victoria),
                             port=port)
    with hq_service(tmp_path / "hq", config, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1400, "height": 900},
                                      accept_downloads=True, locale="en-US")
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def erp_units(tryton: TrytonServer, prefix: str) -> int:
    async def read() -> int:
        erp = connector_for(tryton)
        try:
            return sum((await erp.sold_units(prefix)).values())
        finally:
            await erp.aclose()
    # Playwright's sync API keeps an event loop running on this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=60)


def row(sid: str, status: str) -> str:
    return f'tr[data-store="{sid}"] [data-status="{status}"]'


def test_hq_watches_the_chain_in_chromium(page: Any, hq: str, stores: list[Store],
                                          tryton: TrytonServer, store_id: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # A store's staff token means nothing at HQ.
    assert httpx.get(f"{hq}/api/overview", timeout=10,
                     headers={"Authorization": f"Bearer {STAFF_TOKEN}"}).status_code == 401

    page.goto(hq + "/")
    page.wait_for_url("**/signin**")
    page.fill("input[name=token]", HQ_TOKEN)
    page.click("form#signin button")
    page.wait_for_url(hq + "/")
    for store in stores:  # agents start in a few seconds; their retained "online" crosses over
        page.wait_for_selector(row(store.id, "online"), timeout=60_000)
    assert page.locator("#stores tbody tr").count() == 3

    # The ERP holds each sale under its store's idempotency key, "{store}:sale:{txn}".
    erp_prefix = f"{store_id}-s"
    now_ms = int(time.time() * 1000)
    sold = 0
    for i, store in enumerate(stores):
        store.sell(f"txn-{i}", SALES[i], now_ms)
        sold += sum(q for _, q, _ in SALES[i])
    poll(lambda: erp_units(tryton, erp_prefix), lambda n: n == sold, within=60)
    for store, cans in zip(stores, (10, 0, 5), strict=True):  # cola weighs 350 g a can
        store.weigh("A1-1", 350.0 * cans)
    with httpx.Client(base_url=hq, headers={"Authorization": f"Bearer {HQ_TOKEN}"},
                      timeout=10) as client:
        overview = poll(lambda: client.get("/api/overview").json()["stores"],
                        lambda rows: {r["id"]: r["lanes_out_of_stock"] for r in rows}
                        == {stores[0].id: 0, stores[1].id: 1, stores[2].id: 0}, within=30)
    assert {r["id"]: r["sales_units"] for r in overview} == {
        s.id: sum(q for _, q, _ in SALES[i]) for i, s in enumerate(stores)}

    victim = stores[1]
    victim.kill_agent()
    killed = time.monotonic()
    page.wait_for_selector(row(victim.id, "offline"), timeout=10_000)
    print(f"store shown offline {time.monotonic() - killed:.1f} s after its agent was killed")
    # Troubled stores come first.
    assert page.locator("#stores tbody tr").first.get_attribute("data-store") == victim.id
    page.select_option("form#range select", "3600")  # the charts over the last hour
    page.wait_for_selector("#top-skus .bars div", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "hq-overview.png"), full_page=True)
    victim.start_agent()
    page.wait_for_selector(row(victim.id, "online"), timeout=60_000)

    page.click(f'tr[data-store="{stores[1].id}"] a')
    page.wait_for_url(f"{hq}/stores/{stores[1].id}")
    page.goto(f"{hq}/stores/{stores[1].id}?preset=3600")
    page.wait_for_selector("#alerts tbody tr")  # its empty lane's alerts
    page.wait_for_selector("#lanes .uplot", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "hq-store.png"), full_page=True)

    page.goto(hq + "/reports?kind=sales&preset=3600")

    def shown_total() -> str:
        page.click("form#range button")
        page.wait_for_selector('#totals [data-total="units"]')
        return str(page.locator('#totals [data-total="units"]').inner_text())
    poll(shown_total, lambda text: text == str(sold), within=30)
    page.screenshot(path=str(ARTIFACTS / "hq-report.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert {r["store"] for r in rows} == {s.id for s in stores}
    assert sum(int(r["units"]) for r in rows) == erp_units(tryton, erp_prefix) == sold
