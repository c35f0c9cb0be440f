"""Puts what the pipeline produced on disk before anyone hears of it.

Facts and alert transitions wait in the committer until one journal transaction holds them all;
a write that fails (disk full, I/O error) keeps them waiting, in order, for the next attempt, and
``writable`` goes false until one succeeds. Sales are booked with their ERP command in one
transaction each; a POS sale is answered only after its commit, so a journal that cannot write
refuses it (``JournalUnavailable``) instead of acknowledging what it could lose.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson

from cloud_bridge import outbox as outbox_mod
from edge_agent.journal import Enlist, Journal
from edge_agent.pipeline import Turn
from storeedge.errors import ConflictError, JournalUnavailable
from storeedge.events import Alert, Event, PosTransaction
from storeedge.ids import idempotency_key

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Committed:
    """What one commit put on disk, for the publisher: facts, transitions with their JSON, and
    the sales booked for the first time."""

    facts: list[Event] = field(default_factory=list)
    alerts: list[tuple[Alert, bytes]] = field(default_factory=list)
    sales: list[PosTransaction] = field(default_factory=list)


_NOTHING = Committed()  # most turns (an MQTT read of readings) make nothing to commit


class Committer:
    def __init__(self, journal: Journal, store_id: str, *, erp: bool) -> None:
        self.journal = journal
        self.store_id = store_id
        self.erp = erp  # whether sales owe the ERP a command
        self._facts: list[Event] = []
        self._alerts: list[tuple[Alert, bytes]] = []
        self._sales: list[PosTransaction] = []
        self.writable = True
        self.last_error: str | None = None
        self.failures = 0

    @property
    def pending(self) -> int:
        """Facts, transitions and sales waiting for the journal."""
        return len(self._facts) + len(self._alerts) + len(self._sales)

    def commit(self, turn: Turn) -> Committed | None:
        """Journal ``turn`` after whatever still waits from earlier turns. None when the
        journal cannot write: everything stays pending for the next call."""
        if turn.facts:
            self._facts += turn.facts
        if turn.transitions:
            self._alerts += [(a, alert_json(a)) for a in turn.transitions]
        if turn.sales:
            self._sales += turn.sales
        if not (self._facts or self._alerts or self._sales):
            return _NOTHING
        done = Committed()
        try:
            if self._facts or self._alerts:
                self.journal.record(self._facts, [(a, body.decode()) for a, body in self._alerts])
                done.facts, self._facts = self._facts, []
                done.alerts, self._alerts = self._alerts, []
            while self._sales:
                sale = self._sales[0]
                if self._book(sale):
                    done.sales.append(sale)
                del self._sales[0]
        except JournalUnavailable as exc:
            self._failed(exc)
            return None if not (done.facts or done.alerts or done.sales) else done
        self._recovered()
        return done

    def save_states(self, values: dict[str, Any], ts: float) -> bool:
        """Snapshot state (not facts: a failed snapshot loses nothing acknowledged); whether it
        was written. It doubles as the probe that notices a journal writing again."""
        try:
            self.journal.save_states(values, ts)
        except JournalUnavailable as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def book_sale(self, txn: PosTransaction) -> bool:
        """Journal a POS sale and its ERP command in one transaction. True when new, False when
        the same transaction was booked before. ConflictError naming the difference when its
        ``txn_id`` was booked with other content; JournalUnavailable when nothing could be
        written."""
        try:
            new = self._book(txn)
        except JournalUnavailable as exc:
            self._failed(exc)
            raise
        self._recovered()
        if not new:
            difference = sale_difference(self.journal.sale_body(txn.txn_id), txn)
            if difference:
                raise ConflictError(f"txn_id {txn.txn_id!r} was accepted before with other "
                                    f"content: {difference}", source="pos")
        return new

    def _book(self, txn: PosTransaction) -> bool:
        enlist: list[Enlist] = []
        if self.erp:
            key = idempotency_key(self.store_id, "sale", txn.txn_id)
            merged: Counter[str] = Counter()
            for line in txn.lines:
                merged[line.sku] += line.qty
            payload = {"key": key, "reference": txn.txn_id,
                       "lines": [[sku, qty] for sku, qty in sorted(merged.items())]}

            def command(conn: Any) -> None:
                outbox_mod.enqueue(conn, key, "sale", payload, subject=txn.txn_id)

            enlist.append(command)
        return self.journal.accept_sale(txn, *enlist)

    def _failed(self, exc: JournalUnavailable) -> None:
        self.failures += 1
        if self.writable:
            log.error("journal cannot write (store %s): %s; %d facts, transitions and sales "
                      "wait in memory, acknowledgements are withheld", self.store_id, exc,
                      self.pending)
        self.writable = False
        self.last_error = str(exc)

    def _recovered(self) -> None:
        if not self.writable:
            log.warning("journal writes again (store %s)", self.store_id)
        self.writable = True


def sale_difference(stored: dict[str, Any] | None, txn: PosTransaction) -> str | None:
    """How ``txn`` differs from the journaled transaction of the same id (its time and its
    lines), or None when they are the same sale."""
    if stored is None:
        return None
    if stored.get("device_ts") != txn.device_ts:
        return f"ts {_ms(stored.get('device_ts'))} != {_ms(txn.device_ts)}"
    before = stored.get("lines") or []
    if len(before) != len(txn.lines):
        return f"{len(before)} lines != {len(txn.lines)}"
    for i, (old, line) in enumerate(zip(before, txn.lines, strict=True)):
        for name in ("sku", "qty", "unit_price"):
            if old.get(name) != getattr(line, name):
                return f"lines.{i}.{name} {old.get(name)!r} != {getattr(line, name)!r}"
    return None


def _ms(ts: Any) -> Any:
    return round(ts * 1000) if isinstance(ts, int | float) else ts


def alert_json(alert: Alert) -> bytes:
    """An alert's JSON, once for the journal, MQTT and HQ: byte for byte ``alert.to_dict()``'s.
    orjson over a flat tuple of the fields: a few us against ~15 us for ``to_dict`` and the
    standard library's encoder, on the agent's hottest path under an alert storm."""
    return orjson.dumps(dict(zip(_ALERT_KEYS, (*_alert_values(alert), "Alert"), strict=True)),
                        default=str, option=orjson.OPT_NON_STR_KEYS)


_ALERT_KEYS = (*Alert.__dataclass_fields__, "event")
_alert_values = attrgetter(*Alert.__dataclass_fields__)
