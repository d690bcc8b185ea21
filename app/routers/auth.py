"""POST /auth/token, /auth/refresh, /auth/logout."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field

from app.core.errors import Problem
from app.deps import CurrentActor, NowDep, SessionDep, StateDep
from app.models.accounts import TokenPair
from app.routers.responses import AUTH_ERRORS, problem_responses
from app.workflows import sessions

router = APIRouter(prefix="/auth", tags=["auth"])


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, param = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "basic" or not param:
        return None
    try:
        user, sep, pw = base64.b64decode(param, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
    return unquote_plus(user), unquote_plus(pw)


@router.post(
    "/token",
    response_model=TokenPair,
    responses=problem_responses(400, 401, 422, 429),
    summary="Log in: OAuth2 password form, or client credentials",
)
async def token(
    request: Request,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    grant_type: Annotated[str | None, Form(max_length=32)] = None,
    username: Annotated[str | None, Form(max_length=254)] = None,
    password: Annotated[str | None, Form(max_length=256)] = None,
    client_id: Annotated[str | None, Form(max_length=64)] = None,
    client_secret: Annotated[str | None, Form(max_length=256)] = None,
    scope: Annotated[str, Form(max_length=512)] = "",
) -> TokenPair:
    if grant_type in (None, "password"):
        if not username or not password:
            raise Problem(422, "username and password are required", type="validation-error",
                          errors=[{"loc": ["body", "username"], "msg": "required", "type": "missing"}])
        return await sessions.login_with_password(session, state=state, email=username, password=password,
                                                  now=now, address=request.client.host if request.client else None)
    if grant_type == "client_credentials":
        basic = _basic_credentials(request)
        if basic:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise Problem(422, "client_id and client_secret are required", type="validation-error",
                          errors=[{"loc": ["body", "client_id"], "msg": "required", "type": "missing"}])
        return await sessions.login_client(session, state=state, client_id=client_id,
                                           client_secret=client_secret, now=now)
    raise Problem(400, "grant_type must be password or client_credentials",
                  type="unsupported-grant-type")


@router.post("/refresh", response_model=TokenPair, responses=problem_responses(401, 422))
async def refresh(body: RefreshIn, session: SessionDep, state: StateDep, now: NowDep) -> TokenPair:
    return await sessions.refresh(session, state=state, token=body.refresh_token, now=now)


@router.post("/logout", status_code=204, responses=AUTH_ERRORS)
async def logout(actor: CurrentActor, session: SessionDep, now: NowDep) -> Response:
    await sessions.logout(session, actor=actor, now=now)
    return Response(status_code=204)
