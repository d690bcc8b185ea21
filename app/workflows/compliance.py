"""The director's compliance summary (DESIGN §5, "Data protection").

Each check is one SQL query returning the ids of what needs attention. Workflows
contribute their checks in ``checks()`` below.

The record checks leave out the records the director is kept from whatever else they are:
their own personnel file (§3.6, ``decide.exclusions_sql``). Its id is what the other paths
refuse them, and the file reaches the employee it is about by a written request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, not_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.models.records import ConsentStatus, Record
from app.models.users import User
from app.policy.actor import Actor
from app.policy.decide import exclusions_sql
from app.workflows.audit.trail import add_event
from app.workflows.retention import past_retention

# (session, now, settings) -> ids needing attention
Check = Callable[[AsyncSession, datetime, Settings], Awaitable[list[str]]]


async def _record_ids(
    session: AsyncSession, condition: ColumnElement[bool], now: datetime, actor: Actor | None
) -> list[str]:
    """Ids of the records meeting ``condition``, but for those excluded for ``actor`` (§3.6);
    without an actor, every one (the service's own view)."""
    query = select(Record.id).where(condition).order_by(col(Record.id))
    excluded = exclusions_sql(actor, now) if actor is not None else None
    if excluded is not None:
        query = query.where(not_(excluded))
    rows = await session.execute(query)
    return [str(i) for i in rows.scalars()]


async def records_past_retention(
    session: AsyncSession, now: datetime, settings: Settings, *, actor: Actor | None = None
) -> list[str]:
    """Due for the retention sweep (§6.5): past the date, not destroyed, not held."""
    return await _record_ids(session, past_retention(now), now, actor)


async def reviews_overdue(
    session: AsyncSession, now: datetime, settings: Settings, *, actor: Actor | None = None
) -> list[str]:
    """Due for verification (§6.4)."""
    return await _record_ids(session, (col(Record.review_due) < now) & col(Record.destroyed_at).is_(None), now,
                             actor)


async def consent_pending(
    session: AsyncSession, now: datetime, settings: Settings, *, actor: Actor | None = None
) -> list[str]:
    """Consent asked for but not yet given or refused (§1.2)."""
    return await _record_ids(
        session, (col(Record.consent_status) == ConsentStatus.pending) & col(Record.destroyed_at).is_(None), now,
        actor,
    )


async def consent_refused(
    session: AsyncSession, now: datetime, settings: Settings, *, actor: Actor | None = None
) -> list[str]:
    """Kept although the person refused permission (§1.2, §6.1): each needs a decision."""
    return await _record_ids(
        session, (col(Record.consent_status) == ConsentStatus.refused) & col(Record.destroyed_at).is_(None), now,
        actor,
    )


async def records_without_active_custodian(
    session: AsyncSession, now: datetime, settings: Settings, *, actor: Actor | None = None
) -> list[str]:
    """Kept by nobody (§4.2): the custodian is now a trustee or deactivated, so the custodian
    relation no longer holds; a director or the line manager hands each one on."""
    staff = select(User.id).where(col(User.active), col(User.role).in_(("colleague", "director")))
    return await _record_ids(session, col(Record.custodian_id).not_in(staff) & col(Record.destroyed_at).is_(None),
                             now, actor)


RECORD_CHECKS = {
    "records_past_retention": records_past_retention,
    "reviews_overdue": reviews_overdue,
    "consent_pending": consent_pending,
    "consent_refused": consent_refused,
    "records_without_active_custodian": records_without_active_custodian,
}

# Checks whose ids depend on who asks: breach reports, which the colleague concerned never
# learns of (§1.8, §7.1), and records, which leave out the asker's own personnel file (§3.6).
# Their counts stay out of the summary's audit event, where another director's count could be
# set against one's own.
PER_ACTOR = frozenset({*RECORD_CHECKS, "complaints_without_procedure_advised", "breach_reports_open_too_long"})


def checks(actor: Actor | None = None) -> dict[str, Check]:
    """Name -> check, in the order the summary lists them; those in PER_ACTOR see only what
    ``actor`` may know of (without one, everything: the service's own view)."""
    from app.workflows import disclosures
    from app.workflows.access_requests import deadlines
    from app.workflows.breach_reports import compliance as breach_checks

    found: dict[str, Check] = {
        **{name: partial(check, actor=actor) for name, check in RECORD_CHECKS.items()},
        "access_requests_overdue": deadlines.overdue_ids,
        "disclosures_subject_not_informed": disclosures.subject_not_informed,
        "complaints_without_procedure_advised": partial(breach_checks.complaints_without_procedure_advised,
                                                        actor=actor),
        "breach_reports_open_too_long": partial(breach_checks.open_too_long, actor=actor),
    }
    return found


async def summary(session: AsyncSession, *, actor: Actor, now: datetime, settings: Settings) -> dict[str, Any]:
    """Every check's ids and count; the read is audited (it lists record ids)."""
    result: dict[str, Any] = {}
    for name, check in checks(actor).items():
        ids = await check(session, now, settings)
        result[name] = {"ids": ids, "count": len(ids)}
    add_event(session, now=now, actor=actor, action="compliance.summary", resource_type="compliance",
              decision="allow", rule="director", clause="§6",
              detail={name: item["count"] for name, item in result.items() if name not in PER_ACTOR})
    await session.commit()
    return result
