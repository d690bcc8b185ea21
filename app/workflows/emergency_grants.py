"""Emergency grants (§4.5): a director's time-limited authorisation for one account to read
a record, or every record about a subject."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import Conflict, PolicyDenied, field_error
from app.core.lookup import get_or_missing
from app.core.pagination import CursorCodec, Page, page_of
from app.models.emergency_grants import EmergencyGrant, GrantCreate, GrantPublic
from app.models.records import Record
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.policy.decide import exclusions_sql
from app.workflows.audit.trail import add_event
from app.workflows.records.checks import check_active_user

MAX_GRANT = timedelta(hours=72)


def grant_public(grant: EmergencyGrant, now: datetime) -> GrantPublic:
    # Built from attributes: model_dump() leaves out columns never set (revoked_at on a new grant).
    return GrantPublic(
        id=grant.id, grantee_id=grant.grantee_id, record_id=grant.record_id, subject_id=grant.subject_id,
        reason=grant.reason, expires_at=grant.expires_at, issued_by=grant.issued_by, issued_at=grant.issued_at,
        revoked_at=grant.revoked_at, active=grant.revoked_at is None and grant.expires_at > now,
    )


async def _held_by(session: AsyncSession, account_id: uuid.UUID) -> set[uuid.UUID]:
    """Who can act as this account: itself, and the director who chose its password."""
    chosen_by = (await session.execute(select(User.credentials_set_by).where(col(User.id) == account_id))
                 ).scalar_one_or_none()
    return {account_id} | ({chosen_by} if chosen_by is not None else set())


async def issue_grant(session: AsyncSession, *, data: GrantCreate, actor: Actor, now: datetime) -> EmergencyGrant:
    if data.expires_at <= now:
        raise field_error("expires_at", "must be in the future")
    if data.expires_at > now + MAX_GRANT:
        raise field_error("expires_at", "an emergency grant lasts at most 72 hours", rule="emergency", clause="§4.5")
    await check_active_user(session, data.grantee_id, field="grantee_id")
    subject_id = data.subject_id
    if data.record_id is not None:
        record = await session.get(Record, data.record_id)
        if record is None:
            raise field_error("record_id", "no such record")
        if record.destroyed_at is not None:
            raise field_error("record_id", "the record was destroyed")
        subject_id = record.subject_id
    subject = await session.get(Subject, subject_id) if subject_id is not None else None
    if data.subject_id is not None and subject is None:
        raise field_error("subject_id", "no such subject")
    if subject is not None and subject.user_id is not None and subject.user_id in await _held_by(session,
                                                                                                 data.grantee_id):
        # What is recorded about a person reaches them by a written request (§3.4, §3.6),
        # never by an emergency grant to themself, nor to an account whose password they chose.
        raise PolicyDenied("an emergency grant never covers records about its own holder: they ask in writing",
                           rule="emergency", clause="§4.5, §3.4")
    grant = EmergencyGrant(grantee_id=data.grantee_id, record_id=data.record_id, subject_id=data.subject_id,
                           reason=data.reason, expires_at=data.expires_at, issued_by=actor.id, issued_at=now)
    session.add(grant)
    await session.flush()
    add_event(session, now=now, actor=actor, action="emergency_grant.issue", resource_type="emergency_grant",
              resource_id=grant.id, decision="allow", rule="emergency", clause="§4.5", emergency=True,
              detail={"grantee_id": str(data.grantee_id),
                      "record_id": str(data.record_id) if data.record_id else None,
                      "subject_id": str(data.subject_id) if data.subject_id else None})
    await session.commit()
    return grant


async def revoke_grant(session: AsyncSession, *, grant_id: uuid.UUID, actor: Actor, now: datetime) -> EmergencyGrant:
    grant = await get_or_missing(session, EmergencyGrant, grant_id, name="emergency grant")
    if grant.revoked_at is not None:
        raise Conflict("the grant is already revoked", type="already-revoked")
    grant.revoked_at = now
    grant.revoked_by = actor.id
    session.add(grant)
    add_event(session, now=now, actor=actor, action="emergency_grant.revoke", resource_type="emergency_grant",
              resource_id=grant.id, decision="allow", rule="emergency", clause="§4.5", emergency=True)
    await session.commit()
    return grant


async def end_grants_about(session: AsyncSession, *, holder_id: uuid.UUID, about_user_id: uuid.UUID,
                           actor: Actor, now: datetime) -> None:
    """End the live grants ``holder_id`` holds over records about ``about_user_id`` (a subject
    linked to that account, or one record about it), in the caller's transaction: the director
    who now chose the holder's password may log in as it, and no grant opens records about its
    own holder (§3.4, §4.5). Each is an ``emergency_grant.revoke`` event."""
    theirs = select(Subject.id).where(col(Subject.user_id) == about_user_id)
    grants = (await session.execute(
        select(EmergencyGrant).where(
            col(EmergencyGrant.grantee_id) == holder_id, col(EmergencyGrant.revoked_at).is_(None),
            col(EmergencyGrant.expires_at) > now,
            or_(col(EmergencyGrant.subject_id).in_(theirs),
                col(EmergencyGrant.record_id).in_(select(Record.id).where(col(Record.subject_id).in_(theirs)))))
        .with_for_update())).scalars().all()
    for grant in grants:
        grant.revoked_at, grant.revoked_by = now, actor.id
        add_event(session, now=now, actor=actor, action="emergency_grant.revoke", resource_type="emergency_grant",
                  resource_id=grant.id, decision="allow", rule="emergency", clause="§4.5, §3.4", emergency=True,
                  detail={"reason": "password_reset"})


def over_own_personnel_file(actor: Actor, now: datetime) -> ColumnElement[bool] | None:
    """Grants over a record the actor is kept from whatever else they are (their own personnel
    file, §3.6), or over a subject linked to them (a grant there covers their file whether it
    holds one yet or not, so nothing changes when one is made); None when no exclusion holds
    for the actor."""
    excluded = exclusions_sql(actor, now)
    if excluded is None:
        return None
    record_id, subject_id = col(EmergencyGrant.record_id), col(EmergencyGrant.subject_id)
    # NULL-safe: a grant names a record or a subject, and its negation must hold for the others.
    return or_(and_(record_id.is_not(None), record_id.in_(select(col(Record.id)).where(excluded))),
               and_(subject_id.is_not(None),
                    subject_id.in_(select(col(Subject.id)).where(col(Subject.user_id) == actor.id))))


async def list_grants(
    session: AsyncSession, *, actor: Actor, now: datetime, active_only: bool, cursors: CursorCodec, limit: int,
    cursor: str | None,
) -> Page[GrantPublic]:
    """Directors see every grant; anyone else the grants made to them. Newest first."""
    query = (select(EmergencyGrant)
             .order_by(col(EmergencyGrant.issued_at).desc(), col(EmergencyGrant.id).desc()).limit(limit + 1))
    if not actor.is_director:
        query = query.where(col(EmergencyGrant.grantee_id) == actor.id)
    own_file = over_own_personnel_file(actor, now)
    if own_file is not None:  # one more view of who may open the file (§3.6)
        query = query.where(~own_file)
    if active_only:
        query = query.where(col(EmergencyGrant.revoked_at).is_(None), col(EmergencyGrant.expires_at) > now)
    if cursor:
        issued, gid = cursors.decode("emergency-grants", cursor)
        at, after = datetime.fromisoformat(str(issued)), uuid.UUID(str(gid))
        query = query.where(or_(col(EmergencyGrant.issued_at) < at,
                                and_(col(EmergencyGrant.issued_at) == at, col(EmergencyGrant.id) < after)))
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, lambda g: grant_public(g, now), cursors=cursors, scope="emergency-grants", limit=limit,
                   key=lambda last: [last.issued_at.isoformat(), str(last.id)])
