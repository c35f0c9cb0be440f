"""The generic REST connector against the reference ERP (tests/fixtures/rest_erp.py), once per
signing scheme and once with result codes in HTTP 200 answers: sales go through ErpBridge and
its outbox while the ERP rate-limits, fails with 5xx before and after booking, and answers past
our timeout; every sale arrives exactly once."""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import re
import time
import zoneinfo
from collections import Counter, deque
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cloud_bridge.bridge import SCHEMAS, ErpBridge
from cloud_bridge.rest.connector import RestConnector
from cloud_bridge.rest.mapping import RestMapping
from cloud_bridge.rest.signing import Request, scheme
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from edge_agent.journal import Journal
from edge_agent.web import create_app
from storeedge.errors import ErpUnavailable
from storeedge.events import PosLine, PosTransaction
from tests.fixtures.rest_erp import APP_KEY, APP_SECRET, STOCK, Faults, ReferenceErp, mapping

STORE = "bj01"
SKUS = sorted(STOCK)


def connect(erp: ReferenceErp, secret: str = APP_SECRET, **overrides: object) -> RestConnector:
    return RestConnector(erp.url, RestMapping.model_validate(mapping(erp, **overrides)),
                         secret, timeout=0.5)


class Store:
    """A store's journal and ERP bridge, accepting sales the way the agent does."""

    def __init__(self, erp: RestConnector, workdir: Path) -> None:
        self.erp = erp
        self.journal = Journal(workdir / "journal.db", extra_schemas=SCHEMAS)
        self.bridge = ErpBridge(self.journal.path, STORE, erp, window_s=0,
                                retry_initial_s=0.05, retry_max_s=0.5)
        self.truth: Counter[str] = Counter()
        self.runner: asyncio.Task[None] | None = None

    def sell(self, txn_id: str, lines: list[tuple[str, int]]) -> None:
        txn = PosTransaction(store_id=STORE, source="pos-1", received_ts=time.time(),
                             txn_id=txn_id,
                             lines=tuple(PosLine(sku=sku, qty=qty) for sku, qty in lines))
        assert self.journal.accept_sale(txn, self.bridge.enlist_sale(txn_id, lines))
        self.bridge.accepted()
        self.truth.update(dict(lines))

    async def settled(self, within: float) -> None:
        async with asyncio.timeout(within):
            while self.bridge.stats()["pending"]:
                await asyncio.sleep(0.05)


@pytest.fixture
async def store(rest_erp: ReferenceErp, tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(connect(rest_erp), tmp_path)
    store.runner = asyncio.create_task(store.bridge.run(), name="erp-bridge")
    yield store
    store.runner.cancel()
    await asyncio.gather(store.runner, return_exceptions=True)
    store.bridge.close()
    store.journal.close()
    await store.erp.aclose()


@pytest.mark.timeout(240)
async def test_every_sale_arrives_once_through_429_5xx_and_slow_answers(
        rest_erp: ReferenceErp, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rest_erp.token_ttl_s = 3.0  # renewed several times along the way (margin 0: on expiry)
    rest_erp.faults = Faults(
        plan=deque(["429", "500", "slow", "502_after"]), rng=random.Random(8),
        rates={"429": 0.08, "500": 0.08, "502_after": 0.06, "slow": 0.06}, slow_s=1.5)
    rng = random.Random(rest_erp.signing)
    txns = [f"T-{i:03d}" for i in range(40)]
    for i, txn in enumerate(txns):
        lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(SKUS, rng.randint(1, 3))]
        if i % 7 == 3:
            lines.append((rng.choice([s for s in SKUS if s not in dict(lines)]), -1))
        store.sell(txn, lines)
        await asyncio.sleep(rng.uniform(0.0, 0.05))
    await store.settled(within=200)
    rest_erp.faults = Faults()  # the stock read below is not under test here

    assert store.bridge.outbox.rejected() == []
    assert rest_erp.sold() == {sku: n for sku, n in store.truth.items() if n}
    with rest_erp.lock:
        documents = dict(rest_erp.documents)
        seen = Counter(rest_erp.seen)
    assert sorted(documents) == [f"{STORE}:sale:{txn}" for txn in txns]
    assert [documents[f"{STORE}:sale:{txn}"].body["remark"] for txn in txns] == [
        [txn] for txn in txns]
    assert await store.erp.stock_units() == {sku: STOCK[sku] - store.truth[sku] for sku in SKUS}
    # the faults happened, and the answers booked but lost were recognised on the retry
    assert all(seen[fault] >= 1 for fault in ("429", "500", "slow", "502_after")), seen
    assert seen["duplicate"] >= seen["slow"] + seen["502_after"] >= 2
    assert store.erp.duplicates_refused == seen["duplicate"]
    assert rest_erp.early == 0  # nothing came back before its Retry-After
    assert seen["token"] >= 2
    # neither the app secret nor an access token is ever logged
    assert "ERP unavailable" in caplog.text and APP_SECRET not in caplog.text
    with rest_erp.lock:
        assert rest_erp.tokens and not any(token in caplog.text for token in rest_erp.tokens)


@pytest.mark.timeout(60)
async def test_a_store_that_stops_while_its_booking_is_in_flight_books_it_once_after_restart(
        rest_erp: ReferenceErp, tmp_path: Path) -> None:
    rest_erp.faults = Faults(plan=deque(["slow"]), slow_s=5.0)  # booked, then a long silence
    first = Store(RestConnector(rest_erp.url, RestMapping.model_validate(mapping(rest_erp)),
                                APP_SECRET, timeout=30), tmp_path)
    runner = asyncio.create_task(first.bridge.run(), name="erp-bridge")
    first.sell("T-1", [("COLA-330", 2)])
    async with asyncio.timeout(30):
        while not rest_erp.documents:  # the ERP has booked it; our side still waits
            await asyncio.sleep(0.01)
    runner.cancel()  # the agent stops (or dies) before the answer comes
    await asyncio.gather(runner, return_exceptions=True)
    first.bridge.close()
    first.journal.close()
    await first.erp.aclose()

    again = Store(connect(rest_erp), tmp_path)  # the same journal, a new process
    runner = asyncio.create_task(again.bridge.run(), name="erp-bridge")
    try:
        await again.settled(within=30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        again.bridge.close()
        again.journal.close()
        await again.erp.aclose()
    assert rest_erp.sold() == {"COLA-330": 2}
    assert list(rest_erp.documents) == [f"{STORE}:sale:T-1"]
    assert again.erp.duplicates_refused == rest_erp.seen["duplicate"] == 1


@pytest.mark.timeout(60)
async def test_a_refusal_with_its_reason_goes_to_the_dead_letter_and_the_rest_flows_on(
        rest_erp: ReferenceErp, store: Store) -> None:
    store.sell("T-1", [("NOPE-1", 1)])
    store.sell("T-2", [("COLA-330", 2)])
    await store.settled(within=30)
    [dead] = store.bridge.outbox.rejected()
    assert dead["key"] == f"{STORE}:sale:T-1"
    assert re.search(r"(HTTP|code) 400: unknown sku NOPE-1", dead["reason"]), dead["reason"]
    assert rest_erp.sold() == {"COLA-330": 2}


@pytest.mark.timeout(60)
async def test_a_window_is_booked_with_its_start_in_their_date_format(
        rest_erp: ReferenceErp, store: Store) -> None:
    key = f"{STORE}:sales:20251128T090000Z"
    payload = {"lines": [["WATER-550", 1]], "receipts": ["T-1"],
               "window": [1764320400, 1764320460], "key": key}
    first = await store.bridge.deliver("sales", payload)
    assert await store.bridge.deliver("sales", payload) == first  # a replay: the same document
    assert rest_erp.documents[key].body["biz_time"] == "2025-11-28 17:00:00"  # Shanghai
    assert rest_erp.sold() == {"WATER-550": 1}


@pytest.mark.timeout(60)
async def test_a_429_holds_every_request_until_its_retry_after(rest_erp: ReferenceErp) -> None:
    rest_erp.faults = Faults(plan=deque(["429"]), retry_after_s=1)
    erp = connect(rest_erp)
    try:
        with pytest.raises(ErpUnavailable, match=r"(HTTP|code) 429"):
            await erp.stock_units()
        assert await erp.stock_units() == STOCK  # sent only once the second passed
    finally:
        await erp.aclose()
    assert rest_erp.seen["429"] == 1 and rest_erp.early == 0


@pytest.mark.timeout(60)
async def test_the_access_token_is_renewed_before_it_expires_and_after_a_401(
        rest_erp: ReferenceErp) -> None:
    rest_erp.token_ttl_s = 10.0
    erp = connect(rest_erp, token={"path": "/oauth/token", "refresh_margin_seconds": 9.5})
    try:
        await erp.stock_units()
        await erp.stock_units()
        assert erp.tokens_fetched == 1  # still fresh
        await asyncio.sleep(0.6)  # past the renewal time, well before the ERP's expiry
        await erp.stock_units()
        assert (erp.tokens_fetched, rest_erp.seen["401"]) == (2, 0)
        rest_erp.revoke_tokens()  # say, the ERP restarted
        assert await erp.stock_units() == STOCK
        assert (erp.tokens_fetched, rest_erp.seen["401"]) == (3, 1)
    finally:
        await erp.aclose()


@pytest.mark.timeout(60)
async def test_a_count_is_booked_once_in_their_units(rest_erp: ReferenceErp) -> None:
    erp = connect(rest_erp)
    try:
        first = await erp.book_count(f"{STORE}:count:1", [("CHIPS-70", -3)])
        assert await erp.book_count(f"{STORE}:count:1", [("CHIPS-70", -3)]) == first
        assert (await erp.stock_units())["CHIPS-70"] == STOCK["CHIPS-70"] - 3
        assert rest_erp.documents[f"{STORE}:count:1"].body["items"] == [
            {"sku_id": "CHIPS-70", "qty": -3000}]
    finally:
        await erp.aclose()


@pytest.mark.timeout(60)
async def test_the_reference_refuses_replays_stale_timestamps_and_wrong_signatures(
        rest_erp: ReferenceErp) -> None:
    """The reference's checks bite, so the tests above passing means our signing is right."""
    signer = scheme(rest_erp.signing, APP_KEY, APP_SECRET)
    body = b'{"grant_type":"client_credentials"}'
    async with httpx.AsyncClient(base_url=rest_erp.url, timeout=10) as client:

        async def send(method: str, path: str, content: bytes, now: float, nonce: str,
                       token: str | None = None, signer=signer) -> httpx.Response:
            query = {"shop_id": "BJ01"} if method == "GET" else {}
            signed = signer.sign(Request(method, path, query, content), now, nonce)
            headers = {**signed.headers, "Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            return await client.request(method, path, params={**query, **signed.query},
                                        content=content or None, headers=headers)

        got = await send("POST", "/oauth/token", body, time.time(), "n-1")
        assert got.status_code == 200, got.text
        token = got.json()["access_token"]
        now = time.time()
        assert (await send("GET", "/open/stock", b"", now, "n-2", token)).status_code == 200
        replay = await send("GET", "/open/stock", b"", now, "n-2", token)
        assert (replay.status_code, replay.json()["message"]) == (401, "replayed nonce 'n-2'")
        stale = await send("GET", "/open/stock", b"", now - 600, "n-3", token)
        assert stale.status_code == 401 and "outside" in stale.json()["message"]
        forged = await send("GET", "/open/stock", b"", now, "n-4", token,
                            signer=scheme(rest_erp.signing, APP_KEY, "not-the-secret"))
        assert forged.json()["message"] == "signature does not match"
        untokened = await send("GET", "/open/stock", b"", now, "n-5")
        assert untokened.json()["message"] == "access token missing, unknown or expired"

    erp = connect(rest_erp, secret="not-the-secret")
    try:  # refused credentials keep the command queued: unavailable, not rejected
        with pytest.raises(ErpUnavailable, match="refused our credentials: HTTP 401"):
            await erp.book_sales(f"{STORE}:sale:T-1", [("COLA-330", 1)], ["T-1"])
    finally:
        await erp.aclose()
    assert rest_erp.documents == {}


@pytest.mark.timeout(60)
async def test_a_store_configured_for_a_rest_erp_books_its_pos_sales_there(
        rest_erp: ReferenceErp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERENCE_ERP_SECRET", APP_SECRET)
    config = StoreConfig.model_validate({
        "store": {"id": STORE},
        "journal": {"path": str(tmp_path / "journal.db")},
        "erp": {"kind": "rest", "url": rest_erp.url, "summary_window_seconds": 1,
                "retry_initial_seconds": 0.05, "rest": mapping(rest_erp)},
        "catalog": [{"sku": sku, "unit_grams": 100} for sku in SKUS],
    })
    agent = StoreAgent(config)
    agent.restore()
    assert agent.erp_bridge is not None
    runner = asyncio.create_task(agent.erp_bridge.run(), name="erp-bridge")
    app = create_app(agent, agent.feed, agent.config.http, agent.registry)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://agent") as client:
            posted = await client.post("/api/pos/transactions", json={
                "txn_id": "T-1", "ts": int(time.time() * 1000),
                "lines": [{"sku": "COLA-330", "qty": 2, "unit_price": 3.5}]})
            assert posted.status_code == 201, posted.text
        async with asyncio.timeout(30):
            while not rest_erp.documents:
                await asyncio.sleep(0.05)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert agent.erp is not None
        await agent.erp.aclose()
        agent.erp_bridge.close()
        agent.store_db.close()
        agent.journal.close()
    [(key, doc)] = rest_erp.documents.items()
    start = datetime.datetime.strptime(key.rsplit(":", 1)[1], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC)
    assert doc.body["biz_time"] == start.astimezone(
        zoneinfo.ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    assert doc.body["remark"] == ["T-1"] and rest_erp.sold() == {"COLA-330": 2}
