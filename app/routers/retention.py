"""/retention: the sweep that destroys every record past its retention date (§6.5)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CurrentUser, NowDep, SessionDep
from app.models.retention import SweepRequest, SweepResult
from app.routers.responses import problem_responses
from app.workflows import retention

router = APIRouter(tags=["data protection"])


@router.post("/retention/sweep", response_model=SweepResult, responses=problem_responses(401, 403, 422))
async def retention_sweep(body: SweepRequest, actor: CurrentUser, session: SessionDep, now: NowDep) -> SweepResult:
    """Destroy every record past its retention date, except those under legal hold (§6.5).

    With `dry_run` nothing changes: the response lists what would be destroyed.
    """
    retention.require_director(actor, "runs the retention sweep")
    return await retention.sweep(session, now=now, actor=actor, dry_run=body.dry_run)
