"""What the web app needs from the running agent. The agent implements it; the web layer
(``edge_agent.web``) only translates HTTP to these calls and back.

The alert lifecycle methods delegate to the agent's ``rules.trackers.alerts.AlertManager`` and
journal, publish and stream the transitions it returns before returning themselves; they raise
its ``AlertNotFound``, ``NotPermitted`` and ``IllegalTransition``.
"""

from __future__ import annotations

from typing import Any, Protocol

from cloud_bridge.outbox import Outbox
from edge_agent.problems import Category, Priority
from rules.trackers.alerts import Actor, Outcome
from storeedge.events import Alert, PosLine, PosTransaction


class AgentApi(Protocol):
    store_id: str
    outbox: Outbox  # the ERP outbox: its dead letter is operated from the manager API

    def accept_pos(self, txn: PosTransaction) -> bool:
        """Journal a completed POS transaction and queue it for the ERP, durably, before
        returning. True when new, False when ``txn_id`` was already accepted (idempotent).
        Raises ``PayloadError`` naming the line when a SKU is unknown or a quantity is bad,
        ``ConflictError`` naming the difference when ``txn_id`` was accepted with other content,
        ``JournalUnavailable`` (nothing accepted) while the journal cannot write, and
        ``OutboxFull`` (an ``Unavailable``) when the ERP backlog is at its bound."""
        ...

    def alerts(self, state: str | None = None) -> list[Alert]:
        """The latest transition of each active alert, newest first; ``state`` filters."""
        ...

    def lanes(self) -> list[dict[str, Any]]:
        """Per lane: id, sku, units, grams, stable, capacity, low_stock."""
        ...

    def labels(self) -> dict[str, Any]:
        """What the pages call things: ``store`` (the store's name), ``zones`` (zone id -> name)
        and ``products`` (SKU -> catalog name), each only where a name is known."""
        ...

    def devices(self) -> dict[str, dict[str, Any]]:
        """Per device: kind, health state and reason, last seen, good/bad counts, history."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"status": "ok" | "degraded", ...}`` with per-component detail (broker, journal,
        background tasks, erp backlog, time-series backlog, devices); ``degraded`` at once
        while the journal cannot write or a task is down or crash-looping. Never raises."""
        ...

    def alert(self, alert_id: str) -> Alert:
        """The latest transition of one alert, active or recently ended."""
        ...

    def alert_history(self, alert_id: str) -> list[Alert]:
        """Every kept transition of one alert, oldest first."""
        ...

    def claim_alert(self, alert_id: str, actor: Actor) -> Alert:
        """Claim an alert for ``actor``; returns its latest transition, journaled."""
        ...

    def resolve_alert(self, alert_id: str, actor: Actor, outcome: Outcome,
                      note: str | None = None) -> Alert:
        """Resolve an alert with an outcome; returns its latest transition, journaled."""
        ...

    def alert_summary(self) -> dict[str, Any]:
        """The manager's view: ``AlertManager.summary`` at the agent's clock."""
        ...

    def confirm_scan(self, code: str, actor: Actor) -> dict[str, Any]:
        """Match a scanned code to the actor's task for that product and confirm it
        (``AlertManager.scan(...).to_dict()``), journaling the transition it made."""
        ...

    async def propose_counts(self) -> list[dict[str, Any]]:
        """Compare the store's counts per SKU with the ERP's (``cloud_bridge.counts``); the
        open proposals. ``UsageError`` without an ERP, ``ErpUnavailable`` when it is down."""
        ...

    def count_proposals(self, state: str | None = None) -> list[dict[str, Any]]:
        """Count proposals, newest first (none without an ERP)."""
        ...

    def decide_count(self, proposal_id: int, approve: bool, by: str) -> dict[str, Any] | None:
        """Approve or dismiss an open proposal; None when unknown, ``ConflictError`` when
        decided already."""
        ...

    async def propose_order(self) -> dict[str, Any] | None:
        """The store order the policy asks for now (``cloud_bridge.orders``), or None.
        ``UsageError`` without an ERP, ``ErpUnavailable`` when it is down."""
        ...

    def orders(self, state: str | None = None) -> list[dict[str, Any]]:
        """Store orders, newest first (none without an ERP)."""
        ...

    def order(self, order_id: int) -> dict[str, Any] | None:
        """One order with what has arrived of it; None when unknown."""
        ...

    def decide_order(self, order_id: int, approve: bool, by: str,
                     lines: list[tuple[str, int]] | None = None) -> dict[str, Any] | None:
        """Approve (with ``lines``, if given) or dismiss a proposed order; None when unknown,
        ``ConflictError`` once decided."""
        ...

    def receive(self, order_id: int, code: str, by: str) -> dict[str, Any] | None:
        """A unit scanned (barcode or SKU) off the delivery of an approved order; the receipt
        so far. ``PayloadError`` for a code no product has."""
        ...

    def received(self, order_id: int, by: str) -> dict[str, Any] | None:
        """The delivery is all scanned: booked in the ERP with what arrived."""
        ...

    def new_pickup(self, order_id: str, lines: list[PosLine], customer: str | None) -> bool:
        """An online order to pick (``edge_agent.pickups``): True when new, False on a replay;
        ``ConflictError`` when the id came with other lines, ``PayloadError`` for an unknown
        SKU."""
        ...

    def pickups(self, state: str | None = None) -> list[dict[str, Any]]:
        """Online orders, newest first."""
        ...

    def pickup_picked(self, order_id: str, actor: Actor) -> dict[str, Any] | None:
        """Picked: the task closes and the rules hear the units as sold. None when unknown."""
        ...

    def pickup_handed_over(self, order_id: str, actor: Actor) -> dict[str, Any] | None:
        """Handed to the customer: booked as a sale, once."""
        ...

    def pickup_cancelled(self, order_id: str, actor: Actor) -> dict[str, Any] | None:
        """Cancelled before it was handed over: the task clears."""
        ...

    def report_problem(self, category: Category, priority: Priority, text: str, actor: Actor,
                       location: str | None = None, photo: bytes | None = None) -> Alert:
        """A problem staff report (``edge_agent.problems``): the alert it became.
        ``PayloadError`` for a photo that is not a JPEG, PNG or WebP of at most 2 MB."""
        ...

    def problem_photo(self, report_id: str) -> tuple[str, bytes] | None:
        """A report's photo (media type, bytes), if it has one."""
        ...

    def trends(self, hours: float) -> dict[str, Any]:
        """The manager's trends over the last ``hours`` (``edge_agent.trends.report``), with
        the devices offline and the problems open now."""
        ...

    def staff(self) -> list[dict[str, Any]]:
        """The store's people kept in the journal (``edge_agent.staff``), without secrets."""
        ...

    def set_staff(self, name: str, role: str, zones: list[str],
                  pin: str | None) -> dict[str, Any]:
        """Add or change a person (returned without secrets); ``PayloadError`` for a PIN too
        easy to guess."""
        ...

    def remove_staff(self, name: str) -> bool:
        """Their PIN and QR card stop working; False when nobody active has that name."""
        ...

    def staff_qr(self, name: str) -> str | None:
        """A new code for the person's QR card (the old one stops working)."""
        ...

    def sign_in_pin(self, name: str, pin: str) -> Actor | None:
        """Who a name and PIN sign in, if anyone."""
        ...

    def sign_in_qr(self, code: str) -> Actor | None:
        """Who a QR card's code signs in, if anyone."""
        ...

    def staff_person(self, name: str) -> tuple[Actor, str] | None:
        """An active person kept in the journal and their version (``edge_agent.staff``)."""
        ...

    def session_key(self) -> bytes:
        """The store's key for the sessions of people kept in the journal."""
        ...
