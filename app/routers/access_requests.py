"""/access-requests: subject and personnel access requests (§3.4 to §3.6)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.core.pagination import Page
from app.deps import CurrentUser, IdempotencyKeyDep, LimitDep, NowDep, SessionDep, StateDep, director_only
from app.models.access_requests import (
    AccessDecision,
    AccessPackage,
    AccessRequest,
    AccessRequestCreate,
    AccessRequestPublic,
    AccessRequestStatus,
    AccessWithdrawal,
)
from app.policy.actor import Actor
from app.routers.responses import labelled, problem_responses, protect
from app.workflows import idempotency
from app.workflows.access_requests import fulfilment, intake, read, rules, transitions

router = APIRouter(prefix="/access-requests", tags=["access requests"],
                   # requests name people and packages carry records: never cached (§3.7, §4.4)
                   dependencies=[labelled("confidential")])

# A director decides and fulfils a request (§3.4).
RequestDirector = Annotated[Actor, Depends(director_only(*rules.DIRECTOR_ONLY))]


@router.post("", status_code=201, response_model=AccessRequestPublic,
             responses=problem_responses(401, 403, 409, 422))
async def log_request(
    body: AccessRequestCreate, actor: CurrentUser, session: SessionDep, state: StateDep, now: NowDep,
    response: Response, idempotency_key: IdempotencyKeyDep = None,
) -> AccessRequestPublic:
    """Log a signed letter the Director received; a verbal or wrongly signed one is refused (422), and
    a letter already logged for the subject is a duplicate (409, with the request's `existing_id` when
    the caller may see that request)."""
    outcome = await idempotency.create_once(
        session, key=idempotency_key, actor=actor, endpoint="access-requests", body=body, model=AccessRequest,
        now=now, settings=state.settings,
        create=lambda: intake.log_request(session, data=body, actor=actor, now=now),
        replay=lambda rid: read.get_request(session, request_id=rid, actor=actor, now=now))
    created = outcome.value
    idempotency.mark(response, outcome)
    response.headers["Location"] = f"/access-requests/{created.id}"
    return created


@router.get("", response_model=Page[AccessRequestPublic], responses=problem_responses(400, 401, 403, 422))
async def list_requests(
    actor: CurrentUser, session: SessionDep, state: StateDep, now: NowDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
    status: AccessRequestStatus | None = None,
    overdue: bool | None = None,
) -> Page[AccessRequestPublic]:
    """By due date. Directors see all; other staff those they logged and their own personnel requests."""
    page = await read.list_requests(session, actor=actor, now=now, cursors=state.cursors, limit=limit,
                                    cursor=cursor, status=status, overdue=overdue)
    return page


@router.get("/{request_id}", response_model=AccessRequestPublic, responses=problem_responses(401, 403, 404, 422))
async def get_request(
    request_id: uuid.UUID, actor: CurrentUser, session: SessionDep, now: NowDep
) -> AccessRequestPublic:
    found = await read.get_request(session, request_id=request_id, actor=actor, now=now)
    return found


@router.post("/{request_id}/decision", response_model=AccessRequestPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def decide(
    request_id: uuid.UUID, body: AccessDecision, actor: RequestDirector, session: SessionDep, now: NowDep,
) -> AccessRequestPublic:
    """A director approves or refuses a received request, with a reason."""
    decided = await transitions.decide_request(session, request_id=request_id, data=body, actor=actor, now=now)
    return decided


@router.post("/{request_id}/withdraw", response_model=AccessRequestPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def withdraw(
    request_id: uuid.UUID, actor: CurrentUser, session: SessionDep, now: NowDep,
    body: AccessWithdrawal | None = None,
) -> AccessRequestPublic:
    """Withdraw an open request: directors, whoever logged it, or the employee it is about."""
    done = await transitions.withdraw_request(session, request_id=request_id, data=body or AccessWithdrawal(),
                                              actor=actor, now=now)
    return done


@router.post("/{request_id}/fulfil", response_model=AccessRequestPublic,
             responses=problem_responses(401, 403, 404, 409, 422))
async def fulfil(
    request_id: uuid.UUID, actor: RequestDirector, session: SessionDep, state: StateDep, now: NowDep
) -> AccessRequestPublic:
    """A director fulfils an approved request: the package is built and stored, encrypted."""
    done = await fulfilment.fulfil_request(session, request_id=request_id, actor=actor, now=now,
                                           keyring=state.keyring, settings=state.settings)
    return done


@router.get("/{request_id}/package", response_model=AccessPackage,
            responses=problem_responses(401, 403, 404, 409, 410, 422))
async def package(
    request_id: uuid.UUID, actor: CurrentUser, session: SessionDep, state: StateDep, now: NowDep, response: Response
) -> AccessPackage:
    """The fulfilled package (JSON), stamped CONFIDENTIAL: directors, and the employee of a personnel request."""
    found = await fulfilment.download_package(session, request_id=request_id, actor=actor, now=now,
                                              keyring=state.keyring)
    protect(response, found.confidentiality)  # the most restrictive record it holds
    return found
