"""Making, reading and listing reports; each report shown as the caller may see it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import field_error
from app.core.pagination import CursorCodec, Page, next_cursor, page_query
from app.models.breach_reports import (
    KIND_CLAUSE,
    BreachKind,
    BreachReport,
    BreachReportCreate,
    BreachReportEvent,
    BreachReportPublic,
    BreachReportStatusView,
    BreachStatus,
)
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.audit.trail import add_event
from app.workflows.breach_reports.routing import STAFF_ROLES, route_handler
from app.workflows.breach_reports.visibility import RESOURCE, load, sees_all, visible
from app.workflows.webhooks import outbox

UNRESOLVED = (BreachStatus.open, BreachStatus.investigating)


async def _evidence_ids(session: AsyncSession, report_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
    found: dict[uuid.UUID, list[int]] = {rid: [] for rid in report_ids}
    if not report_ids:
        return found
    rows = await session.execute(
        select(BreachReportEvent.report_id, BreachReportEvent.audit_event_id)
        .where(col(BreachReportEvent.report_id).in_(report_ids)).order_by(col(BreachReportEvent.audit_event_id))
    )
    for rid, eid in rows.all():
        found[rid].append(eid)
    return found


def _full(r: BreachReport, evidence_ids: list[int]) -> BreachReportPublic:
    return BreachReportPublic.model_validate(
        r, update={"clause": KIND_CLAUSE[r.kind], "evidence_event_ids": evidence_ids})


def _status_view(r: BreachReport) -> BreachReportStatusView:
    return BreachReportStatusView.model_validate(r)


async def shape(session: AsyncSession, actor: Actor, reports: Sequence[BreachReport]
                ) -> list[BreachReportPublic | BreachReportStatusView]:
    """Each report as the caller may see it, loading evidence ids in one query."""
    full_ids = [r.id for r in reports if sees_all(actor, r)]
    evidence = await _evidence_ids(session, full_ids)
    return [_full(r, evidence[r.id]) if r.id in evidence else _status_view(r) for r in reports]


def audit_event(session: AsyncSession, r: BreachReport, *, actor: Actor | None, now: datetime, action: str,
                rule: str, **detail: Any) -> None:
    add_event(session, now=now, actor=actor, action=f"breach_report.{action}", resource_type=RESOURCE,
              resource_id=r.id, decision="allow", rule=rule, clause=KIND_CLAUSE[r.kind],
              detail={"kind": r.kind, "status": r.status, **detail})


# -- report ------------------------------------------------------------------------------

NEEDS_CONCERNED = {BreachKind.colleague_conduct, BreachKind.confidentiality_breach}
NOT_ABOUT_ONESELF = {BreachKind.colleague_conduct, BreachKind.grievance}


async def _concerned(session: AsyncSession, data: BreachReportCreate, actor: Actor) -> User | None:
    kind = data.kind
    clause = KIND_CLAUSE[kind]
    if data.concerned_user_id is None:
        if kind in NEEDS_CONCERNED:
            raise field_error("concerned_user_id", f"a {kind} report names the colleague concerned",
                              clause=clause)
        return None
    user = await session.get(User, data.concerned_user_id)
    if user is None or user.role not in STAFF_ROLES:
        raise field_error("concerned_user_id", "no such colleague")
    if user.id == actor.id and kind in NOT_ABOUT_ONESELF:
        raise field_error("concerned_user_id", f"a {kind} report is about someone else's conduct, "
                          "not your own", rule="not-about-oneself", clause=clause)
    return user


def _check_kind_fields(data: BreachReportCreate) -> None:
    kind = data.kind
    if kind == BreachKind.unauthorised_access:
        raise field_error("kind", "unauthorised-access reports are raised only by the service itself",
                          rule="service-detection", clause="§7.2")
    if kind == BreachKind.colleague_conduct and not data.evidence:
        raise field_error("evidence", "a concern about a colleague's conduct comes with evidence that an "
                          "investigation can test", rule="evidence", clause="§1.8")
    if kind == BreachKind.external_complaint:
        if not data.complainant_name:
            raise field_error("complainant_name", "an external complaint records who complained", clause="§1.7")
        if data.complaint_procedure_advised is None:
            raise field_error("complaint_procedure_advised", "say whether the complainant was told about the "
                              "Complaint Procedure", rule="complaint-procedure", clause="§1.7")
    elif data.complainant_name is not None or data.complaint_procedure_advised is not None:
        field = "complainant_name" if data.complainant_name is not None else "complaint_procedure_advised"
        raise field_error(field, "only an external complaint records a complainant")


async def create_report(session: AsyncSession, *, data: BreachReportCreate, actor: Actor, now: datetime
                        ) -> BreachReport:
    _check_kind_fields(data)
    concerned = await _concerned(session, data, actor)
    handler_id, routed = await route_handler(session, concerned=concerned, reporter_id=actor.id, kind=data.kind)
    report = BreachReport(
        kind=data.kind, status=BreachStatus.open, reporter_id=actor.id,
        concerned_user_id=concerned.id if concerned else None, handler_id=handler_id, handler_basis=routed,
        description=data.description, evidence=data.evidence, complainant_name=data.complainant_name,
        complaint_procedure_advised=data.complaint_procedure_advised, created_at=now, updated_at=now,
    )
    session.add(report)
    await session.flush()
    audit_event(session, report, actor=actor, now=now, action="create", rule="routing", handler_id=str(handler_id),
                routed_to=routed, concerned_user_id=str(report.concerned_user_id) if concerned else None)
    await outbox.breach_report_opened(session, report=report, now=now)
    await session.commit()
    return report


# -- read ----------------------------------------------------------------------------------


async def get_report(session: AsyncSession, *, report_id: uuid.UUID, actor: Actor
                     ) -> BreachReportPublic | BreachReportStatusView:
    report = await load(session, report_id, actor)
    return (await shape(session, actor, [report]))[0]


async def list_reports(
    session: AsyncSession, *, actor: Actor, cursors: CursorCodec, limit: int, cursor: str | None,
    status: BreachStatus | None, kind: BreachKind | None, handler_id: uuid.UUID | None,
) -> Page[BreachReportPublic | BreachReportStatusView]:
    query = select(BreachReport).where(visible(actor))
    if status is not None:
        query = query.where(col(BreachReport.status) == status)
    if kind is not None:
        query = query.where(col(BreachReport.kind) == kind)
    if handler_id is not None:
        # Only those who see a report in full learn who handles it.
        query = query.where(col(BreachReport.handler_id) == handler_id,
                            true() if actor.is_director else col(BreachReport.handler_id) == actor.id)
    query = page_query(query, BreachReport, cursors=cursors, scope="breach-reports", cursor=cursor, limit=limit)
    rows = list((await session.execute(query)).scalars())
    nxt = next_cursor(rows, cursors=cursors, scope="breach-reports", limit=limit)
    return Page(items=await shape(session, actor, rows[:limit]), next_cursor=nxt)
