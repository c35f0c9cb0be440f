"""A simulated store playing a scenario: shelf controllers on pseudo-terminals, wireless shelves
over MQTT, shoppers who pick items and pay at the POS, staff who restock low lanes.

The lane contents are the physical truth; the devices only report weights, exactly as real load
cells would. The POS's accepted transactions are the sales truth the demo checks the ERP against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.modbus_shelf import ModbusShelfSim
from firmware_sim.mqtt_shelf import MqttShelfSim
from firmware_sim.pos import PosRegister, Transaction
from firmware_sim.scenario import Scenario, load_scenario

log = logging.getLogger(__name__)


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

    def show(self) -> None:
        self.set_grams(self.units * self.unit_grams)


class SimulatedStore:
    def __init__(self, scenario: Scenario, *, broker: tuple[str, int], agent_url: str,
                 dev_dir: Path) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.pos = PosRegister(agent_url)
        self.lanes: list[SimLane] = []
        self.modbus: list[ModbusShelfSim] = []
        self.mqtt: list[MqttShelfSim] = []
        self._txn = 0
        dev_dir.mkdir(parents=True, exist_ok=True)
        for shelf in scenario.shelves:
            setters: list[Callable[[float], None]]
            if shelf.kind == "modbus":
                sim = ModbusShelfSim(shelf.id, shelf.slave, len(shelf.lanes),
                                     dev_dir / f"{shelf.id}.tty", noise_grams=scenario.noise_grams,
                                     seed=scenario.seed)
                self.modbus.append(sim)
                setters = [(lambda g, s=sim, i=i: s.set_grams(i, g))
                           for i in range(len(shelf.lanes))]
            else:
                msim = MqttShelfSim(scenario.store_id, shelf.id, [lane.id for lane in shelf.lanes],
                                    host=broker[0], port=broker[1], qos=1,
                                    noise_grams=scenario.noise_grams, seed=scenario.seed)
                self.mqtt.append(msim)
                setters = [(lambda g, s=msim, lane=lane.id: s.set_grams(lane, g))
                           for lane in shelf.lanes]
            for lane, setter in zip(shelf.lanes, setters, strict=True):
                spec = scenario.sku(lane.sku)
                self.lanes.append(SimLane(lane.id, lane.sku, spec.unit_grams, lane.capacity,
                                          spec.low_stock, lane.capacity, setter))

    def start(self) -> None:
        for lane in self.lanes:
            lane.show()
        for sim in self.modbus:
            sim.start()
        for msim in self.mqtt:
            msim.start()

    def stop(self) -> None:
        for sim in self.modbus:
            sim.stop()
        for msim in self.mqtt:
            msim.stop()

    async def shoppers(self) -> None:
        s = self.scenario
        while True:
            await asyncio.sleep(self.rng.expovariate(1.0 / s.shopper_every_seconds))
            stocked = [lane for lane in self.lanes if lane.units > 0]
            if not stocked:
                continue
            basket: dict[str, int] = {}
            visits = min(len(stocked), self.rng.randint(1, s.basket_max_lanes))
            for lane in self.rng.sample(stocked, visits):
                take = min(lane.units, self.rng.randint(1, s.pick_max_units))
                lane.units -= take
                lane.show()
                basket[lane.sku] = basket.get(lane.sku, 0) + take
                await asyncio.sleep(self.rng.uniform(0.2, 0.8))
            asyncio.get_running_loop().call_later(self.rng.uniform(*s.pay_after_seconds),
                                                  self._pay, basket)

    def _pay(self, basket: dict[str, int]) -> None:
        self._txn += 1
        txn_id = f"{self.scenario.store_id}-{int(time.time())}-{self._txn:06d}"
        lines = tuple((sku, qty, self.scenario.sku(sku).price)
                      for sku, qty in sorted(basket.items()))
        self.pos.sell(Transaction(txn_id, int(time.time() * 1000), lines))

    async def staff(self) -> None:
        """Restock a lane some seconds after it reaches its low-stock threshold."""
        while True:
            await asyncio.sleep(0.5)
            for lane in self.lanes:
                if lane.units <= lane.low_stock and not lane.restocking:
                    lane.restocking = True
                    asyncio.get_running_loop().call_later(
                        self.rng.uniform(*self.scenario.restock_after_seconds), self._restock, lane)

    def _restock(self, lane: SimLane) -> None:
        lane.units = lane.capacity
        lane.restocking = False
        lane.show()

    def truth(self) -> dict[str, object]:
        return {"sales_units": dict(self.pos.accepted_units), "transactions": self.pos.accepted,
                "unposted": self.pos.pending, "rejected": self.pos.rejected}


async def run_store(scenario_name: str, *, broker: tuple[str, int], agent_url: str,
                    dev_dir: Path, truth_out: Path | None, seconds: float | None) -> None:
    """Play a scenario until ``seconds`` pass or SIGTERM; then stop shopping, let the POS post
    everything it sold (bounded), and write the sales truth."""
    store = SimulatedStore(load_scenario(scenario_name), broker=broker, agent_url=agent_url,
                           dev_dir=dev_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store.start()
    try:
        async with asyncio.TaskGroup() as tg:
            pos = tg.create_task(store.pos.run(), name="pos")
            shoppers = tg.create_task(store.shoppers(), name="shoppers")
            staff = tg.create_task(store.staff(), name="staff")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            shoppers.cancel()
            # Paying customers still in the queue pay; then the POS posts what it holds.
            await asyncio.sleep(max(store.scenario.pay_after_seconds) + 0.1)
            staff.cancel()
            if not await store.pos.drain(timeout=50.0):
                log.error("POS still holds %d transactions", store.pos.pending)
            pos.cancel()
    finally:
        store.stop()
        if truth_out is not None:
            truth_out.write_text(json.dumps(store.truth()))
