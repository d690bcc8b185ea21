"""Every error is application/problem+json: 404, 405, 413, 422, 500 (no internals, logged
with the request id), 503 for an unavailable database. Request ids and security headers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from app.core.logging import JsonFormatter
from app.main import create_app
from tests.factory import Factory

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"] and body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body  # type: ignore[no-any-return]


async def test_unknown_path_is_404(client):
    assert_problem(await client.get("/no/such/path"), 404)


async def test_wrong_method_is_405(client):
    r = await client.delete("/healthz")
    assert_problem(r, 405)
    assert r.headers["allow"] == "GET"


# -- 413 ----------------------------------------------------------------------------------


async def test_body_over_the_limit_with_content_length_is_413(client, factory: Factory, settings, state):
    d = await factory.user("director")
    big = {"email": "a@test.kmm", "full_name": "x" * settings.max_body_bytes, "role": "colleague",
           "password": "a long enough password"}
    r = await client.post("/users", json=big, headers=d.headers)
    body = assert_problem(r, 413)
    assert str(settings.max_body_bytes) in body["detail"]
    assert "xxxx" not in r.text


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    yield b'{"full_name": "'
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


@pytest.mark.parametrize("path", ["/users", "/auth/token", "/auth/refresh"])
async def test_chunked_body_over_the_limit_is_413(client, factory: Factory, settings, path):
    d = await factory.user("director")
    content_type = "application/x-www-form-urlencoded" if path == "/auth/token" else "application/json"
    r = await client.post(path, content=_chunks(settings.max_body_bytes + 1),
                          headers={**d.headers, "content-type": content_type})
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_problem(r, 413)


async def test_body_just_under_the_limit_is_read(client, factory: Factory, settings):
    d = await factory.user("director")
    r = await client.post("/users", json={"full_name": "x" * (settings.max_body_bytes - 100)}, headers=d.headers)
    assert r.status_code == 422  # parsed and validated, not refused for size


# -- 422 ----------------------------------------------------------------------------------


MARKER = "SECRET-INPUT-7f3a"


@pytest.mark.parametrize(
    "body",
    [
        {"email": f"{MARKER}-not-an-email"},
        {"role": MARKER},
        {"staff_type": MARKER},
        {"line_manager_id": MARKER},
        {"full_name": MARKER * 40},
        {"password": MARKER[:8]},
    ],
)
async def test_validation_errors_never_echo_the_input(client, factory: Factory, body):
    d = await factory.user("director")
    full = {"email": "ok@test.kmm", "full_name": "Ok", "role": "colleague", "password": "a long enough password"}
    full.update(body)
    r = await client.post("/users", json=full, headers=d.headers)
    problem = assert_problem(r, 422)
    assert MARKER not in r.text and MARKER[:8] not in r.text
    field = next(iter(body))
    assert field in problem["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in problem["errors"])


async def test_malformed_json_is_422_without_the_input(client, factory: Factory):
    d = await factory.user("director")
    r = await client.post("/users", content=b'{"email": "' + MARKER.encode(),
                          headers={**d.headers, "content-type": "application/json"})
    assert_problem(r, 422)
    assert MARKER not in r.text


# -- 500 and 503 from a fresh app with test-only routes -----------------------------------------


@pytest.fixture
async def boom_client(settings, clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock, configure_logs=False)

    async def boom() -> None:
        raise RuntimeError(f"internal detail {MARKER} at /srv/app/secret.py")

    async def db_down() -> None:
        raise OperationalError("SELECT secret FROM records WHERE x = ?", {"x": MARKER}, Exception("refused"))

    app.add_api_route("/test-only/boom", boom)
    app.add_api_route("/test-only/db-down", db_down)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://test") as c:
        yield c
    await app.state.kmm.engine.dispose()


class _Lines(logging.Handler):
    """Formats each record as it is emitted, the way the service's stderr handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []  # type: ignore[type-arg]

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines():  # type: ignore[no-untyped-def]
    handler = _Lines()
    logger = logging.getLogger("kmm")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


async def test_unexpected_exception_is_500_with_no_internals_and_logged_with_the_request_id(boom_client, log_lines):
    r = await boom_client.get("/test-only/boom", headers={"X-Request-ID": "trace-500-abc"})
    body = assert_problem(r, 500)
    assert body["detail"] == "an unexpected error occurred"
    for leak in (MARKER, "RuntimeError", "secret.py", "Traceback"):
        assert leak not in r.text
    errors = [line for line in log_lines if line["msg"] == "unhandled error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "trace-500-abc"
    assert errors[0]["error"] == "RuntimeError" and errors[0]["level"] == "error"
    access = [line for line in log_lines if line["msg"] == "request"]
    assert access and access[-1]["request_id"] == "trace-500-abc" and access[-1]["status"] == 500


async def test_database_unavailable_is_503_without_the_statement(boom_client, log_lines):
    r = await boom_client.get("/test-only/db-down")
    assert_problem(r, 503)
    assert r.headers["retry-after"] == "1"
    assert MARKER not in r.text and "SELECT" not in r.text
    assert all(MARKER not in json.dumps(line) for line in log_lines)


# -- request ids and headers ----------------------------------------------------------------


async def test_a_valid_request_id_is_echoed(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123.DEF_4"})
    assert r.headers["x-request-id"] == "abc-123.DEF_4"


@pytest.mark.parametrize("hostile", ["<script>alert(1)</script>", "a" * 65, "spaces are bad", "", "x;y=z"])
async def test_a_hostile_request_id_is_replaced(client, hostile):
    r = await client.get("/healthz", headers={"X-Request-ID": hostile})
    rid = r.headers["x-request-id"]
    assert rid != hostile and len(rid) == 32 and int(rid, 16) >= 0


async def test_each_request_gets_its_own_id(client):
    a = (await client.get("/healthz")).headers["x-request-id"]
    b = (await client.get("/healthz")).headers["x-request-id"]
    assert a != b


@pytest.mark.parametrize("path", ["/healthz", "/no/such/path", "/users/me", "/openapi.json"])
async def test_security_headers(client, path):
    r = await client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "server" not in r.headers


async def test_docs_load_with_their_own_policy(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text
    csp = r.headers["content-security-policy"]
    # Swagger UI is served from this service (app/routers/docs.py), never a CDN.
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "https://" not in csp
    spec = (await client.get("/openapi.json")).json()
    flows = spec["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["password"]["tokenUrl"] == "/auth/token"


async def test_cors_is_closed_by_default(client):
    r = await client.options("/users/me", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_opens_for_configured_origins(settings, clock):
    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.kmm.example"]}), clock=clock,
                     configure_logs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.options("/users/me", headers={"Origin": "https://app.kmm.example",
                                                  "Access-Control-Request-Method": "GET"})
        assert r.headers["access-control-allow-origin"] == "https://app.kmm.example"
        r = await c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    await app.state.kmm.engine.dispose()


async def test_metrics(client):
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'kmm_http_requests_total{method="GET",route="/healthz",status="200"}' in r.text


def test_log_lines_are_json_with_the_request_id_and_no_colour_codes():
    from app.core.context import request_id_var

    record = logging.makeLogRecord({"name": "uvicorn.error", "levelname": "INFO", "levelno": 20, "msg": "started",
                                    "color_message": "\x1b[36mstarted\x1b[0m", "route": "/x"})
    token = request_id_var.set("rid-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "rid-1" and line["msg"] == "started" and line["route"] == "/x"
    assert "color_message" not in line
