"""RFC 9457 problem details for every error the service returns."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, Protocol

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.context import request_id_var
from app.core.routing import RouteTable, allow_header

log = logging.getLogger("kmm.errors")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://kmm.example/problems/"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Precondition required",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error answered as problem+json: a status, a stable ``type`` slug and a safe ``detail``.

    The HTTP layer (dependencies, routers, the plumbing in app/core) raises it with a status;
    workflows raise the domain errors below, whose status is looked up in ``DOMAIN_STATUS``.
    ``detail`` must never contain record content: it is logged and returned.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


# -- domain errors: what a workflow raises, in the domain's words ---------------------------


class DomainError(Problem):
    """A workflow's error. It names no HTTP status: ``DOMAIN_STATUS`` maps its class to one."""

    default_type = "error"

    def __init__(self, detail: str, *, type: str | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(domain_status(self), detail, type=type or self.default_type, headers=headers, **extra)


class NotFound(DomainError):
    """``what`` does not exist, or the caller may not know that it does."""

    default_type = "not-found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(DomainError):
    """The request does not fit the current state (a transition, a duplicate)."""

    default_type = "conflict"


class StaleVersion(DomainError):
    """The caller's version of a record is not the stored one (optimistic locking)."""

    default_type = "precondition-failed"

    def __init__(self, detail: str = "the record changed since you read it; fetch it again", **extra: Any) -> None:
        super().__init__(detail, **extra)


class Gone(DomainError):
    """The thing was destroyed; what remains of it (a tombstone) goes with the error."""

    default_type = "gone"

    def __init__(self, detail: str, *, type: str | None = None, tombstone: dict[str, Any] | None = None,
                 **extra: Any) -> None:
        if tombstone is not None:
            extra = {"tombstone": tombstone, **extra}
        super().__init__(detail, type=type, **extra)


class Locked(DomainError):
    """Refused for now: try again after ``retry_after`` seconds (a throttle, a lockout)."""

    default_type = "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int, type: str | None = None, **extra: Any) -> None:
        super().__init__(detail, type=type, headers={"Retry-After": str(retry_after)}, **extra)


class Busy(DomainError):
    """The service cannot take this now; try again after ``retry_after`` seconds."""

    default_type = "service-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1, type: str | None = None, **extra: Any) -> None:
        super().__init__(detail, type=type, headers={"Retry-After": str(retry_after)}, **extra)


class Unauthenticated(DomainError):
    """No valid credentials: a bearer token, or a login, is needed."""

    default_type = "not-authenticated"

    def __init__(self, detail: str, *, type: str | None = None, **extra: Any) -> None:
        super().__init__(detail, type=type, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Invalid(DomainError):
    """Input the policy or the model refuses (``field_error`` names the field)."""

    default_type = "validation-error"


class Denied(DomainError):
    """A policy decision said no; names the rule and the clause of the policy."""

    default_type = "policy-denied"

    def __init__(self, detail: str, *, rule: str, clause: str, **extra: Any) -> None:
        super().__init__(detail, rule=rule, clause=clause, **extra)

    @classmethod
    def of(cls, decision: Refusal, what: str) -> Denied:
        """The refusal a policy decision (app.policy.decide) made: ``what`` denied, and why; a refusal
        by the rule table also lists, in ``allowed_by``, every rule that would allow it."""
        cited = getattr(decision, "allowed_by", None)
        if cited is None:
            return Denied(f"{what}: {decision.reason}", rule=decision.rule, clause=decision.clause)
        return Denied(f"{what}: {decision.reason}", rule=decision.rule, clause=decision.clause,
                      allowed_by=[{"rule": rule, "clause": clause} for rule, clause in cited])


class Refusal(Protocol):
    @property
    def rule(self) -> str: ...
    @property
    def clause(self) -> str: ...
    @property
    def reason(self) -> str: ...


PolicyDenied = Denied  # the name the routers and the policy use

# The one place a domain error becomes an HTTP status (a subclass takes its nearest base's).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    Invalid: 422,
    Unauthenticated: 401,
    Denied: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    StaleVersion: 412,
    Locked: 429,
    Busy: 503,
}


def domain_status(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 500


def not_found(what: str) -> NotFound:
    return NotFound(what)


def field_error(field: str, message: str, **extra: Any) -> Invalid:
    """A 422 naming the failing field, shaped like FastAPI's validation errors."""
    return Invalid(
        f"{field}: {message}",
        errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}],
        **extra,
    )


def problem_body(status: int, detail: str, *, type: str, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """The problem+json body (RFC 9457): every error the service sends is built here."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + type,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    body.update(extra)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    type: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(status, detail, type=type, title=title, **extra)
    if status == 503:  # every "unavailable" says when to try again (RFC 9110 §10.2.3)
        headers = {"Retry-After": "1", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


# What to do about an error of these pydantic types, added to its message.
_HINTS = {
    "timezone_aware": "add a time zone, e.g. Z or +00:00",
}


def _message(err: Any) -> str:
    msg = str(err.get("msg", ""))
    if err.get("type") == "json_invalid":  # the decoder's own words ("Expecting ',' delimiter") hold no input
        reason = (err.get("ctx") or {}).get("error")
        return f"{msg}: {reason}" if isinstance(reason, str) else msg
    hint = _HINTS.get(str(err.get("type")))
    return f"{msg}; {hint}" if hint else msg


def _safe_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Never echo the input back: it may be record content.
    return [
        {"loc": list(err.get("loc", ())), "msg": _message(err), "type": err.get("type")}
        for err in exc.errors()
    ]


def _where_json_breaks(exc: RequestValidationError) -> str | None:
    """For a body that is not JSON: "the body is not valid JSON at line L column C (why)"."""
    errors = exc.errors()
    if len(errors) != 1 or errors[0].get("type") != "json_invalid" or not isinstance(exc.body, str):
        return None
    loc = errors[0].get("loc", ())
    pos = loc[1] if len(loc) == 2 and isinstance(loc[1], int) else None
    if pos is None:
        return None
    line = exc.body.count("\n", 0, pos) + 1
    column = pos - exc.body.rfind("\n", 0, pos)
    reason = (errors[0].get("ctx") or {}).get("error")
    return f"the body is not valid JSON at line {line} column {column}" + (
        f" ({reason})" if isinstance(reason, str) else "")


def _validation_detail(exc: RequestValidationError, errors: list[dict[str, Any]]) -> str:
    broken = _where_json_breaks(exc)
    if broken:
        return broken
    fields = []
    for e in errors:
        name = ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0])
        hint = _HINTS.get(str(e["type"]))
        fields.append(f"{name} ({hint})" if hint else name)
    return "invalid input: " + ", ".join(sorted(set(fields)))


def _db_error_name(exc: Exception) -> str:
    return type(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc).__name__


def problem_of(exc: Problem) -> JSONResponse:
    """The problem+json response of a raised problem."""
    return problem_response(exc.status, exc.detail, type=exc.type, title=exc.title, headers=exc.headers, **exc.extra)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_of(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _safe_validation_errors(exc)
        return problem_response(422, _validation_detail(exc, errors), type="validation-error", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method of the path, not only the first route's
            routes = getattr(request.app.state, "routes", None)
            if isinstance(routes, RouteTable):
                headers = {**(headers or {}), "Allow": allow_header(routes.allowed(request.scope["path"]))}
        return problem_response(
            exc.status_code,
            detail,
            type=_TITLES.get(exc.status_code, "error").lower().replace(" ", "-"),
            headers=headers,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(psycopg.OperationalError)  # the hot path's own connections (app.core.db)
    async def _db_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable", extra={"error": type(exc).__name__})
        return problem_response(
            503, "the database is unavailable; try again shortly", type="database-unavailable",
            headers={"Retry-After": "1"},
        )

    # Whatever else the database says is never a bare 500: a value or a constraint it refuses is
    # the input's fault (422, 409); anything more is 503. Driver messages may hold values: only
    # the error's type is logged, and nothing of it is returned.
    @app.exception_handler(DataError)
    @app.exception_handler(psycopg.DataError)  # the hot path's own connections (app.core.db)
    async def _data_error(_: Request, exc: Exception) -> JSONResponse:
        # The database refused a value the models let through (on PostgreSQL, a NUL character
        # in text, or one longer than its column): bad input, not a fault.
        log.warning("the database refused a value", extra={"error": _db_error_name(exc)})
        return problem_response(422, "a value cannot be stored (for example, text with a NUL character)",
                                type="validation-error")

    @app.exception_handler(IntegrityError)
    @app.exception_handler(psycopg.IntegrityError)
    async def _integrity(_: Request, exc: Exception) -> JSONResponse:
        log.warning("the database refused a change", extra={"error": _db_error_name(exc)})
        return problem_response(409, "the change conflicts with what is stored", type="conflict")

    @app.exception_handler(DBAPIError)
    @app.exception_handler(psycopg.Error)
    @app.exception_handler(sqlite3.Error)
    async def _dbapi(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return await _db_unavailable(request, exc)
        log.error("database error", extra={"error": _db_error_name(exc)})
        return problem_response(503, "the database could not complete the request; try again shortly",
                                type="database-error", headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Log the type and traceback, never the message of a DB error (it may hold values).
        log.error("unhandled error", extra={"error": type(exc).__name__}, exc_info=exc)
        return problem_response(500, "an unexpected error occurred", type="internal-error")
