"""`python -m bench.soak` (`make soak`): mixed traffic through `kmm serve` on PostgreSQL.

It migrates a schema of its own, starts uvicorn with 2 workers (bench.service.Service),
seeds a small organisation through the service's own workflows and endpoints, and then,
for --seconds (default 120), --clients concurrent clients (default 16) read, list,
create, update with If-Match (retrying on 412), share, and read what they may not.
At the end it checks, and prints with the numbers:

- no response was a 5xx (or a transport error);
- every accepted update is visible: successful PATCHes == sum over records of (version - 1);
- the audit chain verifies (app.workflows.audit.verify.verify_chain).

Loopback only; every loop is bounded by the deadline and every request by a timeout.
Exit status 0 when clean, 1 otherwise. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.core.config import Settings
from app.core.migrations import upgrade
from app.core.state import AppState
from app.models.users import UserCreate
from app.workflows.users import create_user
from bench.__main__ import DEFAULT_URL, bench_schema, libpq_url, write_secrets
from bench.service import Service

PASSWORD = "soak-password-" + uuid.uuid4().hex[:12]
REQUEST_TIMEOUT = 30.0
OPS = {"read": 30, "list": 20, "create": 10, "update": 20, "share": 8, "denied_read": 12}


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Actor:
    name: str
    id: str
    headers: dict[str, str]
    own: list[str] = field(default_factory=list)  # records this actor keeps (custodian)
    confidential: list[str] = field(default_factory=list)  # the confidential ones among them (shareable)


@dataclass
class Stats:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    patches_ok: int = 0
    retries_412: int = 0
    transport_errors: int = 0

    def note(self, op: str, r: httpx.Response, seconds: float) -> None:
        self.statuses[(op, r.status_code)] += 1
        self.latencies[op].append(seconds)

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)


# -- seeding, through the service ---------------------------------------------------------


async def seed_director(settings: Settings) -> str:
    email = f"soak-director-{uuid.uuid4().hex[:6]}@soak.kmm"
    state = AppState.build(settings)
    try:
        async with state.sessionmaker() as session:
            await create_user(
                session, data=UserCreate(email=email, full_name="Soak Director", role="director",
                                         staff_type="employee", password=PASSWORD),
                passwords=state.passwords, now=state.clock.now(), actor=None)
    finally:
        await state.engine.dispose()
    return email


def ok(r: httpx.Response) -> None:
    if r.is_error:
        raise SystemExit(f"seeding failed: {r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:300]}")


async def login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
    ok(r)
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def seed_org(client: httpx.AsyncClient, director_email: str) -> tuple[Actor, list[Actor], list[str]]:
    dh = await login(client, director_email)
    me = (await client.get("/users/me", headers=dh)).json()
    director = Actor("director", me["id"], dh)
    staff: list[Actor] = []
    managers: list[str] = []
    for i in range(6):  # two managers under the director, four colleagues under them
        manager_id = director.id if i < 2 else managers[i % 2]
        email = f"soak-{i}-{uuid.uuid4().hex[:6]}@soak.kmm"
        r = await client.post("/users", headers=dh, json={
            "email": email, "full_name": f"Soak Colleague {i}", "role": "colleague", "staff_type": "employee",
            "line_manager_id": manager_id, "password": PASSWORD})
        ok(r)
        if i < 2:
            managers.append(r.json()["id"])
        staff.append(Actor(f"colleague{i}", r.json()["id"], await login(client, email)))
    subjects = []
    for i in range(8):
        r = await client.post("/subjects", headers=dh,
                              json={"kind": "individual", "name": f"Soak Subject {i}", "category": "service_user"})
        ok(r)
        subjects.append(r.json()["id"])
    for actor in staff:
        for i, classification in enumerate(("general", "confidential", "confidential", "sensitive")):
            subject_id = subjects[i % len(subjects)]
            r = await client.post("/records", headers=actor.headers, json={
                "subject_id": subject_id, "title": f"seed {i}", "content": "seed", "classification": classification,
                "purpose": "service_delivery",
                "access_requester_id": subject_id if classification == "sensitive" else None})
            ok(r)
            actor.own.append(r.json()["id"])
            if classification == "confidential":
                actor.confidential.append(r.json()["id"])
    return director, staff, subjects


# -- traffic -----------------------------------------------------------------------------


async def timed(stats: Stats, op: str, call: Any) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        r: httpx.Response = await asyncio.wait_for(call, REQUEST_TIMEOUT)
    except (httpx.HTTPError, TimeoutError):
        stats.transport_errors += 1
        return None
    stats.note(op, r, time.perf_counter() - started)
    return r


async def update(client: httpx.AsyncClient, stats: Stats, actor: Actor, record_id: str, rng: random.Random) -> None:
    for _ in range(10):  # bounded retries on 412
        got = await timed(stats, "update.read", client.get(f"/records/{record_id}", headers=actor.headers))
        if got is None or got.status_code != 200:
            return
        r = await timed(stats, "update", client.patch(
            f"/records/{record_id}", headers={**actor.headers, "If-Match": got.headers["etag"]},
            json={"content": f"updated {rng.random()}"}))
        if r is None:
            return
        if r.status_code == 200:
            stats.patches_ok += 1
            return
        if r.status_code != 412:
            return
        stats.retries_412 += 1


async def client_loop(client: httpx.AsyncClient, stats: Stats, actor: Actor, everyone: list[Actor],
                      subjects: list[str], deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    ops, weights = zip(*OPS.items(), strict=True)
    others = [a for a in everyone if a is not actor and a.name != "director"]
    while time.monotonic() < deadline:
        op = rng.choices(ops, weights)[0]
        if op == "read" and actor.own:
            await timed(stats, op, client.get(f"/records/{rng.choice(actor.own)}", headers=actor.headers))
        elif op == "list":
            await timed(stats, op, client.get("/records", params={"limit": 20}, headers=actor.headers))
        elif op == "create":
            classification = rng.choice(["general", "confidential", "confidential"])
            r = await timed(stats, op, client.post("/records", headers=actor.headers, json={
                "subject_id": rng.choice(subjects), "title": "soak", "content": "soak " * rng.randint(1, 50),
                "classification": classification, "purpose": "service_delivery"}))
            if r is not None and r.status_code == 201:
                actor.own.append(r.json()["id"])
                if classification == "confidential":
                    actor.confidential.append(r.json()["id"])
        elif op == "update" and actor.own:
            # Contention: half the updates go to the first few records of the actor's own.
            record_id = rng.choice(actor.own[:3] if rng.random() < 0.5 else actor.own)
            await update(client, stats, actor, record_id, rng)
        elif op == "share" and actor.confidential and others:
            # 201, or 409 when that colleague already has it.
            await timed(stats, op, client.post(f"/records/{rng.choice(actor.confidential)}/shares",
                                               headers=actor.headers,
                                               json={"user_id": rng.choice(others).id, "reason": "soak"}))
        elif op == "denied_read" and others:
            # Another colleague's sensitive record: 403, unless the reader is that colleague's line manager.
            victim = rng.choice(others)
            if victim.own:
                await timed(stats, op, client.get(f"/records/{victim.own[3]}", headers=actor.headers))


# -- checks ------------------------------------------------------------------------------


def version_increments(url: str, schema: str) -> tuple[int, int]:
    with psycopg.connect(libpq_url(url), options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT coalesce(sum(version - 1), 0), count(*) FROM records").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


async def verify_audit_chain(settings: Settings) -> Any:
    try:
        verify = importlib.import_module("app.workflows.audit.verify")
    except ImportError:
        return None
    state = AppState.build(settings)
    try:
        return await verify.verify_chain(state.engine, datetime.now(UTC))
    finally:
        await state.engine.dispose()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))] * 1000


async def run(args: argparse.Namespace, settings: Settings, base_url: str) -> int:
    director_email = await seed_director(settings)
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT) as client:
        director, staff, subjects = await seed_org(client, director_email)
        everyone = [director, *staff]
        log(f"seeded {len(staff)} colleagues, {len(subjects)} subjects, {sum(len(a.own) for a in staff)} records")
        stats = Stats()
        started = time.monotonic()
        deadline = started + args.seconds
        await asyncio.gather(*(client_loop(client, stats, everyone[i % len(everyone)], everyone, subjects,
                                           deadline, args.seed + i) for i in range(args.clients)))
        elapsed = time.monotonic() - started

    increments, records = version_increments(args.database_url, args.schema)
    report = await verify_audit_chain(settings)
    total = sum(stats.statuses.values())
    print(f"\nsoak: {args.seconds:g} s, {args.clients} clients, 2 workers, PostgreSQL schema {args.schema}")
    print(f"requests: {total} in {elapsed:.1f} s = {total / elapsed:.0f}/s; transport errors: {stats.transport_errors}")
    print(f"{'operation':<12} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for op in sorted(stats.latencies):
        by_status = {s: n for (o, s), n in sorted(stats.statuses.items()) if o == op}
        print(f"{op:<12} {len(stats.latencies[op]):>7} {percentile(stats.latencies[op], 50):>8.1f} "
              f"{percentile(stats.latencies[op], 99):>8.1f}  {by_status}")
    print(f"updates: {stats.patches_ok} accepted, {stats.retries_412} retried after 412; "
          f"sum of version increments over {records} records: {increments}")
    if report is None:
        print("verify: not available yet")
    else:
        print(f"audit chain: ok={report.ok} checked={report.checked} pending={report.pending} "
              f"first_broken_id={report.first_broken_id}")
    problems = []
    if stats.server_errors or stats.transport_errors:
        problems.append(f"{stats.server_errors} 5xx responses, {stats.transport_errors} transport errors")
    if increments != stats.patches_ok:
        problems.append(f"accepted updates {stats.patches_ok} != version increments {increments}")
    if report is not None and not report.ok:
        problems.append(f"the audit chain is broken at event {report.first_broken_id}")
    print("result: " + ("CLEAN" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the traffic runs (default 120)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"PostgreSQL (default {DEFAULT_URL})")
    parser.add_argument("--schema", default=f"kmm_soak_{uuid.uuid4().hex[:8]}", help="a schema of its own")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the traffic mix")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 3600 or not 1 <= args.clients <= 256:
        parser.error("--seconds must be 1..3600 and --clients 1..256")
    with tempfile.TemporaryDirectory(prefix="kmm-soak-") as tmp_name, \
            bench_schema(args.database_url, args.schema, args.keep):
        tmp = Path(tmp_name)
        settings = Settings(database_url=args.database_url, database_schema=args.schema,
                            secrets_file=write_secrets(tmp), env="development")
        log(f"migrating schema {args.schema}")
        upgrade(settings)
        with Service(database_url=args.database_url, schema=args.schema, secrets_file=settings.secrets_file,
                     workers=args.workers, log_file=tmp / "service.log") as service:
            log(f"service on {service.base_url} ({args.workers} workers); traffic for {args.seconds:g} s")
            code = asyncio.run(run(args, settings, service.base_url))
        if code:
            log(f"service log: {(tmp / 'service.log').read_text(errors='replace')[-4000:]}")
        return code


if __name__ == "__main__":
    raise SystemExit(main())
