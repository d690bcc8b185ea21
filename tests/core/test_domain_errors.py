"""Workflows raise domain errors; ``install_error_handlers`` maps them to problem+json in one
place, with one status -> title table, and one builder makes every problem body."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core import errors

APP = Path(__file__).resolve().parent.parent.parent / "app"
BASE = "https://kmm.example/problems/"


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def test_no_workflow_speaks_http() -> None:
    """No status code in a workflow: they raise NotFound, Conflict, StaleVersion, Gone, ..."""
    found = {str(p.relative_to(APP)): lines for p in sorted((APP / "workflows").rglob("*.py"))
             if (lines := _calls(p, "Problem"))}
    assert found == {}


def test_core_state_does_not_import_workflows() -> None:
    tree = ast.parse((APP / "core" / "state.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert not [m for m in imported if m.startswith("app.workflows")], imported


def test_the_problem_body_is_built_in_one_place() -> None:
    """No module but app/core/errors.py writes a problem body ({"type", "title", "status", ...}) itself."""
    builders = []
    for path in sorted(APP.rglob("*.py")):
        if path == APP / "core" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if {"title", "status"} <= keys:
                    builders.append(f"{path.relative_to(APP)}:{node.lineno}")
    assert builders == []


def _app(exc: Exception) -> FastAPI:
    app = FastAPI()
    errors.install_error_handlers(app)

    @app.get("/x")
    async def _raise() -> None:
        raise exc

    return app


async def _call(exc: Exception) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(exc))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        return await c.get("/x")


TOMBSTONE = {"id": "1", "classification": "sensitive"}


def _cases() -> list[tuple[str, Any, int, dict[str, Any], dict[str, str]]]:
    e = errors
    return [
        ("not-found", lambda: e.NotFound("subject"), 404,
         {"type": BASE + "not-found", "title": "Not found", "status": 404, "detail": "subject not found"}, {}),
        ("conflict", lambda: e.Conflict("the report is closed", type="report-closed"), 409,
         {"type": BASE + "report-closed", "title": "Conflict", "status": 409, "detail": "the report is closed"}, {}),
        ("conflict-extra", lambda: e.Conflict("no", type="invalid-transition", current_status="received"), 409,
         {"type": BASE + "invalid-transition", "title": "Conflict", "status": 409, "detail": "no",
          "current_status": "received"}, {}),
        ("stale", lambda: e.StaleVersion(), 412,
         {"type": BASE + "precondition-failed", "title": "Precondition failed", "status": 412,
          "detail": "the record changed since you read it; fetch it again"}, {}),
        ("gone", lambda: e.Gone("destroyed", type="record-destroyed", tombstone=TOMBSTONE), 410,
         {"type": BASE + "record-destroyed", "title": "Gone", "status": 410, "detail": "destroyed",
          "tombstone": TOMBSTONE}, {}),
        ("locked", lambda: e.Locked("too many", retry_after=7, type="account-locked", rule="lockout",
                                    clause="§6.6"), 429,
         {"type": BASE + "account-locked", "title": "Too many requests", "status": 429, "detail": "too many",
          "rule": "lockout", "clause": "§6.6"}, {"retry-after": "7"}),
        ("denied", lambda: e.Denied("no", rule="director-only", clause="§4.5"), 403,
         {"type": BASE + "policy-denied", "title": "Forbidden", "status": 403, "detail": "no",
          "rule": "director-only", "clause": "§4.5"}, {}),
        ("invalid", lambda: e.field_error("purpose", "not allowed"), 422,
         {"type": BASE + "validation-error", "title": "Unprocessable content", "status": 422,
          "detail": "purpose: not allowed",
          "errors": [{"loc": ["body", "purpose"], "msg": "not allowed", "type": "value_error"}]}, {}),
        ("unauthenticated", lambda: e.Unauthenticated("a bearer token is required"), 401,
         {"type": BASE + "not-authenticated", "title": "Not authenticated", "status": 401,
          "detail": "a bearer token is required"}, {"www-authenticate": "Bearer"}),
        ("busy", lambda: e.Busy("too many logins in progress; try again shortly", type="login-busy"), 503,
         {"type": BASE + "login-busy", "title": "Service unavailable", "status": 503,
          "detail": "too many logins in progress; try again shortly"}, {"retry-after": "1"}),
    ]


@pytest.mark.parametrize(("name", "make", "status", "body", "headers"), _cases(), ids=[c[0] for c in _cases()])
async def test_each_domain_error_has_one_http_form(name, make, status, body, headers) -> None:  # type: ignore[no-untyped-def]
    exc = make()
    assert isinstance(exc, errors.DomainError)
    r = await _call(exc)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == body
    for key, value in headers.items():
        assert r.headers[key] == value


def test_the_status_of_a_domain_error_comes_from_the_one_table() -> None:
    assert errors.DOMAIN_STATUS[errors.NotFound] == 404
    assert errors.NotFound("x").status == 404
    assert set(errors.DOMAIN_STATUS) >= {errors.NotFound, errors.Conflict, errors.StaleVersion, errors.Gone,
                                         errors.Locked, errors.Denied, errors.Invalid}
