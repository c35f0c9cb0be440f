"""Shelf stock rules, on StockChanged: low stock and out of stock (per lane), and days of cover
(per SKU: recent sales velocity projects a stock-out within N hours)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from rules.actions import Action, ClearAlert, UpdateAlert
from rules.library.base import Rule, RuleContext, RuleParams
from storeedge.events import Event, PosTransaction, Sale, Severity, StockCause, StockChanged


class LowStockParams(RuleParams):
    threshold: Annotated[int, Field(ge=0)] | None = None  # None: the lane's own threshold
    clear_margin: Annotated[int, Field(ge=0)] = 0  # clears above threshold + margin


class LowStock(Rule):
    """Open when a lane's count falls to its threshold; re-notify (UpdateAlert) as it falls
    further; clear when restocked above threshold + ``clear_margin``. Subject: the lane.

    One lane, one task: while ``out_of_stock`` is on, an empty lane is its alert, the more
    severe, so this one clears at 0 (and opens again if a restock leaves the lane still low)."""

    name = "low_stock"
    Params = LowStockParams
    events = (StockChanged,)

    def initial_state(self) -> dict[str, Any]:
        return {"low": {}}  # lane -> units when last told

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, StockChanged)
        if event.cause is StockCause.AMBIGUOUS:
            return []
        lane_id = event.location
        lane = self.ctx.model.lane.get(lane_id)
        zone = lane.zone if lane is not None else None
        p = self.ctx.params(self.name, event.sku, zone)
        threshold = p.threshold if p.threshold is not None else (
            lane.threshold if lane is not None else None)
        if threshold is None:
            return []
        units = event.after
        low = self.state["low"]
        was = low.get(lane_id)
        if units == 0 and self.ctx.params("out_of_stock", event.sku, zone).enabled:
            if was is None:
                return []
            del low[lane_id]
            return [ClearAlert(rule=self.name, subject=lane_id,
                               reason="empty: the out-of-stock alert takes over")]
        if was is None:
            if units > threshold:
                return []
            low[lane_id] = units
            bring = max((lane.capacity if lane else threshold) - units, 0)
            return [self.alert(p, lane_id, self._message(event.sku, lane_id, units, threshold,
                                                         bring),
                               sku=event.sku, location=lane_id, zone=zone, units=units,
                               threshold=threshold, bring=bring)]
        if units > threshold + p.clear_margin:
            del low[lane_id]
            return [ClearAlert(rule=self.name, subject=lane_id, reason=f"restocked to {units}")]
        if units < was:
            low[lane_id] = units
            bring = max((lane.capacity if lane else threshold) - units, 0)
            return [UpdateAlert(rule=self.name, subject=lane_id, severity=p.severity,
                                message=self._message(event.sku, lane_id, units, threshold, bring),
                                detail={"units": units, "threshold": threshold, "bring": bring})]
        if units != was:
            low[lane_id] = units
        return []

    @staticmethod
    def _message(sku: str, lane: str, units: int, threshold: int, bring: int) -> str:
        return f"{sku} at lane {lane}: {units} left (threshold {threshold}); bring {bring}"


class OutOfStockParams(RuleParams):
    severity: Severity = Severity.CRITICAL
    clear_margin: Annotated[int, Field(ge=0)] = 0  # clears above 0 + margin


class OutOfStock(Rule):
    """Open when a lane's count reaches 0; clear when it holds more than ``clear_margin``.
    Subject: the lane."""

    name = "out_of_stock"
    Params = OutOfStockParams
    events = (StockChanged,)

    def initial_state(self) -> dict[str, Any]:
        return {"empty": {}}  # lane -> true

    def handle(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, StockChanged)
        if event.cause is StockCause.AMBIGUOUS:
            return []
        lane_id = event.location
        empty = self.state["empty"]
        if lane_id not in empty:
            if event.after > 0:
                return []
            lane = self.ctx.model.lane.get(lane_id)
            zone = lane.zone if lane is not None else None
            p = self.ctx.params(self.name, event.sku, zone)
            empty[lane_id] = True
            bring = lane.capacity if lane is not None else None
            return [self.alert(p, lane_id, f"{event.sku} at lane {lane_id} is out of stock"
                               + (f"; bring {bring}" if bring else ""),
                               sku=event.sku, location=lane_id, zone=zone, units=0, bring=bring)]
        lane = self.ctx.model.lane.get(lane_id)
        p = self.ctx.params(self.name, event.sku, lane.zone if lane is not None else None)
        if event.after > p.clear_margin:
            del empty[lane_id]
            return [ClearAlert(rule=self.name, subject=lane_id,
                               reason=f"restocked to {event.after}")]
        return []


class DaysOfCoverParams(RuleParams):
    cover_hours: Annotated[float, Field(gt=0)] = 4.0  # alert when stock lasts less than this
    window_hours: Annotated[float, Field(gt=0)] = 2.0  # sales velocity over this window
    bucket_minutes: Annotated[float, Field(gt=0)] = 5.0  # window resolution
    min_units: Annotated[int, Field(ge=1)] = 5  # fewer sold in the window: velocity unknown
    clear_ratio: Annotated[float, Field(ge=1)] = 1.25  # clears when cover > cover_hours * this
    # "sale": count Sale facts (the agent's, from POS and self-checkout); "pos": count
    # PosTransaction lines, for an agent that does not derive Sale.
    sales_from: Literal["sale", "pos"] = "sale"


class DaysOfCover(Rule):
    """Per SKU: units sold in the last ``window_hours`` give a velocity; shelf stock (sum of the
    SKU's lanes) / velocity < ``cover_hours`` opens; above ``cover_hours * clear_ratio`` (or
    velocity unknown again) clears. Subject: the SKU.

    Sales are kept per SKU in ``bucket_minutes`` buckets: at most ``window_hours * 60 /
    bucket_minutes + 1`` entries per SKU; a SKU with no sale in the window is forgotten within
    a minute."""

    name = "days_of_cover"
    Params = DaysOfCoverParams
    events = (Sale, PosTransaction, StockChanged)
    ticks = True

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._sweep_at = 0.0  # when to forget SKUs whose sales all left the window

    def initial_state(self) -> dict[str, Any]:
        return {"sold": {}, "short": {}}  # sku -> [[bucket, qty], ...]; sku -> true

    def handle(self, event: Event, now: float) -> list[Action]:
        if type(event) is StockChanged:
            return self._judge(event.sku, now)
        if type(event) is Sale:
            if self.ctx.params(self.name).sales_from != "sale":
                return []
            self._sold(event.sku, event.qty, now)
            return self._judge(event.sku, now)
        assert isinstance(event, PosTransaction)
        if self.ctx.params(self.name).sales_from != "pos":
            return []
        out: list[Action] = []
        for line in event.lines:
            self._sold(line.sku, line.qty, now)
            out += self._judge(line.sku, now)
        return out

    def tick(self, now: float) -> list[Action]:
        # Time passing only lowers a velocity, so only open alerts can change.
        out: list[Action] = []
        for sku in list(self.state["short"]):
            out += self._judge(sku, now)
        if now >= self._sweep_at:
            self._sweep_at = now + 60.0
            sold = self.state["sold"]
            for sku in [s for s in sold if s not in self.state["short"]]:
                self._in_window(sku, self._params(sku), now)
        return out

    def _params(self, sku: str) -> DaysOfCoverParams:
        params: DaysOfCoverParams = self.ctx.params(self.name, sku,
                                                    self.ctx.model.zone_of_sku(sku))
        return params

    def _sold(self, sku: str, qty: int, now: float) -> None:
        p = self._params(sku)
        bucket = int(now // (p.bucket_minutes * 60))
        sold = self.state["sold"].setdefault(sku, [])
        if sold and sold[-1][0] == bucket:
            sold[-1][1] += qty
        else:
            sold.append([bucket, qty])

    def _in_window(self, sku: str, p: DaysOfCoverParams, now: float) -> int:
        """Units of ``sku`` sold in the window, dropping the buckets that left it."""
        sold = self.state["sold"].get(sku)
        if not sold:
            return 0
        oldest = int((now - p.window_hours * 3600) // (p.bucket_minutes * 60))
        while sold and sold[0][0] <= oldest:
            sold.pop(0)
        if not sold:
            del self.state["sold"][sku]
        return sum(q for _, q in sold)

    def _judge(self, sku: str, now: float) -> list[Action]:
        zone = self.ctx.model.zone_of_sku(sku)
        p = self.ctx.params(self.name, sku, zone)
        units_sold = self._in_window(sku, p, now)
        short = self.state["short"]
        if units_sold < p.min_units and sku not in short:
            return []  # the common case, decided before looking at every lane of the SKU
        lanes = self.ctx.model.lanes_of_sku.get(sku, ())
        known = [self.ctx.counts[lane] for lane in lanes if lane in self.ctx.counts]
        # An open alert needs more than one sale fewer to go away: it clears when sales stop
        # altogether or cover recovers below, never by hovering around min_units.
        if not known or units_sold == 0:
            if sku in short:
                del short[sku]
                return [ClearAlert(rule=self.name, subject=sku, reason="sales stopped")]
            return []
        stock = sum(known)
        per_hour = units_sold / p.window_hours
        cover = stock / per_hour
        if sku not in short:
            if cover >= p.cover_hours:
                return []
            short[sku] = True
            return [self.alert(p, sku, f"{sku}: {stock} on the shelf, selling {per_hour:.1f}/h: "
                               f"out in about {cover:.1f} h", sku=sku, zone=zone, stock=stock,
                               per_hour=round(per_hour, 2), cover_hours=round(cover, 2))]
        if cover > p.cover_hours * p.clear_ratio:
            del short[sku]
            return [ClearAlert(rule=self.name, subject=sku,
                               reason=f"{cover:.1f} h of cover")]
        return []
