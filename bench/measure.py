"""The scenarios that are not a load: one policy decision, chain verification, logins."""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import time
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.core.config import Settings
from app.core.db import make_engine
from app.models.records import Classification
from app.policy.actor import Actor
from app.policy.decide import RecordFacts, decide
from app.policy.rules import Action


def decide_us(number: int = 100_000, repeat: int = 5) -> float:
    """Microseconds for one decision: a colleague reading a confidential record passed to them.

    The rule table is walked past general, custodian and line-manager before the share
    allows it: a middling case, not the first rule. Best of ``repeat`` runs (timeit's advice).
    """
    me = uuid.uuid4()
    actor = Actor(id=me, kind="user", role="colleague", line_manager_id=uuid.uuid4(), staff_type="employee",
                  session_id=uuid.uuid4())
    facts = RecordFacts(classification=Classification.confidential, custodian_id=uuid.uuid4(),
                        custodian_line_manager_id=uuid.uuid4(), employee_line_manager_id=None,
                        shared_with_actor=True, actor_named=False, actor_grant_expires_at=None)
    now = datetime.now(UTC)
    assert decide(actor, Action.read, facts, now).rule == "shared"
    runs = timeit.repeat(lambda: decide(actor, Action.read, facts, now), number=number, repeat=repeat)
    return min(runs) / number * 1e6


@dataclass(frozen=True, slots=True)
class VerifyResult:
    events_per_second: float | None
    checked: int
    seconds: float
    seal_seconds: float | None
    ok: bool | None
    note: str


def _find(name: str) -> Callable[..., Any] | None:
    for module in ("app.workflows.audit.seal", "app.workflows.audit.verify"):
        try:
            fn = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if fn is not None:
            return fn  # type: ignore[no-any-return]
    return None


def _install_audit_keys(settings: Settings) -> None:
    """The keyed chain's keys, as AppState.build installs them (where the app has them)."""
    try:
        from app.core.audit_keys import AuditKeys, install_audit_keys
    except ImportError:
        return
    install_audit_keys(AuditKeys(settings.audit_key_list))


def verify(settings: Settings) -> VerifyResult:
    """Events per second of ``verify_chain``, after sealing everything pending (timed apart)."""
    verify_chain, seal_all = _find("verify_chain"), _find("seal_all")
    if verify_chain is None:
        return VerifyResult(None, 0, 0.0, None, None, "app has no verify_chain: not measured")

    async def go() -> VerifyResult:
        _install_audit_keys(settings)
        engine = make_engine(settings)
        try:
            now = datetime.now(UTC)
            seal_s = None
            if seal_all is not None:
                started = time.perf_counter()
                await seal_all(engine, now)
                seal_s = time.perf_counter() - started
            started = time.perf_counter()
            report = await verify_chain(engine, now)
            elapsed = time.perf_counter() - started
        finally:
            await engine.dispose()
        checked = int(getattr(report, "checked", 0))
        ok = getattr(report, "ok", None)
        return VerifyResult(checked / elapsed if elapsed and checked else None, checked, elapsed, seal_s, ok,
                            "verify_chain over the sealed chain" + ("" if ok else " (REPORTED BROKEN)"))

    return asyncio.run(go())


def login_ms(base_url: str, email: str, password: str, *, count: int = 20, warmup: int = 2) -> tuple[float, int]:
    """Median milliseconds of sequential password logins at the service's argon2 cost; and the failures."""
    times: list[float] = []
    failures = 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(warmup + count):
            started = time.perf_counter()
            r = client.post("/auth/token", data={"username": email, "password": password})
            elapsed = time.perf_counter() - started
            if r.status_code != 200:
                failures += 1
            elif i >= warmup:
                times.append(elapsed * 1000)
    return (statistics.median(times) if times else float("nan")), failures


def token(base_url: str, email: str, password: str) -> str:
    r = httpx.post(f"{base_url}/auth/token", data={"username": email, "password": password}, timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])


# -- CPU per request: what the load costs, whatever else the machine is doing --------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still alive (Linux /proc)."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (the benchmark's database is local)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"postgres"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes alive at both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())
