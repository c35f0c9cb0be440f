"""Alerts about the agent itself, for the store's manager, through the same lifecycle as the
rules' (handheld, MQTT, HQ): a journal set aside at start because it was corrupt, and ERP
commands quarantined to the outbox's dead letter. Pure: the runtime says what it sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rules.actions import Action, ClearAlert, OpenAlert, UpdateAlert
from storeedge.events import Severity

JOURNAL_QUARANTINED = "journal_quarantined"
ERP_DEAD_LETTER = "erp_dead_letter"


def journal_quarantined(moved_to: Path) -> OpenAlert:
    """Raised once, on the start that set the corrupt journal aside."""
    return OpenAlert(
        rule=JOURNAL_QUARANTINED, subject=moved_to.name, severity=Severity.CRITICAL,
        role="manager",
        message=(f"the journal failed its integrity check and was moved to {moved_to}; the "
                 "agent started a fresh one. Sales it had not yet delivered to the ERP can be "
                 "replayed from it (docs/journal.md)"),
        detail={"path": str(moved_to)})


def dead_letter(dead: int, told: int | None, oldest: dict[str, Any] | None) -> Action:
    """The action for ``dead`` ERP commands in the dead letter when the open alert (if any)
    told of ``told`` (another number): open, re-notify with the new count, or clear once the
    manager retried or dropped them all."""
    if dead == 0:
        return ClearAlert(rule=ERP_DEAD_LETTER, subject="outbox",
                          reason="the dead letter is empty again")
    reason = f"; oldest {oldest['key']}: {oldest['reason']}" if oldest else ""
    message = (f"{dead} ERP command(s) quarantined to the dead letter: the ERP does not have "
               f"them until retried (storeedge outbox, or the manager page){reason}")
    detail = {"dead": dead}
    if told is None:
        return OpenAlert(rule=ERP_DEAD_LETTER, subject="outbox", severity=Severity.CRITICAL,
                         role="manager", message=message, detail=detail)
    return UpdateAlert(rule=ERP_DEAD_LETTER, subject="outbox", severity=Severity.CRITICAL,
                       message=message, detail=detail)
