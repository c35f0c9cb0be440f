"""Problem reports from the handheld (``edge_agent.problems``): each becomes an alert for the
manager; its photo is served back to whoever may see the alert."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from edge_agent import problems
from edge_agent.web.deps import ActingCaller, ContextDep, StaffCaller
from storeedge.errors import PayloadError
from storeedge.httpsec import Problem

problems_router = APIRouter(prefix="/api/problems", tags=["problems"], responses={
    404: {"model": Problem, "description": "No such report, or no photo with it"},
})


class ProblemReport(BaseModel):
    category: problems.Category
    priority: problems.Priority = "normal"
    text: Annotated[str, Field(min_length=1, max_length=500)]
    location: Annotated[str, Field(max_length=64)] | None = None  # a lane, a device
    photo: Annotated[str, Field(max_length=2_700_000)] | None = None  # base64: JPEG/PNG/WebP


@problems_router.post("", status_code=status.HTTP_201_CREATED)
async def report_problem(ctx: ContextDep, caller: ActingCaller,
                         body: ProblemReport) -> dict[str, Any]:
    """Report a problem: it becomes an alert for the manager (rule ``problem``), escalated when
    nobody claims it within its category's target."""
    photo = None
    if body.photo is not None:
        try:
            photo = base64.b64decode(body.photo, validate=True)
        except binascii.Error as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"photo: not base64 ({exc})") from exc
    try:
        alert = ctx.api.report_problem(body.category, body.priority, body.text, caller,
                                       body.location, photo)
    except PayloadError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return alert.to_dict()


@problems_router.get("/{report_id}/photo", response_class=Response,
                     responses={200: {"content": {"image/jpeg": {}, "image/png": {},
                                                  "image/webp": {}}}})
async def problem_photo(ctx: ContextDep, _: StaffCaller, report_id: str) -> Response:
    """The photo sent with a report."""
    found = ctx.api.problem_photo(report_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no photo with report {report_id!r}")
    kind, data = found
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})
