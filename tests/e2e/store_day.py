"""A simulated store day driven through the real ``StoreAgent``, in-process and in seconds.

The agent is not started (no broker, no HTTP, no drivers): the day feeds it exactly what its
transports would deliver. MQTT-fed devices go through ``agent.on_batch`` as payloads built with
the devices' own encoders, one batch per simulated second as one socket read would hand them
over; driver-fed devices (the Modbus shelf, the camera, the serial scanner) go through
``agent.on_events`` as their drivers emit them; POS sales through ``agent.accept_pos``; and
``agent.tick(now)`` runs every simulated second as the agent's tick loop does. The clock is a
``FakeClock`` the agent was built with.

The world is simple and seeded: shoppers take units from lanes at a steady pace and pay a few
minutes later at the POS or a self-checkout kiosk, staff restock a lane (scanning the product
there) some minutes after it falls to its restock level, fridges cycle around their set point
with short door openings and a freezer defrost, RFID-tagged goods leave their lane only with a
sale. Incidents are planted with ``at(time, action)`` on top of that.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devices.checkout import protocol as kiosk_codec
from devices.rfid import zebra
from devices.rfid.epc import encode_sgtin96
from devices.scanner import gs1
from devices.scanner.protocol import decode_line, encode_line
from devices.shelf_mqtt import protocol as shelf_codec
from devices.zigbee2mqtt import protocol as z2m
from edge_agent.agent import StoreAgent
from edge_agent.config import StoreConfig
from storeedge.events import DeviceStatus, PosLine, PosTransaction, ShelfImage, ShelfWeight

STORE = "e2e-store"
TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2025, 11, 26)
COMPANY_PREFIX = "6901234"  # 7 digits (GS1 China range), for the SGTIN-96 tags


def at(hhmm: str, day: date = DAY) -> float:
    """Epoch seconds of a store-local time of the day, e.g. ``at("14:05")``."""
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ).timestamp()


def _gtin13(item: str) -> str:
    body = COMPANY_PREFIX + item
    return body + gs1.check_digit(body)


@dataclass(frozen=True)
class Product:
    sku: str
    gtin: str  # GTIN-13, the catalog barcode
    grams: float
    price: float


@dataclass(frozen=True)
class LanePlan:
    """A lane and how it lives through a clean day: shoppers take one unit every
    ``every_min`` +- ``spread_min`` minutes; staff restock to capacity once it is at
    ``restock_at`` or below. A good store keeps ``restock_at`` above four hours of its fastest
    sales (days_of_cover's default ``cover_hours``), so a lane never projects a stock-out."""

    lane: str
    sku: str
    zone: str
    capacity: int
    threshold: int
    restock_at: int
    start: int
    every_min: float
    spread_min: float
    weighed_by: str | None  # None: RFID-tagged goods on a peg, not weighed


PRODUCTS = {p.sku: p for p in (
    Product("WATER", _gtin13("00011"), 550.0, 2.0),
    Product("PASTA", _gtin13("00028"), 500.0, 6.5),
    Product("OIL", _gtin13("00035"), 980.0, 39.9),
    Product("COFFEE", _gtin13("00042"), 250.0, 45.0),
    Product("MILK", _gtin13("00059"), 1030.0, 12.0),
    Product("YOGURT", _gtin13("00066"), 150.0, 4.5),
    Product("RAZOR", _gtin13("00073"), 80.0, 89.0),
    Product("PERFUME", _gtin13("00080"), 200.0, 299.0),
    Product("BREAD", _gtin13("00097"), 420.0, 9.9),  # bakery basket: on no lane
)}

LANES = (
    LanePlan("A1", "WATER", "grocery", 48, 6, 24, 40, 20, 5, "shelf-1"),
    LanePlan("A2", "PASTA", "grocery", 24, 4, 12, 20, 40, 15, "shelf-1"),
    LanePlan("A3", "OIL", "grocery", 12, 3, 6, 8, 70, 20, "shelf-1"),
    LanePlan("A4", "COFFEE", "grocery", 24, 4, 12, 18, 45, 15, "shelf-1"),
    LanePlan("B1", "MILK", "dairy", 20, 3, 12, 16, 40, 10, "shelf-2"),
    LanePlan("B2", "YOGURT", "dairy", 30, 4, 14, 24, 35, 10, "shelf-2"),
    LanePlan("R1", "RAZOR", "hbc", 10, 2, 5, 10, 60, 20, None),
    LanePlan("R2", "PERFUME", "hbc", 8, 2, 4, 8, 90, 30, None),
)
PLAN = {lane.lane: lane for lane in LANES}
ANTENNA = {"R1": 1, "R2": 2}
CAMERA_LANES = ("A1", "A2", "A3", "A4")
SCANNER_PORT = "/dev/ttyACM0"


def store_config(journal: Path) -> StoreConfig:
    """The store's config, as its IT team would write it: no ERP (the catalog is here), no time
    series, every device kind the store has."""
    return StoreConfig.model_validate({
        "store": {"id": STORE, "timezone": "Asia/Shanghai"},
        "journal": {"path": str(journal)},
        "erp": {"kind": "none"},
        "catalog": [{"sku": p.sku, "name": p.sku.title(), "barcode": p.gtin,
                     "unit_grams": p.grams} for p in PRODUCTS.values()],
        "lanes": [{"id": x.lane, "sku": x.sku, "capacity": x.capacity, "low_stock": x.threshold,
                   "zone": x.zone} for x in LANES],
        "zones": [{"id": "grocery"}, {"id": "dairy", "min_c": 2.0, "max_c": 6.0},
                  {"id": "freezer", "min_c": -25.0, "max_c": -15.0}, {"id": "hbc"}],
        "devices": [
            {"type": "shelf_modbus", "id": "shelf-1", "port": "/dev/ttyUSB0", "poll_hz": 0.5,
             "lanes": ["A1", "A2", "A3", "A4"]},
            {"type": "shelf_mqtt", "id": "shelf-2", "lanes": ["B1", "B2"]},
            # heartbeat_seconds: the camera's default (60 s) is longer than the silence the
            # agent allows a camera (30 s, edge_agent/health.py); see the test module's notes.
            {"type": "camera", "id": "cam-1", "source": "rtsp://cam-1.local/stream",
             "heartbeat_seconds": 20,
             "lanes": [{"lane": lane, "roi": [i * 160, 0, 150, 200]}
                       for i, lane in enumerate(CAMERA_LANES)],
             "calibration": {"reference": "cam-1-empty.png"}},
            {"type": "rfid_zebra", "id": "rfid-1",
             "antennas": {port: lane for lane, port in ANTENNA.items()}},
            {"type": "zigbee2mqtt", "id": "fridge-1", "name": "dairy/fridge-1", "zone": "dairy"},
            {"type": "zigbee2mqtt", "id": "freezer-1", "name": "freezer-1", "zone": "freezer"},
            {"type": "scanner", "id": "scan-1", "port": SCANNER_PORT, "location": "floor"},
            {"type": "checkout", "id": "kiosk-1"},
        ],
    })


class FakeClock:
    """The agent's clock: simulated epoch seconds, moved only by the day."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Excursion:
    """A climate sensor away from its set point: ramps to ``peak`` over ``rise_s``, holds it
    until ``end`` and returns over ``fall_s``."""

    start: float
    end: float
    peak: float
    rise_s: float = 180.0
    fall_s: float = 300.0

    def weight(self, t: float) -> float:
        if t < self.start or t > self.end + self.fall_s:
            return 0.0
        if t < self.start + self.rise_s:
            return (t - self.start) / self.rise_s
        if t <= self.end:
            return 1.0
        return 1.0 - (t - self.end) / self.fall_s


@dataclass
class Sensor:
    device: str
    topic: str
    base: float
    swing: float  # compressor cycle amplitude
    excursions: list[Excursion]


class StoreDay:
    """The store's world and its devices, feeding ``agent`` through its transports."""

    def __init__(self, agent: StoreAgent, clock: FakeClock, *, seed: int,
                 start: float, end: float) -> None:
        self.agent = agent
        self.clock = clock
        self.rng = random.Random(seed)
        self.start, self.end = start, end
        self.count = {x.lane: x.start for x in LANES if x.weighed_by}
        self.tags: dict[str, tuple[str, str | None]] = {}  # epc -> (sku, lane or None: carried)
        self._serial = itertools.count(1000)
        self.restock_enabled = {x.lane: True for x in LANES}
        self._restock_due: set[str] = set()
        self.scanner_plugged = True
        self.camera_override: dict[str, float] = {}
        self.sensors = [
            Sensor("fridge-1", "zigbee2mqtt/dairy/fridge-1", 4.0, 0.6, []),
            Sensor("freezer-1", "zigbee2mqtt/freezer-1", -19.0, 0.8, []),
        ]
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._n = itertools.count()
        self._batch: list[tuple[str, bytes]] = []
        self._seq: dict[str, int] = {}
        self._camera_last: dict[str, float] | None = None
        self._camera_at = 0.0
        self._session = itertools.count(1)
        self._txn = itertools.count(1)
        self.sales = 0  # transactions
        self.sold: dict[str, int] = {}  # sku -> units
        self.shoppers_refused = 0  # came to an empty lane
        self.watchers: list[Callable[[float], None]] = []  # called every simulated second
        for x in LANES:
            if x.weighed_by is None:
                for _ in range(x.start):
                    self.tags[self._new_epc(x.sku)] = (x.sku, x.lane)

    # Scheduling

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``t`` (whole seconds)."""
        heapq.heappush(self._queue, (math.ceil(t), next(self._n), action))

    def _every(self, first: float, period: float, action: Callable[[], None]) -> None:
        def again() -> None:
            action()
            self.at(self.clock.now + period, again)
        self.at(first, again)

    def run(self) -> None:
        """Run the day from ``start`` to ``end``, one simulated second at a time."""
        self._setup()
        queue = self._queue
        agent = self.agent
        for now in range(int(self.start), int(self.end) + 1):
            self.clock.now = float(now)
            while queue and queue[0][0] <= now:
                heapq.heappop(queue)[2]()
            if self._batch:
                batch, self._batch = self._batch, []
                agent.on_batch(batch)
            agent.tick(float(now))
            for watch in self.watchers:
                watch(float(now))

    # Transports

    def mqtt(self, topic: str, payload: bytes) -> None:
        """A message the broker delivers this second."""
        self._batch.append((topic, payload))

    def driver(self, *events: Any) -> None:
        """What a driver task hands the agent."""
        self.agent.on_events(list(events))

    def _next_seq(self, device: str) -> int:
        self._seq[device] = n = self._seq.get(device, 0) + 1
        return n

    # Devices

    def _setup(self) -> None:
        t = self.start
        for device in ("shelf-1", "cam-1", "scan-1"):
            self.at(t, lambda d=device: self.driver(DeviceStatus(
                store_id=STORE, source=d, received_ts=self.clock.now, online=True)))
        for device in ("shelf-2", "rfid-1", "kiosk-1"):
            self.at(t, lambda d=device: self.mqtt(f"store/{STORE}/dev/{d}/status",
                                                  shelf_codec.encode_status(True)))
        for s in self.sensors:
            self.at(t, lambda s=s: self.mqtt(f"{s.topic}/availability",
                                             z2m.encode_availability(True)))
        self._every(t + 1, 2.0, self._poll_modbus)
        for i, lane in enumerate(("B1", "B2")):
            self._every(t + 1 + 5 * i, 10.0, lambda lane=lane: self._publish_weight(lane))
        self._every(t + 2, 5.0, self._camera)
        self._every(t + 3, 30.0, self._rfid)
        for i, s in enumerate(self.sensors):
            self._every(t + 4 + 17 * i, 60.0, lambda s=s: self._climate(s))
        for x in LANES:
            self.at(t + 60 * self._interval(x), lambda x=x: self._shopper(x))
        for _ in range(4):  # short door openings: out of range for a few minutes
            t0 = self.rng.uniform(at("09:00"), at("21:00"))
            self.sensors[0].excursions.append(Excursion(t0, t0 + 60, 6.9, 90, 240))
        self.sensors[1].excursions.append(Excursion(at("13:00"), at("13:07"), -13.0, 120, 180))

    def _grams(self, lane: str) -> float:
        x = PLAN[lane]
        return round(self.count[lane] * PRODUCTS[x.sku].grams + self.rng.uniform(-1.0, 1.0), 1)

    def _poll_modbus(self) -> None:
        now = self.clock.now
        seq = self._next_seq("shelf-1")
        self.driver(*(ShelfWeight(store_id=STORE, source="shelf-1", received_ts=now, seq=seq,
                                  lane=lane, grams=self._grams(lane))
                      for lane in ("A1", "A2", "A3", "A4")))

    def _publish_weight(self, lane: str) -> None:
        self.mqtt(f"store/{STORE}/dev/shelf-2/weight", shelf_codec.encode_weight(
            lane, self._grams(lane), self._next_seq("shelf-2"), int(self.clock.now * 1000)))

    def _camera(self) -> None:
        """The camera measures every few seconds and reports a change or a heartbeat, as its
        driver does (min_change 0.1, heartbeat 20 s)."""
        now = self.clock.now
        occupancy = {lane: self.camera_override.get(lane, round(min(max(
            self.count[lane] / PLAN[lane].capacity + self.rng.uniform(-0.03, 0.03), 0.0), 1.0), 3))
            for lane in CAMERA_LANES}
        last = self._camera_last
        if last is not None and now - self._camera_at < 20 and all(
                abs(v - last[k]) <= 0.1 for k, v in occupancy.items()):
            return
        self._camera_last, self._camera_at = occupancy, now
        self.driver(ShelfImage(store_id=STORE, source="cam-1", received_ts=now,
                               seq=self._next_seq("cam-1"), occupancy=occupancy))

    def _rfid(self) -> None:
        stamp = datetime.fromtimestamp(self.clock.now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        for epc, (_, lane) in sorted(self.tags.items()):
            if lane is not None:
                self.mqtt(f"store/{STORE}/dev/rfid-1/tags", zebra.encode(
                    epc, antenna=ANTENNA[lane], rssi=round(self.rng.gauss(-55, 2), 1),
                    event_num=self._next_seq("rfid-1"), ts=stamp))

    def _climate(self, s: Sensor) -> None:
        now = self.clock.now
        t = s.base + s.swing * math.sin(2 * math.pi * now / 1500) + self.rng.gauss(0, 0.05)
        for e in s.excursions:
            w = e.weight(now)
            t += w * (e.peak - t)
        self.mqtt(s.topic, z2m.encode_state(
            temperature=round(t, 2), humidity=round(self.rng.uniform(55, 65), 1), battery=97,
            linkquality=120, last_seen_ms=int(now * 1000)))

    def _new_epc(self, sku: str) -> str:
        return encode_sgtin96(PRODUCTS[sku].gtin, next(self._serial), company_prefix_digits=7)

    # People

    def _interval(self, x: LanePlan) -> float:
        return self.rng.uniform(x.every_min - x.spread_min, x.every_min + x.spread_min)

    def _shopper(self, x: LanePlan) -> None:
        now = self.clock.now
        if now < self.end - 1800:
            self.at(now + 60 * self._interval(x), lambda: self._shopper(x))
        if self.take(x.lane, 1):
            basket = [(x.sku, 1)] + ([("BREAD", 1)] if self.rng.random() < 0.3 else [])
            delay = self.rng.uniform(120, 720)
            if self.rng.random() < 0.7:
                self.at(now + delay, lambda: self.pos(basket))
            else:
                self.at(now + delay, lambda: self.kiosk(basket, voids=self.rng.random() < 0.15))
        else:
            self.shoppers_refused += 1

    def take(self, lane: str, qty: int) -> bool:
        """A shopper takes ``qty`` units off a lane (False: not that many there)."""
        x = PLAN[lane]
        if x.weighed_by is None:
            here = sorted(epc for epc, (sku, loc) in self.tags.items() if loc == lane
                          and sku == x.sku)
            if len(here) < qty:
                return False
            for epc in self.rng.sample(here, qty):
                del self.tags[epc]  # in the basket, then out of the door with the receipt
            left = len(here) - qty
        else:
            if self.count[lane] < qty:
                return False
            self.count[lane] -= qty
            left = self.count[lane]
        if left <= x.restock_at and self.restock_enabled[lane] and lane not in self._restock_due:
            self._restock_due.add(lane)
            self.at(self.clock.now + self.rng.uniform(300, 1200), lambda: self.restock(lane))
        return True

    def restock(self, lane: str) -> None:
        """Staff bring the lane back to capacity, scanning the product at the lane first."""
        self._restock_due.discard(lane)
        x = PLAN[lane]
        p = PRODUCTS[x.sku]
        if x.zone == "dairy":
            expiry = (datetime.fromtimestamp(self.clock.now, TZ) + timedelta(days=12)).date()
            self.scan("]d2", gs1.encode_element_string(
                [("01", "0" + p.gtin), ("17", expiry.strftime("%y%m%d")), ("10", "L" + lane)]))
        else:
            self.scan("]E0", p.gtin)
        if x.weighed_by is None:
            here = sum(1 for sku, loc in self.tags.values() if loc == lane and sku == x.sku)
            for _ in range(x.capacity - here):
                self.tags[self._new_epc(x.sku)] = (x.sku, lane)
        else:
            self.count[lane] = x.capacity

    def scan(self, aim: str | None, data: str) -> None:
        """A code read by the serial scanner: its line decoded as the driver decodes it."""
        if not self.scanner_plugged:
            return
        line = encode_line(data, aim).rstrip(b"\r\n")
        self.driver(decode_line(line, store_id=STORE, device_id="scan-1",
                                received_ts=self.clock.now))

    def pos(self, basket: list[tuple[str, int]]) -> None:
        txn = PosTransaction(
            store_id=STORE, source="pos-1", received_ts=self.clock.now,
            txn_id=f"POS-{next(self._txn):05d}",
            lines=tuple(PosLine(sku=sku, qty=qty, unit_price=PRODUCTS[sku].price)
                        for sku, qty in basket))
        assert self.agent.accept_pos(txn)
        self._sold(basket)

    def _sold(self, basket: list[tuple[str, int]]) -> None:
        self.sales += 1
        for sku, qty in basket:
            self.sold[sku] = self.sold.get(sku, 0) + qty

    def kiosk(self, basket: list[tuple[str, int]], *, voids: bool = False,
              voided_extra: int = 0, unscanned: list[str] = ()) -> str:
        """A self-checkout session: scan and bag each item (a wrongly scanned item voided when
        ``voids``; ``voided_extra`` items scanned and voided; ``unscanned`` SKUs bagged without
        a scan), then pay. Returns the session id."""
        session = f"K1-{next(self._session):05d}"
        t = self.clock.now
        topic = f"store/{STORE}/dev/kiosk-1/session"
        seq = self._next_seq

        def send(dt: float, kind: str, **kw: Any) -> None:
            self.at(t + dt, lambda: self.mqtt(topic, kiosk_codec.encode(
                session, kind, seq=seq("kiosk-1"), ts_ms=int(self.clock.now * 1000), **kw)))

        send(0, "started")
        dt, bag, amount = 3.0, 0.0, 0.0
        for sku, qty in basket:
            p = PRODUCTS[sku]
            send(dt, "item_scanned", barcode=p.gtin, qty=qty, expected_grams=p.grams,
                 unit_price=p.price)
            amount += qty * p.price
            if voids:
                voids = False
                send(dt + 2, "item_scanned", barcode=p.gtin, qty=1, expected_grams=p.grams,
                     unit_price=p.price)
                send(dt + 4, "voided", barcode=p.gtin, qty=1, expected_grams=p.grams,
                     unit_price=p.price)
                dt += 4
            bag += qty * p.grams
            send(dt + 2, "bagging_weight", grams=round(bag * 0.6, 1))
            send(dt + 3, "bagging_weight", grams=round(bag + self.rng.uniform(-3, 3), 1))
            dt += 6
        bread = PRODUCTS["BREAD"]
        for _ in range(voided_extra):
            send(dt, "item_scanned", barcode=bread.gtin, expected_grams=bread.grams,
                 unit_price=bread.price)
            send(dt + 2, "voided", barcode=bread.gtin, expected_grams=bread.grams,
                 unit_price=bread.price)
            dt += 4
        for sku in unscanned:
            bag += PRODUCTS[sku].grams
            send(dt, "bagging_weight", grams=round(bag + self.rng.uniform(-3, 3), 1))
            dt += 4
        send(dt + 3, "paid", amount=round(amount, 2), txn_id=f"KT-{session}")
        self.at(t + dt + 3, lambda: self._sold(basket))
        return session

    def move_tag(self, epc: str, lane: str | None) -> None:
        """Somebody carries a tagged item to another lane (None: out of every reader's field)."""
        sku, _ = self.tags[epc]
        self.tags[epc] = (sku, lane)

    def tags_at(self, lane: str) -> list[str]:
        return sorted(epc for epc, (_, loc) in self.tags.items() if loc == lane)


def new_day(journal: Path, *, seed: int = 20251126, start: str = "08:00",
            end: str = "22:00") -> tuple[StoreAgent, StoreDay]:
    """An agent on a fresh journal, with its day ready to plant incidents in and ``run()``."""
    clock = FakeClock(at(start))
    agent = StoreAgent(store_config(journal), clock=clock)
    # What run() does first, before it connects anything: restore state and read the catalog.
    agent.restore()
    return agent, StoreDay(agent, clock, seed=seed, start=at(start), end=at(end))


def transitions(agent: StoreAgent) -> list[tuple[str, str, str, str, float]]:
    """Every journaled alert transition: (alert_id, rule, subject, state, ts), in order."""
    return [tuple(row) for row in agent.journal.execute(
        "SELECT alert_id, rule, subject, state, ts FROM alert_transition ORDER BY seq")]
