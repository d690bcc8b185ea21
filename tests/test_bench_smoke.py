"""The benchmark's pieces work (no timing is asserted: speed is the benchmark's job, not a test's).

- /bench/baseline exists only when ``bench_endpoints`` is set, and then selects one record.
- On Postgres, the bench seeding (COPY) builds an organisation the service reads as its own:
  a director reads a seeded record through the real read path, content decrypted.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.migrations import upgrade
from app.core.security import Passwords
from app.main import create_app
from bench import measure, seed
from bench.__main__ import libpq_url
from tests.databases import IS_POSTGRES
from tests.factory import PASSWORD, Factory


@pytest.fixture
async def bench_client(client, settings: Settings, clock) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(settings.model_copy(update={"bench_endpoints": True}), clock=clock, configure_logs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c:
        yield c
    await app.state.kmm.engine.dispose()


async def test_baseline_is_not_mounted_by_default(client: httpx.AsyncClient):
    r = await client.get(f"/bench/baseline/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "/bench/baseline/{record_id}" not in (await client.get("/openapi.json")).json()["paths"]


async def test_baseline_selects_one_record_without_auth(client, bench_client, factory: Factory):
    director = await factory.user("director")
    subject = await factory.subject(by=director, name="Sam")
    rid = (await factory.record(by=director, subject=subject, content="secret-marker-bench"))["id"]

    r = await bench_client.get(f"/bench/baseline/{rid}")
    assert r.status_code == 200
    assert r.json() == {"id": rid, "classification": "confidential", "version": 1}
    assert "secret-marker-bench" not in r.text
    missing = await bench_client.get(f"/bench/baseline/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["detail"] == "record not found"


def test_decide_measure_runs():
    assert measure.decide_us(number=50, repeat=1) > 0


@pytest.mark.postgres_only
async def test_seeded_organisation_is_readable_by_the_service(settings: Settings, clock):
    assert IS_POSTGRES
    schema = f"kmm_bench_smoke_{uuid.uuid4().hex[:8]}"
    admin = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        s = settings.model_copy(update={"database_schema": schema})
        await asyncio.to_thread(upgrade, s)  # alembic runs its own event loop
        rng = random.Random(1)
        with psycopg.connect(libpq_url(s.database_url), options=f"-c search_path={schema}") as conn:
            org = seed.seed_org(conn, staff=30, subjects=40, password=PASSWORD,
                                password_hash=Passwords(s).hash(PASSWORD),
                                rng=rng, now=datetime.now(UTC))
            counts = seed.seed_records(conn, org, count=300, keyring=Keyring(s.keyring), rng=rng,
                                       now=datetime.now(UTC))
            ids = seed.readable_by_director(conn, 5, rng)
            with conn.cursor() as cur:
                cur.execute("SELECT classification, count(*) FROM records GROUP BY classification")
                by_class = dict(cur.fetchall())
                cur.execute("SELECT count(*) FROM subjects WHERE user_id IS NOT NULL")
                (linked,) = cur.fetchone()  # type: ignore[misc]
                cur.execute("SELECT id FROM records WHERE consent_status = 'refused' "
                            "AND classification IN ('general', 'confidential') LIMIT 1")
                (refused,) = cur.fetchone()  # type: ignore[misc]
        assert counts["records"] == 300 and sum(by_class.values()) == 300
        assert set(by_class) == {"general", "confidential", "sensitive", "personnel"}
        assert len(org.staff) == 30 and len(org.directors) >= 1 and linked == len(org.employee_subjects) > 0
        assert all(s.line_manager_id is not None for s in org.plain_colleagues)

        app = create_app(s, clock=clock, configure_logs=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c:
            r = await c.post("/auth/token", data={"username": org.directors[0].email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            for rid in ids:
                got = await c.get(f"/records/{rid}", headers=headers)
                assert got.status_code == 200, got.text
                assert got.json()["title"].startswith("Case note ") and got.json()["content"]
                assert got.json()["access"]["rule"] in {"general", "custodian", "director"}
            got = await c.get(f"/records/{refused}", headers=headers)  # a refusal's reason opens on its row
            assert got.status_code == 200 and got.json()["consent"]["refusal_reason"], got.text
        await app.state.kmm.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
