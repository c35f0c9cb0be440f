"""What a rule asks for. Rules are pure functions of (state, event, now) -> actions; the agent
applies actions: it journals, publishes and dispatches them.

The engine (rules/engine.py) guarantees one active alert per (rule, subject): an ``OpenAlert``
for an open subject is dropped, a ``ClearAlert`` or ``UpdateAlert`` for a subject that is not
open is dropped, and ``EscalateAlert`` comes only from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storeedge.events import Severity


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """Open an alert. ``role`` (staff or manager) and ``zone`` route it to handhelds."""

    rule: str
    subject: str
    severity: Severity
    message: str
    sku: str | None = None
    location: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    role: str = "staff"
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class ClearAlert:
    """The condition behind an open alert ended (auto-clear)."""

    rule: str
    subject: str
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateAlert:
    """An open alert's condition worsened (fewer units left, more shrink): re-notify with the new
    message, severity and detail. Never sent for an alert that is not open."""

    rule: str
    subject: str
    severity: Severity
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EscalateAlert:
    """Nobody claimed an open alert within its rule's ``escalate_after_seconds``: route it to
    ``role`` (a manager). Sent at most once per alert."""

    rule: str
    subject: str
    role: str
    reason: str


Action = OpenAlert | ClearAlert | UpdateAlert | EscalateAlert
