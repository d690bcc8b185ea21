"""Passing records on: shares (§3.1), named access (§3.2, §1.3), emergency grants (§4.5)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import Problem, field_error, not_found
from app.core.pagination import CursorCodec, Page
from app.models.accounts import User
from app.models.records import (
    Classification,
    EmergencyGrant,
    GrantCreate,
    GrantPublic,
    NamedAccessCreate,
    Record,
    RecordNamedAccess,
    RecordShare,
    ShareCreate,
    Subject,
)
from app.policy.actor import Actor
from app.policy.rules import Action
from app.workflows.audit_trail import add_event
from app.workflows.records import LoadedRecord, authorize, gone, load_record

MAX_GRANT = timedelta(hours=72)


async def _active_user(
    session: AsyncSession, user_id: uuid.UUID, *, field: str = "user_id", staff_only: bool = False
) -> User:
    user = await session.get(User, user_id)
    if user is None or not user.active:
        raise field_error(field, "no such active account")
    if staff_only and user.role not in ("colleague", "director"):
        raise field_error(field, "only a colleague can be named on a sensitive record")
    return user


async def _load_for_sharing(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime
) -> tuple[LoadedRecord, str, str]:
    loaded = await load_record(session, record_id, actor=actor, now=now)
    decision = await authorize(session, actor=actor, action=Action.share, loaded=loaded, now=now)
    if loaded.record.destroyed_at is not None:
        raise gone(loaded.record)
    return loaded, decision.rule, decision.clause


# -- shares (§3.1) ------------------------------------------------------------------


async def add_share(
    session: AsyncSession, *, record_id: uuid.UUID, data: ShareCreate, actor: Actor, now: datetime
) -> RecordShare:
    loaded, rule, clause = await _load_for_sharing(session, record_id=record_id, actor=actor, now=now)
    if loaded.record.classification != Classification.confidential:
        raise Problem(422, "only confidential records are passed on; name colleagues on a sensitive record "
                      "with named-access, and general records are open to all", type="not-shareable",
                      rule="shared", clause="§3.1")
    await _active_user(session, data.user_id)
    if data.user_id == loaded.record.custodian_id:
        raise field_error("user_id", "the custodian already holds this record")
    if await session.get(RecordShare, (record_id, data.user_id)) is not None:
        raise Problem(409, "the record is already shared with this account", type="already-shared")
    share = RecordShare(record_id=record_id, user_id=data.user_id, reason=data.reason, shared_by=actor.id,
                        shared_at=now)
    session.add(share)
    add_event(session, now=now, actor=actor, action="record.share", resource_type="record", resource_id=record_id,
              decision="allow", rule=rule, clause=clause, detail={"user_id": str(data.user_id)})
    await session.commit()
    return share


async def _list_access(
    session: AsyncSession, model: type[RecordShare] | type[RecordNamedAccess], *, order_by: Any,
    record_id: uuid.UUID, actor: Actor, now: datetime,
) -> list[Any]:
    await _load_for_sharing(session, record_id=record_id, actor=actor, now=now)
    rows = await session.execute(select(model).where(col(model.record_id) == record_id).order_by(order_by))
    return list(rows.scalars())


async def _remove_access(
    session: AsyncSession, model: type[RecordShare] | type[RecordNamedAccess], *, record_id: uuid.UUID,
    user_id: uuid.UUID, actor: Actor, now: datetime, what: str, action: str,
) -> None:
    """Take a share or a name off a record (the same rule that may add it), audited."""
    _, rule, clause = await _load_for_sharing(session, record_id=record_id, actor=actor, now=now)
    row = await session.get(model, (record_id, user_id))
    if row is None:
        raise not_found(what)
    await session.delete(row)
    add_event(session, now=now, actor=actor, action=action, resource_type="record",
              resource_id=record_id, decision="allow", rule=rule, clause=clause, detail={"user_id": str(user_id)})
    await session.commit()


async def list_shares(session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime) -> list[RecordShare]:
    return await _list_access(session, RecordShare, order_by=col(RecordShare.shared_at), record_id=record_id,
                              actor=actor, now=now)


async def remove_share(
    session: AsyncSession, *, record_id: uuid.UUID, user_id: uuid.UUID, actor: Actor, now: datetime
) -> None:
    await _remove_access(session, RecordShare, record_id=record_id, user_id=user_id, actor=actor, now=now,
                         what="share", action="record.unshare")


# -- named access (§3.2, §1.3) --------------------------------------------------------


async def add_named(
    session: AsyncSession, *, record_id: uuid.UUID, data: NamedAccessCreate, actor: Actor, now: datetime
) -> RecordNamedAccess:
    loaded, rule, clause = await _load_for_sharing(session, record_id=record_id, actor=actor, now=now)
    if loaded.record.classification != Classification.sensitive:
        raise Problem(422, "only a sensitive record has a list of colleagues entitled to it",
                      type="not-sensitive", rule="named", clause="§3.2")
    if not data.consent_reference or not data.consent_reference.strip():
        raise field_error("consent_reference",
                          "naming a colleague needs the subject's consent or knowledge on record (§1.3)",
                          rule="named", clause="§1.3")
    await _active_user(session, data.user_id, staff_only=True)
    if await session.get(RecordNamedAccess, (record_id, data.user_id)) is not None:
        raise Problem(409, "this colleague is already named on the record", type="already-named")
    named = RecordNamedAccess(record_id=record_id, user_id=data.user_id, consent_reference=data.consent_reference,
                              added_by=actor.id, added_at=now)
    session.add(named)
    add_event(session, now=now, actor=actor, action="record.name", resource_type="record", resource_id=record_id,
              decision="allow", rule=rule, clause=clause, detail={"user_id": str(data.user_id)})
    await session.commit()
    return named


async def list_named(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime
) -> list[RecordNamedAccess]:
    return await _list_access(session, RecordNamedAccess, order_by=col(RecordNamedAccess.added_at),
                              record_id=record_id, actor=actor, now=now)


async def remove_named(
    session: AsyncSession, *, record_id: uuid.UUID, user_id: uuid.UUID, actor: Actor, now: datetime
) -> None:
    await _remove_access(session, RecordNamedAccess, record_id=record_id, user_id=user_id, actor=actor, now=now,
                         what="named colleague", action="record.unname")


# -- emergency grants (§4.5) -------------------------------------------------------------


def grant_public(grant: EmergencyGrant, now: datetime) -> GrantPublic:
    # Built from attributes: model_dump() leaves out columns never set (revoked_at on a new grant).
    return GrantPublic(
        id=grant.id, grantee_id=grant.grantee_id, record_id=grant.record_id, subject_id=grant.subject_id,
        reason=grant.reason, expires_at=grant.expires_at, issued_by=grant.issued_by, issued_at=grant.issued_at,
        revoked_at=grant.revoked_at, active=grant.revoked_at is None and grant.expires_at > now,
    )


async def issue_grant(session: AsyncSession, *, data: GrantCreate, actor: Actor, now: datetime) -> EmergencyGrant:
    if data.expires_at <= now:
        raise field_error("expires_at", "must be in the future")
    if data.expires_at > now + MAX_GRANT:
        raise field_error("expires_at", "an emergency grant lasts at most 72 hours", rule="emergency", clause="§4.5")
    await _active_user(session, data.grantee_id, field="grantee_id")
    if data.record_id is not None:
        record = await session.get(Record, data.record_id)
        if record is None:
            raise field_error("record_id", "no such record")
        if record.destroyed_at is not None:
            raise field_error("record_id", "the record was destroyed")
    if data.subject_id is not None and await session.get(Subject, data.subject_id) is None:
        raise field_error("subject_id", "no such subject")
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
    grant = await session.get(EmergencyGrant, grant_id)
    if grant is None:
        raise not_found("emergency grant")
    if grant.revoked_at is not None:
        raise Problem(409, "the grant is already revoked", type="already-revoked")
    grant.revoked_at = now
    grant.revoked_by = actor.id
    session.add(grant)
    add_event(session, now=now, actor=actor, action="emergency_grant.revoke", resource_type="emergency_grant",
              resource_id=grant.id, decision="allow", rule="emergency", clause="§4.5", emergency=True)
    await session.commit()
    return grant


async def list_grants(
    session: AsyncSession, *, actor: Actor, now: datetime, active_only: bool, cursors: CursorCodec, limit: int,
    cursor: str | None,
) -> Page[GrantPublic]:
    """Directors see every grant; anyone else the grants made to them. Newest first."""
    query = (select(EmergencyGrant)
             .order_by(col(EmergencyGrant.issued_at).desc(), col(EmergencyGrant.id).desc()).limit(limit + 1))
    if not actor.is_director:
        query = query.where(col(EmergencyGrant.grantee_id) == actor.id)
    if active_only:
        query = query.where(col(EmergencyGrant.revoked_at).is_(None), col(EmergencyGrant.expires_at) > now)
    if cursor:
        issued, gid = cursors.decode("emergency-grants", cursor)
        at, after = datetime.fromisoformat(str(issued)), uuid.UUID(str(gid))
        query = query.where(or_(col(EmergencyGrant.issued_at) < at,
                                and_(col(EmergencyGrant.issued_at) == at, col(EmergencyGrant.id) < after)))
    rows = list((await session.execute(query)).scalars())
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = cursors.encode("emergency-grants", [last.issued_at.isoformat(), str(last.id)])
    return Page(items=[grant_public(g, now) for g in rows[:limit]], next_cursor=nxt)
