"""The store's work beyond its shelves' alerts, as the agent offers it to the web app: counts
and store orders against the ERP (``cloud_bridge.counts``, ``cloud_bridge.orders``), online
orders picked in the store (``edge_agent.pickups``), problems staff report
(``edge_agent.problems``), the manager's trends (``edge_agent.trends``) and the store's people
(``edge_agent.staff``). A part of
``StoreAgent`` (it mixes this in), kept apart so that the runtime stays readable; it uses the
agent's pipeline, committer and journal as the agent's own methods do."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING, Any

from cloud_bridge import orders
from cloud_bridge.bridge import ErpBridge
from edge_agent import pickups, problems, staff, trends
from edge_agent.config import Lane, StoreConfig
from rules.actions import ClearAlert, OpenAlert
from rules.trackers.alerts import ALL_ZONES, Actor, AlertManager, Outcome
from storeedge.errors import PayloadError, UsageError
from storeedge.events import Alert, AlertState, PosLine, PosTransaction, Severity
from storeedge.ids import new_event_id

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge_agent.committer import Committer
    from edge_agent.pipeline import StorePipeline
    from edge_agent.publisher import Publisher


class StoreWork:
    # the agent's, set by its __init__
    config: StoreConfig
    store_id: str
    pipeline: StorePipeline
    committer: Committer
    publisher: Publisher
    erp_bridge: ErpBridge | None
    store_db: sqlite3.Connection
    clock: Callable[[], float]
    _flush: Callable[[], bool]  # commit and publish what the pipeline produced

    @property
    def alert_manager(self) -> AlertManager:
        return self.pipeline.alert_manager

    def report_problem(self, category: problems.Category, priority: problems.Priority,
                       text: str, actor: Actor,
                       location: str | None = None, photo: bytes | None = None) -> Alert:
        lane = next((x for x in self.config.lanes if x.id == location), None)
        zone = lane.zone if lane is not None else next(
            (z for z in sorted(actor.zones) if z != ALL_ZONES), None)
        report_id = f"P-{new_event_id()}"
        if photo is not None:  # first: the alert never tells of a photo that is not there
            problems.save_photo(self.store_db, report_id, photo)
        target = self.config.problems.targets_minutes.get(category, 60.0)
        self.pipeline.raise_alerts([problems.report(
            report_id, category, priority, text, actor.name, target, zone, location,
            photo is not None)], self.clock())
        self._flush()
        alert = self.alert_manager.current(problems.RULE, report_id)
        assert alert is not None
        return alert

    def staff(self) -> list[dict[str, Any]]:
        return staff.people(self.store_db)

    def set_staff(self, name: str, role: str, zones: list[str],
                  pin: str | None) -> dict[str, Any]:
        return staff.set_person(self.store_db, name, role, zones, pin)

    def remove_staff(self, name: str) -> bool:
        return staff.remove(self.store_db, name)

    def staff_qr(self, name: str) -> str | None:
        return staff.new_qr(self.store_db, name)

    def sign_in_pin(self, name: str, pin: str) -> Actor | None:
        return staff.by_pin(self.store_db, name, pin)

    def sign_in_qr(self, code: str) -> Actor | None:
        return staff.by_qr(self.store_db, code)

    def staff_person(self, name: str) -> tuple[Actor, str] | None:
        return staff.person(self.store_db, name)

    def session_key(self) -> bytes:
        return staff.session_key(self.store_db)

    def problem_photo(self, report_id: str) -> tuple[str, bytes] | None:
        return problems.photo(self.store_db, report_id)

    def trends(self, hours: float) -> dict[str, Any]:
        now = self.clock()
        out = trends.report(self.store_db, now - hours * 3600, now, self.config.store.timezone)
        out["devices_offline"] = sorted(
            d for d, v in self.pipeline.device_health.view().items() if v["state"] == "offline")
        out["open_problems"] = [a.to_dict() for a in self.alert_manager.active()
                                if a.rule == problems.RULE]
        return out

    def new_pickup(self, order_id: str, lines: list[PosLine], customer: str | None) -> bool:
        txn = self._pickup_sale(order_id, lines)
        self.pipeline.validate_sale(txn)
        if any(line.qty < 1 for line in lines):
            raise PayloadError("an order to pick has no returns: every qty is at least 1",
                               source="pickup")
        new = pickups.create(self.store_db, order_id, [dataclasses.asdict(x) for x in lines],
                             customer, self.clock())
        if new:
            order = pickups.get(self.store_db, order_id)
            assert order is not None
            self._pick_task(order)
            self._flush()
        return new

    def pickups(self, state: str | None = None) -> list[dict[str, Any]]:
        return pickups.pickups(self.store_db, state)

    def pickup_picked(self, order_id: str, actor: Actor) -> dict[str, Any] | None:
        order = pickups.get(self.store_db, order_id)
        if order is None or order["state"] != "open":
            return pickups.move(self.store_db, order_id, "picked", actor.name)
        now = self.clock()
        self.pipeline.picked(self._pickup_sale(order_id, order["lines"]), now)
        task = self.alert_manager.current(pickups.RULE, order_id)
        if task is not None:
            if task.state is not AlertState.CLAIMED:
                self.pipeline.claim(task.alert_id, actor, now)
            self.pipeline.resolve(task.alert_id, actor, Outcome.FIXED, "picked", now)
        self._flush()
        return pickups.move(self.store_db, order_id, "picked", actor.name, now)

    def pickup_handed_over(self, order_id: str, actor: Actor) -> dict[str, Any] | None:
        order = pickups.get(self.store_db, order_id)
        if order is None or order["state"] != "picked":
            return pickups.move(self.store_db, order_id, "handed_over", actor.name)
        txn = self._pickup_sale(order_id, order["lines"])
        # the sale first, once by its txn_id: a crash before the order's state moves leaves
        # a retry that finds it booked
        if self.committer.book_sale(txn):
            if self.erp_bridge is not None:
                self.erp_bridge.accepted()
            self.pipeline.sold(txn, self.clock(), rules=False)  # they heard of it when picked
            self._flush()
            self.publisher.catch_up()
        return pickups.move(self.store_db, order_id, "handed_over", actor.name)

    def pickup_cancelled(self, order_id: str, actor: Actor) -> dict[str, Any] | None:
        order = pickups.move(self.store_db, order_id, "cancelled", actor.name)
        if order is not None and self.alert_manager.current(pickups.RULE, order_id):
            self.pipeline.raise_alerts([ClearAlert(rule=pickups.RULE, subject=order_id,
                                                   reason=f"cancelled by {actor.name}")],
                                       self.clock())
            self._flush()
        return order

    def _pickup_sale(self, order_id: str, lines: list[Any]) -> PosTransaction:
        return PosTransaction(
            store_id=self.store_id, source="click_collect", received_ts=self.clock(),
            txn_id=f"pickup:{order_id}",
            lines=tuple(x if isinstance(x, PosLine) else PosLine(**x) for x in lines))

    def _pick_task(self, order: dict[str, Any]) -> None:
        lane_of: dict[str, Lane] = {}
        for lane in self.config.lanes:
            lane_of.setdefault(lane.sku, lane)
        lines = [{**x, "lane": lane_of[x["sku"]].id if x["sku"] in lane_of else None}
                 for x in order["lines"]]
        first = lane_of.get(lines[0]["sku"])
        what = ", ".join(f"{x['qty']} x {x['sku']}" + (f" (lane {x['lane']})" if x["lane"]
                                                         else "") for x in lines)
        self.pipeline.raise_alerts([OpenAlert(
            rule=pickups.RULE, subject=order["order_id"], severity=Severity.WARNING,
            message=f"pick online order {order['order_id']}: {what}",
            detail={"lines": lines, "customer": order["customer"]},
            zone=first.zone if first is not None else None)], self.clock())

    async def propose_counts(self) -> list[dict[str, Any]]:
        bridge = self._bridge()
        units: dict[str, int] = {}
        unknown: set[str] = set()
        for lane in self.pipeline.lanes():
            if lane["units"] is None:
                unknown.add(lane["sku"])
            else:
                units[lane["sku"]] = units.get(lane["sku"], 0) + lane["units"]
        counted = {sku: n for sku, n in units.items() if sku not in unknown}
        return await bridge.propose_counts(counted, self.config.erp.count_tolerance_units)

    async def propose_order(self) -> dict[str, Any] | None:
        e = self.config.erp
        minimum: dict[str, int] = {}
        for lane in self.config.lanes:
            minimum[lane.sku] = minimum.get(lane.sku, 0) + self.pipeline.catalog.threshold(
                lane.id)
        return await self._bridge().propose_order(
            orders.Policy(e.order_lead_days, e.order_cover_days, e.demand_window_days),
            minimum)

    def orders(self, state: str | None = None) -> list[dict[str, Any]]:
        return [] if self.erp_bridge is None else self.erp_bridge.orders(state)

    def order(self, order_id: int) -> dict[str, Any] | None:
        return None if self.erp_bridge is None else self.erp_bridge.order(order_id)

    def decide_order(self, order_id: int, approve: bool, by: str,
                     lines: list[tuple[str, int]] | None = None) -> dict[str, Any] | None:
        return self._bridge().decide_order(order_id, approve, by, lines)

    def receive(self, order_id: int, code: str, by: str) -> dict[str, Any] | None:
        sku = code if code in self.pipeline.catalog else self.pipeline.catalog.sku_of_code(code)
        if sku is None:
            raise PayloadError(f"code {code!r} is no product of the catalog", source="receiving")
        return self._bridge().receive(order_id, sku, by)

    def received(self, order_id: int, by: str) -> dict[str, Any] | None:
        return self._bridge().received(order_id, by)

    def _bridge(self) -> ErpBridge:
        if self.erp_bridge is None:
            raise UsageError("no ERP is configured for this")
        return self.erp_bridge

    def count_proposals(self, state: str | None = None) -> list[dict[str, Any]]:
        return [] if self.erp_bridge is None else self.erp_bridge.count_proposals(state)

    def decide_count(self, proposal_id: int, approve: bool, by: str) -> dict[str, Any] | None:
        return self._bridge().decide_count(proposal_id, approve, by)
