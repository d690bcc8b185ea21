"""Starting and stopping the service under test: `kmm serve` (uvicorn, uvloop, httptools)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Service:
    """The service in its own process group, on a free port, with the benchmark's settings."""

    def __init__(self, *, database_url: str, schema: str, secrets_file: Path, workers: int, log_file: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KMM_DATABASE_SCHEMA": schema,
            "KMM_SECRETS_FILE": str(secrets_file),
            "KMM_BENCH_ENDPOINTS": "true",
            "KMM_LOG_LEVEL": "WARNING",
            "KMM_ENV": "development",
            "PYTHONPATH": str(ROOT),
        }
        self.workers = workers
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--workers", str(self.workers),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; see {self.log_file}")
            try:
                ready = httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
                # Every worker must be up, not just the first to answer.
                if ready and (self.workers == 1 or len(self.worker_pids()) >= self.workers):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the service was not ready within {timeout:.0f} s; see {self.log_file}")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor), for profiling."""
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        workers = []
        for pid in (int(p) for p in out.split()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            except OSError:
                continue
            if "resource_tracker" not in cmdline:  # multiprocessing's helper is a child too
                workers.append(pid)
        return workers

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
