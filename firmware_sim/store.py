"""A simulated store playing a scenario: every device of the scenario speaking its real wire
format, shoppers who pick items and pay at the POS or a self-checkout kiosk, staff who restock
low lanes (scanning the product at the lane), and the incidents the scenario plants.

The lane contents are the physical truth; the devices only report what they sense, exactly as
real ones would: load cells a weight, the camera a picture of the lane, RFID antennas the tags in
their field. The POS's accepted transactions and the kiosks' paid sessions are the sales truth
the demo checks the ERP against; ``planted`` says which incidents the agent should find.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.rfid.epc import encode_sgtin96
from firmware_sim.faults import Faults, ScenarioClock, merge_fault_specs, plug_schedule
from firmware_sim.fleet import Fleet
from firmware_sim.kiosk import Receipt
from firmware_sim.login import BrokerLogin
from firmware_sim.pos import PosRegister, Transaction
from firmware_sim.scenario import CHECKOUT, EXIT, Incident, Scenario, load_scenario
from storeedge.errors import BrokerUnavailable, UsageError

log = logging.getLogger(__name__)

# How long a sold tagged unit is in the checkout antenna's field, then the exit's; a walked-out
# one passes the exit a little slower (a bag, a coat).
CHECKOUT_SECONDS = 2.0
EXIT_SECONDS = 1.5
WALKOUT_EXIT_SECONDS = 2.5
# When the run ends: how long kiosk sessions and tag journeys under way may take to finish, and
# how long the POS may take to post what it still holds.
SETTLE_SECONDS = 15.0
POS_DRAIN_SECONDS = 50.0


@dataclass
class SimLane:
    id: str
    sku: str
    unit_grams: float
    capacity: int
    low_stock: int
    units: int
    set_grams: Callable[[float], None]
    restocking: bool = False
    stockroom_empty: bool = False  # nothing left to restock the lane with (sell_out)
    low_water: int | None = None  # the fewest units the lane held in the run
    epcs: list[str] = field(default_factory=list)  # tags of the units on the lane, if tagged
    watchers: list[Callable[[SimLane], None]] = field(default_factory=list)

    def show(self) -> None:
        if self.low_water is None or self.units < self.low_water:
            self.low_water = self.units
        self.set_grams(self.units * self.unit_grams)
        for watch in self.watchers:
            watch(self)


class TagField:
    """Which tags each antenna location has in its field right now (lanes and transient spots)."""

    def __init__(self, lanes: Iterable[SimLane]) -> None:
        self._lanes = {lane.id: lane for lane in lanes}
        self._passing: dict[str, set[str]] = {CHECKOUT: set(), EXIT: set()}

    def at(self, location: str) -> list[str]:
        lane = self._lanes.get(location)
        if lane is not None:
            return list(lane.epcs)
        return sorted(self._passing.get(location, ()))

    async def journey(self, epcs: Sequence[str], stops: Sequence[tuple[str, float]]) -> None:
        """Carry ``epcs`` past each (location, seconds) in turn; then nobody reads them again."""
        for location, seconds in stops:
            self._passing[location].update(epcs)
            try:
                await asyncio.sleep(seconds)
            finally:
                self._passing[location].difference_update(epcs)


class SimulatedStore:
    """The devices of ``scenario`` (``firmware_sim.fleet``) plus the people in the store.
    ``start()`` plugs the devices in, ``run()`` plays until cancelled, ``stop()`` unplugs them;
    ``truth()`` is the record."""

    def __init__(self, scenario: Scenario, *, broker: tuple[str, int], agent_url: str,
                 dev_dir: Path, faults: Mapping[str, Faults] | None = None,
                 device_ports: Mapping[str, int] | None = None,
                 logins: Mapping[str, BrokerLogin] | None = None) -> None:
        self.scenario = scenario
        self.clock = ScenarioClock()
        self.faults = dict(scenario.device_faults() if faults is None else faults)
        self.rng = random.Random(scenario.seed)
        # Everything beyond the basic store draws from its own generator, so a scenario without
        # kiosks or tags plays exactly the shoppers and restocks it always did.
        self.extra_rng = random.Random(scenario.seed + 1)
        self.pos = PosRegister(agent_url)
        self._placed: dict[str, dict[str, int]] = {}  # reader -> epc -> antenna
        self.planted: list[dict[str, Any]] = []
        self.unplugged_all_ts: float | None = None  # when the run ended: every device unplugged
        self.kiosk_units: Counter[str] = Counter()
        self.kiosk_paid = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._txn = 0
        self._serials = itertools.count(1)
        dev_dir.mkdir(parents=True, exist_ok=True)
        self.devices = Fleet(scenario, broker=broker, dev_dir=dev_dir, elapsed=self.clock,
                             faults=self.faults, rng=self.extra_rng,
                             device_ports=dict(device_ports or {}), logins=dict(logins or {}))
        self.lanes = [SimLane(lane.id, lane.sku, scenario.sku(lane.sku).unit_grams,
                              lane.capacity, scenario.sku(lane.sku).low_stock, lane.capacity,
                              self.devices.lane_setters[lane.id])
                      for shelf in scenario.shelves for lane in shelf.lanes]
        self.tags = TagField(self.lanes)
        self._tag_lanes()
        self._watch_lanes()
        # one shopper at a kiosk at a time
        self._kiosk_queues = {kid: asyncio.Lock() for kid in self.devices.kiosks}
        for inc in scenario.incidents:
            if inc.kind == "unplug":
                self.planted.append({"kind": "unplug", "device": inc.device, "at": inc.at,
                                     "until": inc.until, "unplugged_at": None,
                                     "replugged_at": None})
        unknown = set(self.faults) - set(scenario.device_ids())
        if unknown:
            raise UsageError(f"faults for devices not in scenario {scenario.name}: "
                             f"{', '.join(sorted(unknown))}")

    # The lanes as the devices see them

    def _tag_lanes(self) -> None:
        tagged = {t.sku for t in self.scenario.tagged}
        for lane in self.lanes:
            if lane.sku in tagged:
                lane.epcs = [self._new_epc(lane.sku) for _ in range(lane.units)]

    def _new_epc(self, sku: str) -> str:
        spec = next(t for t in self.scenario.tagged if t.sku == sku)
        return encode_sgtin96(self.scenario.sku(sku).barcode, next(self._serials),
                              company_prefix_digits=spec.company_prefix_digits)

    def _watch_lanes(self) -> None:
        lanes = {lane.id: lane for lane in self.lanes}
        for spec in self.scenario.cameras:
            cam = self.devices.cameras[spec.id]
            for lane_id in spec.lanes:
                lanes[lane_id].watchers.append(
                    lambda lane, cam=cam: cam.set_fill(lane.id, lane.units / lane.capacity))

    # Plugging in and out

    async def start(self) -> None:
        """Plug every device in (BrokerUnavailable when the broker is not there)."""
        for lane in self.lanes:
            lane.show()
        self.sync_tags()
        await self.devices.start()

    async def stop(self) -> None:
        """Unplug every device (each one, whatever the others do)."""
        self.unplugged_all_ts = self.unplugged_all_ts or time.time()
        await self.devices.stop()

    # The people

    async def run(self) -> None:
        """Shoppers, staff, faults and planted incidents, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.shoppers(), name="shoppers")
            tg.create_task(self.staff(), name="staff")
            if self.devices.readers:
                tg.create_task(self.tag_reads(), name="tag-reads")
            for device_id, faults in self.faults.items():
                if faults.unplug_at is not None:
                    tg.create_task(plug_schedule(self.devices.pluggable(device_id), faults,
                                                 self.clock, self._plugged),
                                   name=f"plug-{device_id}")
            for incident in self.scenario.incidents:
                if incident.kind != "unplug":
                    tg.create_task(self._plant(incident), name=f"plant-{incident.kind}")

    async def tag_reads(self) -> None:
        """Keep every antenna's field in step with where the tagged units are."""
        while True:
            self.sync_tags()
            await asyncio.sleep(0.1)

    def sync_tags(self) -> None:
        for spec in self.scenario.rfid_readers:
            reader = self.devices.readers[spec.id]
            want = {epc: antenna for antenna, location in spec.antennas.items()
                    for epc in self.tags.at(location)}
            placed = self._placed.setdefault(spec.id, {})
            for epc in set(placed) - set(want):
                reader.remove(epc)
                del placed[epc]
            for epc, antenna in want.items():
                if placed.get(epc) != antenna:
                    # Tags in a bag at the door read stronger than tags behind others on a shelf.
                    reader.place(epc, antenna, rssi=-58.0 if spec.antennas[antenna] not in
                                 (CHECKOUT, EXIT) else -46.0)
                    placed[epc] = antenna

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shoppers(self) -> None:
        s = self.scenario
        while True:
            await asyncio.sleep(self.rng.expovariate(1.0 / s.shopper_every_seconds))
            stocked = [lane for lane in self.lanes if lane.units > 0]
            if not stocked:
                continue
            basket: dict[str, int] = {}
            epcs: list[str] = []
            visits = min(len(stocked), self.rng.randint(1, s.basket_max_lanes))
            for lane in self.rng.sample(stocked, visits):
                take = min(lane.units, self.rng.randint(1, s.pick_max_units))
                epcs += self._pick(lane, take)
                basket[lane.sku] = basket.get(lane.sku, 0) + take
                await asyncio.sleep(self.rng.uniform(0.2, 0.8))
            pay_after = self.rng.uniform(*s.pay_after_seconds)
            kiosk = self._choose_kiosk()
            if kiosk is None:
                asyncio.get_running_loop().call_later(pay_after, self._pay, basket, epcs)
            else:
                self._spawn(self._kiosk_session(kiosk, basket, epcs, delay=pay_after),
                            f"kiosk-{kiosk}")

    def _pick(self, lane: SimLane, take: int) -> list[str]:
        """Take ``take`` units off ``lane``; returns the tags they carry."""
        lane.units -= take
        taken: list[str] = []
        if lane.epcs and take:
            taken, lane.epcs = lane.epcs[-take:], lane.epcs[:-take]
        lane.show()
        return taken

    def _choose_kiosk(self) -> str | None:
        if not self.scenario.kiosks:
            return None
        draw = self.extra_rng.random()
        for spec in self.scenario.kiosks:
            if draw < spec.share:
                return spec.id
            draw -= spec.share
        return None

    def _pay(self, basket: dict[str, int], epcs: Sequence[str] = ()) -> None:
        self._txn += 1
        txn_id = f"{self.scenario.store_id}-{int(time.time())}-{self._txn:06d}"
        lines = tuple((sku, qty, self.scenario.sku(sku).price)
                      for sku, qty in sorted(basket.items()))
        self.pos.sell(Transaction(txn_id, int(time.time() * 1000), lines))
        self._leave_paid(epcs)

    def _leave_paid(self, epcs: Sequence[str]) -> None:
        if epcs:
            self._spawn(self.tags.journey(epcs, [(CHECKOUT, CHECKOUT_SECONDS),
                                                 (EXIT, EXIT_SECONDS)]), "tags-paid")

    async def _kiosk_session(self, kiosk_id: str, basket: dict[str, int], epcs: Sequence[str],
                             *, delay: float, skip_scan: str | None = None) -> Receipt | None:
        """A shopper at a kiosk: waits for it, scans and bags the basket (one unit of
        ``skip_scan`` bagged unscanned) and pays for what was scanned. A kiosk that is down
        sends the shopper to the POS (and returns None)."""
        await asyncio.sleep(delay)
        async with self._kiosk_queues[kiosk_id]:
            try:
                receipt = await self.devices.kiosks[kiosk_id].shop(sorted(basket.items()),
                                                           skip_scan=skip_scan)
            except (BrokerUnavailable, UsageError) as exc:
                log.warning("kiosk %s unusable (%s): shopper pays at the POS", kiosk_id, exc)
                self._pay(basket, epcs)
                return None
        self.kiosk_paid += 1
        self.kiosk_units.update(receipt.units)
        self._leave_paid(epcs)
        return receipt

    async def staff(self) -> None:
        """Restock a lane some seconds after it reaches its low-stock threshold. Staff go home
        with the shoppers: restocks not yet done when the run ends are not done, so the shelves
        stand still while the store drains."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.TimerHandle] = []
        try:
            while True:
                await asyncio.sleep(0.5)
                pending = [handle for handle in pending if handle.when() > loop.time()]
                for lane in self.lanes:
                    if (lane.units <= lane.low_stock and not lane.restocking
                            and not lane.stockroom_empty):
                        lane.restocking = True
                        pending.append(loop.call_later(
                            self.rng.uniform(*self.scenario.restock_after_seconds),
                            self._restock, lane))
        finally:
            for handle in pending:
                handle.cancel()

    def _restock(self, lane: SimLane) -> None:
        if lane.stockroom_empty:
            return
        added = lane.capacity - lane.units
        if lane.epcs or any(t.sku == lane.sku for t in self.scenario.tagged):
            lane.epcs += [self._new_epc(lane.sku) for _ in range(added)]
        lane.units = lane.capacity
        lane.restocking = False
        lane.show()
        for spec in self.scenario.scanners:
            self._scan(spec.id, self.scenario.sku(lane.sku).barcode, spec.aim)

    def _scan(self, scanner_id: str, barcode: str, aim: bool) -> None:
        scanner = self.devices.scanners[scanner_id]
        # ]E0 is EAN-13/UPC-A in the AIM symbology identifiers (ISO/IEC 15424), always sent as
        # 13 digits: a UPC-A with a leading zero.
        if aim and len(barcode) in (12, 13):
            scanner.scan(barcode.zfill(13), "]E0")
        else:
            scanner.scan(barcode, None)

    # Planted incidents

    def _plugged(self, device_id: str, what: str, at: float) -> None:
        for record in self.planted:
            if record["kind"] == "unplug" and record["device"] == device_id:
                record["unplugged_at" if what == "unplugged" else "replugged_at"] = round(at, 2)
                record[f"{what}_ts"] = time.time()
                return
        self.planted.append({"kind": "fault_unplug", "device": device_id, what: round(at, 2)})

    async def _plant(self, incident: Incident) -> None:
        await asyncio.sleep(max(0.0, incident.at - self.clock()))
        record: dict[str, Any] = {"kind": incident.kind, "at": round(self.clock(), 2),
                                  "ts": time.time(), "sku": incident.sku}
        self.planted.append(record)
        assert incident.sku is not None
        if incident.kind == "sell_out":
            lane = next(x for x in self.lanes if x.id == incident.lane)
            lane.stockroom_empty = True
            record.update(lane=lane.id, qty=lane.units)
            if lane.units:
                epcs = self._pick(lane, lane.units)
                await asyncio.sleep(1.0)  # to the till
                self._pay({lane.sku: record["qty"]}, epcs)
            log.info("planted %s", record)
            return
        lane = self._stocked_lane(incident.sku)
        if incident.kind == "scan_avoidance":
            assert incident.device is not None
            record["kiosk"] = incident.device
            other = next((x for x in self.lanes if x.units > 0 and x.sku != incident.sku), None)
            basket = {incident.sku: 1}
            epcs = self._pick(lane, 1)
            if other is not None:
                epcs += self._pick(other, 1)
                basket[other.sku] = basket.get(other.sku, 0) + 1
            record.update(lane=lane.id, qty=1, session=None)
            # Spawned, not awaited: the end of the run must not cut a paying session short.
            self._spawn(self._planted_session(record, incident.device, basket, epcs),
                        "plant-scan-avoidance")
        elif incident.kind == "tag_walkout":
            epcs = self._pick(lane, 1)
            record.update(lane=lane.id, epc=epcs[0] if epcs else None)
            await asyncio.sleep(2.0)  # from the shelf to the door
            record["exit_ts"] = time.time()
            await self.tags.journey(epcs, [(EXIT, WALKOUT_EXIT_SECONDS)])
        log.info("planted %s", record)

    async def _planted_session(self, record: dict[str, Any], kiosk_id: str,
                               basket: dict[str, int], epcs: Sequence[str]) -> None:
        receipt = await self._kiosk_session(kiosk_id, basket, epcs, delay=1.0,
                                            skip_scan=record["sku"])
        record["session"] = receipt.session if receipt else None

    def _stocked_lane(self, sku: str) -> SimLane:
        """A lane of ``sku`` with something on it (restocked on the spot if all are empty)."""
        lanes = [lane for lane in self.lanes if lane.sku == sku and not lane.stockroom_empty]
        lane = max(lanes, key=lambda x: x.units)
        if lane.units == 0:
            self._restock(lane)
        return lane

    # The record

    def truth(self) -> dict[str, object]:
        sales = Counter(self.pos.accepted_units)
        sales.update(self.kiosk_units)
        return {"sales_units": dict(sales), "transactions": self.pos.accepted + self.kiosk_paid,
                "pos_transactions": self.pos.accepted, "kiosk_transactions": self.kiosk_paid,
                "unposted": self.pos.pending, "rejected": self.pos.rejected,
                "planted": self.planted, "readings": self.devices.readings(),
                "lane_low_water": {lane.id: lane.low_water if lane.low_water is not None
                                   else lane.units for lane in self.lanes},
                "lane_units": {lane.id: lane.units for lane in self.lanes},
                "unplugged_all_ts": self.unplugged_all_ts}


async def run_store(scenario: str | Scenario, *, broker: tuple[str, int], agent_url: str,
                    dev_dir: Path, truth_out: Path | None, seconds: float | None,
                    faults: Sequence[str] = (),
                    device_ports: Mapping[str, int] | None = None,
                    logins: Mapping[str, BrokerLogin] | None = None) -> dict[str, object]:
    """Play a scenario until ``seconds`` pass or SIGTERM; then stop shopping, let the POS post
    everything it sold (bounded), and write the truth (also returned).

    ``faults`` are ``--fault`` specs laid over the scenario's (``shelf-a1:unplug_at=20``);
    ``device_ports`` fixes the TCP port of devices that serve one (cameras); ``logins`` are the
    MQTT devices' broker logins.
    """
    if isinstance(scenario, str):
        scenario = load_scenario(scenario)
    store = SimulatedStore(scenario, broker=broker, agent_url=agent_url, dev_dir=dev_dir,
                           faults=merge_fault_specs(scenario.device_faults(), faults),
                           device_ports=device_ports, logins=logins)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await store.start()
        async with asyncio.TaskGroup() as tg:
            pos = tg.create_task(store.pos.run(), name="pos")
            people = tg.create_task(store.run(), name="store")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            people.cancel()
            # Paying customers still in the queue pay; kiosk sessions finish; then the POS posts
            # what it holds.
            await asyncio.sleep(max(scenario.pay_after_seconds) + 0.1)
            if store._tasks:
                await asyncio.wait(list(store._tasks), timeout=SETTLE_SECONDS)
            if not await store.pos.drain(timeout=POS_DRAIN_SECONDS):
                log.error("POS still holds %d transactions", store.pos.pending)
            pos.cancel()
    finally:
        for task in list(store._tasks):
            task.cancel()
        # The truth is written before the devices are unplugged: a device slow to let go must
        # not cost the record of what was sold.
        store.unplugged_all_ts = time.time()
        truth = store.truth()
        if truth_out is not None:
            truth_out.write_text(json.dumps(truth))
        await store.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return truth


def stop_seconds(scenario: Scenario) -> float:
    """The longest ``run_store`` takes from SIGTERM to its truth written: the last shoppers
    pay, the sessions under way settle, the POS drains."""
    return max(scenario.pay_after_seconds) + SETTLE_SECONDS + POS_DRAIN_SECONDS + 5.0
