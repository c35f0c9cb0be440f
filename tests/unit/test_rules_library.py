"""Each rule of the library: cases that must fire and cases that must not, on an injected clock.

The events here are what the agent feeds the engine (readings and the facts it derives)."""

from __future__ import annotations

from typing import Any

import pytest

from rules.actions import ClearAlert, EscalateAlert, OpenAlert, UpdateAlert
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.model import LaneModel, SkuModel, StoreModel, ZoneModel
from storeedge.events import (
    CheckoutEvent,
    CheckoutKind,
    Climate,
    DeviceHealth,
    HealthState,
    PosLine,
    PosTransaction,
    Sale,
    Scan,
    ShelfImage,
    ShelfWeight,
    StockCause,
    StockChanged,
    SuspectItem,
    TagPresence,
)

STORE = "s-01"
DAY0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC

MODEL = StoreModel(
    store_id=STORE,
    lanes=(
        LaneModel(id="A1", sku="COLA", zone="drinks", capacity=10, threshold=3),
        LaneModel(id="A2", sku="COLA", zone="drinks", capacity=10, threshold=3),
        LaneModel(id="B1", sku="CHIPS", zone="snacks", capacity=20, threshold=4),
        LaneModel(id="F1", sku="MILK", zone="dairy", capacity=12, threshold=2),
    ),
    zones=(
        ZoneModel(id="drinks"), ZoneModel(id="snacks"),
        ZoneModel(id="dairy", min_c=0.0, max_c=5.0, sensors=("fridge-1",)),
        ZoneModel(id="freezer", min_c=-25.0, max_c=-18.0, sensors=("freezer-1",)),
    ),
    skus=(SkuModel(sku="MILK", gtin="09506000134352", unit_grams=262.0),),
    devices=(("kiosk-1", "checkout"), ("shelf-a", "drinks")),
)


def config(**rules: dict[str, Any]) -> RulesConfig:
    """Every rule off except those given (with their parameters), so a case sees one rule."""
    from rules.library import RULES

    section = {name: {"enabled": False} for name in RULES}
    section.update(rules)
    return RulesConfig.model_validate({"rules": section})


def engine(**rules: dict[str, Any]) -> RuleEngine:
    return RuleEngine(config(**rules), MODEL)


def env(**kw: Any) -> dict[str, Any]:
    return {"store_id": STORE, "source": kw.pop("source", "agent"),
            "received_ts": kw.pop("ts", DAY0), **kw}


def stock(lane: str, before: int, after: int, cause: StockCause = StockCause.PICK,
          sku: str | None = None) -> StockChanged:
    sku = sku or MODEL.lane[lane].sku
    return StockChanged(**env(sku=sku, location=lane, before=before, after=after, cause=cause))


def sale(sku: str, qty: int = 1) -> Sale:
    return Sale(**env(sku=sku, qty=qty, txn_id="t"))


def opened(actions: list) -> list[OpenAlert]:
    return [a for a in actions if isinstance(a, OpenAlert)]


def cleared(actions: list) -> list[ClearAlert]:
    return [a for a in actions if isinstance(a, ClearAlert)]


# low stock


def test_low_stock_fires_at_threshold_with_what_to_bring():
    e = engine(low_stock={})
    assert e.handle(stock("A1", 5, 4), DAY0) == []
    (a,) = e.handle(stock("A1", 4, 3), DAY0 + 1)
    assert isinstance(a, OpenAlert)
    assert (a.rule, a.subject, a.sku, a.zone, a.role) == ("low_stock", "A1", "COLA", "drinks",
                                                          "staff")
    assert a.detail == {"units": 3, "threshold": 3, "bring": 7}


def test_low_stock_renotifies_as_it_worsens_and_clears_on_restock():
    e = engine(low_stock={"clear_margin": 1})
    e.handle(stock("A1", 4, 3), DAY0)
    (update,) = e.handle(stock("A1", 3, 1), DAY0 + 1)
    assert isinstance(update, UpdateAlert) and update.detail["bring"] == 9
    assert e.handle(stock("A1", 1, 4, StockCause.RESTOCK), DAY0 + 2) == []  # within the margin
    (clear,) = e.handle(stock("A1", 4, 10, StockCause.RESTOCK), DAY0 + 3)
    assert isinstance(clear, ClearAlert)


def test_low_stock_ignores_ambiguous_changes_and_unknown_lanes():
    e = engine(low_stock={})
    assert e.handle(stock("A1", 5, 0, StockCause.AMBIGUOUS), DAY0) == []
    assert e.handle(stock("Z9", 5, 0, sku="COLA"), DAY0) == []


def test_low_stock_per_sku_threshold_overrides_the_lane():
    cfg = RulesConfig.model_validate({"rules": config(low_stock={}).model_dump()["rules"],
                                      "skus": {"COLA": {"low_stock": {"threshold": 6}}}})
    e = RuleEngine(cfg, MODEL)
    assert len(opened(e.handle(stock("A1", 7, 6), DAY0))) == 1
    assert e.handle(stock("B1", 7, 6), DAY0) == []  # CHIPS keeps its lane threshold 4


# out of stock


def test_out_of_stock_fires_at_zero_and_clears_on_restock():
    e = engine(out_of_stock={})
    assert e.handle(stock("B1", 2, 1), DAY0) == []
    (a,) = e.handle(stock("B1", 1, 0), DAY0)
    assert a.severity == "critical" and a.detail["bring"] == 20
    assert e.handle(stock("B1", 0, 0, StockCause.TARE), DAY0) == []
    assert len(cleared(e.handle(stock("B1", 0, 5, StockCause.RESTOCK), DAY0))) == 1


# days of cover


def test_days_of_cover_fires_when_velocity_projects_a_stockout():
    e = engine(days_of_cover={"cover_hours": 4, "window_hours": 2, "min_units": 5})
    e.handle(stock("A1", 0, 10, StockCause.INITIAL), DAY0)
    e.handle(stock("A2", 0, 10, StockCause.INITIAL), DAY0)
    out = []
    for i in range(12):  # 12 sold in 2 h: 6/h; 20 - 12 = 8 left: 1.3 h of cover
        out += e.handle(stock(f"A{1 + i % 2}", 10 - i // 2, 9 - i // 2), DAY0 + 600 * i)
        out += e.handle(sale("COLA"), DAY0 + 600 * i + 1)
    (a,) = opened(out)
    assert a.subject == "COLA" and a.detail["cover_hours"] < 4


def test_days_of_cover_quiet_for_slow_sellers_and_clears_as_sales_stop():
    e = engine(days_of_cover={"cover_hours": 4, "window_hours": 2, "min_units": 5})
    e.handle(stock("A1", 0, 10, StockCause.INITIAL), DAY0)
    out = []
    for i in range(4):  # 4 sold: fewer than min_units
        out += e.handle(sale("COLA"), DAY0 + i)
    assert out == []
    out += e.handle(sale("COLA", 4), DAY0 + 10)  # 8 sold in 2 h: 4/h; 10 on the shelf: 2.5 h
    assert len(opened(out)) == 1
    assert e.tick(DAY0 + 3600) == []
    assert len(cleared(e.tick(DAY0 + 3 * 3600))) == 1  # the window slid past the sales


def test_days_of_cover_does_not_flap_as_the_window_sheds_one_sale():
    e = engine(days_of_cover={"cover_hours": 4, "window_hours": 2, "min_units": 5,
                              "bucket_minutes": 5})
    e.handle(stock("A1", 0, 10, StockCause.INITIAL), DAY0)
    out = []
    for i in range(6):  # 6 sold in 25 min: 3/h for 10 left, 3.3 h of cover
        out += e.handle(sale("COLA"), DAY0 + 300 * i)
    assert len(opened(out)) == 1
    out = e.tick(DAY0 + 2 * 3600 + 60)  # the first sale left the window: 5 in it, then 4
    out += e.tick(DAY0 + 2 * 3600 + 360)
    assert cleared(out) == []
    assert len(cleared(e.tick(DAY0 + 4 * 3600))) == 1  # sales stopped altogether


def test_days_of_cover_forgets_a_sku_whose_sales_left_the_window():
    e = engine(days_of_cover={"window_hours": 1, "min_units": 5})
    for i in range(3):
        e.handle(sale("CHIPS"), DAY0 + 600 * i)
    assert e.snapshot()["rules"]["days_of_cover"]["sold"]["CHIPS"]
    e.tick(DAY0 + 1200 + 3600 + 300)
    assert e.snapshot()["rules"]["days_of_cover"]["sold"] == {}


def test_days_of_cover_can_count_pos_lines_instead():
    e = engine(days_of_cover={"sales_from": "pos", "min_units": 5})
    e.handle(stock("B1", 0, 6, StockCause.INITIAL), DAY0)
    assert e.handle(sale("CHIPS", 10), DAY0) == []
    txn = PosTransaction(**env(txn_id="p1", lines=(PosLine(sku="CHIPS", qty=10),)))
    assert len(opened(e.handle(txn, DAY0))) == 1


# shrink


def test_shrink_sums_unexplained_picks_per_sku_per_day():
    e = engine(shrink={"window_seconds": 600})
    e.handle(stock("B1", 10, 9), DAY0)
    e.handle(stock("B1", 9, 7), DAY0 + 5)
    e.handle(TagPresence(**env(epc="E1", change="departed", location="B1", sku="CHIPS")),
             DAY0 + 10)
    e.handle(sale("CHIPS"), DAY0 + 300)  # explains one of the four
    assert e.tick(DAY0 + 500) == []
    (a,) = e.tick(DAY0 + 700)
    assert isinstance(a, OpenAlert)
    assert a.subject == "CHIPS:2025-11-24" and a.detail["units"] == 3
    e.handle(stock("B1", 7, 6), DAY0 + 800)
    (u,) = e.tick(DAY0 + 1500)
    assert isinstance(u, UpdateAlert) and u.detail["units"] == 4


def test_shrink_quiet_when_sales_explain_every_unit_before_or_after():
    e = engine(shrink={"window_seconds": 600})
    out = e.handle(sale("CHIPS", 2), DAY0)  # paid before the shelf settled
    out += e.handle(stock("B1", 10, 8), DAY0 + 20)
    out += e.handle(stock("B1", 8, 7), DAY0 + 30)
    out += e.handle(sale("CHIPS"), DAY0 + 500)  # paid after
    out += e.handle(stock("B1", 7, 9, StockCause.RESTOCK), DAY0 + 600)
    out += e.tick(DAY0 + 5000)
    assert out == []


def test_shrink_a_sale_too_late_does_not_explain():
    e = engine(shrink={"window_seconds": 600})
    e.handle(stock("B1", 10, 9), DAY0)
    assert len(opened(e.handle(sale("CHIPS"), DAY0 + 700))) == 1


def test_shrink_state_stays_bounded_under_a_flood_of_unexplained_picks():
    # A pick every 2 s for 3 h, none sold: the answer is every unit, the state a minute bucket
    # per minute of the window.
    e = engine(shrink={"window_seconds": 600})
    out, units, largest = [], 0, 0
    for i in range(5400):
        out += e.handle(stock("B1", 20, 19), DAY0 + 2 * i)
        out += e.tick(DAY0 + 2 * i + 1)
        units += 1
        largest = max(largest, len(e.snapshot()["rules"]["shrink"]["pending"]["CHIPS"]))
    out += e.tick(DAY0 + 10_800 + 700)
    assert largest <= 600 // 60 + 1
    assert out[-1].detail["units"] == units
    assert e.snapshot()["rules"]["shrink"]["pending"] == {}


def test_shrink_unmatched_sales_are_bounded_and_forgotten():
    e = engine(shrink={"window_seconds": 600})
    for i in range(3600):
        e.handle(sale("CHIPS"), DAY0 + i)
        e.tick(DAY0 + i)
    assert len(e.snapshot()["rules"]["shrink"]["credit"]["CHIPS"]) <= 600 // 60 + 1
    assert e.handle(stock("B1", 10, 5), DAY0 + 3600) == []  # explained by recent sales
    e.tick(DAY0 + 3600 + 700)
    assert e.snapshot()["rules"]["shrink"]["credit"] == {}


# misplaced


def test_misplaced_tag_at_another_skus_lane_opens_and_clears_when_it_leaves():
    e = engine(misplaced={})
    (a,) = e.handle(TagPresence(**env(epc="E1", change="arrived", location="B1", sku="COLA")),
                    DAY0)
    assert a.subject == "tag:E1" and a.location == "B1" and a.zone == "snacks"
    assert e.handle(TagPresence(**env(epc="E1", change="arrived", location="B1", sku="COLA")),
                    DAY0 + 1) == []
    (c,) = e.handle(TagPresence(**env(epc="E1", change="moved", location="A1", sku="COLA",
                                      previous="B1")), DAY0 + 2)
    assert isinstance(c, ClearAlert)


def test_misplaced_quiet_for_tags_at_their_own_lane_or_off_shelf():
    e = engine(misplaced={})
    assert e.handle(TagPresence(**env(epc="E1", change="arrived", location="A1", sku="COLA")),
                    DAY0) == []
    assert e.handle(TagPresence(**env(epc="E2", change="arrived", location="dock", sku="COLA")),
                    DAY0) == []


def test_misplaced_ambiguous_weight_opens_once_per_lane_until_restocked():
    e = engine(misplaced={})
    assert len(opened(e.handle(stock("A1", 5, 5, StockCause.AMBIGUOUS), DAY0))) == 1
    assert e.handle(stock("A1", 5, 5, StockCause.AMBIGUOUS), DAY0 + 1) == []
    assert e.handle(stock("A1", 5, 4), DAY0 + 2) == []
    assert len(cleared(e.handle(stock("A1", 4, 10, StockCause.RESTOCK), DAY0 + 3))) == 1


# shelf / camera


def image(ts: float, **occupancy: float) -> ShelfImage:
    return ShelfImage(**env(source="cam-1", ts=ts, occupancy=occupancy))


def test_shelf_camera_disagreement_must_last():
    e = engine(shelf_camera={"margin": 0.3, "clear_margin": 0.2, "seconds": 60})
    e.handle(stock("A1", 0, 10, StockCause.INITIAL), DAY0)
    assert e.handle(image(DAY0, A1=0.2), DAY0) == []
    assert e.tick(DAY0 + 30) == []
    (a,) = e.tick(DAY0 + 61)
    assert a.subject == "A1" and a.detail["count"] == 10
    assert e.handle(image(DAY0 + 70, A1=0.75), DAY0 + 70) == []  # within margin, not clear_margin
    assert len(cleared(e.handle(image(DAY0 + 80, A1=0.9), DAY0 + 80))) == 1


def test_shelf_camera_brief_disagreement_or_a_catching_up_count_is_quiet():
    e = engine(shelf_camera={"seconds": 60})
    e.handle(stock("A1", 0, 10, StockCause.INITIAL), DAY0)
    out = e.handle(image(DAY0, A1=0.5), DAY0)  # a customer's arm in front of it
    out += e.handle(image(DAY0 + 5, A1=1.0), DAY0 + 5)
    out += e.handle(image(DAY0 + 10, A1=0.4), DAY0 + 10)  # picked; the shelf settles later
    out += e.handle(stock("A1", 10, 4), DAY0 + 12)
    out += e.tick(DAY0 + 300)
    out += e.handle(image(DAY0 + 10, B1=0.0), DAY0 + 10)  # no count known for B1
    assert out == []


# sensors


def weight(source: str, lane: str, grams: float) -> ShelfWeight:
    return ShelfWeight(**env(source=source, lane=lane, grams=grams))


def test_sensor_stuck_while_peers_change():
    e = engine(sensor_stuck={"seconds": 600})
    out = []
    for i in range(0, 1300, 10):
        t = DAY0 + i
        out += e.handle(weight("shelf-a", "A1", 500.0), t)  # identical forever
        out += e.handle(weight("shelf-b", "B1", 800.0 + (i // 10 % 3) * 0.1), t)
        out += e.tick(t)
    (a,) = opened(out)
    assert a.subject == "shelf-a" and a.zone == "drinks"
    assert len(cleared(e.handle(weight("shelf-a", "A1", 500.1), DAY0 + 1300))) == 1


def test_sensor_stuck_quiet_on_a_still_night_and_for_jittering_sensors():
    e = engine(sensor_stuck={"seconds": 600})
    out = []
    for i in range(0, 1300, 10):
        out += e.handle(weight("shelf-a", "A1", 500.0), DAY0 + i)  # a still night: nobody
        out += e.handle(weight("shelf-b", "B1", 800.0), DAY0 + i)  # changes, so nobody is stuck
        out += e.tick(DAY0 + i)
    assert out == []
    e = engine(sensor_stuck={"seconds": 600})
    for n, i in enumerate(range(0, 1300, 10)):
        out += e.handle(weight("shelf-a", "A1", 500.0 + (n % 2) * 0.1), DAY0 + i)
        out += e.handle(weight("shelf-b", "B1", 800.0 + (n % 3) * 0.1), DAY0 + i)
        out += e.tick(DAY0 + i)
    assert out == []


def test_sensor_noisy_ignores_a_pick_but_not_jitter():
    e = engine(sensor_noisy={"samples": 10, "max_grams": 5})
    out = []
    for i in range(30):  # a pick every 10 samples, else 0.5 g jitter
        out += e.handle(weight("shelf-a", "A1", 1000.0 - 100 * (i // 10) + (i % 2) * 0.5),
                        DAY0 + i)
    assert out == []
    for i in range(20):  # two windows: the first may still hold older, quiet steps
        out += e.handle(weight("shelf-a", "A1", 700.0 + (i % 2) * 30), DAY0 + 40 + i)
    (a,) = opened(out)
    assert a.subject == "shelf-a/A1"
    for i in range(20):
        out += e.handle(weight("shelf-a", "A1", 700.0 + (i % 2) * 0.2), DAY0 + 60 + i)
    assert len(cleared(out)) == 1


def test_sensor_noisy_ignores_a_shelf_that_reports_only_its_picks():
    """A wireless shelf reports on change: every sample is a pick or a restock of whole units
    (here MILK, 262 g), with the load cell's small noise on top."""
    e = engine(sensor_noisy={"samples": 10, "max_grams": 5})
    grams, out = 12 * 262.0, []
    for i in range(40):
        grams += 262.0 * (-1 if i % 5 else 3)
        out += e.handle(weight("shelf-f", "F1", grams + (i % 3) * 0.8), DAY0 + i)
    assert out == []
    for i in range(20):  # the same shelf jittering 40 g off whole units is noisy
        out += e.handle(weight("shelf-f", "F1", grams + (i % 2) * 40), DAY0 + 50 + i)
    assert [a.subject for a in opened(out)] == ["shelf-f/F1"]


def test_sensor_noisy_thermometer():
    e = engine(sensor_noisy={"samples": 4, "max_celsius": 1})
    temps = [3.0, 6.0, 2.0, 7.0, 1.0]
    out = [a for i, t in enumerate(temps)
           for a in e.handle(Climate(**env(source="fridge-1", temperature=t)), DAY0 + i)]
    assert [a.subject for a in opened(out)] == ["fridge-1/t"]


def test_sensor_drift_on_an_empty_lane_only():
    e = engine(sensor_drift={"grams": 10, "min_seconds": 60, "smoothing": 0.5})
    e.handle(stock("A1", 1, 0), DAY0)
    e.handle(stock("A2", 0, 5, StockCause.INITIAL), DAY0)
    out = []
    for i in range(100):
        out += e.handle(weight("shelf-a", "A1", 0.2 * i), DAY0 + 1 + i)  # 20 g in 100 s
        out += e.handle(weight("shelf-a", "A2", 500 + 0.2 * i), DAY0 + 1 + i)  # not empty
    (a,) = opened(out)
    assert a.subject == "A1" and a.detail["drift_grams"] > 10
    assert len(cleared(e.handle(stock("A1", 0, 8, StockCause.RESTOCK), DAY0 + 200))) == 1


def test_sensor_drift_quiet_for_a_steady_empty_lane_with_noise():
    e = engine(sensor_drift={"grams": 10, "min_seconds": 60})
    e.handle(stock("A1", 1, 0), DAY0)
    out = []
    for i in range(2000):
        out += e.handle(weight("shelf-a", "A1", 3.0 if i % 2 else -3.0), DAY0 + i)
    assert out == []


def test_sensor_drift_quiet_when_a_long_empty_lane_is_restocked():
    e = engine(sensor_drift={"grams": 10, "min_seconds": 600})
    e.handle(stock("A1", 1, 0), DAY0)
    out = []
    for i in range(0, 1200, 5):  # empty for 20 minutes, steady
        out += e.handle(weight("shelf-a", "A1", 0.5), DAY0 + i)
    # The restock's first samples arrive before the count settles: goods, not drift.
    for i in range(5):
        out += e.handle(weight("shelf-a", "A1", 11_760.0), DAY0 + 1200 + i)
    out += e.handle(stock("A1", 0, 10, StockCause.RESTOCK), DAY0 + 1206)
    assert out == []


def health(device: str, state: HealthState) -> DeviceHealth:
    return DeviceHealth(**env(device=device, state=state, reason="last will"))


def test_device_offline_after_its_grace_and_back_online():
    e = engine(device_offline={"seconds": 60})
    assert e.handle(health("shelf-a", HealthState.OFFLINE), DAY0) == []
    assert e.tick(DAY0 + 59) == []
    (a,) = e.tick(DAY0 + 60)
    assert a.subject == "shelf-a" and a.zone == "drinks"
    assert e.handle(health("shelf-a", HealthState.OFFLINE), DAY0 + 70) == []
    assert len(cleared(e.handle(health("shelf-a", HealthState.ONLINE), DAY0 + 80))) == 1


def test_device_offline_short_blip_is_quiet():
    e = engine(device_offline={"seconds": 60})
    out = e.handle(health("shelf-a", HealthState.OFFLINE), DAY0)
    out += e.handle(health("shelf-a", HealthState.DEGRADED), DAY0 + 30)
    out += e.tick(DAY0 + 600)
    assert out == []


# checkout


def checkout(kind: CheckoutKind, session: str = "S1") -> CheckoutEvent:
    return CheckoutEvent(**env(source="kiosk-1", kiosk="kiosk-1", session=session, kind=kind))


def test_checkout_voids_above_the_limit_once_per_session():
    e = engine(checkout_voids={"max_voids": 2})
    out = []
    for _ in range(5):
        out += e.handle(checkout(CheckoutKind.VOIDED), DAY0)
    (a,) = out
    assert a.subject == "kiosk-1/S1" and a.zone == "checkout" and a.detail["voids"] == 3


def test_checkout_voids_quiet_at_the_limit_and_per_session():
    e = engine(checkout_voids={"max_voids": 2})
    out = []
    for session in ("S1", "S2"):
        out += e.handle(checkout(CheckoutKind.ITEM_SCANNED, session), DAY0)
        out += e.handle(checkout(CheckoutKind.VOIDED, session), DAY0)
        out += e.handle(checkout(CheckoutKind.VOIDED, session), DAY0)
        out += e.handle(checkout(CheckoutKind.PAID, session), DAY0)
    assert out == []


def test_checkout_suspect_one_alert_per_session_renotified():
    e = engine(checkout_suspect={})
    item = SuspectItem(**env(kiosk="kiosk-1", session="S1", unexplained_grams=350.0,
                             message="350 g unscanned"))
    (a,) = e.handle(item, DAY0)
    assert a.subject == "kiosk-1/S1"
    (u,) = e.handle(item, DAY0 + 5)
    assert isinstance(u, UpdateAlert)
    other = SuspectItem(**env(kiosk="kiosk-1", session="S2", unexplained_grams=90.0, message=""))
    assert len(opened(e.handle(other, DAY0 + 6))) == 1


# cold chain


def temp(t: float, sensor: str = "fridge-1") -> Climate:
    return Climate(**env(source=sensor, temperature=t))


def test_cold_chain_out_of_range_too_long_then_clears_with_hysteresis():
    e = engine(cold_chain={"minutes": 10, "hysteresis_c": 0.5})
    out = []
    for m in range(12):
        out += e.handle(temp(7.0), DAY0 + 60 * m)
        out += e.tick(DAY0 + 60 * m)
    (a,) = opened(out)
    assert a.subject == "fridge-1" and a.zone == "dairy" and a.severity == "critical"
    assert e.handle(temp(4.8), DAY0 + 800) == []  # in range, not by the hysteresis
    assert len(cleared(e.handle(temp(4.4), DAY0 + 860))) == 1


def test_cold_chain_short_excursion_and_unmapped_sensors_are_quiet():
    e = engine(cold_chain={"minutes": 10})
    out = []
    for m in range(30):  # door open 5 minutes out of every 15
        out += e.handle(temp(7.0 if m % 15 < 5 else 3.0), DAY0 + 60 * m)
        out += e.tick(DAY0 + 60 * m)
    out += e.handle(temp(30.0, sensor="office"), DAY0)
    out += e.tick(DAY0 + 3600)
    assert out == []


def test_cold_chain_zone_override_and_freezer_range():
    cfg = RulesConfig.model_validate({"rules": config(cold_chain={"minutes": 10}).model_dump()[
        "rules"], "zones": {"freezer": {"cold_chain": {"minutes": 2}}}})
    e = RuleEngine(cfg, MODEL)
    e.handle(temp(-12.0, "freezer-1"), DAY0)
    assert len(opened(e.tick(DAY0 + 121))) == 1


# expiry


def scan(expiry: str | None, batch: str | None = "L1") -> Scan:
    return Scan(**env(source="scanner-1", code="x", gtin="09506000134352", batch=batch,
                      expiry=expiry))


def test_expiry_near_and_past():
    e = engine(expiry={"days": 3})
    (a,) = e.handle(scan("2025-11-26"), DAY0)
    assert a.sku == "MILK" and a.zone == "dairy" and a.detail["days_left"] == 2
    assert a.severity == "warning"
    assert e.handle(scan("2025-11-26"), DAY0 + 10) == []  # same batch again: one alert
    (b,) = e.handle(scan("2025-11-20", batch="L0"), DAY0)
    assert b.severity == "critical"


def test_expiry_far_missing_or_garbled_is_quiet():
    e = engine(expiry={"days": 3})
    assert e.handle(scan("2025-12-24"), DAY0) == []
    assert e.handle(scan(None), DAY0) == []
    assert e.handle(scan("2025-13-45"), DAY0) == []


# escalation comes from the engine, for every rule


def test_unclaimed_alert_escalates_once_claimed_does_not():
    e = engine(out_of_stock={"escalate_after_seconds": 300})
    e.handle(stock("A1", 1, 0), DAY0)
    e.handle(stock("B1", 1, 0), DAY0)
    e.claimed("out_of_stock", "B1")
    assert e.tick(DAY0 + 299) == []
    (x,) = e.tick(DAY0 + 300)
    assert isinstance(x, EscalateAlert) and x.subject == "A1" and x.role == "manager"
    assert e.tick(DAY0 + 900) == []


@pytest.mark.parametrize("name", ["low_stock", "out_of_stock", "cold_chain", "device_offline"])
def test_disabled_rule_is_silent(name):
    e = engine()
    out = e.handle(stock("A1", 1, 0), DAY0) + e.handle(temp(9.0), DAY0)
    out += e.handle(health("shelf-a", HealthState.OFFLINE), DAY0) + e.tick(DAY0 + 7200)
    assert out == []
