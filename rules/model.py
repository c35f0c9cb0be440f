"""What the rules need to know about the store, handed to the engine by the agent.

The agent builds a ``StoreModel`` from its config and catalog (lanes, zones, SKUs) and passes a new
one to ``RuleEngine.reload`` when they change. It is plain data: the engine never reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneModel:
    """One shelf lane: the SKU it holds, its zone, how many units fill it, and the count at or
    below which it is low (the agent's resolved threshold: lane, then catalog, then default)."""

    id: str
    sku: str
    zone: str | None = None
    capacity: int = 20
    threshold: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneModel:
    """An area of the store staff are assigned to. ``min_c``/``max_c`` is the temperature range its
    climate ``sensors`` (device ids) must keep; None where the zone is not chilled."""

    id: str
    min_c: float | None = None
    max_c: float | None = None
    sensors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SkuModel:
    """A product: ``gtin`` (14 digits) maps a scanned code to the SKU for per-SKU parameters;
    ``unit_grams`` is one unit's weight, where the catalog knows it."""

    sku: str
    gtin: str | None = None
    name: str = ""
    unit_grams: float | None = None


@dataclass(frozen=True, kw_only=True)
class StoreModel:
    """The store as the rules see it. ``devices`` maps a device id to its zone (for routing device
    alerts); ``timezone`` (IANA name) decides where a day starts for per-day summaries."""

    store_id: str
    lanes: tuple[LaneModel, ...] = ()
    zones: tuple[ZoneModel, ...] = ()
    skus: tuple[SkuModel, ...] = ()
    devices: tuple[tuple[str, str], ...] = ()
    timezone: str = "UTC"
    lane: dict[str, LaneModel] = field(init=False, repr=False, compare=False)
    zone: dict[str, ZoneModel] = field(init=False, repr=False, compare=False)
    lanes_of_sku: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    zone_of_sensor: dict[str, str] = field(init=False, repr=False, compare=False)
    zone_of_device: dict[str, str] = field(init=False, repr=False, compare=False)
    sku_of_gtin: dict[str, str] = field(init=False, repr=False, compare=False)
    sku: dict[str, SkuModel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Indexes built once: the rules look these up on every event.
        put = object.__setattr__
        put(self, "lane", {lane.id: lane for lane in self.lanes})
        put(self, "zone", {zone.id: zone for zone in self.zones})
        by_sku: dict[str, list[str]] = {}
        for lane in self.lanes:
            by_sku.setdefault(lane.sku, []).append(lane.id)
        put(self, "lanes_of_sku", {sku: tuple(ids) for sku, ids in by_sku.items()})
        put(self, "zone_of_sensor", {s: z.id for z in self.zones for s in z.sensors})
        put(self, "zone_of_device", {**self.zone_of_sensor, **dict(self.devices)})
        put(self, "sku_of_gtin", {s.gtin: s.sku for s in self.skus if s.gtin})
        put(self, "sku", {s.sku: s for s in self.skus})

    def zone_of_sku(self, sku: str) -> str | None:
        """The zone of the SKU's first lane (where its alerts are routed)."""
        lanes = self.lanes_of_sku.get(sku)
        return self.lane[lanes[0]].zone if lanes else None
