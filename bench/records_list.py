"""Median latency of GET /records?limit=50 for a colleague, at 2,000 and 200,000 records (Postgres).

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/records_list.py

Builds a throwaway schema (search_path), migrates it, bulk-inserts an organisation of ~200 staff
with a realistic mix of classifications, custodians, shares and named lists, then times the list
through the ASGI transport (no network), and prints both medians, their ratio and the plan.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.migrations import upgrade
from app.main import create_app
from app.models.records import Record, RecordContent, RecordNamedAccess, RecordShare
from app.models.subjects import Subject
from app.models.users import User
from app.workflows.records.content import seal_content

MIX = [("general", 0.15), ("confidential", 0.55), ("sensitive", 0.15), ("personnel", 0.15)]
STAFF = 200
NOW = datetime.now(UTC).replace(microsecond=0)
PASSWORD = "benchmark password 1"


def _chunks(rows: list[dict[str, Any]], n: int = 5000) -> Any:
    for i in range(0, len(rows), n):
        yield rows[i:i + n]


class Org:
    def __init__(self, settings: Settings, state: Any) -> None:
        self.settings, self.state = settings, state
        self.rng = random.Random(42)
        self.staff: list[uuid.UUID] = []
        self.subjects: list[uuid.UUID] = []
        self.employee_subjects: list[uuid.UUID] = []
        self.colleague: uuid.UUID | None = None
        self.email = ""

    def build_people(self, conn: Any) -> None:
        users: list[dict[str, Any]] = []
        directors = [uuid.uuid4() for _ in range(2)]
        managers = [uuid.uuid4() for _ in range(20)]
        for i, d in enumerate(directors):
            users.append(dict(id=d, email=f"d{i}@bench.kmm", full_name=f"Director {i}", role="director",
                              staff_type="employee", line_manager_id=None, active=True, password_hash="x",
                              created_at=NOW))
        for i, m in enumerate(managers):
            users.append(dict(id=m, email=f"m{i}@bench.kmm", full_name=f"Manager {i}", role="colleague",
                              staff_type="employee", line_manager_id=directors[i % 2], active=True,
                              password_hash="x", created_at=NOW))
        for i in range(STAFF - len(users)):
            users.append(dict(id=uuid.uuid4(), email=f"c{i}@bench.kmm", full_name=f"Colleague {i}",
                              role="colleague", staff_type="employee", line_manager_id=managers[i % 20],
                              active=True, password_hash="x", created_at=NOW))
        users[-1]["password_hash"] = self.state.passwords.hash(PASSWORD)
        self.colleague, self.email = users[-1]["id"], users[-1]["email"]
        conn.execute(insert(User), users)
        self.staff = [u["id"] for u in users]
        subjects = [dict(id=uuid.uuid4(), kind="individual", name=f"Person {i}", category="service_user",
                         officers=[], user_id=None, created_at=NOW) for i in range(2000)]
        employees = [dict(id=uuid.uuid4(), kind="individual", name=f"Employee {u['email']}", category="employee",
                          officers=[], user_id=u["id"], created_at=NOW) for u in users]
        conn.execute(insert(Subject), subjects + employees)
        self.subjects = [s["id"] for s in subjects]
        self.employee_subjects = [s["id"] for s in employees]

    def add_records(self, conn: Any, n: int) -> None:
        rng, classes, weights = self.rng, [c for c, _ in MIX], [w for _, w in MIX]
        records, contents, shares, named = [], [], [], []
        for _ in range(n):
            cls = rng.choices(classes, weights)[0]
            rid = uuid.uuid4()
            custodian = rng.choice(self.staff)
            subject = rng.choice(self.employee_subjects if cls == "personnel" else self.subjects)
            records.append(dict(id=rid, subject_id=subject, classification=cls,
                                purpose="personnel_administration" if cls == "personnel" else "service_delivery",
                                custodian_id=custodian, access_requester_id=subject if cls == "sensitive" else None,
                                consent_status="obtained", consent_purpose_explained=True, legal_hold=False,
                                version=1, created_at=NOW, updated_at=NOW,
                                retention_until=NOW + timedelta(days=2000), review_due=NOW + timedelta(days=365)))
            rc = seal_content(self.state.keyring, rid, title=f"Record {rid.hex[:8]}", content="x" * 200)
            contents.append(dict(record_id=rid, key_id=rc.key_id, wrapped_key=rc.wrapped_key, title_ct=rc.title_ct,
                                 content_ct=rc.content_ct))
            if cls == "confidential" and rng.random() < 0.05:
                shares.append(dict(record_id=rid, user_id=rng.choice(self.staff), reason="cover",
                                   shared_by=custodian, shared_at=NOW))
            if cls == "sensitive" and rng.random() < 0.3:
                named.append(dict(record_id=rid, user_id=rng.choice(self.staff), consent_reference="letter",
                                  added_by=custodian, added_at=NOW))
        for model, rows in ((Record, records), (RecordContent, contents), (RecordShare, shares),
                            (RecordNamedAccess, named)):
            for chunk in _chunks(rows):
                conn.execute(insert(model), chunk)
        conn.execute(text("ANALYZE"))


def measure(app: Any, email: str, rounds: int = 200) -> tuple[float, int]:
    return asyncio.run(_measure(app, email, rounds))


async def _measure(app: Any, email: str, rounds: int) -> tuple[float, int]:
    try:
        return await _timed(app, email, rounds)
    finally:
        await app.state.kmm.engine.dispose()  # each asyncio.run has its own loop


async def _timed(app: Any, email: str, rounds: int) -> tuple[float, int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        r = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        times = []
        count = 0
        for i in range(rounds + 20):
            t0 = time.perf_counter()
            r = await client.get("/records", params={"limit": 50}, headers=headers)
            elapsed = time.perf_counter() - t0
            assert r.status_code == 200, r.text
            count = len(r.json()["items"])
            if i >= 20:
                times.append(elapsed)
        return statistics.median(times) * 1000, count


def explain(conn: Any, settings: Settings, actor_id: uuid.UUID) -> str:
    from sqlalchemy.dialects import postgresql
    from sqlmodel import col, select

    from app.policy.actor import Actor
    from app.policy.decide import records_filter

    actor = Actor(id=actor_id, kind="user", role="colleague")
    q = (select(Record.id).where(records_filter(actor, NOW), col(Record.destroyed_at).is_(None))
         .order_by(col(Record.id)).limit(51))
    sql = str(q.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    rows = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).all()
    return "\n".join(r[0] for r in rows)


def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"kmm_bench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(env="test", database_url=url, database_schema=schema, secrets_file=tmp / "s.json",
                        argon2_time_cost=1, argon2_memory_kib=1024, log_json=True)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        upgrade(settings)
        app = create_app(settings, clock=FrozenClock(NOW), configure_logs=False)
        state = app.state.kmm
        org = Org(settings, state)
        sync = create_engine(url, connect_args={"options": f"-c search_path={schema}"})
        with sync.begin() as conn:
            org.build_people(conn)
            org.add_records(conn, 2000)
        assert org.colleague is not None
        small, n_small = measure(app, org.email)
        with sync.begin() as conn:
            org.add_records(conn, 198_000)
        large, n_large = measure(app, org.email)
        print(f"GET /records?limit=50 median: 2,000 records {small:.2f} ms ({n_small} items); "
              f"200,000 records {large:.2f} ms ({n_large} items); ratio {large / small:.2f}")
        if "--explain" in sys.argv:
            with sync.connect() as conn:
                print(explain(conn, settings, org.colleague))
        sync.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
