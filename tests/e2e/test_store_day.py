"""Issue 4's acceptance scenario: a whole simulated store day (08:00-22:00, Asia/Shanghai)
through the real agent with an injected clock. A clean day raises no alert at all; the same day
with one of each incident planted raises exactly one alert per incident, of the right rule and
subject, and nothing else. Observed only through the agent's outputs: its active alerts, the
journaled alert transitions, its health and its journaled facts.

How the incidents map to rules (one lane may carry two of them):
- low_stock, out_of_stock: lane A3 (OIL, a slow seller) is never restocked in the morning: it
  falls to its threshold (3) and, later, to 0. The lane that empties keeps its low-stock alert
  (worsened as it falls) and gets one out-of-stock alert. OIL sells too slowly for
  days_of_cover (fewer than its min_units in the window), so neither projects a stock-out.
- days_of_cover: a party buys all but 14 bottles of WATER (A1, a fast seller) at once; the
  lane stays far above its threshold, and staff restock it as usual.
- shelf_camera: a box stands in front of lane A2 for 6 minutes; the camera sees the opposite of
  what the shelf counts.
- checkout_suspect and checkout_voids: bread (on no weighed lane, so no shrink) bagged without a
  scan; four voids in another session.
- shrink and misplaced: RFID-tagged razors (not weighed): one carried out with no sale, one left
  at the perfume lane.
- cold_chain: the dairy fridge door left ajar for 30 minutes (8.5 degC, range 2..6).
- device_offline: the serial scanner unplugged for 6 minutes (limit 120 s).
- expiry: a yogurt crate received with a GS1 expiry (AI 17) of tomorrow.

The clean day's realism is what keeps the rules honest: fridges cycle and get short door
openings (out of range for about three minutes), the freezer defrosts for about ten, readings
jitter, shoppers pay two to twelve minutes after they pick, kiosks void a mis-scan now and then,
and staff restock a lane five to twenty minutes after it falls to its restock level.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.agent import StoreAgent
from rules.trackers.alerts import Actor, Outcome
from storeedge.events import AlertState, DeviceStatus
from tests.e2e.store_day import (
    DAY,
    PRODUCTS,
    SCANNER_PORT,
    STORE,
    Excursion,
    StoreDay,
    at,
    new_day,
    transitions,
)

pytestmark = pytest.mark.e2e

STAFF = Actor("li.na", "staff")
MANAGER = Actor("wang.wei", "manager")
EXPIRY_BATCH = "L251127"
OPEN_STATES = (AlertState.OPEN, AlertState.ESCALATED)


@dataclass
class Ran:
    agent: StoreAgent
    day: StoreDay
    seconds: float
    planted: dict[str, str] = field(default_factory=dict)  # what -> subject it must have

    def history(self) -> dict[str, list[tuple[str, str, str, str, float]]]:
        """alert_id -> its journaled transitions (alert_id, rule, subject, state, ts)."""
        out: dict[str, list[tuple[str, str, str, str, float]]] = {}
        for row in transitions(self.agent):
            out.setdefault(row[0], []).append(row)
        return out


def run_day(journal: Path, plant: Callable[[StoreAgent, StoreDay], dict[str, str]] | None) -> Ran:
    agent, day = new_day(journal)
    planted = plant(agent, day) if plant is not None else {}
    started = time.perf_counter()
    day.run()
    return Ran(agent, day, time.perf_counter() - started, planted)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    ran = run_day(tmp_path_factory.mktemp("clean") / "journal.db", None)
    yield ran
    ran.agent.journal.close()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    ran = run_day(tmp_path_factory.mktemp("planted") / "journal.db", plant_incidents)
    yield ran
    ran.agent.journal.close()


def plant_incidents(agent: StoreAgent, day: StoreDay) -> dict[str, str]:
    """One of each incident at a known time, and the staff working their handhelds. Returns
    rule -> the subject its one alert must have (filled in as the day runs)."""
    subjects = {
        "low_stock": "A3",
        "out_of_stock": "A3",
        "expiry": f"0{PRODUCTS['YOGURT'].gtin}/{EXPIRY_BATCH}",
        "device_offline": "scan-1",
        "shelf_camera": "A2",
        "cold_chain": "fridge-1",
        "days_of_cover": "WATER",
        "shrink": f"RAZOR:{DAY.isoformat()}",
    }
    day.restock_enabled["A3"] = False  # nobody restocks OIL until its out-of-stock task

    def receive_expiring_yogurt() -> None:
        tomorrow = DAY.replace(day=DAY.day + 1).strftime("%y%m%d")
        day.scan("]d2", f"010{PRODUCTS['YOGURT'].gtin}17{tomorrow}10{EXPIRY_BATCH}")

    day.at(at("09:30"), receive_expiring_yogurt)

    def scanner(online: bool) -> None:
        day.scanner_plugged = online
        day.driver(DeviceStatus(store_id=STORE, source="scan-1", received_ts=day.clock.now,
                                online=online,
                                error=None if online else f"port {SCANNER_PORT} vanished"))

    day.at(at("10:00"), lambda: scanner(False))
    day.at(at("10:06"), lambda: scanner(True))

    def block_camera(on: bool) -> None:
        if on:  # whatever the shelf counts, the camera sees the opposite
            full = day.count["A2"] / 24 < 0.5
            day.camera_override["A2"] = 1.0 if full else 0.0
        else:
            day.camera_override.clear()

    day.at(at("11:00"), lambda: block_camera(True))
    day.at(at("11:06"), lambda: block_camera(False))

    day.at(at("12:30"), lambda: subjects.__setitem__(
        "checkout_suspect", "kiosk-1/" + day.kiosk([("BREAD", 1)], unscanned=["BREAD"])))
    day.at(at("16:30"), lambda: subjects.__setitem__(
        "checkout_voids", "kiosk-1/" + day.kiosk([("BREAD", 1)], voided_extra=4)))

    day.sensors[0].excursions.append(Excursion(at("14:00"), at("14:30"), 8.5))

    def misplace() -> None:
        epc = day.tags_at("R1")[0]
        subjects["misplaced"] = f"tag:{epc}"
        day.move_tag(epc, "R2")

    day.at(at("15:00"), misplace)

    def party() -> None:  # all but 14 bottles: a lane low in cover, yet far above threshold
        qty = day.count["A1"] - 14
        assert qty >= 8 and day.take("A1", qty)
        day.at(day.clock.now + 300, lambda: day.pos([("WATER", qty)]))

    day.at(at("17:30"), party)
    day.at(at("19:00"), lambda: day.move_tag(day.tags_at("R1")[-1], None))

    handheld = Handheld(agent, day)
    day.watchers.append(handheld.look)
    return subjects


class Handheld:
    """The staff and the manager, acting on what their handhelds show (polled every 15 s):
    who claims what, after how long, and what they do next. Nobody claims low stock (so it
    escalates) or the manager-routed and informational alerts that clear by themselves."""

    def __init__(self, agent: StoreAgent, day: StoreDay) -> None:
        self.agent, self.day = agent, day
        self.seen: dict[str, float] = {}
        self.done: set[str] = set()

    def look(self, now: float) -> None:
        if int(now) % 15:
            return
        for alert in self.agent.alerts():
            first = self.seen.setdefault(alert.alert_id, now)
            if alert.alert_id in self.done or alert.state not in OPEN_STATES:
                continue
            act = getattr(self, f"_{alert.rule}", None)
            if act is not None and now - first >= 30:
                self.done.add(alert.alert_id)
                act(alert.alert_id, now)

    def _claim(self, alert_id: str, who: Actor = STAFF) -> None:
        assert self.agent.claim_alert(alert_id, who).state is AlertState.CLAIMED

    def _resolve_later(self, alert_id: str, now: float, outcome: Outcome, note: str,
                       who: Actor = STAFF) -> None:
        self.day.at(now + 120, lambda: self.agent.resolve_alert(alert_id, who, outcome, note))

    def _out_of_stock(self, alert_id: str, now: float) -> None:
        self._claim(alert_id)

        def restock() -> None:
            self.day.restock_enabled["A3"] = True
            self.day.restock("A3")

        self.day.at(now + 900, restock)

    def _misplaced(self, alert_id: str, now: float) -> None:
        self._claim(alert_id)
        epc = self.agent.alert(alert_id).subject.removeprefix("tag:")
        self.day.at(now + 600, lambda: self.day.move_tag(epc, "R1"))

    def _cold_chain(self, alert_id: str, now: float) -> None:
        self._claim(alert_id)  # shuts the door; the fridge cools down on its own

    def _expiry(self, alert_id: str, now: float) -> None:
        self._claim(alert_id)
        self._resolve_later(alert_id, now, Outcome.OTHER, "batch pulled from the shelf")

    def _checkout_suspect(self, alert_id: str, now: float) -> None:
        self._claim(alert_id)
        self._resolve_later(alert_id, now, Outcome.OTHER, "bread scanned at the kiosk")

    def _checkout_voids(self, alert_id: str, now: float) -> None:
        self._claim(alert_id)
        self._resolve_later(alert_id, now, Outcome.FALSE_ALARM, "scanner misread")

    def _shrink(self, alert_id: str, now: float) -> None:
        self._claim(alert_id, MANAGER)
        self._resolve_later(alert_id, now, Outcome.COUNTED, "one razor short", MANAGER)


# The clean day


def test_clean_day_raises_no_alert(clean: Ran) -> None:
    assert transitions(clean.agent) == []
    assert clean.agent.alerts() == []
    assert clean.agent.health()["alerts"] == {}


def test_clean_day_was_a_real_day(clean: Ran) -> None:
    """The silence above means something only if the day exercised every rule's input."""
    h = clean.agent.health()
    c = h["counters"]
    day = clean.day
    assert day.shoppers_refused == 0  # no lane ever ran empty
    assert h["facts"]["TagPresence"] > 0 and c["stock_restock"] >= 8 and c["stock_pick"] > 100
    assert c["sales"] == day.sales and c["sold_units"] == sum(day.sold.values())
    for kind in ("shelf_modbus", "shelf_mqtt", "camera", "rfid_zebra", "zigbee2mqtt",
                 "scanner", "checkout"):
        assert c[f"readings_{kind}"] > 0, kind
    assert not [k for k in c if k.startswith("rejected_") or k.startswith("stock_ambiguous")]
    # Every device stayed online all day: one health fact each, the first "online".
    assert h["device_states"] == {"online": 8}
    assert h["facts"]["DeviceHealth"] == 8
    # Tagged goods left only with sales: one departure per tagged unit sold.
    departed = clean.agent.journal.execute(
        "SELECT COUNT(*) FROM fact WHERE kind = 'TagPresence' AND body LIKE '%\"departed\"%'")
    assert departed[0][0] == day.sold["RAZOR"] + day.sold["PERFUME"]
    assert clean.agent.journal.sale_count() == day.sales


# The planted day


def test_each_incident_raises_exactly_one_alert_of_its_rule(planted: Ran) -> None:
    raised = sorted((rows[0][1], rows[0][2]) for rows in planted.history().values())
    assert raised == sorted(planted.planted.items())


def test_low_stock_escalates_unclaimed_then_clears_on_restock(planted: Ran) -> None:
    [low] = [rows for rows in planted.history().values() if rows[0][1] == "low_stock"]
    states = [row[3] for row in low]
    assert states[0] == "open" and states[-1] == "cleared"
    assert "escalated" in states and "claimed" not in states
    opened, escalated = low[0][4], next(row[4] for row in low if row[3] == "escalated")
    assert 900 <= escalated - opened <= 902  # rules/defaults.yaml: escalate_after_seconds 900
    [out] = [rows for rows in planted.history().values() if rows[0][1] == "out_of_stock"]
    assert [row[3] for row in out] == ["open", "claimed", "cleared"]
    # One lane, one task: the lane emptying hands the low-stock task to out-of-stock.
    assert low[-1][4] == out[0][4]


def test_claimed_alerts_are_resolved_by_who_claimed_them(planted: Ran) -> None:
    agent = planted.agent
    for rule, who, outcome in (("expiry", STAFF, "other"), ("checkout_suspect", STAFF, "other"),
                               ("checkout_voids", STAFF, "false_alarm"),
                               ("shrink", MANAGER, "counted")):
        [rows] = [r for r in planted.history().values() if r[0][1] == rule]
        assert [row[3] for row in rows if row[3] != "open"] == ["claimed", "resolved"], rule
        last = agent.alert(rows[0][0])
        assert last.detail["claimed_by"] == who.name and last.detail["resolved_by"] == who.name
        assert last.detail["outcome"] == outcome


def test_cold_chain_clears_by_itself_when_the_fridge_is_back_in_range(planted: Ran) -> None:
    [rows] = [r for r in planted.history().values() if r[0][1] == "cold_chain"]
    assert [row[3] for row in rows] == ["open", "claimed", "cleared"]
    opened, cleared = rows[0][4], rows[-1][4]
    # Out of range from about 14:02 (6 degC on the way up); 15 minutes later it opens.
    assert at("14:16") <= opened <= at("14:20")
    assert at("14:30") < cleared <= at("14:36")
    alert = planted.agent.alert(rows[0][0])
    assert alert.detail["transition"] == "cleared" and "back in range" in alert.detail["reason"]


def test_self_clearing_incidents_clear_when_they_end(planted: Ran) -> None:
    expected = {"device_offline": (at("10:02"), at("10:06")),
                "shelf_camera": (at("11:02"), at("11:06")),
                "misplaced": (at("15:00"), None), "days_of_cover": (at("17:35"), None)}
    for rule, (opened_after, cleared_by) in expected.items():
        [rows] = [r for r in planted.history().values() if r[0][1] == rule]
        assert rows[-1][3] == "cleared", rule
        assert opened_after <= rows[0][4] <= opened_after + 120, rule
        if cleared_by is not None:
            assert cleared_by <= rows[-1][4] <= cleared_by + 30, rule


def test_the_day_ends_with_nothing_open(planted: Ran) -> None:
    assert planted.agent.alerts() == []
    counts = planted.agent.health()["alerts"]
    assert {rule: sum(states.values()) for rule, states in counts.items()} == {
        rule: 1 for rule in planted.planted}


def test_the_day_runs_in_seconds(clean: Ran, planted: Ran) -> None:
    print(f"\nclean day {clean.seconds:.1f} s, planted day {planted.seconds:.1f} s")
    assert clean.seconds + planted.seconds < 20
