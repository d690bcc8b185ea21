"""POST /auth/token (password, client_credentials and refresh_token grants), /auth/refresh
(the refresh_token grant with a JSON body), /auth/logout.

The two token doors answer errors as RFC 6749 §5.2 says (``{"error", "error_description"}``);
every other endpoint answers problem+json.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from app.core.errors import Problem
from app.deps import CurrentActor, NowDep, SessionDep, StateDep
from app.models.auth import TokenPair
from app.routers.responses import AUTH_ERRORS
from app.workflows import auth

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# The service's error types on the token doors, as RFC 6749 §5.2 error codes.
_OAUTH_ERRORS = {
    "invalid-grant": "invalid_grant",
    "not-authenticated": "invalid_grant",  # a refresh token that is not (or no longer) good
    "invalid-client": "invalid_client",
    "invalid-scope": "invalid_scope",
    "unsupported-grant-type": "unsupported_grant_type",
    # A throttled address or a locked email (429, Retry-After): RFC 6749 has no code for
    # throttling; the grant is refused for now, and the status and Retry-After say why.
    "login-throttled": "invalid_grant",
    "account-locked": "invalid_grant",
    "login-busy": "temporarily_unavailable",
}


def token_error(status: int, error: str, description: str, *, headers: dict[str, str] | None = None,
                **extra: Any) -> JSONResponse:
    """An RFC 6749 §5.2 error response (never cached, §5.1)."""
    return JSONResponse({"error": error, "error_description": description, **extra}, status_code=status,
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})})


def _from_problem(exc: Problem) -> JSONResponse:
    error = _OAUTH_ERRORS.get(exc.type, "invalid_request" if exc.status < 500 else "server_error")
    # invalid_client keeps its 401 and WWW-Authenticate; a refused grant is 400 (§5.2); a
    # throttle keeps its 429 and an overload its 503, each with Retry-After.
    status = 401 if error == "invalid_client" else exc.status if exc.status in (429, 503) else 400
    # A client that fails to authenticate is told how to (RFC 6749 §5.2: the scheme it may use).
    headers = {k: v for k, v in exc.headers.items() if k != "WWW-Authenticate"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="kmm"'
    extra = {k: exc.extra[k] for k in ("rule", "clause") if k in exc.extra}
    return token_error(status, error, exc.detail, headers=headers, **extra)


def _from_validation(exc: RequestValidationError) -> JSONResponse:
    # Name the fields, never echo the values (a password may be among them).
    fields = sorted({str(e.get("loc", ("body",))[-1]) for e in exc.errors()})
    return token_error(400, "invalid_request", "missing or invalid: " + ", ".join(fields))


class TokenRoute(APIRoute):
    """A token door: its errors are RFC 6749 §5.2 bodies rather than problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        form_only = "/token" in self.path

        async def answer(request: Request) -> Response:
            if form_only:
                media = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if media not in FORM_TYPES:
                    return token_error(400, "invalid_request", "send the token request as a form: "
                                       "Content-Type: application/x-www-form-urlencoded (RFC 6749 §4)")
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _from_validation(exc)
            except Problem as exc:
                return _from_problem(exc)
            except HTTPException as exc:
                if exc.status_code == 413:  # the body limit, like every door's: problem+json
                    raise
                return token_error(400, "invalid_request", "the request body cannot be read")

        return answer


def _oauth_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    schema = {"type": "object", "required": ["error", "error_description"],
              "properties": {"error": {"type": "string", "enum": [
                  "invalid_request", "invalid_client", "invalid_grant", "invalid_scope",
                  "unsupported_grant_type", "temporarily_unavailable"]},
                  "error_description": {"type": "string"}}}
    return {s: {"description": "RFC 6749 §5.2 error", "content": {"application/json": {"schema": schema}}}
            for s in statuses}


router = APIRouter(prefix="/auth", tags=["auth"])
tokens = APIRouter(route_class=TokenRoute)


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


def _missing(*fields: str) -> Problem:
    return Problem(400, f"{' and '.join(fields)} {'are' if len(fields) > 1 else 'is'} required",
                   type="invalid-request")


@tokens.post(
    "/token",
    response_model=TokenPair,
    responses=_oauth_responses(400, 401, 429),
    summary="Get tokens: password form, client credentials, or refresh_token",
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
    refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
    scope: Annotated[str, Form(max_length=512)] = "",
) -> TokenPair:
    """A form (`application/x-www-form-urlencoded`), as RFC 6749 §4 asks. The response's
    `scope` names the scopes granted. Errors are RFC 6749 §5.2 bodies."""
    if grant_type in (None, "password"):
        if not username or not password:
            raise _missing("username", "password")
        return await auth.login_with_password(session, state=state, email=username, password=password,
                                                  now=now, scope=scope,
                                                  address=request.client.host if request.client else None)
    if grant_type == "client_credentials":
        basic = _basic_credentials(request)
        if basic:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise _missing("client_id", "client_secret")
        return await auth.login_client(session, state=state, client_id=client_id,
                                           client_secret=client_secret, now=now, scope=scope)
    if grant_type == "refresh_token":
        if not refresh_token:
            raise _missing("refresh_token")
        return await auth.refresh(session, state=state, token=refresh_token, now=now, scope=scope)
    raise Problem(400, "grant_type must be password, client_credentials or refresh_token",
                  type="unsupported-grant-type")


@tokens.post("/refresh", response_model=TokenPair, responses=_oauth_responses(400),
             summary="The refresh_token grant with a JSON body (as POST /auth/token)")
async def refresh(body: RefreshIn, session: SessionDep, state: StateDep, now: NowDep) -> TokenPair:
    return await auth.refresh(session, state=state, token=body.refresh_token, now=now)


router.include_router(tokens)


@router.post("/logout", status_code=204, responses=AUTH_ERRORS)
async def logout(actor: CurrentActor, session: SessionDep, now: NowDep) -> Response:
    await auth.logout(session, actor=actor, now=now)
    return Response(status_code=204)
