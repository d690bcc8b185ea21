"""Investigating a report, reassigning it, the finding, and the complaint procedure advised.

Status: ``open`` -> ``investigating`` (POST .../investigate by the handler or a director;
a finding on an open report starts the investigation first, so both steps are audited)
-> ``closed`` (a finding closes it). A finding on a closed report is 409.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, field_error
from app.models.breach_reports import (
    KIND_CLAUSE,
    BreachAssign,
    BreachFinding,
    BreachKind,
    BreachReport,
    BreachReportPublic,
    BreachStatus,
    Finding,
    HandlerBasis,
    Outcome,
)
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.breach_reports.reports import audit_event, shape
from app.workflows.breach_reports.routing import STAFF_ROLES
from app.workflows.breach_reports.visibility import load, require_handler


def _not_closed(r: BreachReport) -> None:
    if r.status == BreachStatus.closed:
        raise Conflict("the report is closed", type="report-closed")


def _start_investigation(session: AsyncSession, r: BreachReport, *, actor: Actor, now: datetime) -> None:
    r.status = BreachStatus.investigating
    r.investigating_at = now
    r.updated_at = now
    audit_event(session, r, actor=actor, now=now, action="investigate", rule="handler")


async def investigate(session: AsyncSession, *, report_id: uuid.UUID, actor: Actor, now: datetime
                      ) -> BreachReportPublic:
    r = await load(session, report_id, actor, lock=True)
    require_handler(actor, r)
    if r.status != BreachStatus.open:
        raise Conflict(f"the report is already {r.status}", type="report-not-open")
    _start_investigation(session, r, actor=actor, now=now)
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


async def assign(session: AsyncSession, *, report_id: uuid.UUID, data: BreachAssign, actor: Actor, now: datetime
                 ) -> BreachReportPublic:
    r = await load(session, report_id, actor, lock=True)
    _not_closed(r)
    handler = await session.get(User, data.handler_id)
    if handler is None or not handler.active or handler.role not in STAFF_ROLES:
        raise field_error("handler_id", "the handler must be an active staff account")
    if handler.id == r.concerned_user_id:
        raise field_error("handler_id", "the colleague concerned never handles, or sees, a report about them",
                          rule="concerned-never-sees", clause=KIND_CLAUSE[r.kind])
    if r.concerned_user_id is not None and handler.credentials_set_by == r.concerned_user_id:
        # They may log in as it (§1.8, §7.1); it would not see the report (visible()).
        raise field_error("handler_id", "the colleague concerned chose this account's password, so it does not "
                          "see the report until another director resets it", rule="concerned-never-sees",
                          clause=KIND_CLAUSE[r.kind])
    previous = r.handler_id
    r.handler_id = handler.id
    r.handler_basis = HandlerBasis.assigned
    r.updated_at = now
    audit_event(session, r, actor=actor, now=now, action="assign", rule="director", handler_id=str(handler.id),
                previous_handler_id=str(previous))
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


async def record_finding(session: AsyncSession, *, report_id: uuid.UUID, data: BreachFinding, actor: Actor,
                         now: datetime) -> BreachReportPublic:
    r = await load(session, report_id, actor, lock=True)
    require_handler(actor, r)
    _not_closed(r)
    if data.finding == Finding.malicious and r.reporter_id is None:
        raise field_error("finding", "a report the service raised itself has no reporter to find malicious")
    if data.finding == Finding.substantiated:
        concerned = await session.get(User, r.concerned_user_id) if r.concerned_user_id else None
        # A colleague who has left (is deactivated) faces legal action rather than disciplinary (§7.2).
        outcome = Outcome.legal_action if concerned is not None and not concerned.active \
            else Outcome.disciplinary_action
    elif data.finding == Finding.malicious:
        outcome = Outcome.disciplinary_action_against_reporter  # §1.8
    else:
        outcome = Outcome.no_action
    if r.status == BreachStatus.open:
        _start_investigation(session, r, actor=actor, now=now)
    r.finding = data.finding
    r.outcome = outcome
    r.notes = data.notes
    r.found_by = actor.id
    r.status = BreachStatus.closed
    r.closed_at = now
    r.updated_at = now
    audit_event(session, r, actor=actor, now=now, action="finding", rule="handler", finding=r.finding,
                outcome=r.outcome)
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


async def mark_procedure_advised(session: AsyncSession, *, report_id: uuid.UUID, actor: Actor, now: datetime
                                 ) -> BreachReportPublic:
    """The complainant has now been told about the Complaint Procedure (§1.7)."""
    r = await load(session, report_id, actor, lock=True)
    require_handler(actor, r)
    if r.kind != BreachKind.external_complaint:
        raise Conflict("only an external complaint has a complainant to advise", type="not-a-complaint")
    if r.complaint_procedure_advised:
        raise Conflict("the complainant is already recorded as advised", type="already-advised")
    r.complaint_procedure_advised = True
    r.updated_at = now
    audit_event(session, r, actor=actor, now=now, action="complaint_procedure_advised", rule="handler")
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]
