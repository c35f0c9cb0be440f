"""Store-in-a-box scenarios: the store's layout and how shoppers and staff behave.

A scenario is a YAML file (``firmware_sim/scenarios/*.yaml`` or any path). The demo derives the
agent's store config from it, and the simulator plays it against the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from storeedge.errors import ConfigError

SCENARIO_DIR = Path(__file__).parent / "scenarios"


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

    def sku(self, sku: str) -> SkuSpec:
        return next(s for s in self.catalog if s.sku == sku)


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name (``basic``) or a scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    file = str(path)
    try:
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        problem = f"cannot read ({exc.strerror}); built-in: {known}"
        raise ConfigError(file, "<file>", problem) from exc
    key = "<root>"
    try:
        key = "catalog"
        catalog = tuple(SkuSpec(**item) for item in data["catalog"])
        key = "shelves"
        shelves = tuple(
            ShelfSpec(id=s["id"], kind=s["kind"], slave=int(s.get("slave", 1)),
                      lanes=tuple(LaneSpec(**lane) for lane in s["lanes"]))
            for s in data["shelves"]
        )
        key = "<root>"
        scenario = Scenario(
            name=data["name"], store_id=data["store_id"], seed=int(data.get("seed", 1)),
            shopper_every_seconds=float(data["shopper_every_seconds"]),
            basket_max_lanes=int(data.get("basket_max_lanes", 3)),
            pick_max_units=int(data.get("pick_max_units", 2)),
            pay_after_seconds=tuple(data.get("pay_after_seconds", (1.0, 3.0))),  # type: ignore[arg-type]
            restock_after_seconds=tuple(data.get("restock_after_seconds", (3.0, 8.0))),  # type: ignore[arg-type]
            noise_grams=float(data.get("noise_grams", 0.5)),
            catalog=catalog, shelves=shelves,
            erp_initial_stock=int(data.get("erp_initial_stock", 500)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(file, key, f"invalid scenario: {exc!r}") from exc
    skus = {s.sku for s in catalog}
    for i, shelf in enumerate(shelves):
        if shelf.kind not in ("modbus", "mqtt"):
            raise ConfigError(file, f"shelves.{i}.kind", "must be modbus or mqtt")
        for j, lane in enumerate(shelf.lanes):
            if lane.sku not in skus:
                raise ConfigError(file, f"shelves.{i}.lanes.{j}.sku",
                                  f"{lane.sku!r} not in catalog")
    return scenario
