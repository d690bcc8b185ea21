"""Driving the service: wrk with bench/wrk.lua when it is installed, else a Python fallback.

Either way the load comes from separate processes, with a fixed number of concurrent
connections for a fixed time, after a warm-up whose numbers are thrown away. Any
response that is not 2xx, and any socket error or timeout, counts as an error.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

LUA = Path(__file__).with_name("wrk.lua")


@dataclass(frozen=True, slots=True)
class LoadResult:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(name: str, base_url: str, template: str, *, ids_file: Path | None, authorization: str | None,
        connections: int, seconds: float, warmup: float, threads: int = 2, use_wrk: bool = True) -> LoadResult:
    """Warm up, then measure ``template`` ({id} replaced by a random id from ``ids_file``)."""
    runner = _wrk if use_wrk and have_wrk() else _python
    if warmup > 0:
        runner(name, base_url, template, ids_file, authorization, connections, warmup, threads)
    return runner(name, base_url, template, ids_file, authorization, connections, seconds, threads)


# -- wrk ---------------------------------------------------------------------------


def _wrk(name: str, base_url: str, template: str, ids_file: Path | None, authorization: str | None,
         connections: int, seconds: float, threads: int) -> LoadResult:
    cmd = [
        "wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(LUA), base_url,
        "--", template, str(ids_file) if ids_file else "-", authorization or "-",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(v for k, v in data.items() if k.startswith("errors_"))
    return LoadResult(name=name, requests=data["requests"], seconds=data["duration_us"] / 1e6,
                      p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000, errors=errors, tool="wrk")


# -- the Python fallback: asyncio + httpx in one process per core ------------------


def _python(name: str, base_url: str, template: str, ids_file: Path | None, authorization: str | None,
            connections: int, seconds: float, threads: int) -> LoadResult:
    ids = ids_file.read_text().split() if ids_file else []
    procs = max(1, min(threads, connections))
    shares = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        parts = list(pool.map(_python_worker, [base_url] * procs, [template] * procs, [ids] * procs,
                              [authorization] * procs, shares, [seconds] * procs))
    latencies = sorted(lat for _, _, lats in parts for lat in lats)
    requests = sum(p[0] for p in parts)
    errors = sum(p[1] for p in parts)
    return LoadResult(name=name, requests=requests, seconds=seconds,
                      p50_ms=_percentile(latencies, 50) * 1000, p99_ms=_percentile(latencies, 99) * 1000,
                      errors=errors, tool="python")


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(pct) - 1]


def _python_worker(base_url: str, template: str, ids: list[str], authorization: str | None, connections: int,
                   seconds: float) -> tuple[int, int, list[float]]:
    return asyncio.run(_python_load(base_url, template, ids, authorization, connections, seconds))


async def _python_load(base_url: str, template: str, ids: list[str], authorization: str | None, connections: int,
                       seconds: float) -> tuple[int, int, list[float]]:
    headers = {"Authorization": authorization} if authorization else {}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=10) as client:

        async def one_connection() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                path = template.replace("{id}", rng.choice(ids)) if ids else template
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = 200 <= response.status_code < 300
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        await asyncio.gather(*(one_connection() for _ in range(connections)))
    return len(latencies), errors, latencies
