"""/healthz (alive), /readyz (database reachable, migrations at head), /metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from app.core.errors import Problem
from app.core.migrations import current_revisions, head_revisions
from app.deps import StateDep
from app.routers.responses import problem_responses

log = logging.getLogger("kmm.health")
router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
async def readyz(state: StateDep) -> dict[str, str]:
    try:
        current = await asyncio.wait_for(
            current_revisions(state.engine), timeout=state.settings.database_timeout_seconds
        )
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("not ready", extra={"error": type(exc).__name__})
        raise Problem(503, "the database is not reachable", type="not-ready") from exc
    if current != head_revisions():
        raise Problem(503, "the database schema is not at the latest migration", type="not-ready")
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
