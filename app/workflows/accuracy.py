"""Accuracy (§6.4): verifying a record moves its next review date forward.

Who may verify: whoever the policy lets update the record (its custodian, their line
manager, and for personnel records the employee's line manager), or any director, who
oversees accuracy for the whole organisation even where the rule table gives them no
update right (a sensitive record). The rule table has no separate ``review`` action, so
this is decided as "update allowed, or a director".
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.config import Settings
from app.core.crypto import Keyring, encrypt
from app.core.errors import PolicyDenied
from app.models.lifecycle import RecordReview, ReviewPublic
from app.models.records import Record
from app.policy.actor import Actor
from app.policy.decide import Decision, decide
from app.policy.rules import Action
from app.workflows.audit_trail import add_event
from app.workflows.records import _aad, gone, load_record

RULE, CLAUSE = "review", "§6.4"


async def review_record(
    session: AsyncSession, *, record_id: uuid.UUID, note: str | None, actor: Actor, now: datetime,
    keyring: Keyring, settings: Settings,
) -> ReviewPublic:
    loaded = await load_record(session, record_id, actor=actor, now=now)
    record = loaded.record
    decision = decide(actor, Action.update, loaded.facts, now)
    if not decision.allowed and actor.is_director and actor.active:
        decision = Decision(True, "director", CLAUSE, "a director verifies any record's accuracy")
    if not decision.allowed:
        add_event(session, now=now, actor=actor, action="record.review", resource_type="record",
                  resource_id=record.id, decision="deny", rule=RULE, clause=CLAUSE,
                  detail={"classification": record.classification, "policy_rule": decision.rule})
        await session.commit()
        raise PolicyDenied(
            "only the custodian, their line manager or a director verifies a record "
            f"({decision.reason})", rule=RULE, clause=CLAUSE,
        )
    if record.destroyed_at is not None or loaded.content is None:
        raise gone(record)

    review = RecordReview(record_id=record.id, reviewed_by=actor.id, reviewed_at=now)
    if note is not None:
        # Under the record's own data key: shredding the record shreds the note (§4.6).
        rc = loaded.content
        data_key = keyring.unwrap(rc.key_id, rc.wrapped_key, aad=_aad(record.id, "key"))
        review.note_ct = encrypt(data_key, note.encode(), _aad(record.id, f"review:{review.id}"))
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
