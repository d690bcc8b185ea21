"""OpenAPI declarations of the problem+json responses each route can give.

Routes declare what their own logic can answer with ``problem_responses(...)``.
``document_common_problems`` then adds, to every operation of the generated document,
what the shared plumbing can answer whatever the route: 401 where a login is needed,
422 where there is input to validate, 400 (a body that cannot be decoded) and 413 (a body
over the limit) where there is a body, and 503 where the database is used. It also
gives every problem response the ProblemDetail schema under application/problem+json,
the only media type the service sends errors as."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Response
from pydantic import BaseModel, Field

from app.models.records import Tombstone


class Citation(BaseModel):
    rule: str = Field(description="a rule of the policy table (DESIGN §4)")
    clause: str = Field(description="the clauses it cites, e.g. §3.2")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", "review_due"], ["query", "limit"], ...')
    msg: str = Field(description="what is wrong, and how to fix it where that is known; never the input")
    type: str = Field(description="pydantic's error type, e.g. missing, timezone_aware, json_invalid")


class ProblemDetail(BaseModel):
    """An RFC 9457 problem. Besides the standard members, a problem carries whichever of the
    others apply; none ever contains record content."""

    type: str = Field(description="a URI naming the kind of problem, e.g. .../problems/policy-denied")
    title: str
    status: int
    detail: str = Field(description="what happened and, where it can, what would allow it")
    request_id: str | None = Field(default=None, description="the X-Request-ID of the request, for the logs")
    rule: str | None = Field(default=None, description="policy refusals: the rule cited (the one that would allow "
                                                       "the action; `former` for a deactivated account)")
    clause: str | None = Field(default=None, description="policy refusals: the clauses of that rule, e.g. §3.2")
    allowed_by: list[Citation] | None = Field(
        default=None, description="a refusal by the rule table: every rule that would allow the action on a "
                                  "record of its class, in table order (empty when none would)")
    errors: list[FieldError] | None = Field(default=None, description="invalid input: one entry per field")
    tombstone: Tombstone | None = Field(default=None, description="410 for a destroyed record: what stays (§4.6)")
    current_status: str | None = Field(default=None, description="409 for a request in the wrong state: its status")
    missing: list[str] | None = Field(default=None, description="409 for a disclosure not yet closable: the steps "
                                                                "still to record (reported, subject_informed)")
    existing_id: str | None = Field(default=None, description="409 for a letter already logged for the subject: "
                                                              "the access request it is, when the caller may see "
                                                              "it (§3.4)")


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Denied by a rule of the policy",
    404: "Not found",
    409: "Conflict with the current state",
    410: "Destroyed",
    412: "The record changed since it was read (stale If-Match)",
    413: "Body too large",
    415: "Unsupported media type",
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


_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetail"}


def _problem_doc(status: int) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS.get(status, "Error"),
            "content": {"application/problem+json": {"schema": dict(_PROBLEM_REF)}}}


def _common_statuses(operation: dict[str, Any]) -> set[int]:
    has_body = "requestBody" in operation
    has_params = bool(operation.get("parameters"))
    needs_login = bool(operation.get("security"))
    statuses: set[int] = set()
    if needs_login:
        statuses.add(401)
    if has_body or has_params:
        statuses.add(422)
    if has_body:
        statuses |= {400, 413}
    if has_body or has_params or needs_login:
        # Only a probe that takes no input and needs no login (/healthz) never reads the database.
        statuses.add(503)
    return statuses


def document_common_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Add the plumbing's problem responses to every operation (in place; idempotent)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in problem.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["ProblemDetail"] = problem
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status in _common_statuses(operation):
                responses.setdefault(str(status), _problem_doc(status))
            operation["responses"] = responses = dict(sorted(responses.items()))
            for response in responses.values():
                content = response.get("content", {})
                if "application/problem+json" in content:
                    content["application/problem+json"] = {"schema": dict(_PROBLEM_REF)}
                    if content.get("application/json", {}).get("schema") == _PROBLEM_REF:
                        del content["application/json"]
    return document


def protect(response: Response, classification: str | None) -> None:
    """No record is ever stored by a cache (a general record is still about someone); non-general
    content also says what it is (§3.7, §4.4)."""
    response.headers["Cache-Control"] = "no-store"
    if classification and classification != "general":
        response.headers["X-Confidentiality"] = classification


def labelled(classification: str) -> Any:
    """A router dependency: every successful response of the router is ``protect``-ed as ``classification``."""

    async def _label(response: Response) -> None:
        protect(response, classification)

    return Depends(_label)
