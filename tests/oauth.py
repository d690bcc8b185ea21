"""Checks for the token doors' RFC 6749 §5.2 error bodies (every other door answers problem+json)."""

from __future__ import annotations

from typing import Any

import httpx

TOKEN_PATHS = ("/auth/token", "/auth/refresh")


def assert_token_error(r: httpx.Response, *statuses: int, error: str | None = None) -> dict[str, Any]:
    """An RFC 6749 §5.2 error: JSON (not problem+json) with ``error`` and ``error_description``."""
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == "application/json", r.headers["content-type"]
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    assert isinstance(body["error"], str) and isinstance(body["error_description"], str), body
    assert body["error_description"]
    if error is not None:
        assert body["error"] == error, body
    assert "type" not in body and "title" not in body
    assert "Traceback" not in r.text
    return body
