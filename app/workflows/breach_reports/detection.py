"""Unauthorised access found by the service itself (§7.2).

``detect_unauthorised_access`` is a records DENIAL_HOOK. Three denied reads of non-general
records by one account within 24 hours, not already evidence of a report, open one
``unauthorised_access`` report about that account with the audit event ids as evidence;
while it is open, each further denial adds its event to it. A unique partial index (one
open detection report per account) keeps two simultaneous third denials from opening two
reports: the loser retries and adds its evidence instead.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.models.audit import AuditEvent
from app.models.breach_reports import BreachKind, BreachReport, BreachReportEvent, BreachStatus
from app.models.records import Classification, Record
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.breach_reports.reports import UNRESOLVED, audit_event
from app.workflows.breach_reports.routing import route_handler
from app.workflows.webhooks import outbox

log = logging.getLogger("kmm.breach_reports")

DETECTION_WINDOW = timedelta(hours=24)
DETECTION_THRESHOLD = 3
DETECTION_DESCRIPTION = (
    "Raised by the service (§7.2): repeated denied reads of non-general records by this account "
    "within 24 hours. The audit events are the evidence."
)


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
            audit_event(session, open_report, actor=None, now=now, action="evidence", rule="detection",
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
        concerned_user_id=user_id, handler_id=handler_id, handler_basis=routed, description=DETECTION_DESCRIPTION,
        created_at=now, updated_at=now,
    )
    session.add(report)
    await session.flush()  # the open-detection index refuses a second open report for this account
    await _add_evidence(session, report, ids)
    audit_event(session, report, actor=None, now=now, action="create", rule="detection", handler_id=str(handler_id),
                routed_to=routed, concerned_user_id=str(user_id), audit_event_ids=ids)
    await outbox.breach_report_opened(session, report=report, now=now)
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
