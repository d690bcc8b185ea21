"""RFC 9457 problem details for every error the service returns."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

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
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error with a status, a stable ``type`` slug and a safe ``detail``.

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


class PolicyDenied(Problem):
    """A policy decision said no; names the rule and the clause of the policy."""

    def __init__(self, detail: str, *, rule: str, clause: str, status: int = 403, **extra: Any) -> None:
        super().__init__(status, detail, type="policy-denied", rule=rule, clause=clause, **extra)


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found", type="not-found")


def field_error(field: str, message: str, **extra: Any) -> Problem:
    """A 422 naming the failing field, shaped like FastAPI's validation errors."""
    return Problem(
        422,
        f"{field}: {message}",
        type="validation-error",
        errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}],
        **extra,
    )


def problem_response(
    status: int,
    detail: str,
    *,
    type: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, type=exc.type, title=exc.title, headers=exc.headers, **exc.extra
        )

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
