"""Self-checkout reconciliation: every session's scanned items against its bagging-area scale.

A session's scanned items say what the bagging area should weigh (the sum of their expected
weights); the scale says what it does weigh. When the bagging area holds more than the scans
explain, by more than ``max(min_unexplained_grams, tolerance * expected)``, something was bagged
without being scanned: a ``SuspectItem`` (the loss-prevention approach of Intel's checkout
reference designs, which reconcile at about 2%).

Only the scale raises suspects, one per unexplained increase of its stable weight. Scans and
voids change what the bag should weigh and what is still owed: an item scanned and not yet
bagged (scan two, bag two) or bagged and voided (still to be taken out). A stable weight change
first settles what is owed; only the rest is unexplained. The unexplained grams of a session
only grow, so a suspect is raised when they grew by more than the threshold since the last one
and the bag really weighs more than its scans explain: scale jitter, re-bagging or taking an
item out and putting it back never repeat a suspect. A scan that explains the weight clears the
suspicion (``SessionState.suspicious``); a weight climbing a threshold above what was reported
is a new suspect.

A bagging weight counts once it stayed within ``settle_band_grams`` for ``settle_seconds``;
kiosks send a weight only when it changes, so a weight that stopped moving is confirmed by
``tick(now)``, which the agent calls about once a second.

A paid session becomes a ``CheckoutSale``: a ``PosTransaction`` the agent books like any POS
sale, plus the kiosk, the session, the amount and the lines whose barcode maps to no SKU
(``unmapped``; reported, never booked under an invented SKU).

Pure: no I/O, no clock but the events' ``received_ts`` and ``tick``'s ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storeedge.errors import UsageError
from storeedge.events import (
    CheckoutEvent,
    CheckoutKind,
    Event,
    PosLine,
    PosTransaction,
    SuspectItem,
)

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
Key = tuple[str, str]  # (kiosk, session)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmappedLine:
    """Units sold under a barcode the catalog does not know."""

    barcode: str
    qty: int
    unit_price: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutSale(PosTransaction):
    """A paid kiosk session: ``lines`` are booked like a POS sale; ``unmapped`` lines are not."""

    kiosk: str
    session: str
    amount: float | None = None
    unmapped: tuple[UnmappedLine, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a rule may want to know about an open session."""

    kiosk: str
    session: str
    items: int  # units scanned and not voided
    expected_grams: float
    bagged_grams: float | None  # the last stable bagging weight
    voids: int
    assists: int
    suspects: int
    suspicious: bool  # the bagging area weighs more than the scans explain right now


@dataclass(slots=True)
class _Line:
    sku: str | None
    barcode: str | None
    qty: int
    expected_grams: float | None
    unit_price: float


@dataclass(slots=True)
class _Session:
    kiosk: str
    session: str
    store_id: str
    last_ts: float
    lines: list[_Line] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    voids: int = 0
    assists: int = 0
    suspects: int = 0
    bagged: float = 0.0  # the last stable weight; a session starts with a tared, empty area
    # Grams still to go into the bag (scanned, not yet bagged; taken out, expected back) and
    # to come out of it (voided after it was bagged).
    owed_in: float = 0.0
    owed_out: float = 0.0
    reported: float = 0.0  # the unexplained grams the last suspect reported
    # The weight being watched until it has settled.
    anchor: float | None = None
    anchor_since: float = 0.0
    latest: float = 0.0
    settled: bool = True

    def expected(self) -> float:
        return sum(line.qty * line.expected_grams for line in self.lines
                   if line.expected_grams is not None)

    def unexplained(self) -> float:
        """Grams bagged beyond what scans explain or owe; only ever grows (bar rounding)."""
        return self.bagged - self.expected() + self.owed_in - self.owed_out


class CheckoutReconciler:
    """Reconciles the sessions of one or more kiosks; keyed by (kiosk, session)."""

    def __init__(self, tolerance: float, min_unexplained_grams: float,
                 sku_of_barcode: Callable[[str], str | None], *,
                 settle_seconds: float = 1.0, settle_band_grams: float = 5.0,
                 session_idle_seconds: float = 4 * 3600.0) -> None:
        if not 0 < tolerance < 0.5 or min_unexplained_grams <= 0 or settle_seconds < 0:
            raise UsageError("tolerance must be in (0, 0.5), min_unexplained_grams above 0, "
                             "settle_seconds not negative")
        self.tolerance = tolerance
        self.min_unexplained_grams = min_unexplained_grams
        self.sku_of_barcode = sku_of_barcode
        self.settle_seconds = settle_seconds
        self.settle_band_grams = settle_band_grams
        self.session_idle_seconds = session_idle_seconds
        self._sessions: dict[Key, _Session] = {}
        # Recently closed sessions: a duplicate or late message must not reopen one.
        self._closed: dict[Key, float] = {}

    # Public API

    def observe(self, event: CheckoutEvent) -> list[Event]:
        """Apply one kiosk event; returns the SuspectItems and the CheckoutSale it causes."""
        key = (event.kiosk, event.session)
        if key in self._closed:
            log.debug("kiosk %s: %s for closed session %s ignored", event.kiosk, event.kind,
                      event.session)
            return []
        kind = event.kind
        s = self._sessions.get(key)
        if s is None:
            if kind is CheckoutKind.PAID or kind is CheckoutKind.CANCELLED:
                log.warning("kiosk %s: %s for unknown session %s; its items were never seen",
                            event.kiosk, kind, event.session)
                self._closed[key] = event.received_ts
                return []
            if kind is not CheckoutKind.STARTED:
                log.info("kiosk %s: session %s seen first with %s, not started",
                         event.kiosk, event.session, kind)
            s = self._sessions[key] = _Session(event.kiosk, event.session, event.store_id,
                                               event.received_ts)
        if event.seq is not None:
            if event.seq in s.seqs:
                return []  # an MQTT redelivery
            s.seqs.add(event.seq)
        s.last_ts = event.received_ts
        if kind is CheckoutKind.BAGGING_WEIGHT:
            assert event.grams is not None  # the codec requires it
            return self._weigh(s, event.grams, event.received_ts, event)
        if kind is CheckoutKind.ITEM_SCANNED:
            self._scan(s, event)
        elif kind is CheckoutKind.VOIDED:
            self._void(s, event)
        elif kind is CheckoutKind.PAID:
            # Paying ends the session: its last bagging weight is final even if the scale had
            # no time to settle (a shopper who bags an unscanned item and pays at once).
            out = [] if s.settled else self._settle(s, event.received_ts, None)
            self._forget(s, event.received_ts)
            return [*out, self._sale(s, event)]
        elif kind is CheckoutKind.CANCELLED:
            self._forget(s, event.received_ts)
        elif kind is CheckoutKind.ASSISTANCE:
            s.assists += 1
        return []

    def tick(self, now: float) -> list[Event]:
        """Confirm bagging weights that stopped moving; drop sessions idle for too long."""
        out: list[Event] = []
        for s in list(self._sessions.values()):
            if now - s.last_ts >= self.session_idle_seconds:
                log.warning("kiosk %s: session %s idle for %.0f s with %d items; dropped",
                            s.kiosk, s.session, now - s.last_ts, _units(s))
                self._forget(s, now)
            elif not s.settled and now - s.anchor_since >= self.settle_seconds:
                out += self._settle(s, now, None)
        for key, ts in list(self._closed.items()):
            if now - ts >= self.session_idle_seconds:
                del self._closed[key]
        return out

    def state(self, kiosk: str, session: str) -> SessionState | None:
        """An open session's state, None when there is no such open session."""
        s = self._sessions.get((kiosk, session))
        if s is None:
            return None
        return SessionState(kiosk=s.kiosk, session=s.session, items=_units(s),
                            expected_grams=s.expected(), bagged_grams=s.bagged, voids=s.voids,
                            assists=s.assists, suspects=s.suspects,
                            suspicious=self._excess(s) > 0)

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data, for ``restore`` after an agent restart."""
        return {
            "version": SNAPSHOT_VERSION,
            "sessions": [
                {"kiosk": s.kiosk, "session": s.session, "store_id": s.store_id,
                 "last_ts": s.last_ts, "seqs": sorted(s.seqs), "voids": s.voids,
                 "assists": s.assists, "suspects": s.suspects, "bagged": s.bagged,
                 "owed_in": s.owed_in, "owed_out": s.owed_out,
                 "reported": s.reported, "anchor": s.anchor,
                 "anchor_since": s.anchor_since, "latest": s.latest, "settled": s.settled,
                 "lines": [[ln.sku, ln.barcode, ln.qty, ln.expected_grams, ln.unit_price]
                           for ln in s.lines]}
                for s in self._sessions.values()
            ],
            "closed": [[k, sid, ts] for (k, sid), ts in self._closed.items()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the state with a ``snapshot()``; UsageError when it is not one."""
        try:
            if data["version"] != SNAPSHOT_VERSION:
                raise UsageError(f"checkout snapshot version {data['version']!r} is not "
                                 f"{SNAPSHOT_VERSION}")
            sessions = {}
            for d in data["sessions"]:
                s = _Session(
                    kiosk=d["kiosk"], session=d["session"], store_id=d["store_id"],
                    last_ts=float(d["last_ts"]), seqs=set(d["seqs"]), voids=int(d["voids"]),
                    assists=int(d["assists"]), suspects=int(d["suspects"]),
                    bagged=float(d["bagged"]), owed_in=float(d["owed_in"]),
                    owed_out=float(d["owed_out"]),
                    reported=float(d["reported"]), anchor=d["anchor"],
                    anchor_since=float(d["anchor_since"]), latest=float(d["latest"]),
                    settled=bool(d["settled"]),
                    lines=[_Line(sku, barcode, int(qty), grams, float(price))
                           for sku, barcode, qty, grams, price in d["lines"]])
                sessions[(s.kiosk, s.session)] = s
            closed = {(k, sid): float(ts) for k, sid, ts in data["closed"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"checkout snapshot is malformed: {exc!r}") from exc
        self._sessions, self._closed = sessions, closed

    # Internals

    def _threshold(self, expected: float) -> float:
        return max(self.min_unexplained_grams, self.tolerance * expected)

    def _excess(self, s: _Session) -> float:
        """How far the bag weighs more than its scans explain, beyond the threshold."""
        expected = s.expected()
        return s.bagged - expected - self._threshold(expected)

    def _scan(self, s: _Session, event: CheckoutEvent) -> None:
        sku = event.sku
        if sku is None and event.barcode is not None:
            sku = self.sku_of_barcode(event.barcode)
            if sku is None:
                log.warning("kiosk %s: session %s scanned barcode %s, which maps to no SKU",
                            s.kiosk, s.session, event.barcode)
        s.lines.append(_Line(sku, event.barcode, event.qty, event.expected_grams,
                             event.unit_price or 0.0))
        s.owed_in += event.qty * (event.expected_grams or 0.0)

    def _void(self, s: _Session, event: CheckoutEvent) -> None:
        s.voids += 1
        left = event.qty
        # The newest matching scans go first: a shopper voids what they just scanned.
        for line in reversed(s.lines):
            if left == 0:
                break
            same = (line.barcode == event.barcode if event.barcode is not None
                    else line.sku == event.sku)
            if same:
                taken = min(left, line.qty)
                line.qty -= taken
                left -= taken
                grams = taken * (line.expected_grams or 0.0)
                not_bagged = min(s.owed_in, grams)
                s.owed_in -= not_bagged
                s.owed_out += grams - not_bagged
        s.lines = [line for line in s.lines if line.qty > 0]
        if left:
            log.warning("kiosk %s: session %s voided %d units of %s that were not scanned",
                        s.kiosk, s.session, left, event.barcode or event.sku)

    def _weigh(self, s: _Session, grams: float, now: float,
               event: CheckoutEvent) -> list[Event]:
        if s.anchor is None or abs(grams - s.anchor) > self.settle_band_grams:
            s.anchor, s.anchor_since, s.settled = grams, now, False
        s.latest = grams
        if s.settled or now - s.anchor_since < self.settle_seconds:
            return []
        return self._settle(s, now, event)

    def _settle(self, s: _Session, now: float, event: CheckoutEvent | None) -> list[Event]:
        s.settled = True
        delta = s.latest - s.bagged
        if abs(delta) <= self.settle_band_grams:
            return []  # jitter: keeping the old weight stops it from creeping
        s.bagged = s.latest
        if delta < 0:
            out = min(s.owed_out, -delta)
            s.owed_out -= out
            s.owed_in += -delta - out  # taken out unasked: expected back
        else:
            s.owed_in -= min(s.owed_in, delta)
            # Bagging on instead of taking out what was voided: it stays, unexplained.
            s.owed_out = 0.0
        expected = s.expected()
        threshold = self._threshold(expected)
        unexplained = s.unexplained()
        if not (s.bagged - expected > threshold and unexplained - s.reported > threshold):
            return []
        new = unexplained - s.reported
        s.reported = unexplained
        s.suspects += 1
        log.info("kiosk %s: session %s: %.0f g bagged without a scan", s.kiosk, s.session, new)
        return [SuspectItem(
            store_id=s.store_id, source=s.kiosk, received_ts=now,
            device_ts=event.device_ts if event is not None else None,
            seq=event.seq if event is not None else None,
            kiosk=s.kiosk, session=s.session, unexplained_grams=round(new, 1),
            message=(f"kiosk {s.kiosk}: bagging area weighs {s.bagged:.0f} g, the "
                     f"{_units(s)} scanned items explain {expected:.0f} g: about "
                     f"{new:.0f} g bagged without a scan"),
        )]

    def _forget(self, s: _Session, now: float) -> None:
        key = (s.kiosk, s.session)
        del self._sessions[key]
        self._closed[key] = now

    def _sale(self, s: _Session, event: CheckoutEvent) -> CheckoutSale:
        merged: dict[tuple[str, float], int] = {}
        unmapped: dict[tuple[str, float], int] = {}
        for line in s.lines:
            if line.sku is not None:
                k = (line.sku, line.unit_price)
                merged[k] = merged.get(k, 0) + line.qty
            else:
                assert line.barcode is not None  # the codec requires barcode or sku
                k = (line.barcode, line.unit_price)
                unmapped[k] = unmapped.get(k, 0) + line.qty
        if unmapped:
            log.warning("kiosk %s: session %s paid with %d unmapped barcodes: %s", s.kiosk,
                        s.session, len(unmapped), sorted({b for b, _ in unmapped}))
        txn_id = event.txn_id or f"{s.kiosk}:{s.session}"
        return CheckoutSale(
            store_id=s.store_id, source=s.kiosk, received_ts=event.received_ts,
            device_ts=event.device_ts, seq=event.seq, txn_id=txn_id,
            lines=tuple(PosLine(sku=sku, qty=qty, unit_price=price)
                        for (sku, price), qty in merged.items()),
            kiosk=s.kiosk, session=s.session, amount=event.amount,
            unmapped=tuple(UnmappedLine(barcode=b, qty=qty, unit_price=price)
                           for (b, price), qty in unmapped.items()),
        )


def _units(s: _Session) -> int:
    return sum(line.qty for line in s.lines)
