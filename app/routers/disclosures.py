"""/disclosures: information passed outside KMM by legal duty or with consent (§1.3, §1.9, §5).

Seen only by the account that raised it and by directors; to anyone else it does not
exist (404). It closes by a director's explicit POST .../close, which is 409 until it is
both recorded as made and the person affected has been told.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from app.core.pagination import Page
from app.deps import CurrentUser, DirectorUser, IdempotencyKeyDep, LimitDep, NowDep, SessionDep, StaffUser, StateDep
from app.models.disclosures import (
    Disclosure,
    DisclosureCategory,
    DisclosureCreate,
    DisclosurePublic,
    DisclosureReport,
    DisclosureStatus,
    SubjectInformed,
)
from app.routers.responses import labelled, problem_responses
from app.workflows import disclosures, idempotency

# A disclosure involves legal issues: never cached, labelled as sensitive (§3.2, §3.7).
CLASSIFICATION = "sensitive"
router = APIRouter(prefix="/disclosures", tags=["disclosures"], dependencies=[labelled(CLASSIFICATION)])


@router.post("", status_code=201, response_model=DisclosurePublic, responses=problem_responses(401, 403, 422))
async def raise_disclosure(body: DisclosureCreate, actor: StaffUser, session: SessionDep, state: StateDep,
                           now: NowDep, response: Response,
                           idempotency_key: IdempotencyKeyDep = None) -> DisclosurePublic:
    """Any staff account raises one; the category decides where it goes and the clause that allows it."""
    outcome = await idempotency.create_once(
        session, key=idempotency_key, actor=actor, endpoint="disclosures", body=body, model=Disclosure, now=now,
        settings=state.settings,
        create=lambda: disclosures.raise_disclosure(session, data=body, actor=actor, now=now),
        replay=lambda rid: disclosures.get_disclosure(session, disclosure_id=rid, actor=actor))
    created = outcome.value
    idempotency.mark(response, outcome)
    response.headers["Location"] = f"/disclosures/{created.id}"
    return disclosures.to_public(created)


@router.get("", response_model=Page[DisclosurePublic], responses=problem_responses(400, 401, 403, 422))
async def list_disclosures(
    actor: CurrentUser, session: SessionDep, state: StateDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
    status: DisclosureStatus | None = None,
    category: DisclosureCategory | None = None,
    subject_id: uuid.UUID | None = None,
    raised_by: uuid.UUID | None = None,
) -> Page[DisclosurePublic]:
    """Newest first: your own, or every one for a director."""
    return await disclosures.list_disclosures(
        session, actor=actor, cursors=state.cursors, limit=limit, cursor=cursor, status=status, category=category,
        subject_id=subject_id, raised_by=raised_by)


@router.get("/{disclosure_id}", response_model=DisclosurePublic, responses=problem_responses(401, 403, 404, 422))
async def get_disclosure(disclosure_id: uuid.UUID, actor: CurrentUser, session: SessionDep) -> DisclosurePublic:
    found = await disclosures.get_disclosure(session, disclosure_id=disclosure_id, actor=actor)
    return disclosures.to_public(found)


@router.post("/{disclosure_id}/report", response_model=DisclosurePublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def report_disclosure(disclosure_id: uuid.UUID, body: DisclosureReport, actor: DirectorUser,
                            session: SessionDep, now: NowDep) -> DisclosurePublic:
    """A director records it as made: to which authority, when, with what reference (§5)."""
    d = await disclosures.report_disclosure(session, disclosure_id=disclosure_id, data=body, actor=actor, now=now)
    return disclosures.to_public(d)


@router.post("/{disclosure_id}/subject-informed", response_model=DisclosurePublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def subject_informed(disclosure_id: uuid.UUID, body: SubjectInformed, actor: CurrentUser,
                           session: SessionDep, now: NowDep) -> DisclosurePublic:
    """The one who raised it, or a director, records that the person affected was told (§1.9, §5.4)."""
    d = await disclosures.record_subject_informed(session, disclosure_id=disclosure_id, data=body, actor=actor,
                                                  now=now)
    return disclosures.to_public(d)


@router.post("/{disclosure_id}/close", response_model=DisclosurePublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def close_disclosure(disclosure_id: uuid.UUID, actor: DirectorUser, session: SessionDep,
                           now: NowDep) -> DisclosurePublic:
    """A director closes it once it is reported and the person affected told; otherwise 409."""
    d = await disclosures.close_disclosure(session, disclosure_id=disclosure_id, actor=actor, now=now)
    return disclosures.to_public(d)
