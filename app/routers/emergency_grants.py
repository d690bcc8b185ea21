"""/emergency-grants: a director's time-limited authorisation to read (§4.5)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from app.core.pagination import Page
from app.deps import CurrentUser, DirectorUser, LimitDep, NowDep, SessionDep, StateDep
from app.models.emergency_grants import GrantCreate, GrantPublic
from app.routers.responses import problem_responses
from app.workflows import emergency_grants

router = APIRouter(prefix="/emergency-grants", tags=["emergency grants"])


@router.post("", status_code=201, response_model=GrantPublic, responses=problem_responses(401, 403, 422))
async def issue_grant(body: GrantCreate, actor: DirectorUser, session: SessionDep, now: NowDep) -> GrantPublic:
    grant = await emergency_grants.issue_grant(session, data=body, actor=actor, now=now)
    return emergency_grants.grant_public(grant, now)


@router.get("", response_model=Page[GrantPublic], responses=problem_responses(400, 401, 403, 422))
async def list_grants(
    actor: CurrentUser, session: SessionDep, state: StateDep, now: NowDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
    active: bool = Query(default=False, description="only grants that are neither revoked nor expired"),
) -> Page[GrantPublic]:
    """Directors see every grant; anyone else sees the grants made to them."""
    return await emergency_grants.list_grants(session, actor=actor, now=now, active_only=active, cursors=state.cursors,
                                     limit=limit, cursor=cursor)


@router.delete("/{grant_id}", response_model=GrantPublic, responses=problem_responses(401, 403, 404, 409, 422))
async def revoke_grant(grant_id: uuid.UUID, actor: DirectorUser, session: SessionDep, now: NowDep) -> GrantPublic:
    grant = await emergency_grants.revoke_grant(session, grant_id=grant_id, actor=actor, now=now)
    return emergency_grants.grant_public(grant, now)
