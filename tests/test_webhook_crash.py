"""A webhook delivery survives the service being killed mid-delivery (at least once).

`kmm serve` runs as a subprocess on SQLite; the receiver, on 127.0.0.1, takes the first
delivery and never answers. The service is killed with SIGKILL while it waits, started
again, and the same event (same X-KMM-Event-Id, correctly signed) arrives once the
killed attempt's lease has run out. Each wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.workflows.webhooks.signing import verify_signature
from tests.live_server import free_port
from tests.webhook_receiver import Receiver

PASSWORD = "correct horse battery staple"
KMM = str(Path(sys.executable).with_name("kmm"))
WAIT = 30.0  # seconds, for each thing awaited: far above what each takes


def _env(tmp: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("KMM_", "DATABASE_URL"))}
    return {**keep, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'crash.db'}", "KMM_ENV": "development",
            "KMM_SECRETS_FILE": str(tmp / "secrets.json"), "KMM_ARGON2_TIME_COST": "1", "KMM_ARGON2_MEMORY_KIB": "1024",
            "KMM_SCHEDULER": "false", "KMM_WEBHOOK_TIMEOUT_SECONDS": "2", "KMM_WEBHOOK_POLL_SECONDS": "0.1",
            "KMM_LOG_LEVEL": "WARNING"}


async def _run(env: dict[str, str], *args: str, stdin: bytes | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(KMM, *args, env=env, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), WAIT)
    assert proc.returncode == 0, (args, out.decode()[-500:], err.decode()[-1000:])


@contextlib.asynccontextmanager
async def _serving(env: dict[str, str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(KMM, "serve", "--host", "127.0.0.1", "--port", str(port),
                                                "--no-migrate", env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async with asyncio.timeout(WAIT):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    assert proc.returncode is None, "kmm serve exited"
                    await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), WAIT)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.mark.slow
async def test_a_delivery_in_flight_when_the_service_is_killed_arrives_after_restart(tmp_path):
    env = _env(tmp_path)
    await _run(env, "migrate")
    await _run(env, "create-user", "--email", "boss@crash.kmm", "--name", "The Director", "--role", "director",
               "--password-stdin", stdin=PASSWORD.encode())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stall = asyncio.Event()
    async with Receiver(stall=stall) as receiver:
        async with _serving(env, port) as first, httpx.AsyncClient(base_url=base, timeout=10) as api:
            r = await api.post("/auth/token", data={"username": "boss@crash.kmm", "password": PASSWORD})
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            r = await api.post("/webhooks", headers=auth, json={"url": receiver.url, "events": ["disclosure.raised"]})
            assert r.status_code == 201, r.text
            hook = r.json()
            r = await api.post("/subjects", headers=auth,
                               json={"kind": "individual", "name": "Crash Subject", "category": "service_user"})
            r = await api.post("/disclosures", headers=auth, json={
                "subject_id": r.json()["id"], "category": "child_abuse", "summary": "never in a webhook"})
            assert r.status_code == 201, r.text
            disclosure_id = r.json()["id"]
            await asyncio.wait_for(receiver.arrived.wait(), WAIT)  # posted; the receiver holds it
            first.kill()  # SIGKILL, mid-delivery: no attempt is recorded
            await asyncio.wait_for(first.wait(), WAIT)
        assert len(receiver.received) == 1
        receiver.arrived.clear()
        stall.set()  # from now on the receiver answers 200

        async with _serving(env, port), httpx.AsyncClient(base_url=base, timeout=10) as api:
            await asyncio.wait_for(receiver.arrived.wait(), WAIT)  # delivered again
            r = await api.post("/auth/token", data={"username": "boss@crash.kmm", "password": PASSWORD})
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            async with asyncio.timeout(WAIT):  # the attempt is recorded just after the answer
                while True:
                    log = (await api.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()["items"]
                    if log and log[0]["status"] == "delivered":
                        break
                    await asyncio.sleep(0.1)

    killed, again = receiver.received
    assert killed.body == again.body and killed.headers["x-kmm-event-id"] == again.headers["x-kmm-event-id"]
    body = json.loads(again.body)
    assert body["data"] == {"disclosure_id": disclosure_id, "category": "child_abuse"}
    assert "never in a webhook" not in again.body.decode()
    assert verify_signature(hook["secret"], again.headers["x-kmm-signature"], again.body, now=int(time.time()))
    [item] = log
    assert item["attempts"] == 1 and [a["status_code"] for a in item["attempt_log"]] == [200]

