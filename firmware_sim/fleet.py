"""The simulated devices of a scenario: each built to speak its real wire format, plugged in and
out together (or one at a time, for a fault's plug schedule), and what each kind has sent.

What the devices sense (the lanes' weights, the tags in a field, a scanned barcode) is set by
``firmware_sim.store``, where the people are.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.camera import CameraSim
from firmware_sim.faults import Faults
from firmware_sim.fridge import FridgeProfile, FridgeSim
from firmware_sim.kiosk import KioskSim
from firmware_sim.login import NO_LOGIN, BrokerLogin
from firmware_sim.modbus_shelf import ModbusShelfSim
from firmware_sim.mqtt_shelf import MqttShelfSim
from firmware_sim.rfid import M100Sim, ZebraReaderSim
from firmware_sim.scanner import ScannerSim
from firmware_sim.scenario import CameraSpec, FridgeSpec, RfidReaderSpec, Scenario

log = logging.getLogger(__name__)


class Fleet:
    """Every device of ``scenario``; ``lane_setters`` sets the weight a lane's load cell feels.
    ``start()`` plugs them all in, ``stop()`` unplugs them, ``pluggable()`` gives one to a
    plug schedule."""

    def __init__(self, scenario: Scenario, *, broker: tuple[str, int], dev_dir: Path,
                 elapsed: Callable[[], float], faults: Mapping[str, Faults], rng: random.Random,
                 device_ports: Mapping[str, int], logins: Mapping[str, BrokerLogin]) -> None:
        self.scenario = scenario
        self.broker = broker
        self.dev_dir = dev_dir
        self._elapsed = elapsed
        self._faults = faults
        self._rng = rng  # fridge door openings
        self._device_ports = device_ports
        self._logins = logins
        self.modbus: list[ModbusShelfSim] = []
        self.mqtt: list[MqttShelfSim] = []
        self.lane_setters: dict[str, Callable[[float], None]] = {}
        self.scanners: dict[str, ScannerSim] = {}
        self.cameras: dict[str, CameraSim] = {}
        self.fridges: dict[str, FridgeSim] = {}
        self.kiosks: dict[str, KioskSim] = {}
        self.readers: dict[str, ZebraReaderSim | M100Sim] = {}
        self._build_shelves()
        self._build_scanners()
        self._build_cameras()
        self._build_fridges()
        self._build_kiosks()
        self._build_readers()

    def faults(self, device_id: str) -> Faults:
        return self._faults.get(device_id, Faults())

    def login(self, device_id: str) -> BrokerLogin:
        return self._logins.get(device_id, NO_LOGIN)

    # Building

    def _build_shelves(self) -> None:
        s = self.scenario
        for shelf in s.shelves:
            if shelf.kind == "modbus":
                sim = ModbusShelfSim(shelf.id, shelf.slave, len(shelf.lanes),
                                     self.dev_dir / f"{shelf.id}.tty", noise_grams=s.noise_grams,
                                     seed=s.seed, faults=self.faults(shelf.id),
                                     elapsed=self._elapsed)
                self.modbus.append(sim)
                for i, lane in enumerate(shelf.lanes):
                    self.lane_setters[lane.id] = lambda g, s=sim, i=i: s.set_grams(i, g)
            else:
                msim = MqttShelfSim(s.store_id, shelf.id, [lane.id for lane in shelf.lanes],
                                    host=self.broker[0], port=self.broker[1], qos=1,
                                    noise_grams=s.noise_grams, seed=s.seed,
                                    faults=self.faults(shelf.id), elapsed=self._elapsed,
                                    login=self.login(shelf.id))
                self.mqtt.append(msim)
                for lane in shelf.lanes:
                    self.lane_setters[lane.id] = lambda g, s=msim, lane=lane.id: s.set_grams(
                        lane, g)

    def _build_scanners(self) -> None:
        for spec in self.scenario.scanners:
            self.scanners[spec.id] = ScannerSim(spec.id, self.dev_dir / f"{spec.id}.tty",
                                                seed=self.scenario.seed,
                                                faults=self.faults(spec.id))

    def _build_cameras(self) -> None:
        for spec in self.scenario.cameras:
            cam = CameraSim(list(spec.lanes.items()), self._device_ports.get(spec.id, 0),
                            device_id=spec.id, fps=spec.fps, size=(spec.width, spec.height),
                            noise=2.0, faults=self.faults(spec.id), seed=self.scenario.seed)
            cam.write_reference(camera_reference_path(self.dev_dir, spec))
            self.cameras[spec.id] = cam

    def _build_fridges(self) -> None:
        for spec in self.scenario.fridges:
            self.fridges[spec.id] = FridgeSim(
                spec.name, host=self.broker[0], port=self.broker[1],
                profile=_fridge_profile(spec, self._rng), humidity=spec.humidity,
                noise=0.05, interval_seconds=spec.every_seconds, seed=self.scenario.seed,
                faults=self.faults(spec.id), elapsed=self._elapsed, login=self.login(spec.id))

    def _build_kiosks(self) -> None:
        s = self.scenario
        catalog = [(c.sku, c.barcode, c.unit_grams, c.price) for c in s.catalog]
        for spec in s.kiosks:
            self.kiosks[spec.id] = KioskSim(s.store_id, spec.id, self.broker[0], self.broker[1],
                                            catalog, faults=self._faults.get(spec.id),
                                            seed=s.seed, login=self.login(spec.id))

    def _build_readers(self) -> None:
        for spec in self.scenario.rfid_readers:
            self.readers[spec.id] = self._reader(spec)

    def _reader(self, spec: RfidReaderSpec) -> ZebraReaderSim | M100Sim:
        s = self.scenario
        if spec.kind == "zebra":
            return ZebraReaderSim(s.store_id, spec.id, host=self.broker[0], port=self.broker[1],
                                  period_s=1.0 / spec.read_hz, batch=4, rssi_noise_db=2.0,
                                  faults=self.faults(spec.id), seed=s.seed,
                                  login=self.login(spec.id))
        return _CountingM100(spec.id, self.dev_dir / f"{spec.id}.tty", rssi_noise_db=2.0,
                             faults=self.faults(spec.id), seed=s.seed)

    # Plugging in and out

    def _all(self) -> list[Any]:
        return [*self.modbus, *self.mqtt, *self.scanners.values(), *self.cameras.values(),
                *self.fridges.values(), *self.readers.values()]

    async def start(self) -> None:
        """Plug every device in (BrokerUnavailable when the broker is not there)."""
        for sim in self._all():
            sim.start()
        for kiosk in self.kiosks.values():
            await kiosk.start()
        for cid, cam in self.cameras.items():
            # The agent's config names the stream; a free port is only known once bound.
            (self.dev_dir / f"{cid}.url").write_text(cam.url)

    async def stop(self) -> None:
        """Unplug every device (each one, whatever the others do)."""
        for kiosk in self.kiosks.values():
            try:
                await kiosk.stop()
            except Exception:
                log.exception("stopping kiosk %s failed", kiosk.kiosk_id)
        for sim in self._all():
            try:
                sim.stop()
            except Exception:  # one stuck device must not keep the others plugged in
                log.exception("stopping a simulated device failed")

    def pluggable(self, device_id: str) -> Any:
        """Device ``device_id`` as ``plug_schedule`` unplugs and replugs it, from its thread."""
        by_id: dict[str, Any] = {sim.device_id: sim for sim in self.modbus}
        by_id.update((sim.device_id, sim) for sim in self.mqtt)
        by_id.update(self.scanners)
        loop = asyncio.get_running_loop()
        for kid, kiosk in self.kiosks.items():
            # plug_schedule runs these on a worker thread; the kiosk lives on the loop.
            by_id[kid] = _Replug(
                kid, lambda k=kiosk: asyncio.run_coroutine_threadsafe(k.stop(), loop).result(),
                lambda k=kiosk: asyncio.run_coroutine_threadsafe(k.start(), loop).result())
        for rid, reader in self.readers.items():
            by_id[rid] = reader if isinstance(reader, M100Sim) else \
                _Replug(rid, reader.stop, reader.start)
        by_id.update(self.cameras)
        for fid, fridge in self.fridges.items():
            by_id[fid] = _Replug(fid, lambda f=fridge: (f.set_available(False), f.stop()),
                                 fridge.start)
        return by_id[device_id]

    # The record

    def readings(self) -> dict[str, int]:
        """What each device kind sent: frames, messages, lines, tag reads."""
        counts: Counter[str] = Counter()
        for reader in self.readers.values():
            if isinstance(reader, ZebraReaderSim):
                counts["rfid_zebra"] += reader.published
            elif isinstance(reader, _CountingM100):
                counts["rfid_serial"] += reader.reads_sent
        counts["shelf_modbus"] += sum(sim.responses for sim in self.modbus)
        counts["shelf_mqtt"] += sum(sim.published for sim in self.mqtt)
        counts["scanner"] += sum(sim.sent for sim in self.scanners.values())
        counts["camera"] += sum(sim.frames_sent for sim in self.cameras.values())
        counts["zigbee2mqtt"] += sum(sim.published for sim in self.fridges.values())
        counts["checkout"] += sum(k.published for k in self.kiosks.values())
        return {kind: counts[kind] for kind in sorted(self._kinds())}

    def _kinds(self) -> set[str]:
        s = self.scenario
        kinds = {f"shelf_{shelf.kind}" for shelf in s.shelves}
        kinds |= {f"rfid_{r.kind}" for r in s.rfid_readers}
        for name, group in (("scanner", s.scanners), ("camera", s.cameras),
                            ("zigbee2mqtt", s.fridges), ("checkout", s.kiosks)):
            if group:
                kinds.add(name)
        return kinds


@dataclass
class _Replug:
    device_id: str
    unplug: Callable[[], object]
    replug: Callable[[], object]


def camera_reference_path(dev_dir: Path, spec: CameraSpec) -> Path:
    """Where the simulator writes camera ``spec``'s empty-shelf reference image."""
    return dev_dir / f"{spec.id}.reference.png"


def _fridge_profile(spec: FridgeSpec, rng: random.Random) -> FridgeProfile:
    lo, hi = spec.temp_range
    # Cabinets run in the lower part of their range; a door opened for a few seconds now and then
    # warms the air by about a degree and recovers.
    profile = FridgeProfile(setpoint=lo + 0.3 * (hi - lo), ambient=22.0, open_tau=120.0,
                            recover_tau=30.0)
    now = time.time()
    for k in range(40):
        profile.open_door(now + 15.0 + 45.0 * k + rng.uniform(0, 20), rng.uniform(3.0, 8.0))
    return profile


class _CountingM100(M100Sim):
    """The serial module, counting the tag reads it answers inventories with."""

    reads_sent = 0

    def reads(self) -> list[tuple[str, int, float]]:
        out = super().reads()
        self.reads_sent += len(out)
        return out
