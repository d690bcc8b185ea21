"""Run in a child process by tests/core/test_token_memory.py: send refused tokens straight
to the ASGI app and print how much the process's resident memory grew (JSON).

Usage: python -m tests.memory_probe DIR  (DIR holds the throwaway SQLite file and secrets).
Nothing here touches the database: every request is refused at the token.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jose import jwt

from app.core.config import Settings
from app.main import create_app

FIXED_BAD = 20_000
HUGE = 50
HUGE_BYTES = 1024 * 1024


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def call(app: Any, token: bytes) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/users/me", "raw_path": b"/users/me", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", b"Bearer " + token)],
        "client": ("127.0.0.1", 40000), "server": ("test", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def forged_token() -> bytes:
    """Well formed, the right algorithm, signed with another key: refused at the signature."""
    now = datetime.now(UTC)
    claims = {"iss": "kmm", "sub": str(uuid.uuid4()), "sid": str(uuid.uuid4()), "jti": str(uuid.uuid4()),
              "typ": "access", "knd": "user", "iat": int(now.timestamp()),
              "exp": int((now + timedelta(minutes=15)).timestamp())}
    return jwt.encode(claims, "not the service's key " * 4, algorithm="HS256").encode()


async def main(tmp: Path) -> dict[str, Any]:
    settings = Settings(env="test", database_url=f"sqlite+aiosqlite:///{tmp / 'probe.db'}",
                        secrets_file=tmp / "secrets.json", log_level="CRITICAL")
    app = create_app(settings, configure_logs=False)
    bad = forged_token()
    statuses: set[int] = set()
    for _ in range(500):  # warm up: imports, caches, the allocator's first arenas
        statuses.add(await call(app, bad))
    gc.collect()
    start = rss_kib()
    for _ in range(FIXED_BAD):
        statuses.add(await call(app, bad))
    gc.collect()
    after_fixed = rss_kib()
    for i in range(HUGE):
        statuses.add(await call(app, (b"%04d" % i) + b"A" * (HUGE_BYTES - 4)))
    gc.collect()
    end = rss_kib()
    await app.state.kmm.engine.dispose()
    return {"statuses": sorted(statuses), "start_kib": start, "after_fixed_kib": after_fixed, "end_kib": end}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
