"""FastAPI dependencies and their aliases: SessionDep, StateDep, CurrentActor, ..."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.security import OAuth2
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from app.core.errors import PolicyDenied, Problem
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.core.security import InvalidToken, TokenClaims
from app.core.state import AppState
from app.policy.actor import Actor
from app.policy.scopes import SCOPES
from app.workflows.audit.trail import add_event
from app.workflows.auth import load_actor, unauthorized


class BearerToken(OAuth2):
    """The bearer access token, documented as one OAuth2 scheme with two flows: the password
    form for people (the docs explorer's Authorize) and client credentials for other
    systems, whose scopes are listed from app/policy/scopes.py."""

    def __init__(self) -> None:
        super().__init__(
            flows=OAuthFlows(
                password=OAuthFlowPassword(tokenUrl="/auth/token", refreshUrl="/auth/token", scopes={}),
                clientCredentials=OAuthFlowClientCredentials(tokenUrl="/auth/token", scopes=dict(SCOPES)),
            ),
            scheme_name="OAuth2",
            description="Accounts log in with the password flow and act under their role (they hold no "
                        "scopes). Service clients use client credentials and may do only what their "
                        "scopes name. Send the access token as `Authorization: Bearer <token>`.",
            auto_error=False,
        )

    async def __call__(self, request: HTTPConnection) -> str | None:
        scheme, param = get_authorization_scheme_param(request.headers.get("Authorization"))
        return param if scheme.lower() == "bearer" and param else None


oauth2_scheme = BearerToken()

# All that a session whose password must be changed may do (§6.6).
PASSWORD_CHANGE_ROUTES = frozenset({"/users/me", "/users/me/password", "/auth/logout"})


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


async def get_claims(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> TokenClaims:
    """The verified claims of the bearer access token (no database work).

    It reads the state and the clock itself rather than through StateDep and NowDep: on
    every authenticated request, each level of sub-dependencies costs FastAPI a round of
    solving (measured: about 100 µs of CPU per request for the read's nine).
    """
    if not token:
        raise unauthorized("a bearer token is required")
    state: AppState = request.app.state.kmm
    try:
        claims = state.tokens.decode(token, expected="access", now=state.clock.now())
        uuid.UUID(claims.sub)
    except InvalidToken as exc:
        raise unauthorized(str(exc)) from exc
    except ValueError as exc:
        raise unauthorized("invalid token") from exc
    if claims.password_change_required:
        route = request.scope.get("route")
        if getattr(route, "path", None) not in PASSWORD_CHANGE_ROUTES:
            raise PolicyDenied("the account's password was reset: change it (POST /users/me/password), "
                               "then refresh the session", rule="password-change-required", clause="§6.6")
    return claims


ClaimsDep = Annotated[TokenClaims, Depends(get_claims)]


async def get_actor(request: Request, claims: ClaimsDep) -> Actor:
    state: AppState = request.app.state.kmm
    return await load_actor(state.rows, claims)


CurrentActor = Annotated[Actor, Depends(get_actor)]


async def refuse(request: Request, session: AsyncSession, actor: Actor, now: datetime, denial: PolicyDenied,
                 *, record_action: str | None = None) -> None:
    """Audit a refusal at the door (a role check), then raise it.

    The event is ``endpoint.denied`` about the route; with ``record_action``, on a route about
    one record, it is that record's own event (``record_action``, the record's id) instead.
    """
    route = request.scope.get("route")
    record_id = _record_id(request) if record_action else None
    if record_action and record_id is not None:
        action, resource_type, resource_id = record_action, "record", str(record_id)
    else:
        action, resource_type = "endpoint.denied", "endpoint"
        resource_id = getattr(route, "path", request.url.path)[:64]
    add_event(session, now=now, actor=actor, action=action, resource_type=resource_type,
              resource_id=resource_id, decision="deny", rule=denial.extra["rule"], clause=denial.extra["clause"],
              detail={"method": request.method})
    await session.commit()
    raise denial


def _record_id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(request.path_params.get("record_id")))
    except ValueError:
        return None


async def get_user(request: Request, actor: CurrentActor, session: SessionDep, now: NowDep) -> Actor:
    if actor.kind != "user":
        await refuse(request, session, actor, now, PolicyDenied(
            "this endpoint is for accounts, not service clients", rule="accounts-only", clause="§6.6"))
    return actor


CurrentUser = Annotated[Actor, Depends(get_user)]


async def get_staff(request: Request, actor: CurrentUser, session: SessionDep, now: NowDep) -> Actor:
    if not actor.is_staff:
        await refuse(request, session, actor, now, PolicyDenied(
            "only staff accounts (colleagues and directors) may do this", rule="staff-only", clause="§4.2"))
    return actor


StaffUser = Annotated[Actor, Depends(get_staff)]


_GATES: dict[Callable[..., Awaitable[Actor]], tuple[str, str]] = {}


def director_only(rule: str = "director-only", clause: str = "§4.5", *, detail: str = "only a director may do this",
                  record_action: str | None = None) -> Callable[..., Awaitable[Actor]]:
    """The one check for "directors only": anyone else is refused (403, ``rule`` and ``clause``),
    and the refusal is always audited (see ``refuse``).

    Directors decide who may reach what (§4.5) and answer for the policy (§3.4); a route whose
    refusal cites a narrower clause names it here. The gate runs before the body is read.
    """

    async def gate(request: Request, actor: CurrentUser, session: SessionDep, now: NowDep) -> Actor:
        if not actor.is_director:
            await refuse(request, session, actor, now, PolicyDenied(detail, rule=rule, clause=clause),
                         record_action=record_action)
        return actor

    _GATES[gate] = (rule, clause)
    return gate


def director_gate(call: object) -> tuple[str, str] | None:
    """The (rule, clause) of a directors-only gate, or None when ``call`` is not one."""
    return _GATES.get(call) if callable(call) else None  # type: ignore[arg-type]


get_director = director_only()
DirectorUser = Annotated[Actor, Depends(get_director)]


async def limit_param(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")] = DEFAULT_LIMIT,
) -> int:
    """The page size; its bounds are in the OpenAPI document, and FastAPI refuses the rest with 422."""
    return limit


LimitDep = Annotated[int, Depends(limit_param)]


def etag(version: int) -> str:
    """A record's ETag: its version, as a strong entity tag."""
    return f'"v{version}"'


@dataclass(frozen=True, slots=True)
class IfMatchTag:
    """The If-Match header of an update; ``version`` is the record version the caller last read.

    FastAPI solves dependencies before it validates the path and the body, so the refusal is
    raised when the route asks for the version, once the request is otherwise valid: bad
    input is 422 whatever If-Match says.
    """

    header: str | None

    @property
    def version(self) -> int:
        """The version in the ETag (made by ``etag``): 428 without one (or with ``*``), 412 when
        the tag is no version at all. The workflow refuses a stale version with 412."""
        if not self.header or self.header.strip() == "*":
            raise Problem(428, "send If-Match with the record's ETag to update it", type="precondition-required")
        tag = self.header.strip()
        tag = tag.removeprefix("W/").strip('"')
        try:
            return int(tag.removeprefix("v"))
        except ValueError as exc:
            raise Problem(412, "the If-Match ETag does not match the record", type="precondition-failed") from exc


async def get_if_match(if_match: Annotated[str | None, Header(max_length=100)] = None) -> IfMatchTag:
    return IfMatchTag(if_match)


IfMatch = Annotated[IfMatchTag, Depends(get_if_match)]


# Idempotency-Key (IETF httpapi-idempotency-key-header): up to 255 printable ASCII characters.
IdempotencyKeyDep = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r'^[\x20-\x7e]+$',
    description="retrying with the same key (and the same body) returns the first result and creates "
                "nothing more; keys are remembered for 24 hours",
)]
