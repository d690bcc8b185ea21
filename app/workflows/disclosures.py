"""Disclosures: raise, report as made, record the subject told, close (§1.3, §1.9, §5).

The category fixes where a disclosure goes and the clause that authorises it (ROUTES).
A disclosure is seen only by the account that raised it and by directors; to anyone
else it does not exist (404), since its existence is itself sensitive. It closes only
by a director's explicit close, and only once it has been reported *and* the affected
person has been told (§1.9, §5.4); closing earlier is 409.

Audit events carry ids, the category, the clause and statuses: never the summary.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.errors import Conflict, Invalid, field_error
from app.core.lookup import one_or_missing
from app.core.pagination import CursorCodec, Page, page_of, page_query
from app.models.disclosures import (
    ROUTES,
    Disclosure,
    DisclosureCategory,
    DisclosureCreate,
    DisclosurePublic,
    DisclosureReport,
    DisclosureStatus,
    SubjectInformed,
)
from app.models.records import Record
from app.models.subjects import Subject
from app.policy.actor import Actor
from app.policy.decide import records_filter
from app.workflows.audit.trail import add_event
from app.workflows.webhooks import outbox

RESOURCE = "disclosure"

# -- keyset pagination, newest first (shared with breach reports) ----------------------


# -- visibility -------------------------------------------------------------------------


def visible(actor: Actor) -> ColumnElement[bool]:
    """The disclosures an account may see: its own, or all for a director."""
    if actor.is_director:
        return true()
    return col(Disclosure.raised_by) == actor.id


async def _load(session: AsyncSession, disclosure_id: uuid.UUID, actor: Actor, *, lock: bool = False) -> Disclosure:
    return await one_or_missing(session, select(Disclosure).where(col(Disclosure.id) == disclosure_id,
                                                                  visible(actor)), name="disclosure", lock=lock)


def to_public(d: Disclosure) -> DisclosurePublic:
    return DisclosurePublic.model_validate(d)


def _audit(session: AsyncSession, d: Disclosure, *, actor: Actor, now: datetime, action: str,
           rule: str, clause: str | None = None, **detail: Any) -> None:
    add_event(session, now=now, actor=actor, action=f"disclosure.{action}", resource_type=RESOURCE,
              resource_id=d.id, decision="allow", rule=rule, clause=clause or d.clause,
              detail={"category": d.category, "status": d.status, **detail})


def _not_in_future(field: str, at: datetime, now: datetime) -> None:
    if at > now:
        raise field_error(field, "cannot be in the future")


# -- raise ---------------------------------------------------------------------------------


async def raise_disclosure(
    session: AsyncSession, *, data: DisclosureCreate, actor: Actor, now: datetime
) -> Disclosure:
    route = ROUTES[data.category]
    if route.recipient is None:  # consented (§1.3)
        if not data.consent_reference or not data.recipient:
            raise Invalid("a disclosure outside the legal duties of §5 needs the individual's (or an "
                          "officer's) consent on record: give consent_reference and the named recipient",
                          type="consent-required", rule="consent", clause="§1.3")
        recipient = data.recipient
    else:
        if data.recipient is not None and data.recipient != route.recipient:
            raise field_error("recipient", f"a {data.category} disclosure goes to {route.recipient} "
                              f"({route.clause}); the recipient follows from the category",
                              rule="duty-to-disclose", clause=route.clause)
        recipient = route.recipient
    if await session.get(Subject, data.subject_id) is None:
        raise field_error("subject_id", "no such subject")
    record_ids = list(dict.fromkeys(data.record_ids))
    if record_ids:
        found = (await session.execute(
            select(func.count()).select_from(Record).where(
                col(Record.id).in_(record_ids), col(Record.subject_id) == data.subject_id,
                records_filter(actor, now))
        )).scalar_one()
        if found != len(record_ids):
            raise field_error("record_ids", "each record must exist, be about this subject and be one you may read")
    disclosure = Disclosure(
        subject_id=data.subject_id, category=data.category, clause=route.clause, summary=data.summary,
        record_ids=[str(r) for r in record_ids], recipient=recipient, consent_reference=data.consent_reference,
        status=DisclosureStatus.raised, raised_by=actor.id, created_at=now, updated_at=now,
    )
    session.add(disclosure)
    await session.flush()
    _audit(session, disclosure, actor=actor, now=now, action="raise",
           rule="consent" if route.recipient is None else "duty-to-disclose",
           subject_id=str(data.subject_id), records=len(record_ids))
    await outbox.disclosure_raised(session, disclosure=disclosure, now=now)
    await session.commit()
    return disclosure


# -- read ----------------------------------------------------------------------------------


async def get_disclosure(session: AsyncSession, *, disclosure_id: uuid.UUID, actor: Actor) -> Disclosure:
    return await _load(session, disclosure_id, actor)


async def list_disclosures(
    session: AsyncSession, *, actor: Actor, cursors: CursorCodec, limit: int, cursor: str | None,
    status: DisclosureStatus | None, category: DisclosureCategory | None, subject_id: uuid.UUID | None,
    raised_by: uuid.UUID | None,
) -> Page[DisclosurePublic]:
    query = select(Disclosure).where(visible(actor))
    for column, value in ((Disclosure.status, status), (Disclosure.category, category),
                          (Disclosure.subject_id, subject_id), (Disclosure.raised_by, raised_by)):
        if value is not None:
            query = query.where(col(column) == value)
    query = page_query(query, Disclosure, cursors=cursors, scope="disclosures", cursor=cursor, limit=limit)
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, to_public, cursors=cursors, scope="disclosures", limit=limit)


# -- transitions -----------------------------------------------------------------------------


def _open(d: Disclosure) -> None:
    if d.status == DisclosureStatus.closed:
        raise Conflict("the disclosure is closed", type="disclosure-closed")


async def report_disclosure(
    session: AsyncSession, *, disclosure_id: uuid.UUID, data: DisclosureReport, actor: Actor, now: datetime
) -> Disclosure:
    """A director records the disclosure as made: to which authority, when, reference (§5)."""
    d = await _load(session, disclosure_id, actor, lock=True)
    _open(d)
    if d.reported_at is not None:
        raise Conflict("the disclosure is already recorded as made", type="already-reported")
    route = ROUTES[d.category]
    if route.director_chooses_authority and not data.authority:
        raise field_error("authority", "the Director names the authority this was reported to (§5.3)",
                          rule="duty-to-disclose", clause="§5.3")
    _not_in_future("reported_at", data.reported_at, now)
    d.authority = data.authority or d.recipient
    d.reported_at = data.reported_at
    d.reference = data.reference
    d.reported_by = actor.id
    d.status = DisclosureStatus.reported
    d.updated_at = now
    _audit(session, d, actor=actor, now=now, action="report", rule="director")
    await session.commit()
    return d


async def record_subject_informed(
    session: AsyncSession, *, disclosure_id: uuid.UUID, data: SubjectInformed, actor: Actor, now: datetime
) -> Disclosure:
    """The affected person was told that the disclosure has been or will be made (§1.9, §5.4)."""
    d = await _load(session, disclosure_id, actor, lock=True)
    _open(d)
    if d.subject_informed_at is not None:
        raise Conflict("the subject is already recorded as informed", type="already-informed")
    _not_in_future("informed_at", data.informed_at, now)
    d.subject_informed_at = data.informed_at
    d.subject_informed_method = data.method
    d.subject_informed_by = actor.id
    d.updated_at = now
    _audit(session, d, actor=actor, now=now, action="subject_informed",
           rule="director" if actor.is_director else "raiser", clause="§1.9, §5.4", method=data.method)
    await session.commit()
    return d


async def close_disclosure(session: AsyncSession, *, disclosure_id: uuid.UUID, actor: Actor, now: datetime
                           ) -> Disclosure:
    d = await _load(session, disclosure_id, actor, lock=True)
    _open(d)
    missing = [name for name, value in (("reported", d.reported_at), ("subject_informed", d.subject_informed_at))
               if value is None]
    if missing:
        raise Conflict("a disclosure closes only once it is recorded as made and the person affected has "
                      "been told: missing " + ", ".join(missing), type="disclosure-incomplete",
                      rule="inform-subject", clause="§1.9, §5.4", missing=missing)
    d.status = DisclosureStatus.closed
    d.closed_at = now
    d.closed_by = actor.id
    d.updated_at = now
    _audit(session, d, actor=actor, now=now, action="close", rule="director", clause="§1.9, §5.4")
    await session.commit()
    return d


# -- compliance ----------------------------------------------------------------------------


async def subject_not_informed(session: AsyncSession, now: datetime, settings: Settings) -> list[str]:
    """Disclosures whose affected person has not yet been told (§1.9, §5.4)."""
    rows = await session.execute(
        select(Disclosure.id).where(col(Disclosure.subject_informed_at).is_(None))
        .order_by(col(Disclosure.created_at), col(Disclosure.id))
    )
    return [str(i) for i in rows.scalars()]
