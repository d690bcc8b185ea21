"""/users: directors manage accounts; anyone logged in reads /users/me."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request, Response

from app.core.pagination import Page
from app.deps import CurrentUser, DirectorUser, LimitDep, NowDep, SessionDep, StateDep
from app.models.users import PasswordChange, PasswordReset, User, UserCreate, UserPublic, UserUpdate
from app.routers.responses import problem_responses
from app.workflows import users

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserPublic, responses=problem_responses(401, 403))
async def me(actor: CurrentUser, session: SessionDep) -> User:
    return await users.get_user(session, actor.id)


@router.post("/me/password", status_code=204, responses=problem_responses(401, 403, 422, 429),
             summary="Change one's own password; the account's other sessions end")
async def change_password(
    body: PasswordChange, request: Request, actor: CurrentUser, session: SessionDep, state: StateDep, now: NowDep
) -> Response:
    await users.change_own_password(session, state=state, actor=actor, current=body.current_password,
                                        new=body.new_password, now=now,
                                        address=request.client.host if request.client else None)
    return Response(status_code=204)


@router.post("", status_code=201, response_model=UserPublic,
             responses=problem_responses(401, 403, 422))
async def create_user(
    body: UserCreate, actor: DirectorUser, session: SessionDep, state: StateDep, now: NowDep
) -> User:
    return await users.create_user(session, data=body, passwords=state.passwords, now=now,
                                      actor=actor)


@router.get("", response_model=Page[UserPublic], responses=problem_responses(400, 401, 403, 422))
async def list_users(
    actor: DirectorUser,
    session: SessionDep,
    state: StateDep,
    limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
    active: bool | None = None,
) -> Page[UserPublic]:
    return await users.list_users(session, cursors=state.cursors, limit=limit, cursor=cursor,
                                     active=active)


@router.get("/{user_id}", response_model=UserPublic, responses=problem_responses(401, 403, 404, 422))
async def get_user(user_id: uuid.UUID, actor: DirectorUser, session: SessionDep) -> User:
    return await users.get_user(session, user_id)


@router.patch("/{user_id}", response_model=UserPublic,
              responses=problem_responses(401, 403, 404, 422))
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, actor: DirectorUser, session: SessionDep, now: NowDep
) -> User:
    return await users.update_user(session, user_id=user_id, data=body, now=now, actor=actor)


@router.post("/{user_id}/password", status_code=204, responses=problem_responses(401, 403, 404, 422),
             summary="A director resets an account's password; it must be changed at the next login")
async def reset_password(
    user_id: uuid.UUID, body: PasswordReset, actor: DirectorUser, session: SessionDep, state: StateDep, now: NowDep
) -> Response:
    await users.reset_password(session, state=state, actor=actor, user_id=user_id, new=body.new_password,
                                   now=now)
    return Response(status_code=204)


@router.post("/{user_id}/unlock", status_code=204, responses=problem_responses(401, 403, 404, 422),
             summary="A director lifts a lock from failed logins")
async def unlock(user_id: uuid.UUID, actor: DirectorUser, session: SessionDep, state: StateDep,
                 now: NowDep) -> Response:
    await users.unlock(session, state=state, actor=actor, user_id=user_id, now=now)
    return Response(status_code=204)
