"""Security headers on API, error and docs responses.

The real server's missing `Server` header is checked against `kmm serve` in
tests/test_browser.py; the browser test there also proves the docs CSP lets the explorer work.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.factory import Factory
from tests.oauth import TOKEN_PATHS, assert_token_error


def _directives(csp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_common(r: httpx.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "server" not in r.headers
    assert re.fullmatch(r"[0-9a-f]{32}|[A-Za-z0-9._\-]{1,64}", r.headers["x-request-id"])


def assert_api_csp(r: httpx.Response) -> None:
    csp = _directives(r.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]


async def test_api_responses_carry_the_headers(client: httpx.AsyncClient, factory: Factory) -> None:
    d = await factory.user("director")
    for r in (await client.get("/healthz"), await client.get("/users/me", headers=d.headers),
              await client.get("/openapi.json")):
        assert r.status_code == 200
        assert_common(r)
        assert_api_csp(r)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/records", {}, 401),
        ("GET", "/no-such-path", {}, 404),
        ("DELETE", "/healthz", {}, 405),
        ("POST", "/auth/refresh", {"json": {}}, 400),  # invalid_request (RFC 6749 §5.2)
        ("POST", "/auth/refresh", {"content": b"x" * (2 * 1024 * 1024),
                                   "headers": {"content-type": "application/json"}}, 413),
    ],
)
async def test_error_responses_carry_the_headers(client: httpx.AsyncClient, method: str, path: str,
                                                 kwargs: dict, status: int) -> None:
    r = await client.request(method, path, **kwargs)
    assert r.status_code == status
    if path in TOKEN_PATHS and status == 400:
        assert_token_error(r, status)  # RFC 6749 §5.2 on the token doors
    else:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == status
    assert_common(r)
    assert_api_csp(r)


async def test_docs_csp_allows_only_this_origin(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_common(page)
    csp = _directives(page.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"], "no inline script and no other origin"
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    for sources in csp.values():
        assert not [s for s in sources if "://" in s or s == "*"], f"an external source in {csp}"
    # The page names only local assets and has no inline script.
    assert "http" not in page.text.replace('lang="en"', "")
    assert re.findall(r"<script[^>]*>\s*</script>", page.text) and "<script>" not in page.text
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        r = await client.get(asset)
        assert r.status_code == 200, asset
        assert_common(r)


async def test_docs_init_script_points_at_this_openapi(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs/init.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert '"url": "/openapi.json"' in r.text


async def test_docs_explorer_keeps_no_login_in_the_browser(client: httpx.AsyncClient) -> None:
    """persistAuthorization would keep the username, password, client secret and refresh token
    in localStorage, where any script on the origin and anyone at the machine finds them (§6.6)."""
    r = await client.get("/docs/init.js")
    start = r.text.index("Object.assign(") + len("Object.assign(")
    params, _ = json.JSONDecoder().raw_decode(r.text[start:])
    assert params["url"] == "/openapi.json"
    assert params.get("persistAuthorization", False) is False, params
    assert "persistAuthorization" not in r.text and "localStorage" not in r.text


@pytest.mark.parametrize("name", ["index.html", "..%2Fswagger-ui.css", "swagger-initializer.js", "x"])
async def test_docs_assets_are_a_fixed_list(client: httpx.AsyncClient, name: str) -> None:
    r = await client.get(f"/docs/assets/{name}")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_redoc_is_not_served_from_a_cdn(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
