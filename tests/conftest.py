"""Test harness: the whole app over HTTP (httpx ASGI transport) on SQLite, or on
Postgres when KMM_TEST_BACKEND=postgres and TEST_DATABASE_URL are set (`make test`
runs both). Each test starts from empty tables, the service's own keys and a clock it controls.

The fixtures import the app when first used, not when this file loads: pytest-xdist's
controller loads it too, runs no test, and would otherwise spend seconds importing the
app before it starts the workers."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.databases import BACKEND, FAST_ARGON2, IS_POSTGRES

if TYPE_CHECKING:
    import httpx

    from app.core.clock import FrozenClock
    from app.core.config import Settings
    from tests.factory import Factory

# Modules whose every test is marked slow. `make test-fast` (-m "not slow") does not even
# collect them: collecting the contract fuzzing alone builds an app and loads its schema.
SLOW_MODULES = frozenset({"test_contract.py", "test_browser.py", "test_token_memory.py"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in SLOW_MODULES and config.option.markexpr.replace(" ", "") == "notslow":
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (make test runs it there too)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    return f"kmm test backend: {BACKEND}"


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+psycopg", "+psycopg")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from sqlalchemy import create_engine, text

    from app.core.config import Settings
    from app.core.migrations import upgrade

    tmp = tmp_path_factory.mktemp("kmm")
    schema = None
    if IS_POSTGRES:
        url = os.environ.get("TEST_DATABASE_URL")
        if not url:
            pytest.exit("KMM_TEST_BACKEND=postgres needs TEST_DATABASE_URL", returncode=2)
        schema = f"kmm_test_{uuid.uuid4().hex[:10]}"
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'test.db'}"
    s = Settings(
        env="test",
        database_url=url,
        database_schema=schema,
        secrets_file=tmp / "secrets.json",
        log_json=True,
        database_timeout_seconds=5,
        **FAST_ARGON2,
    )
    admin = None
    if IS_POSTGRES:
        admin = create_engine(_sync_url(s.database_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    upgrade(s)
    yield s
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def clock() -> FrozenClock:
    from app.core.clock import FrozenClock

    return FrozenClock()


@pytest.fixture(scope="session")
def app(settings: Settings, clock: FrozenClock):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app(settings, clock=clock, configure_logs=False)


@functools.cache
def _table_names() -> tuple[str, ...]:
    from sqlmodel import SQLModel

    import app.models  # noqa: F401

    return tuple(t.name for t in reversed(SQLModel.metadata.sorted_tables))


async def reset_database(app) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    engine = app.state.kmm.engine
    tables = _table_names()
    if IS_POSTGRES:
        async with engine.begin() as conn:
            # Triggers (the audit log's append-only guard) do not fire for replicas.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        return
    # One script in one transaction: a single trip to the driver's thread, where a statement
    # a table costs one trip each. An empty sqlite_sequence entry is harmless; ids stay monotonic.
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.executescript(
            "BEGIN IMMEDIATE;" + "".join(f"DELETE FROM {name};" for name in tables) + "COMMIT;")


def use_service_keys(app) -> None:  # type: ignore[no-untyped-def]
    """EncryptedText columns and audit seals use the process-wide keys, which every AppState
    built installs (a test of the configuration, the CLI, another replica): a test starts
    with the service's own again, the keys its ``state`` wraps and re-wraps with."""
    app.state.kmm.install_keys()


@pytest.fixture
async def client(app, state, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    import httpx

    clock.set(datetime.now(UTC).replace(microsecond=0))
    use_service_keys(app)
    await reset_database(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
def state(app):  # type: ignore[no-untyped-def]
    use_service_keys(app)
    return app.state.kmm


@pytest.fixture
async def factory(client: httpx.AsyncClient, state) -> Factory:  # type: ignore[no-untyped-def]
    from tests.factory import Factory

    return Factory(client=client, state=state)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PROJECT_ROOT = Path(__file__).resolve().parents[1]
