"""`python -m bench.profile`: where one request's time goes, in process.

Seeds a small organisation in its own schema (as `python -m bench` does), builds the app
in this process, and sends sequential requests through httpx's ASGI transport while
pyinstrument samples them; prints the statements one request sends to the database
(each is a round trip) and the pyinstrument tree. No uvicorn, no load generator: this is
the CPU and round-trip cost of one request, which is what the load test multiplies.

    python -m bench.profile --scenario read --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import event

from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.migrations import upgrade
from app.core.security import Passwords
from app.main import create_app
from bench import seed
from bench.__main__ import DEFAULT_URL, bench_schema, libpq_url, write_secrets

PATHS = {"read": "/records/{id}", "baseline": "/bench/baseline/{id}", "list": "/records?limit=50"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    p.add_argument("--schema", default="kmm_bench_profile")
    p.add_argument("--scenario", choices=sorted(PATHS), default="read")
    p.add_argument("--records", type=int, default=5_000)
    p.add_argument("--requests", type=int, default=1_000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    p.add_argument("--no-profile", action="store_true", help="only the unprofiled timing")
    p.add_argument("--show-all", action="store_true", help="show library frames too")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, settings: Settings, org: seed.Org, ids: list[str]) -> None:
    from pyinstrument import Profiler

    app = create_app(settings)
    engine = app.state.kmm.engine
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements.append(statement)

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(conn: Any) -> None:
        statements.append("COMMIT")

    @event.listens_for(engine.sync_engine, "rollback")
    def _rollback(conn: Any) -> None:
        statements.append("ROLLBACK")

    caller = org.plain_colleagues[0] if args.scenario == "list" else org.directors[0]
    rng = random.Random(1)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        r = await client.post("/auth/token", data={"username": caller.email, "password": org.password})
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        template = PATHS[args.scenario]

        async def one() -> None:
            response = await client.get(template.replace("{id}", rng.choice(ids)))
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

        for _ in range(args.warmup):
            await one()
        statements.clear()
        await one()
        print(f"-- one {args.scenario} request sends {sum(s != 'ROLLBACK' for s in statements)} statements "
              "(+ BEGIN, which psycopg sends with the first):")
        for s in statements:
            print("   ", " ".join(s.split())[:160])
        times = []
        cpu = time.process_time()
        for _ in range(args.requests):
            started = time.perf_counter()
            await one()
            times.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
        print(f"-- {args.requests} sequential {args.scenario} requests, unprofiled: this process's CPU "
              f"{cpu / args.requests * 1000:.2f} ms per request; wall p50 {statistics.median(times) * 1000:.2f} ms")
        if args.no_profile:
            await engine.dispose()
            return
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        for _ in range(args.requests):
            await one()
        profiler.stop()
    await engine.dispose()
    print(profiler.output_text(unicode=True, color=False, show_all=args.show_all))
    if args.html:
        args.html.write_text(profiler.output_html())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="kmm-profile-") as tmp, \
            bench_schema(args.database_url, args.schema, keep=False):
        settings = Settings(database_url=args.database_url, database_schema=args.schema, env="development",
                            secrets_file=write_secrets(Path(tmp)), bench_endpoints=True, log_level="WARNING")
        upgrade(settings)
        password = secrets.token_urlsafe(18)
        rng = random.Random(7)
        now = datetime.now(UTC)
        with psycopg.connect(libpq_url(args.database_url), options=f"-c search_path={args.schema}") as conn:
            org = seed.seed_org(conn, staff=200, subjects=1_000, password=password,
                                password_hash=Passwords(settings).hash(password), rng=rng, now=now)
            seed.seed_records(conn, org, count=args.records, keyring=Keyring(settings.keyring), rng=rng, now=now)
            ids = [str(i) for i in seed.readable_by_director(conn, 5_000, rng)]
        asyncio.run(run(args, settings, org, ids))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
