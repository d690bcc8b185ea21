"""Passing a record on: shares of confidential records (§3.1) and the colleagues named on a
sensitive record (§3.2, §1.3). Whoever may share the record adds, lists and removes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import Conflict, Invalid, field_error
from app.core.lookup import get_or_missing
from app.models.records import (
    Classification,
    NamedAccessCreate,
    RecordNamedAccess,
    RecordShare,
    ShareCreate,
)
from app.policy.actor import Actor
from app.policy.rules import Action
from app.workflows.audit.trail import add_event
from app.workflows.records.checks import check_active_user
from app.workflows.records.decisions import authorize
from app.workflows.records.queries import LoadedRecord, load_record
from app.workflows.records.shape import gone


async def _load_for_sharing(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime
) -> tuple[LoadedRecord, str, str]:
    loaded = await load_record(session, record_id, actor=actor)
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
        raise Invalid("only confidential records are passed on; name colleagues on a sensitive record "
                      "with named-access, and general records are open to all", type="not-shareable",
                      rule="shared", clause="§3.1")
    await check_active_user(session, data.user_id)
    if data.user_id == loaded.record.custodian_id:
        raise field_error("user_id", "the custodian already holds this record")
    if await session.get(RecordShare, (record_id, data.user_id)) is not None:
        raise Conflict("the record is already shared with this account", type="already-shared")
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
    row = await get_or_missing(session, model, (record_id, user_id), name=what)
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
        raise Invalid("only a sensitive record has a list of colleagues entitled to it",
                      type="not-sensitive", rule="named", clause="§3.2")
    if not data.consent_reference or not data.consent_reference.strip():
        raise field_error("consent_reference",
                          "naming a colleague needs the subject's consent or knowledge on record (§1.3)",
                          rule="named", clause="§1.3")
    await check_active_user(session, data.user_id, staff_only=True)
    if await session.get(RecordNamedAccess, (record_id, data.user_id)) is not None:
        raise Conflict("this colleague is already named on the record", type="already-named")
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
