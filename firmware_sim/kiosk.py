"""A self-checkout kiosk: runs shoppers' sessions and publishes them over MQTT with our codec.

``shop()`` plays one session the way a shopper does it: start, then for every unit scan it and
put it on the bagging scale (the scale reports a moving weight, then a few noisy settled
readings), pay. It can plant the two things loss prevention looks for: a unit bagged without
being scanned (``skip_scan``) and a double scan voided again (``void``). It returns what was
paid, the sales truth a test compares the agent with.

Session events go to ``store/{sid}/dev/{kiosk}/session`` at QoS 1; the kiosk announces itself
with a retained ``online`` on ``store/{sid}/dev/{kiosk}/status`` and leaves ``offline`` as its
last will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiomqtt

from devices.checkout.protocol import encode, session_topic
from firmware_sim.faults import ByteFilter, Faults, FaultyPublisher, ValueFilter
from firmware_sim.login import NO_LOGIN, BrokerLogin
from storeedge.errors import BrokerUnavailable, UsageError
from storeedge.events import CheckoutKind
from storeedge.units import s_to_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogEntry:
    sku: str
    barcode: str
    unit_grams: float
    price: float


@dataclass(frozen=True)
class Receipt:
    """What a session sold: ``lines`` are (sku, qty, unit price), one per sku."""

    session: str
    txn_id: str
    lines: tuple[tuple[str, int, float], ...]
    amount: float

    @property
    def units(self) -> Counter[str]:
        return Counter({sku: qty for sku, qty, _ in self.lines})


class KioskSim:
    """A kiosk ``kiosk_id`` of store ``store_id`` selling ``catalog`` entries, given as
    ``(sku, barcode, unit_grams, price)``.

    ``noise_grams`` is the bagging scale's jitter (a ``faults`` object, when given, replaces
    it with its noise, drift and stuck scale, and adds duplicated or reordered messages, flipped
    bytes and a skewed clock); ``weight_spread`` how much units of one article differ
    (a fraction of their catalog weight).
    """

    def __init__(self, store_id: str, kiosk_id: str, host: str, port: int,
                 catalog: Sequence[tuple[str, str, float, float]], *,
                 noise_grams: float = 1.0, weight_spread: float = 0.005,
                 settle_samples: int = 4, sample_interval: float = 0.05,
                 faults: Faults | None = None, seed: int | None = None,
                 clock: Callable[[], float] = time.time,
                 login: BrokerLogin = NO_LOGIN) -> None:
        self.store_id = store_id
        self.kiosk_id = kiosk_id
        self.login = login
        self.host, self.port = host, port
        self.catalog = {sku: CatalogEntry(sku, barcode, grams, price)
                        for sku, barcode, grams, price in catalog}
        self.weight_spread = weight_spread
        self.settle_samples = settle_samples
        self.sample_interval = sample_interval
        self.published = 0
        self.sessions = 0
        self._random = random.Random(seed)
        self.faults = faults or Faults(noise_grams=noise_grams)
        started = time.monotonic()
        self._scale = ValueFilter(self.faults, lambda: time.monotonic() - started,
                                  random.Random(self._random.random()))
        self._bytes = ByteFilter(self.faults, random.Random(self._random.random()))
        self._clock = self.faults.device_clock(clock)
        self._queue: list[tuple[str, bytes, int]] = []
        self._publisher = FaultyPublisher(self._enqueue, self.faults,
                                          random.Random(self._random.random()))
        self._topic = session_topic(store_id, kiosk_id)
        self._status = f"store/{store_id}/dev/{kiosk_id}/status"
        self._client: aiomqtt.Client | None = None
        self._seq = 0
        self._bagged = 0.0

    async def __aenter__(self) -> KioskSim:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect and say ``online``; BrokerUnavailable when the broker cannot be reached."""
        if self._client is not None:
            raise UsageError(f"{self.kiosk_id}: simulator already started")
        client = aiomqtt.Client(self.host, self.port, identifier=f"kiosk-sim-{self.store_id}-"
                                f"{self.kiosk_id}",
                                will=aiomqtt.Will(self._status, b"offline", qos=1, retain=True),
                                **self.login.aiomqtt_args())
        try:
            await client.__aenter__()
            await client.publish(self._status, b"online", qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"{self.kiosk_id}: cannot reach {self.host}:{self.port}: "
                                    f"{exc}") from exc
        self._client = client

    async def stop(self) -> None:
        """Say ``offline`` (retained) and disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self._status, b"offline", qos=1, retain=True)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)

    async def shop(self, items: Sequence[tuple[str, int]], *, skip_scan: str | None = None,
                   void: str | None = None, txn_id: str | None = None) -> Receipt:
        """One shopper's whole session, paid. ``skip_scan``: one unit of that sku (among
        ``items``) is bagged without a scan; ``void``: one unit of that sku is scanned twice and
        the second scan voided. Returns what was paid."""
        wanted = Counter[str]()
        for sku, qty in items:
            if sku not in self.catalog:
                raise UsageError(f"{self.kiosk_id}: {sku!r} is not in the kiosk's catalog")
            wanted[sku] += qty
        for name, sku in (("skip_scan", skip_scan), ("void", void)):
            if sku is not None and wanted[sku] < 1:
                raise UsageError(f"{self.kiosk_id}: {name} {sku!r} is not among the items")
        self.sessions += 1
        session = f"{self.kiosk_id}-{self.sessions:06d}"
        self._bagged = 0.0
        await self._send(session, CheckoutKind.STARTED)
        paid = Counter[str]()
        for sku, qty in items:
            entry = self.catalog[sku]
            for _ in range(qty):
                if sku == skip_scan:
                    skip_scan = None  # the incident: straight into the bag
                else:
                    await self._scan(session, entry, CheckoutKind.ITEM_SCANNED)
                    paid[sku] += 1
                    if sku == void:
                        void = None
                        await self._scan(session, entry, CheckoutKind.ITEM_SCANNED)
                        await self._scan(session, entry, CheckoutKind.VOIDED)
                await self._bag(session, entry)
        lines = tuple((sku, n, self.catalog[sku].price) for sku, n in paid.items())
        amount = round(sum(n * price for _, n, price in lines), 2)
        txn_id = txn_id or f"{session}-T"
        await self._send(session, CheckoutKind.PAID, amount=amount, txn_id=txn_id)
        self._publisher.flush()
        await self._drain()
        return Receipt(session=session, txn_id=txn_id, lines=lines, amount=amount)

    async def _scan(self, session: str, entry: CatalogEntry, kind: CheckoutKind) -> None:
        await self._send(session, kind, barcode=entry.barcode, qty=1,
                         expected_grams=entry.unit_grams, unit_price=entry.price)

    async def _bag(self, session: str, entry: CatalogEntry) -> None:
        """Put one unit on the scale: a reading while it is still in the hand, then settled
        ones."""
        spread = self.weight_spread
        self._bagged += entry.unit_grams * (1 + self._random.uniform(-spread, spread))
        readings = [self._bagged - entry.unit_grams * self._random.uniform(0.3, 0.7)]
        readings += [self._bagged] * self.settle_samples
        for grams in readings:
            reported = round(self._scale.apply("bagging", grams), 1)
            await self._send(session, CheckoutKind.BAGGING_WEIGHT, grams=reported)
            await asyncio.sleep(self.sample_interval)

    async def _send(self, session: str, kind: CheckoutKind, **fields: Any) -> None:
        self._seq += 1
        payload = encode(session, kind, seq=self._seq, ts_ms=s_to_ms(self._clock()), **fields)
        self._publisher(self._topic, self._bytes.apply(payload), 1)
        await self._drain()

    def _enqueue(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._queue.append((topic, payload, qos))

    async def _drain(self) -> None:
        if self._client is None:
            raise UsageError(f"{self.kiosk_id}: simulator not started")
        queue, self._queue = self._queue, []
        for topic, payload, qos in queue:
            try:
                await self._client.publish(topic, payload, qos=qos)
            except aiomqtt.MqttError as exc:
                raise BrokerUnavailable(f"{self.kiosk_id}: publish failed: {exc}") from exc
            self.published += 1
