"""The store's catalog: what each SKU is called, weighs and scans as, merged from the config, the
last cached ERP catalog and the ERP itself; and the store model the rules see, built from it and
the config."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from devices.rfid.epc import decode as decode_epc
from devices.scanner.gs1 import to_gtin14
from edge_agent.config import StoreConfig
from rules.model import LaneModel, SkuModel, StoreModel, ZoneModel
from storeedge.errors import StoreEdgeError
from storeedge.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Sku:
    sku: str
    name: str
    barcode: str | None
    unit_grams: float
    low_stock: int | None
    price: float | None = None
    stop_sell: bool = False


class Catalog:
    """SKUs by id, and the GTIN-14 of each barcode back to its SKU."""

    def __init__(self, config: StoreConfig, bad_input: RateLimitedLog) -> None:
        self.config = config
        self.items: dict[str, Sku] = {}
        self._gtins: dict[str, str] = {}
        self._bad_input = bad_input
        self._lane_cfg = {lane.id: lane for lane in config.lanes}
        self._zone_of = {d.id: d.zone for d in config.devices if hasattr(d, "zone")}

    def __contains__(self, sku: str) -> bool:
        return sku in self.items

    def get(self, sku: str) -> Sku | None:
        return self.items.get(sku)

    def merge(self, items: list[dict[str, Any]]) -> None:
        """Add or update SKUs; an item without a positive unit weight is skipped (and logged),
        and an item without a low-stock threshold keeps the one the store had."""
        store_id = self.config.store.id
        for item in items:
            grams = item.get("unit_grams")
            if not grams or grams <= 0:
                self._bad_input.warning(f"catalog:{item.get('sku')}",
                                        "catalog item %s has no unit weight; its lanes are not "
                                        "counted (store %s)", item.get("sku"), store_id)
                continue
            known = self.items.get(item["sku"])
            low = item.get("low_stock")
            if low is None and known is not None:
                low = known.low_stock  # the ERP gives no threshold; keep the store's
            barcode = item.get("barcode") or (known.barcode if known is not None else None)
            self.items[item["sku"]] = Sku(item["sku"], item.get("name") or "", barcode,
                                          float(grams), low, item.get("price"),
                                          bool(item.get("stop_sell")))
        self._gtins = {gtin: s.sku for s in self.items.values() if s.barcode
                       for gtin in [gtin14(s.barcode)] if gtin}

    def sku_of_code(self, code: str) -> str | None:
        gtin = gtin14(code)
        return self._gtins.get(gtin) if gtin else None

    def sku_of_epc(self, epc: str) -> str | None:
        tag = decode_epc(epc)
        gtin = tag.gtin if tag is not None else None
        return self._gtins.get(gtin) if gtin is not None else None

    def barcodes(self) -> dict[str, str | None]:
        return {s.sku: s.barcode for s in self.items.values()}

    def threshold(self, lane_id: str) -> int:
        """A lane's low-stock threshold: the lane's own, else its SKU's, else 2."""
        lane = self._lane_cfg[lane_id]
        if lane.low_stock is not None:
            return lane.low_stock
        sku = self.items.get(lane.sku)
        return sku.low_stock if sku is not None and sku.low_stock is not None else 2

    def store_model(self) -> StoreModel:
        """What the rules know of the store: lanes with their resolved thresholds, zones with
        their temperature ranges and sensors, SKUs with their GTINs."""
        config = self.config
        sensors: dict[str, list[str]] = {}
        for device_id, zone in self._zone_of.items():
            sensors.setdefault(zone, []).append(device_id)
        return StoreModel(
            store_id=config.store.id, timezone=config.store.timezone,
            lanes=tuple(LaneModel(id=lane.id, sku=lane.sku, zone=lane.zone,
                                  capacity=lane.capacity, threshold=self.threshold(lane.id))
                        for lane in config.lanes),
            zones=tuple(ZoneModel(id=z.id, min_c=z.min_c, max_c=z.max_c,
                                  sensors=tuple(sensors.get(z.id, ())))
                        for z in config.zones),
            skus=tuple(SkuModel(sku=s.sku, gtin=gtin14(s.barcode) if s.barcode else None,
                                name=s.name, unit_grams=s.unit_grams)
                       for s in self.items.values()),
            devices=tuple((d.id, self._zone_of[d.id]) for d in config.devices
                          if d.id in self._zone_of))


def gtin14(code: str) -> str | None:
    try:
        return to_gtin14(code)
    except StoreEdgeError:
        return None
