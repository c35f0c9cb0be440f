"""Scenario files: ``basic`` loads as it always did, ``full`` declares every device kind and its
planted incidents, and a wrong scenario names the key that is wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from firmware_sim.faults import Faults
from firmware_sim.scenario import SCENARIO_DIR, load_scenario, parse_scenario
from storeedge.errors import ConfigError


def test_basic_is_unchanged() -> None:
    s = load_scenario("basic")
    assert (s.name, s.store_id, s.seed, s.shopper_every_seconds) == ("basic", "bj-demo-01", 7, 1.2)
    assert (s.basket_max_lanes, s.pick_max_units, s.noise_grams) == (3, 2, 0.6)
    assert s.pay_after_seconds == (1.0, 4.0) and s.restock_after_seconds == (3.0, 8.0)
    assert s.erp_initial_stock == 500
    assert [(sh.id, sh.kind, sh.slave, [lane.id for lane in sh.lanes]) for sh in s.shelves] == [
        ("shelf-a1", "modbus", 1, ["A1-1", "A1-2", "A1-3"]),
        ("shelf-a2", "modbus", 2, ["A2-1", "A2-2"]),
        ("shelf-b1", "mqtt", 1, ["B1-1", "B1-2"]),
    ]
    assert s.sku("COLA-330").unit_grams == 350.0 and len(s.catalog) == 6
    assert (s.rfid_readers, s.tagged, s.scanners, s.kiosks, s.cameras, s.fridges,
            s.incidents) == ((),) * 7
    assert s.faults == {} and s.device_faults() == {}


def test_full_declares_every_kind_and_three_incidents() -> None:
    s = load_scenario("full")
    assert {sh.kind for sh in s.shelves} == {"modbus", "mqtt"}
    assert {r.kind for r in s.rfid_readers} == {"zebra", "serial"}
    assert s.scanners and s.kiosks and s.cameras and s.fridges and s.tagged
    assert [i.kind for i in s.incidents] == ["scan_avoidance", "unplug", "tag_walkout"]
    assert all(0 < i.at and (i.until or i.at) < 90 for i in s.incidents)
    unplug = s.incidents[1]
    assert s.device_faults()[unplug.device] == Faults(unplug_at=unplug.at,  # type: ignore[index]
                                                      replug_at=unplug.until)
    portal = next(r for r in s.rfid_readers if r.kind == "zebra")
    assert set(portal.antennas.values()) >= {"checkout", "exit"}
    assert s.fridges[0].temp_range[0] < s.fridges[0].temp_range[1]
    assert s.faults == {}  # the rest runs clean


def raw(name: str = "full") -> dict[str, Any]:
    return yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())


def broken(path: str, value: Any) -> dict[str, Any]:
    """The full scenario with the key at dotted ``path`` set to ``value`` (deleted if ...)."""
    data = copy.deepcopy(raw())
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return data


@pytest.mark.parametrize(("path", "value", "key", "words"), [
    ("shelves.1.kind", "zigbee", "shelves.1.kind", "modbus or mqtt"),
    ("shelves.0.lanes.2.sku", "NOPE", "shelves.0.lanes.2.sku", "not in catalog"),
    ("catalog.3.unit_grams", "heavy", "catalog.3.unit_grams", "number"),
    ("shopper_every_seconds", ..., "shopper_every_seconds", "missing"),
    ("rfid_readers.0.kind", "impinj", "rfid_readers.0.kind", "zebra or serial"),
    ("rfid_readers.0.antennas", {1: "aisle-9"}, "rfid_readers.0.antennas.1", "not a lane"),
    ("cameras.0.lanes", {"A1-1": [600, 0, 100, 10]}, "cameras.0.lanes.A1-1", "inside 640x480"),
    ("cameras.0.lanes", {"Z9": [0, 0, 10, 10]}, "cameras.0.lanes.Z9", "not a lane"),
    ("fridges.0.temp_range", [6, 2], "fridges.0.temp_range", "low <= high"),
    ("kiosks.0.share", 1.5, "kiosks", "more than 1"),
    ("tagged.0.company_prefix_digits", 3, "tagged.0.company_prefix_digits", "6..12"),
    ("incidents.0.kiosk", "kiosk-9", "incidents.0.kiosk", "not in kiosks"),
    ("incidents.1.until", 10, "incidents.1.until", "after at"),
    ("incidents.1.device", "shelf-z", "incidents.1.device", "not in this scenario's devices"),
    ("incidents.2.kind", "fire", "incidents.2.kind", "must be scan_avoidance"),
    ("incidents.2.sku", "COLA-330", "incidents.2.sku", "not in tagged"),
    ("incidents.2", {"kind": "sell_out", "at": 5, "lane": "Z9-9"}, "incidents.2.lane",
     "not in this scenario's lanes"),
    ("faults", {"shelf-a1": {"corrupt_rate": 2}}, "faults.shelf-a1.corrupt_rate", "probability"),
    ("faults", {"shelf-q": {"stuck": True}}, "faults.shelf-q", "no such device"),
    ("scanners.0.id", "shelf-a1", "devices", "used twice"),
])
def test_errors_name_the_key(path: str, value: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_scenario(broken(path, value), file="full.yaml")
    assert err.value.key == key, err.value
    assert words in err.value.problem
    assert str(err.value).startswith(f"full.yaml: {key}: ")


def test_tagged_sku_needs_an_antenna_on_its_lane() -> None:
    data = broken("rfid_readers.1.antennas", {1: "A1-1"})
    with pytest.raises(ConfigError, match=r"tagged\.1\.sku: no RFID antenna covers a lane of"):
        parse_scenario(data)


def test_faults_from_the_file() -> None:
    data = broken("faults", {"shelf-b1": {"duplicate_rate": 0.1, "clock_skew_s": -30}})
    s = parse_scenario(data)
    assert s.faults == {"shelf-b1": Faults(duplicate_rate=0.1, clock_skew_s=-30.0)}


def test_unknown_scenario_lists_the_built_in_ones() -> None:
    with pytest.raises(ConfigError, match="built-in: basic, chain-01, chain-02, chain-03, full"):
        load_scenario("nope")


def test_the_chain_scenarios_are_three_different_stores_with_one_incident_each() -> None:
    chain = [load_scenario(f"chain-0{i}") for i in (1, 2, 3)]
    assert [s.store_id for s in chain] == ["demo-01", "demo-02", "demo-03"]
    catalogs = [frozenset(item.sku for item in s.catalog) for s in chain]
    assert len(set(catalogs)) == 3
    assert len({s.shopper_every_seconds for s in chain}) == 3
    assert [[i.kind for i in s.incidents] for s in chain] == [
        ["sell_out"], ["tag_walkout"], ["scan_avoidance"]]
    sell_out = chain[0].incidents[0]
    assert (sell_out.lane, sell_out.sku) == ("B1-1", "CHIPS-70")  # the lane's SKU, filled in
    # One product is one product across the chain: the shared ERP catalog needs it.
    items = {item.sku: item for s in chain for item in s.catalog}
    assert all(items[item.sku] == item for s in chain for item in s.catalog)
