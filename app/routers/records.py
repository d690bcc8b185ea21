"""/records: keep, read, list, update and destroy records; who accessed them; shares and named
access; legal holds and accuracy reviews."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response

from app.core.pagination import Page
from app.core.state import AppState
from app.deps import (
    ClaimsDep,
    CurrentActor,
    CurrentUser,
    IdempotencyKeyDep,
    IfMatch,
    LimitDep,
    NowDep,
    SessionDep,
    StaffUser,
    StateDep,
    director_only,
    etag,
)
from app.models.lifecycle import LegalHoldChange, LegalHoldPublic, ReviewCreate, ReviewPublic
from app.models.records import (
    DESTROY_REASON_MAX,
    AccessLog,
    Classification,
    DestroyRequest,
    NamedAccessCreate,
    NamedAccessPublic,
    Purpose,
    Record,
    RecordCreate,
    RecordPublic,
    RecordSummary,
    RecordUpdate,
    ShareCreate,
    SharePublic,
    Tombstone,
)
from app.policy.actor import Actor
from app.routers.responses import problem_responses, protect
from app.workflows import idempotency
from app.workflows.audit import access
from app.workflows.records import commands, lifecycle, read, shares

router = APIRouter(prefix="/records", tags=["records"])
# Only a director places or lifts a legal hold (§6.5); a refusal is the record's own audit event.
HoldDirector = Annotated[Actor, Depends(director_only(
    lifecycle.HOLD_RULE, lifecycle.HOLD_CLAUSE, detail="only a director places or lifts a legal hold",
    record_action="record.legal_hold"))]
_ORDER = [Classification.general, Classification.confidential, Classification.sensitive, Classification.personnel]


def _most_restrictive(classes: list[Classification]) -> Classification | None:
    return max(classes, key=_ORDER.index, default=None)


async def _as_created(read: Awaitable[RecordPublic]) -> RecordPublic:
    """A record read again, shaped as its creation's answer (which names no read decision)."""
    return (await read).model_copy(update={"access": None})


@router.post("", status_code=201, response_model=RecordPublic, responses=problem_responses(401, 403, 410, 422))
async def create_record(
    body: RecordCreate, actor: CurrentActor, session: SessionDep, state: StateDep, now: NowDep, response: Response,
    idempotency_key: IdempotencyKeyDep = None,
) -> RecordPublic:
    """With `Idempotency-Key`, a retry returns the record as a read of it now (its policy check included)."""
    outcome = await idempotency.create_once(
        session, key=idempotency_key, actor=actor, endpoint="records", body=body, model=Record, now=now,
        settings=state.settings,
        create=lambda: commands.create_record(session, data=body, actor=actor, now=now, keyring=state.keyring,
                                              settings=state.settings),
        replay=lambda rid: _as_created(read.read_record(session, record_id=rid, actor=actor, now=now,
                                                        keyring=state.keyring)))
    created = outcome.value
    idempotency.mark(response, outcome)
    protect(response, created.classification)
    response.headers["ETag"] = etag(created.version)
    response.headers["Location"] = f"/records/{created.id}"
    return created


@router.get("", response_model=Page[RecordSummary], responses=problem_responses(400, 401, 422))
async def list_records(
    actor: CurrentActor, state: StateDep, now: NowDep, limit: LimitDep, response: Response,
    cursor: str | None = Query(default=None, max_length=512),
    subject_id: uuid.UUID | None = None,
    classification: Classification | None = None,
    purpose: Purpose | None = None,
    custodian_id: uuid.UUID | None = None,
) -> Page[RecordSummary]:
    page = await read.list_records(
        state.rows, state.audit, actor=actor, now=now, keyring=state.keyring, cursors=state.cursors, limit=limit,
        cursor=cursor,
        filters={"subject_id": subject_id, "classification": classification, "purpose": purpose,
                 "custodian_id": custodian_id},
    )
    protect(response, _most_restrictive([i.classification for i in page.items]))
    return page


@router.get("/{record_id}", response_model=RecordPublic, responses=problem_responses(401, 403, 404, 410, 422))
async def read_record(record_id: uuid.UUID, claims: ClaimsDep, request: Request, response: Response) -> RecordPublic:
    # The hottest route reads state and clock from the request rather than through two more
    # dependencies (see app.deps.get_claims).
    state: AppState = request.app.state.kmm
    now = state.clock.now()
    record = None
    if claims.kind == "user":  # the hot path: one autocommit query, no session (DESIGN §11)
        record = await read.read_record_fast(state.rows, state.audit, record_id=record_id, claims=claims,
                                             now=now, keyring=state.keyring)
    if record is None:  # a service client, or anything but a plain allowed read
        async with state.sessionmaker() as session:
            record = await read.read_record_general(session, record_id=record_id, claims=claims, now=now,
                                                    keyring=state.keyring, rows=state.rows)
    protect(response, record.classification)
    response.headers["ETag"] = etag(record.version)
    return record


@router.get("/{record_id}/access-log", response_model=AccessLog,
            responses=problem_responses(400, 401, 403, 404, 422))
async def access_log(
    record_id: uuid.UUID, actor: CurrentActor, session: SessionDep, state: StateDep, now: NowDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
) -> AccessLog:
    """Who read this record, when and by which rule; emergency reads are flagged (DESIGN §6)."""
    return await access.access_log(session, record_id=record_id, actor=actor, now=now, cursors=state.cursors,
                                         limit=limit, cursor=cursor)


@router.patch("/{record_id}", response_model=RecordPublic,
              responses=problem_responses(401, 403, 404, 410, 412, 422, 428))
async def update_record(
    record_id: uuid.UUID, body: RecordUpdate, actor: CurrentUser, session: SessionDep, state: StateDep,
    now: NowDep, response: Response, if_match: IfMatch,
) -> RecordPublic:
    record = await commands.update_record(session, record_id=record_id, data=body, expected=if_match.version,
                                          actor=actor, now=now, keyring=state.keyring, settings=state.settings)
    protect(response, record.classification)
    response.headers["ETag"] = etag(record.version)
    return record


@router.delete("/{record_id}", response_model=Tombstone,
               responses=problem_responses(401, 403, 404, 409, 410, 422))
async def destroy_record(
    record_id: uuid.UUID, actor: CurrentUser, session: SessionDep, now: NowDep,
    body: Annotated[DestroyRequest | None, Body(description="why it is shredded (§4.6)")] = None,
    x_reason: Annotated[str | None, Header(min_length=1, max_length=DESTROY_REASON_MAX,
                                           description="why it is shredded (§4.6), instead of the body")] = None,
    reason: Annotated[str | None, Query(min_length=1, max_length=DESTROY_REASON_MAX, deprecated=True,
                                        description="deprecated: URLs are logged by proxies; use the body "
                                                    "or X-Reason")] = None,
) -> Tombstone:
    why = commands.destroy_reason(body.reason if body is not None else None, x_reason, reason)
    return await commands.destroy_record(session, record_id=record_id, reason=why, actor=actor, now=now)


# -- shares (§3.1) ------------------------------------------------------------------


@router.post("/{record_id}/shares", status_code=201, response_model=SharePublic,
             responses=problem_responses(401, 403, 404, 409, 410, 422))
async def add_share(record_id: uuid.UUID, body: ShareCreate, actor: StaffUser, session: SessionDep,
                    now: NowDep) -> SharePublic:
    share = await shares.add_share(session, record_id=record_id, data=body, actor=actor, now=now)
    return SharePublic.model_validate(share, from_attributes=True)


@router.get("/{record_id}/shares", response_model=list[SharePublic],
            responses=problem_responses(401, 403, 404, 410, 422))
async def list_shares(record_id: uuid.UUID, actor: StaffUser, session: SessionDep, now: NowDep) -> list[SharePublic]:
    found = await shares.list_shares(session, record_id=record_id, actor=actor, now=now)
    return [SharePublic.model_validate(s, from_attributes=True) for s in found]


@router.delete("/{record_id}/shares/{user_id}", status_code=204,
               responses=problem_responses(401, 403, 404, 410, 422))
async def remove_share(record_id: uuid.UUID, user_id: uuid.UUID, actor: StaffUser, session: SessionDep,
                       now: NowDep) -> Response:
    await shares.remove_share(session, record_id=record_id, user_id=user_id, actor=actor, now=now)
    return Response(status_code=204)


# -- named access (§3.2) ------------------------------------------------------------


@router.post("/{record_id}/named-access", status_code=201, response_model=NamedAccessPublic,
             responses=problem_responses(401, 403, 404, 409, 410, 422))
async def add_named(record_id: uuid.UUID, body: NamedAccessCreate, actor: StaffUser, session: SessionDep,
                    now: NowDep) -> NamedAccessPublic:
    named = await shares.add_named(session, record_id=record_id, data=body, actor=actor, now=now)
    return NamedAccessPublic.model_validate(named, from_attributes=True)


@router.get("/{record_id}/named-access", response_model=list[NamedAccessPublic],
            responses=problem_responses(401, 403, 404, 410, 422))
async def list_named(record_id: uuid.UUID, actor: StaffUser, session: SessionDep,
                     now: NowDep) -> list[NamedAccessPublic]:
    rows = await shares.list_named(session, record_id=record_id, actor=actor, now=now)
    return [NamedAccessPublic.model_validate(n, from_attributes=True) for n in rows]


@router.delete("/{record_id}/named-access/{user_id}", status_code=204,
               responses=problem_responses(401, 403, 404, 410, 422))
async def remove_named(record_id: uuid.UUID, user_id: uuid.UUID, actor: StaffUser, session: SessionDep,
                       now: NowDep) -> Response:
    await shares.remove_named(session, record_id=record_id, user_id=user_id, actor=actor, now=now)
    return Response(status_code=204)


# -- legal hold (§6.5) and review (§6.4) ------------------------------------------------


@router.post("/{record_id}/legal-hold", response_model=LegalHoldPublic,
             responses=problem_responses(401, 403, 404, 410, 422))
async def set_legal_hold(record_id: uuid.UUID, body: LegalHoldChange, actor: HoldDirector, session: SessionDep,
                         now: NowDep) -> LegalHoldPublic:
    """A director places (or lifts) a legal hold: a held record is never destroyed."""
    return await lifecycle.set_legal_hold(session, record_id=record_id, data=body, actor=actor, now=now)


@router.post("/{record_id}/review", response_model=ReviewPublic,
             responses=problem_responses(401, 403, 404, 410, 422))
async def review_record(record_id: uuid.UUID, actor: CurrentUser, session: SessionDep, state: StateDep,
                        now: NowDep, body: ReviewCreate | None = None) -> ReviewPublic:
    """Record that the record was verified as accurate; moves `review_due` forward."""
    return await lifecycle.review_record(session, record_id=record_id, note=body.note if body else None,
                                         actor=actor, now=now, keyring=state.keyring, settings=state.settings)
