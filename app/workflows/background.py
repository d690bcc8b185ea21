"""Background tasks a service process runs (started and stopped by the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib

from app.core.state import AppState
from app.workflows import scheduler
from app.workflows.audit import seal
from app.workflows.webhooks import delivery

# Each entry: a coroutine function taking the AppState and running until cancelled.
TASKS: list = [
    seal.run_sealer,
    delivery.run_deliveries,
    scheduler.run_scheduler,
]


def start(state: AppState) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(task(state)) for task in TASKS]


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
