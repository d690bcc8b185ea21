"""`kmm serve` for the tests that need the real server: the command (uvicorn, as in production)
in a process of its own, on a free loopback port, over a fresh SQLite database and secrets file
in a folder of the test's. Every wait is bounded, and the process is stopped however the test
ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_ROOT

READY_SECONDS = 30
STOP_SECONDS = 10


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kmm_env(folder: Path, database: str) -> dict[str, str]:
    """The environment of a `kmm` command over the SQLite file ``database`` in ``folder``."""
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "DATABASE_URL": f"sqlite:///{folder / database}",
        "KMM_SECRETS_FILE": str(folder / "secrets.json"),
        "KMM_ENV": "test",
        "KMM_ARGON2_TIME_COST": "1",
        "KMM_ARGON2_MEMORY_KIB": "1024",
        "KMM_LOG_LEVEL": "WARNING",
    }


def run_kmm(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`kmm ARGS` to completion (two minutes at most); a failure raises with its output."""
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=PROJECT_ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=True)


@contextlib.contextmanager
def kmm_serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """`kmm serve --no-migrate` on a free loopback port; its base URL once /readyz answers 200.

    The server's output goes to ``log``, which a failure to start quotes. On the way out the
    process is terminated, and killed if it has not stopped after ten seconds.
    """
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"kmm serve exited with {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"kmm serve did not become ready in {READY_SECONDS} s: {log.read_text()}")
