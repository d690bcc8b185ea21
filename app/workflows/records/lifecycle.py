"""A record's life between create and destroy: legal holds (§6.5) and accuracy reviews (§6.4).

A director places or lifts a legal hold; a held record is never destroyed.

Accuracy: verifying a record moves its next review date forward. Who may verify: whoever
the policy lets update the record (its custodian, their line manager, and for personnel
records the employee's line manager), or any director, who oversees accuracy for the whole
organisation even where the rule table gives them no update right (a sensitive record). The
rule table has no separate ``review`` action, so this is decided as "update allowed, or a
director".
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.config import Settings
from app.core.crypto import Keyring, encrypt
from app.core.encrypted import bound
from app.core.errors import PolicyDenied
from app.models.lifecycle import LegalHoldChange, LegalHoldPublic, RecordReview, ReviewPublic
from app.models.records import Record
from app.policy.actor import Actor
from app.policy.decide import Decision, decide, exclusion
from app.policy.rules import Action
from app.workflows.audit.trail import add_event
from app.workflows.records.content import aad, data_key
from app.workflows.records.queries import LoadedRecord, load_record
from app.workflows.records.shape import gone

HOLD_RULE, HOLD_CLAUSE = "legal-hold", "§6.5"
REVIEW_RULE, REVIEW_CLAUSE = "review", "§6.4"


async def _refuse_if_excluded(session: AsyncSession, *, actor: Actor, loaded: LoadedRecord, now: datetime,
                              action: str) -> None:
    """The exclusion of one's own personnel file (§3.6) before any director's override: the
    employee it is about neither reviews it nor holds it. The refusal is audited."""
    excluded = exclusion(actor, loaded.facts, now)
    if excluded is None:
        return
    add_event(session, now=now, actor=actor, action=action, resource_type="record", resource_id=loaded.record.id,
              decision="deny", rule=excluded.rule, clause=excluded.clause)
    await session.commit()
    raise PolicyDenied(excluded.reason, rule=excluded.rule, clause=excluded.clause)


async def set_legal_hold(
    session: AsyncSession, *, record_id: uuid.UUID, data: LegalHoldChange, actor: Actor, now: datetime
) -> LegalHoldPublic:
    """Place or lift a legal hold (§6.5); a held record is never destroyed. Only a director
    comes here: the route's gate (app.deps.director_only) refuses, and audits, anyone else."""
    loaded = await load_record(session, record_id, actor=actor)
    record = loaded.record
    await _refuse_if_excluded(session, actor=actor, loaded=loaded, now=now, action="record.legal_hold")
    if record.destroyed_at is not None:
        raise gone(record)
    result = await session.execute(
        update(Record)
        .where(col(Record.id) == record.id, col(Record.destroyed_at).is_(None))
        .values(legal_hold=data.legal_hold,
                legal_hold_reason=bound(Record.__tablename__, "legal_hold_reason", [record.id], data.reason),
                version=col(Record.version) + 1,
                updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # destroyed since we loaded it
        await session.rollback()
        await session.refresh(record)
        raise gone(record)
    add_event(session, now=now, actor=actor, action="record.legal_hold", resource_type="record",
              resource_id=record.id, decision="allow", rule=HOLD_RULE, clause=HOLD_CLAUSE,
              detail={"legal_hold": data.legal_hold})
    await session.commit()
    await session.refresh(record)
    return LegalHoldPublic(record_id=record.id, legal_hold=record.legal_hold, reason=data.reason,
                           version=record.version, changed_by=actor.id, changed_at=now)


async def review_record(
    session: AsyncSession, *, record_id: uuid.UUID, note: str | None, actor: Actor, now: datetime,
    keyring: Keyring, settings: Settings,
) -> ReviewPublic:
    loaded = await load_record(session, record_id, actor=actor)
    record = loaded.record
    await _refuse_if_excluded(session, actor=actor, loaded=loaded, now=now, action="record.review")
    decision = decide(actor, Action.update, loaded.facts, now)
    if not decision.allowed and actor.is_director and actor.active:
        decision = Decision(True, "director", REVIEW_CLAUSE, "a director verifies any record's accuracy")
    if not decision.allowed:
        add_event(session, now=now, actor=actor, action="record.review", resource_type="record",
                  resource_id=record.id, decision="deny", rule=REVIEW_RULE, clause=REVIEW_CLAUSE,
                  detail={"classification": record.classification, "policy_rule": decision.rule})
        await session.commit()
        raise PolicyDenied(
            "only the custodian, their line manager or a director verifies a record "
            f"({decision.reason})", rule=REVIEW_RULE, clause=REVIEW_CLAUSE,
        )
    if record.destroyed_at is not None or loaded.content is None:
        raise gone(record)

    review = RecordReview(record_id=record.id, reviewed_by=actor.id, reviewed_at=now)
    if note is not None:
        # Under the record's own data key: shredding the record shreds the note (§4.6).
        record_key = data_key(keyring, loaded.content)
        review.note_ct = encrypt(record_key, note.encode(), aad(record.id, f"review:{review.id}"))
    due = now + timedelta(days=settings.review_interval_days)
    result = await session.execute(
        update(Record)
        .where(col(Record.id) == record.id, col(Record.destroyed_at).is_(None))
        .values(last_verified_at=now, review_due=due, version=col(Record.version) + 1, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # destroyed since we loaded it
        await session.rollback()
        await session.refresh(record)
        raise gone(record)
    session.add(review)
    add_event(session, now=now, actor=actor, action="record.review", resource_type="record",
              resource_id=record.id, decision="allow", rule=decision.rule, clause=decision.clause,
              detail={"classification": record.classification, "review_due": due.isoformat(),
                      "note": note is not None})
    await session.commit()
    await session.refresh(record)
    return ReviewPublic(id=review.id, record_id=record.id, reviewed_by=actor.id, reviewed_at=now, note=note,
                        last_verified_at=now, review_due=due, version=record.version)
