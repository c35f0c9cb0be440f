"""Shelf inventory: lane weights to unit counts.

A lane's count is read from its absolute weight: ``(grams - tare) / unit``, accepted when it is
within ``tolerance`` of a whole number of units. So a count always converges: whatever was
missed or misread before, the next stable weight that is a whole number of units re-anchors it.

A lane is stable when, for ``settle_seconds``, either successive samples stay within a band of
``band`` grams (a quiet load cell) or every sample reads the same whole number of units (a noisy
one). The stable weight is the mean of those samples. With ``settle_seconds`` 0 every sample is a
stable weight of its own. Either way, with the default tolerance of a quarter of a unit, noise of
up to a fifth of a unit per sample gives exact counts: the remaining twentieth is the zero's.

A stable weight that is no whole number of units (a foreign or misplaced item, a hand resting on
the shelf, drift beyond the tolerance) leaves the count where it was, except for a change since
the previous stable weight that is itself a whole number of units (a pick while a foreign item
lies on the lane still counts). Such an ambiguity is not reported at once: the next unambiguous
weight resolves it. Only when the absolute weight stays ambiguous for ``ambiguous_seconds`` does
the lane report an ``ambiguous`` change (a finding for the rules); the weight that resolves it
then reports a ``recount``.

The zero follows slow drift: every sample that reads the lane's current count moves it by
1/64 of its remainder (an average over the last ~64 such samples, so noise of a fifth of a unit
leaves it off by about 1% of a unit, one standard deviation). An empty lane whose quiet stable
weight (two samples or more, all within the band) is no whole number of units but within
``retare_below`` grams of zero is re-tared on it at once (a ``tare`` change).

Counts are state, not facts: the agent snapshots them periodically, never per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from storeedge.events import StockCause

_AMBIGUOUS = -1  # the count class of a weight that is no whole number of units
_ZERO_GAIN = 1 / 64  # how much of a sample's remainder the zero takes


@dataclass(slots=True)
class Change:
    """A count change, or a finding about a lane's weight (``ambiguous``, ``tare``)."""

    before: int
    after: int
    cause: StockCause
    grams: float


@dataclass(frozen=True, slots=True)
class Settling:
    """How samples become counts: the inventory section of the store config, in one value."""

    settle_seconds: float = 1.0
    band: float = 3.0
    tolerance: float = 0.25
    retare_below: float = 0.0
    ambiguous_seconds: float = math.inf


@dataclass(slots=True)
class LaneScale:
    """The weighing state of one lane. ``update`` is called per sample; it does no I/O."""

    lane: str
    sku: str
    unit_grams: float
    capacity: int
    units: int | None = None  # None until the first stable weight
    tare_grams: float = 0.0  # the weight that reads as zero units
    reference_grams: float | None = None  # the last stable weight
    last_grams: float = 0.0
    last_ts: float = 0.0
    # the band window: samples within ``band`` of each other
    window_start: float = 0.0
    window_min: float = 0.0
    window_max: float = 0.0
    window_sum: float = 0.0
    window_n: int = 0
    committed: bool = False  # the band window already produced its stable weight
    # the count run: successive samples of one count class
    run_units: int = _AMBIGUOUS
    run_start: float = 0.0
    run_sum: float = 0.0
    run_n: int = 0
    run_committed: bool = False
    ambiguous_since: float | None = None  # since when the stable weight is no whole count
    ambiguous_reported: bool = False
    # a new unit weight from the catalog, waiting for the lane to be empty (see ``set_unit``)
    pending_unit_grams: float | None = None

    @property
    def stable(self) -> bool:
        return self.committed or self.run_committed

    @property
    def ambiguous(self) -> bool:
        """Whether the lane's stable weight is no whole number of units (reported or not)."""
        return self.ambiguous_since is not None

    def set_unit(self, grams: float) -> bool:
        """Take a unit weight from the catalog: at once while the lane holds nothing (or has
        no count yet), else once it is next empty (``emptied``), since the units on it still
        weigh what they weighed; re-counting them at the new weight would book phantom sales
        or restocks. True when the change waits."""
        if grams == self.unit_grams or not self.units:
            self.unit_grams = grams
            self.pending_unit_grams = None
            return False
        self.pending_unit_grams = grams
        return True

    def emptied(self) -> float | None:
        """The lane's count reached 0: a unit weight waiting for that applies now (returned)."""
        grams = self.pending_unit_grams
        if grams is not None and self.units == 0:
            self.unit_grams = grams
            self.pending_unit_grams = None
            return grams
        return None

    def count_of(self, grams: float, tolerance: float) -> int:
        """The whole number of units ``grams`` reads as, or -1 when it is none."""
        ratio = (grams - self.tare_grams) / self.unit_grams
        whole = round(ratio)
        return whole if whole >= 0 and abs(ratio - whole) <= tolerance else _AMBIGUOUS

    def update(self, grams: float, ts: float, s: Settling) -> Change | None:
        """One sample; a change when it makes one. Called for every reading: kept lean."""
        self.last_grams = grams
        self.last_ts = ts
        unit = self.unit_grams
        ratio = (grams - self.tare_grams) / unit
        units = round(ratio)
        if units < 0 or abs(ratio - units) > s.tolerance:
            units = _AMBIGUOUS
        settle = s.settle_seconds
        if not settle:  # every sample is a stable weight of its own
            self.committed = self.run_committed = True
            change = self._commit(grams, 1, ts, s, units)
        else:
            change = self._settle(grams, ts, s, units, settle)
        if units == self.units and units != _AMBIGUOUS:
            self.tare_grams += (ratio - units) * unit * _ZERO_GAIN
        if change is not None:
            return change
        since = self.ambiguous_since
        if (since is not None and not self.ambiguous_reported and self.units is not None
                and ts - since >= s.ambiguous_seconds):
            self.ambiguous_reported = True
            return Change(self.units, self.units, StockCause.AMBIGUOUS, grams)
        return None

    def _settle(self, grams: float, ts: float, s: Settling, units: int,
                settle: float) -> Change | None:
        lo = grams if grams < self.window_min else self.window_min
        hi = grams if grams > self.window_max else self.window_max
        if self.window_n and lo >= hi - s.band:
            self.window_min = lo
            self.window_max = hi
            self.window_sum += grams
            self.window_n += 1
        else:
            self.window_start = ts
            self.window_min = self.window_max = self.window_sum = grams
            self.window_n = 1
            self.committed = False
        if units == self.run_units and self.run_n:
            self.run_sum += grams
            self.run_n += 1
        else:
            self.run_units = units
            self.run_start = ts
            self.run_sum = grams
            self.run_n = 1
            self.run_committed = False
        if not self.committed and ts - self.window_start >= settle:
            self.committed = self.run_committed = True
            n = self.window_n
            return self._commit(self.window_sum / n, n, ts, s, None)
        if not self.run_committed and ts - self.run_start >= settle:
            self.run_committed = True
            if units != _AMBIGUOUS:
                return self._commit(self.run_sum / self.run_n, 1, ts, s, units)
            if self.ambiguous_since is None:
                self.ambiguous_since = self.run_start
        return None

    def _commit(self, grams: float, n: int, ts: float, s: Settling,
                units: int | None) -> Change | None:
        """A stable weight, the mean of ``n`` samples (n > 1 only for a quiet band window), and
        its count class when known."""
        before = self.units
        reference = self.reference_grams
        self.reference_grams = grams
        net = grams - self.tare_grams
        if units is None:
            units = self.count_of(grams, s.tolerance)
        if units != _AMBIGUOUS:
            return self._resolved(units, None, grams)
        if n > 1 and before == 0 and abs(net) <= s.retare_below:
            # An empty lane settling near zero is load-cell drift: take it as the new zero.
            self.tare_grams = grams
            return self._resolved(0, StockCause.TARE, grams)
        if self.ambiguous_since is None:
            self.ambiguous_since = ts
        if before is None:
            # No count yet: the nearest whole number until a weight says better.
            self.units = max(0, round(net / self.unit_grams))
            return Change(0, self.units, StockCause.INITIAL, grams)
        if reference is None or abs(grams - reference) <= s.band:
            return None
        ratio = (grams - reference) / self.unit_grams
        whole = round(ratio)
        if whole == 0 or abs(ratio - whole) > s.tolerance:
            return None
        self.units = max(0, before + whole)
        return Change(before, self.units,
                      StockCause.RESTOCK if whole > 0 else StockCause.PICK, grams)

    def _resolved(self, units: int, cause: StockCause | None, grams: float) -> Change | None:
        """The count is ``units`` for certain: any ambiguity ends (reported as a recount)."""
        before = self.units
        self.units = units
        self.ambiguous_since = None
        if self.ambiguous_reported:
            self.ambiguous_reported = False
            cause = cause or StockCause.RECOUNT
        if before is None:
            return Change(0, units, StockCause.INITIAL, grams)
        if cause is None:
            if units == before:
                return None
            cause = StockCause.RESTOCK if units > before else StockCause.PICK
        return Change(before, units, cause, grams)

    def snapshot(self) -> dict[str, object]:
        return {"units": self.units, "tare_grams": self.tare_grams,
                "reference_grams": self.reference_grams,
                "last_grams": self.last_grams, "last_ts": self.last_ts,
                "ambiguous_since": self.ambiguous_since,
                "ambiguous_reported": self.ambiguous_reported,
                "unit_grams": self.unit_grams}

    def restore(self, snap: dict[str, object]) -> None:
        units = snap.get("units")
        ref = snap.get("reference_grams")
        tare = snap.get("tare_grams")
        self.units = int(units) if isinstance(units, int) else None
        self.reference_grams = float(ref) if isinstance(ref, (int, float)) else None
        self.tare_grams = float(tare) if isinstance(tare, (int, float)) else 0.0
        last = snap.get("last_grams")
        self.last_grams = float(last) if isinstance(last, (int, float)) else 0.0
        since = snap.get("ambiguous_since")
        self.ambiguous_since = float(since) if isinstance(since, (int, float)) else None
        self.ambiguous_reported = snap.get("ambiguous_reported") is True
        # The units on the shelf were counted at the snapshot's unit weight; the catalog's
        # (set before the restore) applies as a change would, once the lane is empty.
        catalog_unit = self.unit_grams
        unit = snap.get("unit_grams")
        if isinstance(unit, (int, float)) and unit > 0:
            self.unit_grams = float(unit)
        self.set_unit(catalog_unit)
