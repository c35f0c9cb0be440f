"""Problems staff report from the handheld: a broken device, a wrong price or label, a damaged
product, the system wrong. Each is an alert of rule ``problem`` routed to the manager, so it is
tracked like every task (claim, resolve, history, the manager's page, HQ through the bridged
alert stream). Its category sets the response-time target (``problems.targets_minutes``;
halved for high priority): left unclaimed that long, the alert lifecycle escalates it. An
optional photo is kept in the journal beside it.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Literal

from edge_agent.config import ProblemCategory
from rules.actions import OpenAlert
from storeedge.errors import PayloadError
from storeedge.events import Severity

RULE = "problem"

Category = ProblemCategory
Priority = Literal["low", "normal", "high"]
SEVERITY: dict[str, Severity] = {"low": Severity.INFO, "normal": Severity.WARNING,
                                 "high": Severity.CRITICAL}
MAX_PHOTO_BYTES = 2_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS problem_photo (
    report TEXT PRIMARY KEY,   -- the problem alert's subject
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    at REAL NOT NULL
);
"""

_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def photo_type(data: bytes) -> str:
    """The photo's media type: JPEG, PNG or WebP, no larger than ``MAX_PHOTO_BYTES``; a
    PayloadError naming what is wrong otherwise."""
    if len(data) > MAX_PHOTO_BYTES:
        raise PayloadError(f"photo: {len(data)} bytes, at most {MAX_PHOTO_BYTES}",
                           source="problems")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise PayloadError("photo: not a JPEG, PNG or WebP image", source="problems")


def report(report_id: str, category: Category, priority: Priority, text: str, by: str,
           target_minutes: float, zone: str | None, location: str | None,
           photo: bool) -> OpenAlert:
    """The alert a report is: for the manager, escalated when unclaimed past its target."""
    target_s = target_minutes * 60 / (2 if priority == "high" else 1)
    return OpenAlert(
        rule=RULE, subject=report_id, severity=SEVERITY[priority], role="manager", zone=zone,
        location=location, message=f"{category} reported by {by}: {text}",
        detail={"category": category, "priority": priority, "text": text, "reported_by": by,
                "photo": photo, "claim_within_s": target_s})


def save_photo(conn: sqlite3.Connection, report_id: str, data: bytes) -> None:
    with conn:
        conn.execute("INSERT INTO problem_photo (report, content_type, data, at)"
                     " VALUES (?, ?, ?, ?)", (report_id, photo_type(data), data, time.time()))


def photo(conn: sqlite3.Connection, report_id: str) -> tuple[str, bytes] | None:
    row = conn.execute("SELECT content_type, data FROM problem_photo WHERE report = ?",
                       (report_id,)).fetchone()
    return None if row is None else (row[0], bytes(row[1]))
