"""OpenAPI declarations of the problem+json responses each route can give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ProblemDetail(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
    rule: str | None = None
    clause: str | None = None
    errors: list[dict[str, Any]] | None = None


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Denied by a rule of the policy",
    404: "Not found",
    409: "Conflict with the current state",
    410: "Destroyed",
    412: "The record changed since it was read (stale If-Match)",
    413: "Body too large",
    422: "Invalid input",
    428: "If-Match is required",
    429: "Too many requests",
    503: "Database unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {
            "model": ProblemDetail,
            "description": _DESCRIPTIONS.get(s, "Error"),
            "content": {"application/problem+json": {}},
        }
        for s in statuses
    }


AUTH_ERRORS = problem_responses(401, 403, 422)
