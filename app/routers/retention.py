"""/retention: the sweep that destroys every record past its retention date (§6.5)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.deps import NowDep, SessionDep, director_only
from app.models.retention import SweepRequest, SweepResult
from app.policy.actor import Actor
from app.routers.responses import problem_responses
from app.workflows import retention

router = APIRouter(tags=["data protection"])

SweepDirector = Annotated[Actor, Depends(director_only(
    retention.RULE, retention.CLAUSE, detail="only a director runs the retention sweep"))]


@router.post("/retention/sweep", response_model=SweepResult, responses=problem_responses(401, 403, 422))
async def retention_sweep(body: SweepRequest, actor: SweepDirector, session: SessionDep, now: NowDep) -> SweepResult:
    """Destroy every record past its retention date, except those under legal hold (§6.5).

    With `dry_run` nothing changes: the response lists what would be destroyed.
    """
    return await retention.sweep(session, now=now, actor=actor, dry_run=body.dry_run)
