"""Measure the audit chain on PostgreSQL, in a throwaway schema (dropped afterwards).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python bench/audit_chain.py [events]

Reports: sealing rate, verify rate (events checked per second), and the cost of
``add_event`` on a request's transaction (the same small transaction with and without
one audit event, run sequentially).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, select, text

from app.core.audit_keys import AuditKeys, install_audit_keys
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker
from app.core.migrations import upgrade
from app.models.users import User
from app.workflows.audit.seal import seal_all
from app.workflows.audit.trail import add_event
from app.workflows.audit.verify import verify_chain

BULK_INSERT = """
INSERT INTO audit_events (at, actor_id, actor_kind, actor_role, action, resource_type, resource_id,
                          decision, rule, clause, emergency, request_id, client_ip, detail)
SELECT now() - make_interval(secs => g / 1000.0), gen_random_uuid(), 'user', 'colleague', 'record.read',
       'record', gen_random_uuid()::text, 'allow', 'custodian', '§4.2', false, md5(g::text),
       '10.0.0.' || (g % 250), '{"fields": ["title"]}'
FROM generate_series(1, :n) AS g
"""


async def _request_cost(settings: Settings, rounds: int) -> tuple[float, float, float]:
    engine = make_engine(settings)
    maker = make_sessionmaker(engine)
    user_id = uuid.uuid4()
    async with maker() as session:
        session.add(User(id=user_id, email="bench@kmm.test", full_name="Bench", role="colleague",
                         password_hash="x", created_at=datetime.now(UTC)))
        await session.commit()

    async def one(with_event: bool, durable: bool = True) -> None:
        async with maker() as session:
            # A request's usual shape: one read of the caller, then commit.
            await session.execute(select(User.id).where(User.id == user_id))
            if with_event:
                if not durable:  # only to split the cost: the service never does this
                    await session.execute(text("SET LOCAL synchronous_commit = off"))
                add_event(session, now=datetime.now(UTC), action="record.read", resource_type="record",
                          resource_id=uuid.uuid4(), decision="allow", rule="custodian", clause="§4.2")
            await session.commit()

    variants = [(False, True), (True, True), (True, False)]
    best = {v: float("inf") for v in variants}
    for _ in range(2):
        for variant in variants:
            start = time.perf_counter()
            for _ in range(rounds):
                await one(*variant)
            best[variant] = min(best[variant], (time.perf_counter() - start) / rounds)
    await engine.dispose()
    return best[(False, True)], best[(True, True)], best[(True, False)]


async def measure(settings: Settings, n: int) -> None:
    install_audit_keys(AuditKeys(settings.audit_key_list))
    engine = make_engine(settings)
    async with engine.begin() as conn:
        start = time.perf_counter()
        await conn.execute(text(BULK_INSERT), {"n": n})
        print(f"inserted {n} events in bulk: {time.perf_counter() - start:.1f}s")
    start = time.perf_counter()
    sealed = await seal_all(engine, datetime.now(UTC))
    elapsed = time.perf_counter() - start
    print(f"sealed {sealed} events in {elapsed:.2f}s: {sealed / elapsed:,.0f} events/s")
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE audit_events; ANALYZE audit_seals"))
    for _ in range(3):
        start = time.perf_counter()
        report = await verify_chain(engine, datetime.now(UTC))
        elapsed = time.perf_counter() - start
        print(f"verify: ok={report.ok} checked={report.checked} in {elapsed:.2f}s: "
              f"{report.checked / elapsed:,.0f} events/s")
    await engine.dispose()
    without, with_, no_flush = await _request_cost(settings, rounds=500)
    print(f"request transaction without an event: {without * 1000:.2f} ms; with add_event: "
          f"{with_ * 1000:.2f} ms (+{(with_ - without) * 1000:.2f} ms); of which the INSERT itself "
          f"(commit not waiting for the WAL flush): +{(no_flush - without) * 1000:.2f} ms")


def main(n: int) -> None:
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"kmm_bench_audit_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=url, database_schema=schema, secrets_file="/tmp/kmm-bench-secrets.json")
    admin = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        upgrade(settings)
        asyncio.run(measure(settings, n))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
