"""No database error reaches a client as a bare 500: a value or a constraint the database
refuses is the input's fault (422, 409); anything else from it is 503 with Retry-After.
Never with the statement, its values or the driver's message."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable

import httpx
import psycopg
import pytest
from sqlalchemy.exc import DataError, IntegrityError, InternalError, ProgrammingError

from app.main import create_app

MARKER = "SECRET-VALUE-51c2"


def _sa(cls: type, orig: Exception) -> Exception:
    return cls(f"INSERT INTO records VALUES ('{MARKER}')", {"v": MARKER}, orig)  # type: ignore[no-any-return]


RAISERS: dict[str, tuple[Callable[[], Exception], int, str]] = {
    "psycopg-too-long": (lambda: psycopg.errors.StringDataRightTruncation(f"value too long {MARKER}"), 422,
                         "validation-error"),
    "psycopg-unique": (lambda: psycopg.errors.UniqueViolation(f"duplicate key {MARKER}"), 409, "conflict"),
    "psycopg-not-null": (lambda: psycopg.errors.NotNullViolation(f"null value {MARKER}"), 409, "conflict"),
    "psycopg-undefined-table": (lambda: psycopg.errors.UndefinedTable(f"no table {MARKER}"), 503, "database-error"),
    "psycopg-internal": (lambda: psycopg.errors.InternalError_(f"internal {MARKER}"), 503, "database-error"),
    "sa-integrity": (lambda: _sa(IntegrityError, sqlite3.IntegrityError(MARKER)), 409, "conflict"),
    "sa-data": (lambda: _sa(DataError, sqlite3.DataError(MARKER)), 422, "validation-error"),
    "sa-programming": (lambda: _sa(ProgrammingError, sqlite3.ProgrammingError(MARKER)), 503, "database-error"),
    "sa-internal": (lambda: _sa(InternalError, sqlite3.InternalError(MARKER)), 503, "database-error"),
    "sqlite-raw": (lambda: sqlite3.DatabaseError(f"disk image is malformed {MARKER}"), 503, "database-error"),
}


@pytest.fixture(scope="module")  # one app with every raising route, for all the cases
async def db_error_client(settings, clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock, configure_logs=False)
    for name, (make, _, _) in RAISERS.items():
        async def route(make: Callable[[], Exception] = make) -> None:
            raise make()

        app.add_api_route(f"/test-only/{name}", route)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://test") as c:
        yield c
    await app.state.kmm.engine.dispose()


@pytest.mark.parametrize("name", list(RAISERS))
async def test_a_database_error_is_never_a_bare_500(db_error_client, name):
    _, status, type_ = RAISERS[name]
    r = await db_error_client.get(f"/test-only/{name}")
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["type"].endswith("/" + type_)
    assert body["request_id"] == r.headers["x-request-id"]
    for leak in (MARKER, "INSERT", "psycopg", "sqlite"):
        assert leak not in r.text
    if status == 503:
        assert r.headers["retry-after"] == "1"
