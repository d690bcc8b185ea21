"""Breach reports: report, route, investigate, find, and detect unauthorised access (§1.7, §1.8, §7).

Routing: the handler is the line manager of the colleague concerned; a director when that
line manager is the reporter or the colleague concerned, is inactive, or there is none. A
grievance about KMM itself (no colleague concerned) goes to the reporter's own line
manager, as §7.1 says, or a director when they have none. The director chosen is the
earliest-created active one who is not the colleague concerned, preferring one who is
not the reporter.

Visibility: the colleague concerned never sees the report (404), whatever else they are,
a director included. The handler and directors see all of it; the reporter sees only its
status (``BreachReportStatusView``); anyone else gets 404.

Status: ``open`` -> ``investigating`` (POST .../investigate by the handler or a director;
a finding on an open report starts the investigation first, so both steps are audited)
-> ``closed`` (a finding closes it). A finding on a closed report is 409.

Detection (§7.2): ``detect_unauthorised_access`` is a records DENIAL_HOOK. Three denied
reads of non-general records by one account within 24 hours, not already evidence of a
report, open one ``unauthorised_access`` report about that account with the audit event
ids as evidence; while it is open, each further denial adds its event to it. A unique
partial index (one open detection report per account) keeps two simultaneous third
denials from opening two reports: the loser retries and adds its evidence instead.

Audit events carry ids, kinds, findings and statuses only: never the description,
evidence, notes or the complainant's name.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, exists, false, func, or_, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.errors import Conflict, PolicyDenied, field_error, not_found
from app.core.pagination import CursorCodec, Page, next_cursor, page_query
from app.models.audit import AuditEvent
from app.models.breach_reports import (
    KIND_CLAUSE,
    BreachAssign,
    BreachFinding,
    BreachKind,
    BreachReport,
    BreachReportCreate,
    BreachReportEvent,
    BreachReportPublic,
    BreachReportStatusView,
    BreachStatus,
    Finding,
    Outcome,
)
from app.models.records import Classification, Record
from app.models.users import User
from app.policy.actor import Actor
from app.workflows import webhooks
from app.workflows.audit.trail import add_event

log = logging.getLogger("kmm.breach_reports")

RESOURCE = "breach_report"
STAFF_ROLES = ("colleague", "director")
UNRESOLVED = (BreachStatus.open, BreachStatus.investigating)
DETECTION_WINDOW = timedelta(hours=24)
DETECTION_THRESHOLD = 3
DETECTION_DESCRIPTION = (
    "Raised by the service (§7.2): repeated denied reads of non-general records by this account "
    "within 24 hours. The audit events are the evidence."
)

# -- routing ---------------------------------------------------------------------------


async def _director(session: AsyncSession, *, not_id: uuid.UUID | None, prefer_not: uuid.UUID | None) -> uuid.UUID:
    """The earliest-created active director other than ``not_id``, preferring one other than ``prefer_not``."""
    query = select(User.id).where(col(User.role) == "director", col(User.active).is_(True))
    if not_id is not None:
        query = query.where(col(User.id) != not_id)
    last = case((col(User.id) == prefer_not, 1), else_=0) if prefer_not is not None else None
    order = [last] if last is not None else []
    found = (await session.execute(
        query.order_by(*order, col(User.created_at), col(User.id)).limit(1))).scalar_one_or_none()
    if found is None:
        raise Conflict("no active director can handle this report", type="no-handler")
    return found


async def route_handler(
    session: AsyncSession, *, concerned: User | None, reporter_id: uuid.UUID | None, kind: BreachKind
) -> tuple[uuid.UUID, str]:
    """The handler's id and why (``line_manager`` or ``director``)."""
    manager_of = concerned
    if concerned is None and kind == BreachKind.grievance and reporter_id is not None:
        manager_of = await session.get(User, reporter_id)  # §7.1: raise it with your line manager
    if manager_of is not None and manager_of.line_manager_id is not None:
        manager = await session.get(User, manager_of.line_manager_id)
        excluded = {reporter_id, concerned.id if concerned else None}
        if manager is not None and manager.active and manager.role in STAFF_ROLES and manager.id not in excluded:
            return manager.id, "line_manager"
    director = await _director(session, not_id=concerned.id if concerned else None, prefer_not=reporter_id)
    return director, "director"


# -- visibility ------------------------------------------------------------------------


def visible(actor: Actor) -> ColumnElement[bool]:
    """May this actor know of this report? The one predicate, as an SQL condition on
    ``breach_reports``, behind every path that could show a report or a trace of one (the
    report, the list, the audit trail, the compliance summary).

    Never one about itself (§1.8, §7.1); all others for a director; otherwise those it
    handles or reported. A service client knows of none."""
    if actor.kind != "user":
        return false()
    not_about_me = or_(col(BreachReport.concerned_user_id).is_(None), col(BreachReport.concerned_user_id) != actor.id)
    if actor.is_director:
        return not_about_me
    return and_(not_about_me, or_(col(BreachReport.handler_id) == actor.id, col(BreachReport.reporter_id) == actor.id))


def _id_text(column: Any) -> Any:
    """A UUID (column or audit ``resource_id``) as 32 hex digits, the same on SQLite and Postgres."""
    return func.lower(func.replace(cast(column, String), "-", ""))


def events_known_to(actor: Actor) -> ColumnElement[bool]:
    """Audit events the actor may see as far as reports go: every event except those about a
    report it may not know of (its ``breach_report.*`` events, detection's included).

    The reports it may not know of are one uncorrelated subquery, so the list still filters
    in SQL and the planner runs it once.
    """
    # NULL-safe: a report with no reporter (the service raised it) is hidden, not unknown.
    hidden = select(_id_text(BreachReport.id)).where(~func.coalesce(visible(actor), false())).scalar_subquery()
    about_a_report = func.coalesce(col(AuditEvent.resource_type), "") == RESOURCE
    return ~and_(about_a_report, _id_text(func.coalesce(col(AuditEvent.resource_id), "")).in_(hidden))


def sees_all(actor: Actor, report: BreachReport) -> bool:
    """The handler and directors see all of a report they may know of; the reporter only its status."""
    return actor.is_director or report.handler_id == actor.id


async def _load(session: AsyncSession, report_id: uuid.UUID, actor: Actor, *, lock: bool = False) -> BreachReport:
    query = select(BreachReport).where(col(BreachReport.id) == report_id, visible(actor))
    if lock:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise not_found("breach report")
    return found


def _require_handler(actor: Actor, report: BreachReport) -> None:
    if not sees_all(actor, report):
        raise PolicyDenied("only the handler of this report or a director may do this", rule="handler",
                           clause="§1.8")


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


def _audit(session: AsyncSession, r: BreachReport, *, actor: Actor | None, now: datetime, action: str,
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
        concerned_user_id=concerned.id if concerned else None, handler_id=handler_id,
        description=data.description, evidence=data.evidence, complainant_name=data.complainant_name,
        complaint_procedure_advised=data.complaint_procedure_advised, created_at=now, updated_at=now,
    )
    session.add(report)
    await session.flush()
    _audit(session, report, actor=actor, now=now, action="create", rule="routing", handler_id=str(handler_id),
           routed_to=routed, concerned_user_id=str(report.concerned_user_id) if concerned else None)
    await webhooks.breach_report_opened(session, report=report, now=now)
    await session.commit()
    return report


# -- read ----------------------------------------------------------------------------------


async def get_report(session: AsyncSession, *, report_id: uuid.UUID, actor: Actor
                     ) -> BreachReportPublic | BreachReportStatusView:
    report = await _load(session, report_id, actor)
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


# -- transitions -------------------------------------------------------------------------------


def _not_closed(r: BreachReport) -> None:
    if r.status == BreachStatus.closed:
        raise Conflict("the report is closed", type="report-closed")


def _start_investigation(session: AsyncSession, r: BreachReport, *, actor: Actor, now: datetime) -> None:
    r.status = BreachStatus.investigating
    r.investigating_at = now
    r.updated_at = now
    _audit(session, r, actor=actor, now=now, action="investigate", rule="handler")


async def investigate(session: AsyncSession, *, report_id: uuid.UUID, actor: Actor, now: datetime
                      ) -> BreachReportPublic:
    r = await _load(session, report_id, actor, lock=True)
    _require_handler(actor, r)
    if r.status != BreachStatus.open:
        raise Conflict(f"the report is already {r.status}", type="report-not-open")
    _start_investigation(session, r, actor=actor, now=now)
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


async def assign(session: AsyncSession, *, report_id: uuid.UUID, data: BreachAssign, actor: Actor, now: datetime
                 ) -> BreachReportPublic:
    r = await _load(session, report_id, actor, lock=True)
    _not_closed(r)
    handler = await session.get(User, data.handler_id)
    if handler is None or not handler.active or handler.role not in STAFF_ROLES:
        raise field_error("handler_id", "the handler must be an active staff account")
    if handler.id == r.concerned_user_id:
        raise field_error("handler_id", "the colleague concerned never handles, or sees, a report about them",
                          rule="concerned-never-sees", clause=KIND_CLAUSE[r.kind])
    previous = r.handler_id
    r.handler_id = handler.id
    r.updated_at = now
    _audit(session, r, actor=actor, now=now, action="assign", rule="director", handler_id=str(handler.id),
           previous_handler_id=str(previous))
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


async def record_finding(session: AsyncSession, *, report_id: uuid.UUID, data: BreachFinding, actor: Actor,
                         now: datetime) -> BreachReportPublic:
    r = await _load(session, report_id, actor, lock=True)
    _require_handler(actor, r)
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
    _audit(session, r, actor=actor, now=now, action="finding", rule="handler", finding=r.finding,
           outcome=r.outcome)
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


async def mark_procedure_advised(session: AsyncSession, *, report_id: uuid.UUID, actor: Actor, now: datetime
                                 ) -> BreachReportPublic:
    """The complainant has now been told about the Complaint Procedure (§1.7)."""
    r = await _load(session, report_id, actor, lock=True)
    _require_handler(actor, r)
    if r.kind != BreachKind.external_complaint:
        raise Conflict("only an external complaint has a complainant to advise", type="not-a-complaint")
    if r.complaint_procedure_advised:
        raise Conflict("the complainant is already recorded as advised", type="already-advised")
    r.complaint_procedure_advised = True
    r.updated_at = now
    _audit(session, r, actor=actor, now=now, action="complaint_procedure_advised", rule="handler")
    await session.commit()
    return (await shape(session, actor, [r]))[0]  # type: ignore[return-value]


# -- detection (§7.2) --------------------------------------------------------------------------


def _uncounted_denials(user_id: uuid.UUID, *, since: datetime, until: datetime) -> Any:
    """Denied reads of non-general records by the account, not yet evidence of any report.

    The classification is the one the denial's audit event recorded: what the record was
    when it was refused.
    """
    return select(AuditEvent.id).where(
        col(AuditEvent.actor_id) == user_id,
        col(AuditEvent.at) >= since,
        col(AuditEvent.at) <= until,
        col(AuditEvent.action) == "record.read",
        col(AuditEvent.decision) == "deny",
        col(AuditEvent.resource_type) == "record",
        col(AuditEvent.detail)["classification"].as_string() != Classification.general,
        ~exists().where(col(BreachReportEvent.audit_event_id) == AuditEvent.id),
    )


async def _add_evidence(session: AsyncSession, report: BreachReport, event_ids: list[int]) -> None:
    session.add_all([BreachReportEvent(audit_event_id=eid, report_id=report.id) for eid in event_ids])
    await session.flush()


async def _detect(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    open_report = (await session.execute(
        select(BreachReport).where(col(BreachReport.kind) == BreachKind.unauthorised_access,
                                   col(BreachReport.concerned_user_id) == user_id,
                                   col(BreachReport.status).in_(UNRESOLVED))
        .with_for_update()
    )).scalar_one_or_none()
    if open_report is not None:
        since = open_report.created_at - DETECTION_WINDOW
        ids = list((await session.execute(
            _uncounted_denials(user_id, since=since, until=now).order_by(col(AuditEvent.id)))).scalars())
        if ids:
            await _add_evidence(session, open_report, ids)
            open_report.updated_at = now
            _audit(session, open_report, actor=None, now=now, action="evidence", rule="detection",
                   audit_event_ids=ids)
            await session.commit()
        else:
            await session.rollback()
        return
    denials = _uncounted_denials(user_id, since=now - DETECTION_WINDOW, until=now)
    count = (await session.execute(select(func.count()).select_from(denials.subquery()))).scalar_one()
    if count < DETECTION_THRESHOLD:
        await session.rollback()
        return
    ids = list((await session.execute(denials.order_by(col(AuditEvent.id)))).scalars())
    concerned = await session.get(User, user_id)
    handler_id, routed = await route_handler(session, concerned=concerned, reporter_id=None,
                                             kind=BreachKind.unauthorised_access)
    report = BreachReport(
        kind=BreachKind.unauthorised_access, status=BreachStatus.open, reporter_id=None,
        concerned_user_id=user_id, handler_id=handler_id, description=DETECTION_DESCRIPTION,
        created_at=now, updated_at=now,
    )
    session.add(report)
    await session.flush()  # the open-detection index refuses a second open report for this account
    await _add_evidence(session, report, ids)
    _audit(session, report, actor=None, now=now, action="create", rule="detection", handler_id=str(handler_id),
           routed_to=routed, concerned_user_id=str(user_id), audit_event_ids=ids)
    await webhooks.breach_report_opened(session, report=report, now=now)
    await session.commit()


async def detect_unauthorised_access(
    session: AsyncSession, *, actor: Actor, record: Record, action: Any, now: datetime
) -> None:
    """DENIAL_HOOK: runs after a denial is committed; never breaks the denial's response."""
    if actor.kind != "user" or str(action) != "read" or record.classification == Classification.general:
        return
    try:
        for attempt in range(3):
            try:
                await _detect(session, actor.id, now)
                return
            except IntegrityError:
                # Another request opened the report (or added this evidence) first: try again,
                # which now finds the open report and adds to it.
                await session.rollback()
                if attempt == 2:
                    raise
    except Exception as exc:
        with suppress(Exception):
            await session.rollback()
        log.error("unauthorised-access detection failed", extra={"error": type(exc).__name__,
                                                                  "actor_id": str(actor.id)})


# -- compliance --------------------------------------------------------------------------------


# Each takes the actor whose summary it is, and lists only reports that actor may know of
# (``visible``); without one (``None``) it is the service's own view of every report.


async def complaints_without_procedure_advised(session: AsyncSession, now: datetime, settings: Settings,
                                               actor: Actor | None = None) -> list[str]:
    """External complaints whose complainant has not been told about the Complaint Procedure (§1.7)."""
    query = select(BreachReport.id).where(col(BreachReport.kind) == BreachKind.external_complaint,
                                          col(BreachReport.complaint_procedure_advised).is_(False))
    if actor is not None:
        query = query.where(visible(actor))
    rows = await session.execute(query.order_by(col(BreachReport.created_at), col(BreachReport.id)))
    return [str(i) for i in rows.scalars()]


async def open_too_long(session: AsyncSession, now: datetime, settings: Settings,
                        actor: Actor | None = None) -> list[str]:
    """Reports still open or under investigation after settings.breach_open_too_long_days."""
    cutoff = now - timedelta(days=settings.breach_open_too_long_days)
    query = select(BreachReport.id).where(col(BreachReport.status).in_(UNRESOLVED),
                                          col(BreachReport.created_at) < cutoff)
    if actor is not None:
        query = query.where(visible(actor))
    rows = await session.execute(query.order_by(col(BreachReport.created_at), col(BreachReport.id)))
    return [str(i) for i in rows.scalars()]
