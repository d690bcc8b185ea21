"""/breach-reports: complaints, conduct concerns, breaches, grievances and detected
unauthorised access (§1.7, §1.8, §7).

The colleague concerned never sees a report about them (404). The handler and directors
see all of it; the reporter sees only its status (``view: "status"``).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from app.core.pagination import Page
from app.deps import CurrentUser, DirectorUser, IdempotencyKeyDep, LimitDep, NowDep, SessionDep, StaffUser, StateDep
from app.models.breach_reports import (
    BreachAssign,
    BreachFinding,
    BreachKind,
    BreachReport,
    BreachReportCreate,
    BreachReportPublic,
    BreachReportStatusView,
    BreachStatus,
)
from app.routers.responses import labelled, problem_responses
from app.workflows import idempotency
from app.workflows.breach_reports import investigation, reports

CLASSIFICATION = "sensitive"
router = APIRouter(prefix="/breach-reports", tags=["breach reports"], dependencies=[labelled(CLASSIFICATION)])
AnyView = BreachReportPublic | BreachReportStatusView


@router.post("", status_code=201, response_model=AnyView, responses=problem_responses(401, 403, 409, 422))
async def create_report(body: BreachReportCreate, actor: StaffUser, session: SessionDep, state: StateDep,
                        now: NowDep, response: Response, idempotency_key: IdempotencyKeyDep = None) -> AnyView:
    """Any staff account reports; it is routed to its handler at once. The answer is the caller's view."""

    async def create() -> AnyView:
        report = await reports.create_report(session, data=body, actor=actor, now=now)
        return (await reports.shape(session, actor, [report]))[0]

    outcome = await idempotency.create_once(
        session, key=idempotency_key, actor=actor, endpoint="breach-reports", body=body, model=BreachReport,
        now=now, settings=state.settings, create=create,
        replay=lambda rid: reports.get_report(session, report_id=rid, actor=actor))
    idempotency.mark(response, outcome)
    response.headers["Location"] = f"/breach-reports/{outcome.value.id}"
    return outcome.value


@router.get("", response_model=Page[AnyView], responses=problem_responses(400, 401, 403, 422))
async def list_reports(
    actor: CurrentUser, session: SessionDep, state: StateDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
    status: BreachStatus | None = None,
    kind: BreachKind | None = None,
    handler_id: uuid.UUID | None = None,
) -> Page[AnyView]:
    """Newest first; each caller sees only the reports they may, each as they may."""
    return await reports.list_reports(
        session, actor=actor, cursors=state.cursors, limit=limit, cursor=cursor, status=status, kind=kind,
        handler_id=handler_id)


@router.get("/{report_id}", response_model=AnyView, responses=problem_responses(401, 403, 404, 422))
async def get_report(report_id: uuid.UUID, actor: CurrentUser, session: SessionDep) -> AnyView:
    found = await reports.get_report(session, report_id=report_id, actor=actor)
    return found


@router.post("/{report_id}/investigate", response_model=BreachReportPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def investigate(report_id: uuid.UUID, actor: CurrentUser, session: SessionDep, now: NowDep) -> BreachReportPublic:
    """The handler or a director starts the investigation: open -> investigating."""
    report = await investigation.investigate(session, report_id=report_id, actor=actor, now=now)
    return report


@router.post("/{report_id}/assign", response_model=BreachReportPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def assign(report_id: uuid.UUID, body: BreachAssign, actor: DirectorUser, session: SessionDep,
                 now: NowDep) -> BreachReportPublic:
    """A director hands the report to another active staff account (never the colleague concerned)."""
    report = await investigation.assign(session, report_id=report_id, data=body, actor=actor, now=now)
    return report


@router.post("/{report_id}/finding", response_model=BreachReportPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def record_finding(report_id: uuid.UUID, body: BreachFinding, actor: CurrentUser, session: SessionDep,
                         now: NowDep) -> BreachReportPublic:
    """The handler or a director records the finding, which sets the outcome and closes the report."""
    report = await investigation.record_finding(session, report_id=report_id, data=body, actor=actor, now=now)
    return report


@router.post("/{report_id}/complaint-procedure-advised", response_model=BreachReportPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def procedure_advised(report_id: uuid.UUID, actor: CurrentUser, session: SessionDep,
                            now: NowDep) -> BreachReportPublic:
    """The complainant of an external complaint has now been told about the Complaint Procedure (§1.7)."""
    report = await investigation.mark_procedure_advised(session, report_id=report_id, actor=actor, now=now)
    return report
