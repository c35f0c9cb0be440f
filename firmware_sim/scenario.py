"""Store-in-a-box scenarios: the store's layout, its devices, how shoppers and staff behave, the
faults its devices suffer and the incidents planted in the run.

A scenario is a YAML file (``firmware_sim/scenarios/*.yaml`` or any path). The demo derives the
agent's store config from it, and the simulator plays it against the agent. Beyond the shelves
(``kind: modbus | mqtt``) a scenario may declare, each optional:

- ``rfid_readers``: ``{id, kind: zebra | serial, antennas: {port: location}}``; a location is a
  lane id, ``checkout`` or ``exit``.
- ``tagged``: ``{sku, company_prefix_digits}``: that SKU's units carry SGTIN-96 tags, read by
  the antenna whose location is the unit's lane.
- ``scanners``: ``{id, aim}``: the staff's scanner, used to confirm each restock at the lane.
- ``kiosks``: ``{id, share}``: self-checkouts; ``share`` of the shoppers pay there.
- ``cameras``: ``{id, width, height, fps, lanes: {lane: [x, y, w, h]}}``.
- ``fridges``: ``{id, name, zone, temp_range: [lo, hi], humidity, every_seconds}`` (Zigbee2MQTT
  sensors publishing on ``zigbee2mqtt/{name}``).
- ``faults``: ``{device_id: {key: value}}`` (see ``firmware_sim.faults``).
- ``rules``: the store's rule overrides, in the shape of a store's rules file (docs/rules.md);
  the demo writes them beside the agent's config, and the agent checks them when it loads them.
- ``incidents``: planted, with times in seconds into the run:
  ``{kind: scan_avoidance, at, kiosk, sku}`` (a kiosk shopper bags ``sku`` without scanning it),
  ``{kind: unplug, at, until, device}`` (a device's plug pulled and put back),
  ``{kind: tag_walkout, at, sku}`` (a tagged unit leaves its lane, passes the exit antenna and is
  never read again, with no sale),
  ``{kind: sell_out, at, lane}`` (a shopper buys every unit left on ``lane`` and pays at the POS;
  the stockroom has none left, so nobody restocks the lane: it stays empty to the end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from firmware_sim.faults import Faults, parse_faults
from storeedge.errors import ConfigError

SCENARIO_DIR = Path(__file__).parent / "scenarios"

SHELF_KINDS = ("modbus", "mqtt")
RFID_KINDS = ("zebra", "serial")
INCIDENT_KINDS = ("scan_avoidance", "unplug", "tag_walkout", "sell_out")
EXIT = "exit"
CHECKOUT = "checkout"


@dataclass(frozen=True)
class SkuSpec:
    sku: str
    name: str
    barcode: str
    unit_grams: float
    low_stock: int
    price: float


@dataclass(frozen=True)
class LaneSpec:
    id: str
    sku: str
    capacity: int


@dataclass(frozen=True)
class ShelfSpec:
    id: str
    kind: str  # modbus | mqtt
    slave: int
    lanes: tuple[LaneSpec, ...]


@dataclass(frozen=True)
class RfidReaderSpec:
    id: str
    kind: str  # zebra (MQTT JSON) | serial (M100 module on a pty)
    antennas: Mapping[int, str]  # antenna port -> location (lane id, checkout, exit)
    read_hz: float = 2.0  # reads per second of each tag in an antenna's field


@dataclass(frozen=True)
class TaggedSpec:
    sku: str
    company_prefix_digits: int  # splits the GTIN into GS1 company prefix and item reference


@dataclass(frozen=True)
class ScannerSpec:
    id: str
    aim: bool = True  # AIM symbology identifier before each code


@dataclass(frozen=True)
class KioskSpec:
    id: str
    share: float  # fraction of shoppers who pay at this kiosk


@dataclass(frozen=True)
class CameraSpec:
    id: str
    lanes: Mapping[str, tuple[int, int, int, int]]  # lane id -> x, y, w, h in pixels
    width: int = 640
    height: int = 480
    fps: float = 5.0


@dataclass(frozen=True)
class FridgeSpec:
    id: str
    name: str  # the Zigbee2MQTT friendly name: topic zigbee2mqtt/{name}
    zone: str
    temp_range: tuple[float, float]  # what the cabinet holds, degrees C
    humidity: float = 60.0
    every_seconds: float = 5.0


@dataclass(frozen=True)
class Incident:
    kind: str  # scan_avoidance | unplug | tag_walkout | sell_out
    at: float  # seconds into the run
    device: str | None = None  # the kiosk (scan_avoidance) or the unplugged device
    sku: str | None = None  # what is bagged unscanned / carried out
    until: float | None = None  # unplug: when it is plugged back
    lane: str | None = None  # sell_out: the lane emptied for good


@dataclass(frozen=True)
class Scenario:
    name: str
    store_id: str
    seed: int
    shopper_every_seconds: float
    basket_max_lanes: int
    pick_max_units: int
    pay_after_seconds: tuple[float, float]
    restock_after_seconds: tuple[float, float]
    noise_grams: float
    catalog: tuple[SkuSpec, ...]
    shelves: tuple[ShelfSpec, ...]
    erp_initial_stock: int
    rfid_readers: tuple[RfidReaderSpec, ...] = ()
    tagged: tuple[TaggedSpec, ...] = ()
    scanners: tuple[ScannerSpec, ...] = ()
    kiosks: tuple[KioskSpec, ...] = ()
    cameras: tuple[CameraSpec, ...] = ()
    fridges: tuple[FridgeSpec, ...] = ()
    faults: Mapping[str, Faults] = field(default_factory=dict)
    incidents: tuple[Incident, ...] = ()
    rules: Mapping[str, Any] = field(default_factory=dict)

    def sku(self, sku: str) -> SkuSpec:
        return next(s for s in self.catalog if s.sku == sku)

    def device_ids(self) -> list[str]:
        """Every simulated device's id, in declaration order."""
        groups: tuple[tuple[Any, ...], ...] = (self.shelves, self.rfid_readers, self.scanners,
                                                self.kiosks, self.cameras, self.fridges)
        return [d.id for group in groups for d in group]

    def device_faults(self) -> dict[str, Faults]:
        """The scenario's faults with each planted unplug folded in as unplug_at/replug_at."""
        merged = dict(self.faults)
        for inc in self.incidents:
            if inc.kind == "unplug" and inc.device is not None:
                base = merged.get(inc.device, Faults())
                merged[inc.device] = replace(base, unplug_at=inc.at, replug_at=inc.until)
        return merged


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name (``basic``, ``full``) or a scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        problem = f"cannot read ({exc.strerror}); built-in: {known}"
        raise ConfigError(file, "<file>", problem) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(file, "<file>", f"not YAML: {exc}") from exc
    return parse_scenario(data, file=file)


def parse_scenario(data: Any, *, file: str = "<scenario>") -> Scenario:
    """Validate a scenario's parsed YAML; ConfigError naming the key that is wrong."""
    p = _Parser(file)
    root = p.mapping(data, "<root>")
    catalog = tuple(
        SkuSpec(sku=p.text(item, "sku", k), name=p.text(item, "name", k),
                barcode=str(p.get(item, "barcode", k)),
                unit_grams=p.number(item, "unit_grams", k),
                low_stock=p.integer(item, "low_stock", k),
                price=p.number(item, "price", k))
        for k, item in p.items(root, "catalog"))
    skus = {s.sku for s in catalog}
    shelves = tuple(
        ShelfSpec(id=p.text(s, "id", k), kind=p.choice(s, "kind", k, SHELF_KINDS),
                  slave=p.integer(s, "slave", k, 1),
                  lanes=tuple(LaneSpec(id=p.text(lane, "id", lk),
                                       sku=p.ref(lane, "sku", lk, skus, "catalog"),
                                       capacity=p.integer(lane, "capacity", lk))
                              for lk, lane in p.items(s, "lanes", k)))
        for k, s in p.items(root, "shelves"))
    lanes = {lane.id: lane for shelf in shelves for lane in shelf.lanes}
    locations = set(lanes) | {EXIT, CHECKOUT}
    readers = tuple(
        RfidReaderSpec(id=p.text(r, "id", k), kind=p.choice(r, "kind", k, RFID_KINDS),
                       antennas=p.antennas(r, k, locations),
                       read_hz=p.number(r, "read_hz", k, 2.0))
        for k, r in p.items(root, "rfid_readers", required=False))
    tagged = tuple(
        TaggedSpec(sku=p.ref(t, "sku", k, skus, "catalog"),
                   company_prefix_digits=p.integer(t, "company_prefix_digits", k))
        for k, t in p.items(root, "tagged", required=False))
    scanners = tuple(ScannerSpec(id=p.text(s, "id", k), aim=p.flag(s, "aim", k, True))
                     for k, s in p.items(root, "scanners", required=False))
    kiosks = tuple(KioskSpec(id=p.text(s, "id", k), share=p.number(s, "share", k))
                   for k, s in p.items(root, "kiosks", required=False))
    cameras = tuple(
        CameraSpec(id=p.text(c, "id", k), lanes=p.rois(c, k, set(lanes)),
                   width=p.integer(c, "width", k, 640), height=p.integer(c, "height", k, 480),
                   fps=p.number(c, "fps", k, 5.0))
        for k, c in p.items(root, "cameras", required=False))
    fridges = tuple(
        FridgeSpec(id=p.text(f, "id", k), name=p.text(f, "name", k, p.text(f, "id", k)),
                   zone=p.text(f, "zone", k), temp_range=p.pair(f, "temp_range", k),
                   humidity=p.number(f, "humidity", k, 60.0),
                   every_seconds=p.number(f, "every_seconds", k, 5.0))
        for k, f in p.items(root, "fridges", required=False))
    scenario = Scenario(
        name=p.text(root, "name", ""), store_id=p.text(root, "store_id", ""),
        seed=p.integer(root, "seed", "", 1),
        shopper_every_seconds=p.number(root, "shopper_every_seconds", ""),
        basket_max_lanes=p.integer(root, "basket_max_lanes", "", 3),
        pick_max_units=p.integer(root, "pick_max_units", "", 2),
        pay_after_seconds=p.pair(root, "pay_after_seconds", "", (1.0, 3.0)),
        restock_after_seconds=p.pair(root, "restock_after_seconds", "", (3.0, 8.0)),
        noise_grams=p.number(root, "noise_grams", "", 0.5),
        catalog=catalog, shelves=shelves,
        erp_initial_stock=p.integer(root, "erp_initial_stock", "", 500),
        rfid_readers=readers, tagged=tagged, scanners=scanners, kiosks=kiosks, cameras=cameras,
        fridges=fridges,
    )
    ids = scenario.device_ids()
    for i, device_id in enumerate(ids):
        if device_id in ids[:i]:
            raise ConfigError(file, "devices", f"device id {device_id!r} is used twice")
    faults_raw = p.mapping(root.get("faults") or {}, "faults")
    faults = {}
    for device_id, raw in faults_raw.items():
        if device_id not in ids:
            raise ConfigError(file, f"faults.{device_id}", "no such device in this scenario")
        faults[str(device_id)] = parse_faults(str(device_id), p.mapping(raw, f"faults.{device_id}"),
                                              file=file)
    incidents = tuple(p.incident(inc, k, scenario)
                      for k, inc in p.items(root, "incidents", required=False))
    _check(p, scenario)
    rules = p.mapping(root.get("rules") or {}, "rules")
    return replace(scenario, faults=faults, incidents=incidents, rules=rules)


def _check(p: _Parser, s: Scenario) -> None:
    """Cross-checks no single key can make: what the devices need from each other."""
    if sum(k.share for k in s.kiosks) > 1.0:
        raise ConfigError(p.file, "kiosks", "shares add up to more than 1")
    rfid_locations = {loc for r in s.rfid_readers for loc in r.antennas.values()}
    for i, t in enumerate(s.tagged):
        if not any(lane.sku == t.sku and lane.id in rfid_locations
                   for shelf in s.shelves for lane in shelf.lanes):
            raise ConfigError(p.file, f"tagged.{i}.sku",
                              f"no RFID antenna covers a lane of {t.sku!r}")
        if not 6 <= t.company_prefix_digits <= 12:
            raise ConfigError(p.file, f"tagged.{i}.company_prefix_digits",
                              "a GS1 company prefix has 6..12 digits")


class _Parser:
    """Typed getters over parsed YAML that name ``section.index.key`` in their errors."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(self.file, where, problem)

    @staticmethod
    def _at(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__}")
        return value

    def items(self, data: dict[str, Any], key: str, where: str = "",
              required: bool = True) -> list[tuple[str, dict[str, Any]]]:
        at = self._at(where, key)
        value = data.get(key)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (required and not value):
            raise self.fail(at, "must be a non-empty list" if required else "must be a list")
        return [(f"{at}.{i}", self.mapping(item, f"{at}.{i}")) for i, item in enumerate(value)]

    def get(self, data: dict[str, Any], key: str, where: str, default: Any = ...) -> Any:
        if key in data and data[key] is not None:
            return data[key]
        if default is ...:
            raise self.fail(self._at(where, key), "missing")
        return default

    def text(self, data: dict[str, Any], key: str, where: str, default: Any = ...) -> str:
        value = self.get(data, key, where, default)
        if not isinstance(value, str) or not value:
            raise self.fail(self._at(where, key), f"must be a non-empty string, got {value!r}")
        return value

    def number(self, data: dict[str, Any], key: str, where: str, default: Any = ...) -> float:
        value = self.get(data, key, where, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(self._at(where, key), f"must be a non-negative number, got {value!r}")
        return float(value)

    def integer(self, data: dict[str, Any], key: str, where: str, default: Any = ...) -> int:
        value = self.get(data, key, where, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(self._at(where, key), f"must be a non-negative integer, got {value!r}")
        return value

    def flag(self, data: dict[str, Any], key: str, where: str, default: Any = ...) -> bool:
        value = self.get(data, key, where, default)
        if not isinstance(value, bool):
            raise self.fail(self._at(where, key), f"must be true or false, got {value!r}")
        return value

    def choice(self, data: dict[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
        value = self.get(data, key, where)
        if value not in choices:
            raise self.fail(self._at(where, key), f"must be {' or '.join(choices)}, got {value!r}")
        return str(value)

    def ref(self, data: dict[str, Any], key: str, where: str, known: set[str], what: str) -> str:
        value = self.text(data, key, where)
        if value not in known:
            raise self.fail(self._at(where, key), f"{value!r} not in {what}")
        return value

    def pair(self, data: dict[str, Any], key: str, where: str,
              default: Any = ...) -> tuple[float, float]:
        value = self.get(data, key, where, default)
        at = self._at(where, key)
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or value[0] > value[1]):
            raise self.fail(at, f"must be [low, high] with low <= high, got {value!r}")
        return float(value[0]), float(value[1])

    def antennas(self, data: dict[str, Any], where: str, locations: set[str]) -> dict[int, str]:
        at = self._at(where, "antennas")
        raw = self.mapping(self.get(data, "antennas", where), at)
        out: dict[int, str] = {}
        for port, location in raw.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 64:
                raise self.fail(f"{at}.{port}", "antenna port must be an integer 1..64")
            if location not in locations:
                raise self.fail(f"{at}.{port}",
                                f"{location!r} is not a lane, {CHECKOUT!r} or {EXIT!r}")
            out[port] = location
        if not out:
            raise self.fail(at, "must map at least one antenna")
        return out

    def rois(self, data: dict[str, Any], where: str,
             lanes: set[str]) -> dict[str, tuple[int, int, int, int]]:
        at = self._at(where, "lanes")
        raw = self.mapping(self.get(data, "lanes", where), at)
        width = self.integer(data, "width", where, 640)
        height = self.integer(data, "height", where, 480)
        out: dict[str, tuple[int, int, int, int]] = {}
        for lane, box in raw.items():
            if lane not in lanes:
                raise self.fail(f"{at}.{lane}", "not a lane of this scenario")
            ok = (isinstance(box, list) and len(box) == 4
                  and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in box))
            if not ok or box[2] < 1 or box[3] < 1 or box[0] + box[2] > width \
                    or box[1] + box[3] > height:
                raise self.fail(f"{at}.{lane}",
                                f"must be [x, y, w, h] inside {width}x{height}, got {box!r}")
            out[lane] = (box[0], box[1], box[2], box[3])
        if not out:
            raise self.fail(at, "must map at least one lane")
        return out

    def incident(self, data: dict[str, Any], where: str, s: Scenario) -> Incident:
        kind = self.choice(data, "kind", where, INCIDENT_KINDS)
        at = self.number(data, "at", where)
        if kind == "scan_avoidance":
            kiosk = self.ref(data, "kiosk", where, {k.id for k in s.kiosks}, "kiosks")
            sku = self.ref(data, "sku", where, {s_.sku for s_ in s.catalog}, "catalog")
            return Incident(kind, at, device=kiosk, sku=sku)
        if kind == "unplug":
            device = self.ref(data, "device", where, set(s.device_ids()), "this scenario's devices")
            until = self.number(data, "until", where)
            if until <= at:
                raise self.fail(self._at(where, "until"), f"must come after at ({at:g})")
            return Incident(kind, at, device=device, until=until)
        if kind == "sell_out":
            lanes = {lane.id: lane for shelf in s.shelves for lane in shelf.lanes}
            lane = self.ref(data, "lane", where, set(lanes), "this scenario's lanes")
            return Incident(kind, at, lane=lane, sku=lanes[lane].sku)
        sku = self.ref(data, "sku", where, {t.sku for t in s.tagged}, "tagged")
        if not any(EXIT in r.antennas.values() for r in s.rfid_readers):
            raise self.fail(self._at(where, "sku"), f"no RFID antenna covers the {EXIT!r}")
        return Incident(kind, at, sku=sku)
