"""/records/{id}/legal-hold (§6.5) and /records/{id}/review (§6.4)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.deps import CurrentUser, NowDep, SessionDep, StateDep
from app.models.lifecycle import LegalHoldChange, LegalHoldPublic, ReviewCreate, ReviewPublic
from app.routers.responses import problem_responses
from app.workflows import accuracy, retention

router = APIRouter(prefix="/records", tags=["records"])


@router.post("/{record_id}/legal-hold", response_model=LegalHoldPublic,
             responses=problem_responses(401, 403, 404, 410, 422))
async def set_legal_hold(record_id: uuid.UUID, body: LegalHoldChange, actor: CurrentUser, session: SessionDep,
                         now: NowDep) -> LegalHoldPublic:
    """A director places (or lifts) a legal hold: a held record is never destroyed."""
    return await retention.set_legal_hold(session, record_id=record_id, data=body, actor=actor, now=now)


@router.post("/{record_id}/review", response_model=ReviewPublic,
             responses=problem_responses(401, 403, 404, 410, 422))
async def review_record(record_id: uuid.UUID, actor: CurrentUser, session: SessionDep, state: StateDep,
                        now: NowDep, body: ReviewCreate | None = None) -> ReviewPublic:
    """Record that the record was verified as accurate; moves `review_due` forward."""
    return await accuracy.review_record(session, record_id=record_id, note=body.note if body else None,
                                        actor=actor, now=now, keyring=state.keyring, settings=state.settings)
