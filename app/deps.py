"""FastAPI dependencies and their aliases: SessionDep, StateDep, CurrentActor, ..."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import PolicyDenied, Problem
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.core.security import InvalidToken
from app.core.state import AppState
from app.models.accounts import AuthSession, ServiceClient, User
from app.policy.actor import Actor
from app.workflows.audit_trail import add_event

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.kmm
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_now(state: StateDep) -> datetime:
    return state.clock.now()


NowDep = Annotated[datetime, Depends(get_now)]


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, type="not-authenticated", headers={"WWW-Authenticate": "Bearer"})


async def load_actor(session: AsyncSession, state: AppState, token: str, now: datetime) -> Actor:
    """Decode the access token and check its account and session in one query."""
    try:
        claims = state.tokens.decode(token, expected="access", now=now)
        subject_id = uuid.UUID(claims.sub)
    except (InvalidToken, ValueError) as exc:
        raise unauthorized(str(exc) if isinstance(exc, InvalidToken) else "invalid token") from exc
    if claims.kind == "client":
        row = (
            await session.execute(
                select(ServiceClient, AuthSession.revoked_at)
                .join(AuthSession, col(AuthSession.client_id) == ServiceClient.id)
                .where(ServiceClient.id == subject_id, AuthSession.id == claims.sid)
            )
        ).first()
        if row is None or row[1] is not None or not row[0].active:
            raise unauthorized("the session has ended")
        client: ServiceClient = row[0]
        return Actor(id=client.id, kind="client", role=None, scopes=frozenset(client.scopes),
                     session_id=claims.sid)
    row = (
        await session.execute(
            select(User, AuthSession.revoked_at)
            .join(AuthSession, col(AuthSession.user_id) == User.id)
            .where(User.id == subject_id, AuthSession.id == claims.sid)
        )
    ).first()
    if row is None or row[1] is not None:
        raise unauthorized("the session has ended")
    user: User = row[0]
    if not user.active:
        raise unauthorized("the account is deactivated (§7.2)")
    return actor_from_user(user, session_id=claims.sid)


def actor_from_user(user: User, *, session_id: uuid.UUID | None = None) -> Actor:
    return Actor(
        id=user.id,
        kind="user",
        role=user.role,
        active=user.active,
        line_manager_id=user.line_manager_id,
        staff_type=user.staff_type,
        session_id=session_id,
    )


async def get_actor(
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Actor:
    if not token:
        raise unauthorized("a bearer token is required")
    return await load_actor(session, state, token, now)


CurrentActor = Annotated[Actor, Depends(get_actor)]


async def _refuse(request: Request, session: AsyncSession, actor: Actor, now: datetime, denial: PolicyDenied) -> None:
    """Audit a refusal at the door (a role check), then raise it."""
    route = request.scope.get("route")
    add_event(session, now=now, actor=actor, action="endpoint.denied", resource_type="endpoint",
              resource_id=getattr(route, "path", request.url.path)[:64], decision="deny",
              rule=denial.extra["rule"], clause=denial.extra["clause"], detail={"method": request.method})
    await session.commit()
    raise denial


async def get_user(request: Request, actor: CurrentActor, session: SessionDep, now: NowDep) -> Actor:
    if actor.kind != "user":
        await _refuse(request, session, actor, now, PolicyDenied(
            "this endpoint is for accounts, not service clients", rule="accounts-only", clause="§6.6"))
    return actor


CurrentUser = Annotated[Actor, Depends(get_user)]


async def get_staff(request: Request, actor: CurrentUser, session: SessionDep, now: NowDep) -> Actor:
    if not actor.is_staff:
        await _refuse(request, session, actor, now, PolicyDenied(
            "only staff accounts (colleagues and directors) may do this", rule="staff-only", clause="§4.2"))
    return actor


StaffUser = Annotated[Actor, Depends(get_staff)]


async def get_director(request: Request, actor: CurrentUser, session: SessionDep, now: NowDep) -> Actor:
    if not actor.is_director:
        # Directors decide who may reach what (§4.5) and answer for the policy (§3.4).
        await _refuse(request, session, actor, now, PolicyDenied(
            "only a director may do this", rule="director-only", clause="§4.5"))
    return actor


DirectorUser = Annotated[Actor, Depends(get_director)]


async def limit_param(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")] = DEFAULT_LIMIT,
) -> int:
    """The page size; its bounds are in the OpenAPI document, and FastAPI refuses the rest with 422."""
    return limit


LimitDep = Annotated[int, Depends(limit_param)]
