"""/healthz (alive), /readyz (database reachable, migrations at head), /metrics.

``/metrics`` answers with a bearer token when ``KMM_METRICS_TOKEN`` is set (401 otherwise).
Without one it is open in development and not served at all in production (404): what it
shows (routes, statuses, latencies) tells an outsider how the service is used.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError

from app.core import metrics as prometheus
from app.core.errors import Problem, not_found
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
async def metrics(request: Request, state: StateDep) -> Response:
    token = state.settings.metrics_token
    if token is None:
        if state.settings.env == "production":
            raise not_found("metrics")
    else:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise Problem(401, "the metrics need the metrics token", type="not-authenticated",
                          headers={"WWW-Authenticate": "Bearer"})
    return Response(prometheus.render(), media_type=prometheus.CONTENT_TYPE_LATEST)
