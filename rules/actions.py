"""What a rule asks for. Rules are pure functions of (state, event, now) -> actions; the agent
applies actions: it journals, publishes and dispatches them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storeedge.events import Severity


@dataclass(frozen=True, slots=True)
class OpenAlert:
    rule: str
    subject: str
    severity: Severity
    message: str
    sku: str | None = None
    location: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClearAlert:
    rule: str
    subject: str
    reason: str


Action = OpenAlert | ClearAlert
