"""`python -m bench` (`make bench`): measure the service on Postgres against a bare baseline.

Run `python -m bench --help` for the flags; docs/benchmark.md says what each number means.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.migrations import upgrade
from app.core.security import Passwords
from bench import load, measure, seed
from bench.load import LoadResult
from bench.service import Service

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).with_name("results.json")
KEYS = ("read_rps", "read_p99_ms", "baseline_rps", "read_ratio", "list_small_p50_ms", "list_large_p50_ms",
        "list_growth", "decide_us", "verify_eps", "login_ms", "errors")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL),
                   help="Postgres URL (env BENCH_DATABASE_URL)")
    p.add_argument("--schema", default="kmm_bench", help="schema to create, use and drop")
    p.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    p.add_argument("--staff", type=int, default=200)
    p.add_argument("--subjects", type=int, default=5_000)
    p.add_argument("--records", type=int, default=200_000, help="records for the large table")
    p.add_argument("--small-records", type=int, default=2_000, help="records in the table for list_small")
    p.add_argument("--events", type=int, default=200_000, help="synthetic audit events before verify")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="load-generator threads (wrk) or processes")
    p.add_argument("--duration", type=float, default=15.0, help="seconds measured per load scenario")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up before each")
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    p.add_argument("--logins", type=int, default=20)
    p.add_argument("--seed", type=int, default=7, help="random seed of the organisation")
    p.add_argument("--python-load", action="store_true", help="use the Python load generator even with wrk")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="after measuring, profile every worker with py-spy during one more read run")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def bench_schema(url: str, schema: str, keep: bool) -> Iterator[None]:
    if not schema.isidentifier():
        raise SystemExit(f"--schema must be a plain identifier, not {schema!r}")
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield
    finally:
        if not keep:
            with psycopg.connect(libpq_url(url), autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def write_secrets(directory: Path) -> Path:
    path = directory / "secrets.json"
    path.write_text(json.dumps({"jwt_secret": secrets.token_urlsafe(48),
                                "master_keys": [urlsafe_b64encode(os.urandom(32)).decode()]}))
    path.chmod(0o600)
    return path


def check_sample(base_url: str, ids: list[str], authorization: str, n: int = 50) -> int:
    """How many of a sample of the read ids do not answer 200 (the id list must be all 200s)."""
    bad = 0
    with httpx.Client(base_url=base_url, headers={"Authorization": authorization}, timeout=30) as client:
        for rid in ids[:n]:
            bad += client.get(f"/records/{rid}").status_code != 200
    return bad


def profile_workers(service: Service, out: Path, seconds: float, run: Any) -> list[Path]:
    """py-spy on every worker (collapsed stacks) while ``run()`` drives the read scenario."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.mkdir(parents=True, exist_ok=True)
    files, procs = [], []
    for pid in service.worker_pids():
        f = out / f"read-worker-{pid}.txt"
        procs.append(subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                                       "--rate", "250", "--format", "raw", "--output", str(f), "--nonblocking"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        files.append(f)
    run()
    for proc in procs:
        proc.wait(timeout=seconds + 30)
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    results: list[LoadResult] = []
    extra: dict[str, Any] = {}
    cpu: dict[str, dict[str, float]] = {}
    errors = 0
    use_wrk = not args.python_load and load.have_wrk()
    if not use_wrk and not args.python_load:
        log("wrk is not installed (apt-get install wrk): using the Python load generator")

    def drive(name: str, service: Service, template: str, authorization: str, ids_file: Path | None) -> LoadResult:
        log(f"{name}: {args.warmup:g} s warm-up, {args.duration:g} s measured, {args.connections} connections")
        run = functools.partial(load.run, name, service.base_url, template, ids_file=ids_file,
                                authorization=authorization, connections=args.connections, warmup=0,
                                threads=args.threads, use_wrk=use_wrk)
        if args.warmup > 0:
            run(seconds=args.warmup)
        workers, server = service.worker_pids(), measure.postgres_pids()
        before = measure.process_cpu(workers), measure.process_cpu(server)
        r = run(seconds=args.duration)
        after = measure.process_cpu(workers), measure.process_cpu(server)
        if r.requests:  # CPU per request: steadier than req/s on a shared machine
            cpu[name] = {"service_ms": round(measure.cpu_delta(before[0], after[0]) / r.requests * 1000, 3),
                         "postgres_ms": round(measure.cpu_delta(before[1], after[1]) / r.requests * 1000, 3)}
        results.append(r)
        return r

    with tempfile.TemporaryDirectory(prefix="kmm-bench-") as tmp_name, \
            bench_schema(args.database_url, args.schema, args.keep):
        tmp = Path(tmp_name)
        settings = Settings(database_url=args.database_url, database_schema=args.schema,
                            secrets_file=write_secrets(tmp), env="development")
        log(f"migrating schema {args.schema}")
        upgrade(settings)
        keyring = Keyring(settings.keyring)
        password = secrets.token_urlsafe(18)
        password_hash = Passwords(settings).hash(password)  # once, at the production cost
        now = datetime.now(UTC)
        conninfo = libpq_url(args.database_url)
        with psycopg.connect(conninfo, options=f"-c search_path={args.schema}") as conn:
            started = time.perf_counter()
            org = seed.seed_org(conn, staff=args.staff, subjects=args.subjects, password=password,
                                password_hash=password_hash, rng=rng, now=now)
            small = min(args.small_records, args.records)
            seed.seed_records(conn, org, count=small, keyring=keyring, rng=rng, now=now)
            seed_seconds = time.perf_counter() - started
            log(f"seeded {len(org.staff)} staff, {len(org.subject_ids)} subjects, {small} records "
                f"in {seed_seconds:.1f} s")
            colleague = org.plain_colleagues[0]
            director = org.directors[0]

            with Service(database_url=args.database_url, schema=args.schema, secrets_file=settings.secrets_file,
                         workers=args.workers, log_file=tmp / "service.log") as service:
                log(f"service on {service.base_url} ({args.workers} workers)")
                auth = f"Bearer {measure.token(service.base_url, colleague.email, password)}"
                list_small = drive("list_small", service, "/records?limit=50", auth, None)

                started = time.perf_counter()
                counts = seed.seed_records(conn, org, count=args.records - small, keyring=keyring, rng=rng, now=now)
                more = time.perf_counter() - started
                seed_seconds += more
                log(f"seeded {counts['records']} more records ({counts['shares']} shares, {counts['named']} "
                    f"named, {counts['grants']} grants) in {more:.1f} s; {org.records} in all")

                ids = [str(i) for i in seed.readable_by_director(conn, 20_000, rng)]
                ids_file = tmp / "read-ids.txt"
                ids_file.write_text("\n".join(ids) + "\n")
                auth_director = f"Bearer {measure.token(service.base_url, director.email, password)}"
                bad = check_sample(service.base_url, ids, auth_director)
                if bad:
                    log(f"{bad} of a sample of read ids did not answer 200: the read scenario would measure errors")
                    errors += bad
                read = drive("read", service, "/records/{id}", auth_director, ids_file)
                baseline = drive("baseline", service, "/bench/baseline/{id}", "", ids_file)
                auth = f"Bearer {measure.token(service.base_url, colleague.email, password)}"
                list_large = drive("list_large", service, "/records?limit=50", auth, None)

                log(f"login: {args.logins} sequential logins")
                login, login_failures = measure.login_ms(service.base_url, director.email, password,
                                                         count=args.logins)
                errors += login_failures

                if args.profile:
                    auth_director = f"Bearer {measure.token(service.base_url, director.email, password)}"
                    files = profile_workers(
                        service, args.profile, args.duration,
                        lambda: load.run("read (profiled)", service.base_url, "/records/{id}", ids_file=ids_file,
                                         authorization=auth_director, connections=args.connections,
                                         seconds=args.duration, warmup=0, threads=args.threads, use_wrk=use_wrk))
                    log("py-spy collapsed stacks: " + ", ".join(map(str, files)))

            log("decide: timeit")
            decide = measure.decide_us()
            if measure._find("verify_chain") is not None and args.events:
                started = time.perf_counter()
                seed.seed_audit_events(conn, org, count=args.events, rng=rng, now=now)
                log(f"inserted {args.events} synthetic audit events in {time.perf_counter() - started:.1f} s")
            log("verify: audit chain")
            verified = measure.verify(settings)

    errors += sum(r.errors for r in results)
    bench: dict[str, Any] = {
        "read_rps": round(read.rps, 1),
        "read_p99_ms": round(read.p99_ms, 2),
        "baseline_rps": round(baseline.rps, 1),
        "read_ratio": round(read.rps / baseline.rps, 3) if baseline.rps else None,
        "list_small_p50_ms": round(list_small.p50_ms, 2),
        "list_large_p50_ms": round(list_large.p50_ms, 2),
        "list_growth": round(list_large.p50_ms / list_small.p50_ms, 3) if list_small.p50_ms else None,
        "decide_us": round(decide, 3),
        "verify_eps": round(verified.events_per_second) if verified.events_per_second else None,
        "login_ms": round(login, 1),
        "errors": errors,
    }
    extra.update({
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_tool": results[0].tool if results else None,
        "connections": args.connections, "duration_s": args.duration, "workers": args.workers,
        "records": org.records, "seed_s": round(seed_seconds, 1),
        "verify_checked": verified.checked, "verify_note": verified.note,
        "seal_s": round(verified.seal_seconds, 2) if verified.seal_seconds is not None else None,
        "cpu_per_request": cpu,
    })
    print_table(results, bench, extra, verified)
    line = {**bench, **extra}
    RESULTS.write_text(json.dumps(line, indent=2) + "\n")
    print("BENCH " + json.dumps(line, ensure_ascii=False))
    return 0


def print_table(results: list[LoadResult], bench: dict[str, Any], extra: dict[str, Any],
                verified: measure.VerifyResult) -> None:
    print()
    print(f"KMM benchmark, {extra['date']}, {extra['machine']}; {extra['records']} records; "
          f"{extra['connections']} connections via {extra['load_tool']}, {extra['duration_s']:g} s each")
    print(f"{'scenario':<12} {'requests/s':>11} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
          f" {'CPU ms/req: service':>20} {'postgres':>9}")
    cpu = extra.get("cpu_per_request", {})
    for r in results:
        c = cpu.get(r.name, {})
        print(f"{r.name:<12} {r.rps:>11.1f} {r.p50_ms:>9.2f} {r.p99_ms:>9.2f} {r.errors:>7}"
              f" {c.get('service_ms', float('nan')):>20.3f} {c.get('postgres_ms', float('nan')):>9.3f}")
    print(f"{'decide':<12} {bench['decide_us']:>8.3f} us per decision (in process)")
    if verified.events_per_second:
        print(f"{'verify':<12} {verified.events_per_second:>11.0f} events/s ({verified.checked} events "
              f"in {verified.seconds:.2f} s)")
    else:
        print(f"{'verify':<12} {'-':>11}   {verified.note}")
    print(f"{'login':<12} {bench['login_ms']:>8.1f} ms per login (median, sequential)")
    print(f"read_ratio {bench['read_ratio']}, list_growth {bench['list_growth']}, errors {bench['errors']}")


if __name__ == "__main__":
    sys.exit(main())
