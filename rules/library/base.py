"""What every rule has: parameters common to all rules, and the small class a rule is.

A rule is a pure function of (its state, the event, now) -> actions. Its state is plain JSON data
(dicts with string keys, lists, numbers) in ``self.state`` so the engine can snapshot and restore
it; everything else it needs it reads from the engine through ``RuleContext``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rules.actions import Action, OpenAlert
from rules.model import StoreModel
from storeedge.events import Event, Severity


class RuleParams(BaseModel):
    """Parameters every rule takes. Subclasses add their own, each with a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity = Severity.WARNING
    role: Literal["staff", "manager"] = "staff"
    # After an alert clears, the same (rule, subject) opens again only after this long; an open
    # asked for sooner waits and is dropped if the condition ends meanwhile.
    cooldown_seconds: Annotated[float, Field(ge=0)] = 0.0
    # Unclaimed this long after opening: escalated to a manager. None: never.
    escalate_after_seconds: Annotated[float, Field(gt=0)] | None = None


class RuleContext(Protocol):
    """What the engine offers a rule."""

    model: StoreModel
    counts: dict[str, int]  # lane -> last known unit count (from StockChanged)

    def params(self, rule: str, sku: str | None = None, zone: str | None = None) -> Any: ...

    def is_open(self, rule: str, subject: str) -> bool: ...


class Rule:
    """Base of the library's rules. ``events`` lists the event types ``handle`` wants; ``ticks``
    says whether ``tick`` has anything to do (timers, windows)."""

    name: ClassVar[str]
    Params: ClassVar[type[RuleParams]] = RuleParams
    events: ClassVar[tuple[type[Event], ...]] = ()
    ticks: ClassVar[bool] = False

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        self.state: dict[str, Any] = self.initial_state()

    def initial_state(self) -> dict[str, Any]:
        return {}

    def handle(self, event: Event, now: float) -> list[Action]:
        """Actions caused by ``event`` at ``now``."""
        return []

    def tick(self, now: float) -> list[Action]:
        """Actions caused by time passing (timers due, windows sliding)."""
        return []

    def alert(self, p: RuleParams, subject: str, message: str, *, sku: str | None = None,
              location: str | None = None, zone: str | None = None,
              severity: Severity | None = None, **detail: Any) -> OpenAlert:
        return OpenAlert(rule=self.name, subject=subject, severity=severity or p.severity,
                         message=message, sku=sku, location=location, detail=detail,
                         role=p.role, zone=zone)
