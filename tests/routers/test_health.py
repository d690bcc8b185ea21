"""/healthz (alive) and /readyz (database reachable and migrations at head)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.core.migrations import upgrade
from app.main import create_app
from tests.databases import fresh_database, sync_engine

PROBLEM = "application/problem+json"


@asynccontextmanager
async def _client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, configure_logs=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield c
    finally:
        await app.state.kmm.engine.dispose()


def _assert_not_ready(r: httpx.Response, detail: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"].endswith("/not-ready")
    assert detail in body["detail"]


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_at_head(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready"}


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///{tmp}/no/such/dir/kmm.db",
        "postgresql+psycopg://kmm@127.0.0.1:1/kmm",  # nothing listens on port 1
    ],
    ids=["sqlite-missing-dir", "postgres-closed-port"],
)
async def test_not_ready_when_the_database_is_unreachable(tmp_path, url):
    settings = Settings(env="test", database_url=url.format(tmp=tmp_path), secrets_file=tmp_path / "s.json",
                        database_timeout_seconds=2)
    async with _client_for(settings) as c:
        _assert_not_ready(await c.get("/readyz"), "not reachable")
        # Alive all the same: the process runs, only its database is missing.
        assert (await c.get("/healthz")).status_code == 200


async def test_not_ready_before_migrating(tmp_path):
    with fresh_database(tmp_path) as settings:
        async with _client_for(settings) as c:
            _assert_not_ready(await c.get("/readyz"), "not at the latest migration")


async def test_not_ready_when_the_schema_is_behind(tmp_path):
    with fresh_database(tmp_path) as settings:
        await asyncio.to_thread(upgrade, settings)  # Alembic runs its own event loop
        async with _client_for(settings) as c:
            assert (await c.get("/readyz")).status_code == 200
            engine = sync_engine(settings)
            with engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
            engine.dispose()
            _assert_not_ready(await c.get("/readyz"), "not at the latest migration")
