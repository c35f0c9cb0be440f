"""Shelf inventory: lane weights to unit counts.

A lane is stable only when successive samples stay within a band for ``settle_seconds``; a pick
or restock is counted from the change between two stable weights. ``round(delta / unit)`` is
accepted only when the remainder is within ``tolerance`` of a unit, otherwise the change is
ambiguous (a misplaced or foreign item) and the count stays. Small changes within the band
move the reference weight, so slow load-cell drift never becomes a count.

An empty lane that settles within ``retare_below`` grams of zero is re-tared: the change is
drift, never a foreign item.

Counts are state, not facts: the agent snapshots them periodically, never per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from storeedge.events import StockCause


@dataclass(slots=True)
class Change:
    """A count change between two stable weights."""

    before: int
    after: int
    cause: StockCause
    grams: float


@dataclass(slots=True)
class LaneScale:
    """The weighing state of one lane. ``update`` is called per sample; it does no I/O."""

    lane: str
    sku: str
    unit_grams: float
    capacity: int
    units: int | None = None  # None until the first stable weight
    reference_grams: float | None = None  # the last committed stable weight
    last_grams: float = 0.0
    last_ts: float = 0.0
    window_start: float = 0.0
    window_min: float = 0.0
    window_max: float = 0.0
    window_sum: float = 0.0
    window_n: int = 0
    committed: bool = False  # the current window already produced its stable weight

    @property
    def stable(self) -> bool:
        return self.committed

    def update(self, grams: float, ts: float, settle_seconds: float, band: float,
               tolerance: float, retare_below: float = 0.0) -> Change | None:
        self.last_grams = grams
        self.last_ts = ts
        if self.window_n and min(self.window_min, grams) >= max(self.window_max, grams) - band:
            self.window_min = min(self.window_min, grams)
            self.window_max = max(self.window_max, grams)
            self.window_sum += grams
            self.window_n += 1
        else:
            self.window_start = ts
            self.window_min = self.window_max = self.window_sum = grams
            self.window_n = 1
            self.committed = False
        if self.committed or ts - self.window_start < settle_seconds:
            return None
        self.committed = True
        return self._commit(self.window_sum / self.window_n, band, tolerance, retare_below)

    def _commit(self, grams: float, band: float, tolerance: float,
                retare_below: float) -> Change | None:
        before = self.units
        reference = self.reference_grams
        self.reference_grams = grams
        if before is None or reference is None:
            self.units = max(0, round(grams / self.unit_grams))
            return Change(0, self.units, StockCause.INITIAL, grams)
        delta = grams - reference
        if abs(delta) <= band:
            return None  # drift or noise: the reference follows it
        if before == 0 and abs(grams) <= retare_below:
            # An empty lane settling near zero is load-cell drift: take it as the new zero.
            return Change(0, 0, StockCause.TARE, grams)
        ratio = delta / self.unit_grams
        whole = round(ratio)
        if abs(ratio - whole) > tolerance:
            return Change(before, before, StockCause.AMBIGUOUS, grams)
        if whole == 0:
            return None
        after = max(0, before + whole)
        self.units = after
        return Change(before, after, StockCause.RESTOCK if whole > 0 else StockCause.PICK, grams)

    def snapshot(self) -> dict[str, object]:
        return {"units": self.units, "reference_grams": self.reference_grams,
                "last_grams": self.last_grams, "last_ts": self.last_ts}

    def restore(self, snap: dict[str, object]) -> None:
        units = snap.get("units")
        ref = snap.get("reference_grams")
        self.units = int(units) if isinstance(units, int) else None
        self.reference_grams = float(ref) if isinstance(ref, (int, float)) else None
        last = snap.get("last_grams")
        self.last_grams = float(last) if isinstance(last, (int, float)) else 0.0
