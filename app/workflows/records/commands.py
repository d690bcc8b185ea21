"""Changing records: create, update (optimistic locking on the version), destroy and shred (§4.6).

Every decision comes from app/policy and is an audit event, committed with the change.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, delete

from app.core.config import Settings
from app.core.crypto import Keyring, encrypt
from app.core.db import scrub_after_shred
from app.core.encrypted import bound
from app.core.errors import Conflict, Invalid, PolicyDenied, StaleVersion, field_error
from app.models.lifecycle import RecordReview
from app.models.records import (
    Classification,
    Consent,
    Purpose,
    Record,
    RecordContent,
    RecordCreate,
    RecordNamedAccess,
    RecordPublic,
    RecordShare,
    RecordUpdate,
    Tombstone,
)
from app.models.subjects import Subject
from app.policy.actor import Actor
from app.policy.decide import RecordFacts
from app.policy.retention import schedule_date
from app.policy.rules import Action
from app.workflows.access_requests import package_retention
from app.workflows.audit.trail import add_event
from app.workflows.records.checks import (
    check_consent,
    check_custodian,
    check_personnel,
    check_requester,
    check_retention,
)
from app.workflows.records.content import aad, data_key, open_content, seal_content
from app.workflows.records.decisions import authorize
from app.workflows.records.queries import RECORDS, LoadedRecord, entitled_ids, load_record
from app.workflows.records.shape import gone, to_public, tombstone
from app.workflows.webhooks import outbox

# -- create ----------------------------------------------------------------------


async def create_record(
    session: AsyncSession, *, data: RecordCreate, actor: Actor, now: datetime, keyring: Keyring,
    settings: Settings,
) -> RecordPublic:
    client_may = (actor.kind == "client" and actor.has_scope("records:write")
                  and data.classification == Classification.general)
    if not actor.is_staff and not client_may:
        raise PolicyDenied("only staff create records (a service client only general ones, with records:write)",
                           rule="custodian", clause="§4.2")
    subject = await session.get(Subject, data.subject_id)
    if subject is None:
        raise field_error("subject_id", "no such subject")
    custodian_id = data.custodian_id or (actor.id if actor.kind == "user" else None)
    if custodian_id is None:
        raise field_error("custodian_id", "a service client must name the custodian")
    custodian = await check_custodian(session, custodian_id)
    await check_requester(session, data.access_requester_id, data.classification)
    check_consent(data.consent)
    if data.classification == Classification.personnel:
        await check_personnel(session, actor=actor, subject=subject)
    scheduled = schedule_date(now, data.purpose, settings.retention_days)
    retention = data.retention_until or scheduled
    check_retention(actor, retention=retention, scheduled=scheduled, classification=data.classification,
                     custodian_line_manager_id=custodian.line_manager_id)
    record = Record(
        subject_id=subject.id,
        classification=data.classification,
        purpose=data.purpose,
        custodian_id=custodian_id,
        access_requester_id=data.access_requester_id,
        consent_status=data.consent.status,
        consent_obtained_at=data.consent.obtained_at,
        consent_purpose_explained=data.consent.purpose_explained,
        consent_refusal_reason=data.consent.refusal_reason,
        retention_until=retention,
        review_due=data.review_due or now + timedelta(days=settings.review_interval_days),
        created_by=actor.id if actor.kind == "user" else None,
        created_at=now,
        updated_at=now,
    )
    session.add(record)
    await session.flush()
    session.add(seal_content(keyring, record.id, title=data.title, content=data.content))
    add_event(session, now=now, actor=actor, action="record.create", resource_type="record",
              resource_id=record.id, decision="allow", rule="custodian", clause="§4.2",
              detail={"classification": record.classification, "purpose": record.purpose})
    await session.commit()
    return to_public(record, title=data.title, content=data.content, entitled=[], decision=None,
                     refusal_reason=data.consent.refusal_reason)


# -- update ----------------------------------------------------------------------


async def update_record(
    session: AsyncSession, *, record_id: uuid.UUID, data: RecordUpdate, expected: int, actor: Actor,
    now: datetime, keyring: Keyring, settings: Settings,
) -> RecordPublic:
    loaded = await load_record(session, record_id, actor=actor)
    record = loaded.record
    decision = await authorize(session, actor=actor, action=Action.update, loaded=loaded, now=now)
    if record.destroyed_at is not None or loaded.content is None:
        raise gone(record)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        raise Invalid("nothing to change", type="validation-error")
    if any(changes.get(k, 0) is None for k in _NOT_NULL):
        raise Invalid(f"{', '.join(_NOT_NULL[:-1])} and {_NOT_NULL[-1]} cannot be null (§6.4, §6.5)",
                      type="validation-error")
    if expected != record.version:
        raise StaleVersion()

    new_class: Classification = changes.get("classification", record.classification)
    old_class = record.classification
    if new_class != old_class:
        try:
            await _check_reclassification(session, actor=actor, loaded=loaded, new_class=new_class)
        except PolicyDenied as denied:  # a refused move is a decision about the record: audit it
            # Nothing has been written yet, so committing the event alone is safe.
            add_event(session, now=now, actor=actor, action="record.reclassify", resource_type="record",
                      resource_id=record_id, decision="deny", rule=denied.extra["rule"],
                      clause=denied.extra["clause"], detail={"classification": [old_class, new_class]})
            await session.commit()
            raise
    if "custodian_id" in changes:
        await check_custodian(session, changes["custodian_id"])
    requester = changes.get("access_requester_id", record.access_requester_id)
    await check_requester(session, requester, new_class)
    if "consent" in changes:
        check_consent(data.consent or Consent())
    retention = _new_retention(record, changes, settings)
    try:
        _check_retention_move(actor, record=record, retention=retention, purpose=changes.get("purpose"),
                              classification=new_class, facts=loaded.facts, settings=settings)
    except PolicyDenied as denied:  # a refused move is a decision about the record: audit it
        add_event(session, now=now, actor=actor, action="record.retention", resource_type="record",
                  resource_id=record_id, decision="deny", rule=denied.extra["rule"], clause=denied.extra["clause"],
                  detail={"retention_until": [record.retention_until.isoformat(), retention.isoformat()]})
        await session.commit()
        raise

    values: dict[str, Any] = {"version": record.version + 1, "updated_at": now, "retention_until": retention}
    for key in ("classification", "purpose", "custodian_id", "access_requester_id", "review_due"):
        if key in changes:
            values[key] = changes[key]
    dates = {"retention_until": [record.retention_until.isoformat(), retention.isoformat()],
             "review_due": [record.review_due.isoformat(), values.get("review_due", record.review_due).isoformat()]}
    if "consent" in changes:
        consent = data.consent or Consent()
        values.update(consent_status=consent.status, consent_obtained_at=consent.obtained_at,
                      consent_purpose_explained=consent.purpose_explained,
                      consent_refusal_reason=bound(Record.__tablename__, "consent_refusal_reason", [record.id],
                                                   consent.refusal_reason))
    result = await session.execute(
        update(Record).where(col(Record.id) == record.id, col(Record.version) == expected).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise StaleVersion()

    title, content = open_content(keyring, loaded.content)
    if "title" in changes or "content" in changes:
        title = changes.get("title", title)
        content = changes.get("content", content)
        record_key = data_key(keyring, loaded.content)
        await session.execute(
            update(RecordContent).where(col(RecordContent.record_id) == record.id).values(
                title_ct=encrypt(record_key, (title or "").encode(), aad(record.id, "title")),
                content_ct=encrypt(record_key, (content or "").encode(), aad(record.id, "content")),
            )
        )
    add_event(session, now=now, actor=actor, action="record.update", resource_type="record",
              resource_id=record.id, decision="allow", rule=decision.rule, clause=decision.clause,
              detail={"fields": sorted(changes), "version": record.version + 1, **dates,
                      **({"classification": [old_class, new_class]} if new_class != old_class else {})})
    await session.commit()
    await session.refresh(record)
    entitled = await entitled_ids(session, record)
    await session.commit()
    return to_public(record, title=title, content=content, entitled=entitled, decision=decision,
                     refusal_reason=record.consent_refusal_reason)


_NOT_NULL = ("title", "content", "classification", "purpose", "custodian_id", "retention_until", "review_due")


def _new_retention(record: Record, changes: dict[str, Any], settings: Settings) -> datetime:
    """The retention date after an update: the one asked for; else the schedule's for the new
    purpose where the date followed the schedule; else the date chosen before (§6.5)."""
    if "retention_until" in changes:
        return cast(datetime, changes["retention_until"])
    following = record.retention_until == schedule_date(record.created_at, record.purpose, settings.retention_days)
    if following and "purpose" in changes:
        return schedule_date(record.created_at, changes["purpose"], settings.retention_days)
    return record.retention_until


def _check_retention_move(
    actor: Actor, *, record: Record, retention: datetime, purpose: Purpose | None, classification: Classification,
    facts: RecordFacts, settings: Settings,
) -> None:
    """Whoever may update a record may keep its date or put it on the schedule; an earlier
    choice by someone entitled stays (§6.5). Any other date needs the line manager or a director."""
    current = record.retention_until
    chosen_before = current != schedule_date(record.created_at, record.purpose, settings.retention_days)
    if retention == current and chosen_before:
        return
    scheduled = schedule_date(record.created_at, purpose or record.purpose,
                              settings.retention_days)
    check_retention(actor, retention=retention, scheduled=scheduled, classification=classification,
                     custodian_line_manager_id=facts.custodian_line_manager_id)


async def _check_reclassification(
    session: AsyncSession, *, actor: Actor, loaded: LoadedRecord, new_class: Classification
) -> None:
    old = loaded.facts.classification
    if old == Classification.personnel and not actor.is_director:
        raise PolicyDenied("only a director moves a record out of personnel", rule="personnel", clause="§4.3")
    if old == Classification.sensitive and not (
        actor.is_director or loaded.facts.custodian_line_manager_id == actor.id
    ):
        raise PolicyDenied("only the custodian's line manager or a director moves a record out of sensitive",
                           rule="line-manager", clause="§3.2")
    if new_class == Classification.personnel:
        subject = await session.get(Subject, loaded.record.subject_id)
        assert subject is not None
        await check_personnel(session, actor=actor, subject=subject)


# -- destroy ---------------------------------------------------------------------


async def shred(
    session: AsyncSession, *, record_ids: list[uuid.UUID], by: uuid.UUID | None, reason: str, now: datetime
) -> int:
    """Remove content, data keys, review notes, shares and names for good; keep the tombstones (§4.6).

    Set-based, so a sweep shreds a batch in a few statements. Only records not already
    destroyed are stamped (so a concurrent destroy cannot win twice); returns how many.
    The caller audits and commits.
    """
    if not record_ids:
        return 0
    await session.execute(delete(RecordContent).where(col(RecordContent.record_id).in_(record_ids)))
    await drop_passed_on(session, record_ids)
    await session.execute(
        update(RecordReview).where(col(RecordReview.record_id).in_(record_ids)).values(note_ct=None)
    )
    stamped = list((await session.execute(
        update(Record)
        .where(col(Record.id).in_(record_ids), col(Record.destroyed_at).is_(None))
        .values(destroyed_at=now, destroyed_by=by, version=col(Record.version) + 1,
                updated_at=now, consent_refusal_reason=None)
        .returning(col(Record.id))
        .execution_options(synchronize_session=False)
    )).scalars())
    if stamped:  # the reason is encrypted per record, bound to its row (§6.6)
        await session.execute(
            update(RECORDS).where(RECORDS.c.id == bindparam("b_id")).values(destroy_reason=bindparam("b_reason")),
            [{"b_id": rid, "b_reason": bound(RECORDS.name, "destroy_reason", [rid], reason)} for rid in stamped],
        )
    # After the records' row locks, so a package being fulfilled meanwhile is cleared too.
    await package_retention.forget_records(session, record_ids)
    return len(stamped)


async def drop_passed_on(session: AsyncSession, record_ids: list[uuid.UUID]) -> None:
    """Delete the shares and named access of shredded records (§4.6).

    Their reasons and consent references describe the record and its subject; the audit
    events of the shares and names still say who held it and when, without the reasons.
    """
    await session.execute(delete(RecordShare).where(col(RecordShare.record_id).in_(record_ids)))
    await session.execute(delete(RecordNamedAccess).where(col(RecordNamedAccess.record_id).in_(record_ids)))


def destroy_reason(*given: str | None) -> str:
    """The one reason given for a shred, from the body, the X-Reason header or the query."""
    reasons = {r for r in given if r is not None}
    if not reasons:
        raise field_error("reason", "say why the record is shredded: {\"reason\": ...} in the body, or X-Reason")
    if len(reasons) > 1:
        raise field_error("reason", "given more than once, differently; give it once")
    return reasons.pop()


async def destroy_record(
    session: AsyncSession, *, record_id: uuid.UUID, reason: str, actor: Actor, now: datetime
) -> Tombstone:
    loaded = await load_record(session, record_id, actor=actor)
    record = loaded.record
    decision = await authorize(session, actor=actor, action=Action.destroy, loaded=loaded, now=now)
    if record.destroyed_at is not None:
        raise gone(record)
    if record.legal_hold:
        raise Conflict("the record is under a director's legal hold and cannot be destroyed",
                      type="legal-hold", rule="legal-hold", clause="§6.5")
    if await shred(session, record_ids=[record.id], by=actor.id, reason=reason, now=now) != 1:
        await session.rollback()  # destroyed by someone else meanwhile
        await session.refresh(record)
        raise gone(record)
    add_event(session, now=now, actor=actor, action="record.destroy", resource_type="record",
              resource_id=record.id, decision="allow", rule=decision.rule, clause=decision.clause,
              detail={"classification": record.classification, "sweep": False})
    await outbox.records_destroyed(session, records=[record], sweep=False, now=now)
    await session.commit()
    await scrub_after_shred(session)
    await session.refresh(record)
    return tombstone(record)
