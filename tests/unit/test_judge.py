"""The demo's false-alarm check: an alert is justified only by the simulator's truth (how low a
lane really went, what sold) or by what the scenario planted (incidents, device faults)."""

from __future__ import annotations

from typing import Any

from firmware_sim.faults import Faults
from firmware_sim.judge import false_alerts
from firmware_sim.scenario import load_scenario

BASIC = load_scenario("basic")  # lanes A1-1..A1-3 on shelf-a1, A2-* on shelf-a2, B1-* on shelf-b1
FULL = load_scenario("full")  # plants a scan avoidance (kiosk-1, CHIPS-70), an unplug, a walkout
TRUTH = {"lane_low_water": {"A1-1": 0, "A1-2": 3, "A1-3": 8, "A2-1": 2, "A2-2": 8, "B1-1": 8,
                            "B1-2": 8},
         "sales_units": {"COLA-330": 12, "WATER-550": 7}}


def alert(rule: str, subject: str, **fields: Any) -> dict[str, Any]:
    return {"alert_id": f"{rule}:{subject}", "rule": rule, "subject": subject, **fields}


def judged(alerts: list[dict[str, Any]], scenario=BASIC, faults=None) -> list[str]:
    unjustified = false_alerts(scenario, faults or {}, TRUTH, alerts)
    assert unjustified is not None
    return [f["alert_id"] for f in unjustified]


def test_stock_alerts_are_judged_against_how_low_each_lane_really_went():
    alerts = [
        alert("low_stock", "A1-2", location="A1-2", sku="WATER-550", detail={"threshold": 3}),
        alert("low_stock", "A1-3", location="A1-3", sku="MILK-250", detail={"threshold": 3}),
        alert("out_of_stock", "A1-1", location="A1-1", sku="COLA-330"),
        alert("out_of_stock", "A2-1", location="A2-1", sku="NOODLE-BEEF"),
        alert("days_of_cover", "COLA-330", sku="COLA-330", detail={"stock": 8}),
        alert("days_of_cover", "WATER-550", sku="WATER-550", detail={"stock": 2}),
        alert("days_of_cover", "MILK-250", sku="MILK-250", detail={"stock": 8}),
    ]
    # COLA's lanes never held fewer than 0 + 8 together; WATER's lane never fewer than 3
    assert judged(alerts) == ["low_stock:A1-3", "out_of_stock:A2-1", "days_of_cover:WATER-550",
                              "days_of_cover:MILK-250"]


def test_instrument_alerts_need_a_fault_of_their_device():
    alerts = [alert("sensor_noisy", "shelf-b1/B1-1", location="B1-1"),
              alert("sensor_stuck", "shelf-a1/A1-2", location="A1-2"),
              alert("device_offline", "shelf-a2", location="shelf-a2")]
    assert judged(alerts) == [a["alert_id"] for a in alerts]
    faults = {"shelf-b1": Faults(noise_grams=30.0), "shelf-a2": Faults(unplug_at=5.0)}
    assert judged(alerts, faults=faults) == ["sensor_stuck:shelf-a1/A1-2"]


def test_loss_alerts_need_a_planted_incident():
    alerts = [alert("checkout_suspect", "kiosk-1/K1-00001", location="kiosk-1"),
              alert("shrink", "CHIPS-70", sku="CHIPS-70"),
              alert("shrink", "WINE-750", sku="WINE-750"),
              alert("shrink", "RAZOR-5", sku="RAZOR-5")]
    assert judged(alerts, scenario=FULL) == ["shrink:RAZOR-5"]
    assert judged(alerts) == [a["alert_id"] for a in alerts]  # basic plants nothing


def test_a_rule_the_judge_does_not_know_is_never_taken_on_trust():
    assert judged([alert("made_up", "x")]) == ["made_up:x"]


def test_a_device_offline_after_the_run_ended_is_the_end_unplugging_it():
    truth = {**TRUTH, "unplugged_all_ts": 1000.0}
    during = alert("device_offline", "shelf-a1", location="shelf-a1", received_ts=999.0)
    after = alert("device_offline", "shelf-b1", location="shelf-b1", received_ts=1121.0)
    unjustified = false_alerts(BASIC, {}, truth, [during, after])
    assert unjustified is not None
    assert [f["alert_id"] for f in unjustified] == ["device_offline:shelf-a1"]


def test_without_the_simulators_truth_nothing_is_judged_rather_than_everything_false():
    """A simulator killed before it wrote its truth: the demo reports no verdict (None), not
    every stock alert as a false alarm."""
    assert false_alerts(BASIC, {}, {}, [alert("low_stock", "A1-2", location="A1-2")]) is None
