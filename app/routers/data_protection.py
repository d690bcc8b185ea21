"""Data protection (§6): the retention sweep, the compliance summary, monitoring reports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import CurrentActor, CurrentUser, DirectorUser, NowDep, SessionDep, StateDep
from app.models.lifecycle import SweepRequest, SweepResult
from app.routers.responses import problem_responses
from app.workflows import compliance, reports, retention

router = APIRouter(tags=["data protection"])


@router.post("/retention/sweep", response_model=SweepResult, responses=problem_responses(401, 403, 422))
async def retention_sweep(body: SweepRequest, actor: CurrentUser, session: SessionDep, now: NowDep) -> SweepResult:
    """Destroy every record past its retention date, except those under legal hold (§6.5).

    With `dry_run` nothing changes: the response lists what would be destroyed.
    """
    retention.require_director(actor, "runs the retention sweep")
    return await retention.sweep(session, now=now, actor=actor, dry_run=body.dry_run)


@router.get("/compliance/summary", responses=problem_responses(401, 403))
async def compliance_summary(
    actor: DirectorUser, session: SessionDep, state: StateDep, now: NowDep
) -> dict[str, Any]:
    """For each check, the ids needing attention and how many: `{"name": {"ids": [...], "count": n}}`."""
    return await compliance.summary(session, actor=actor, now=now, settings=state.settings)


@router.get("/reports/monitoring", response_model=reports.MonitoringReport, responses=problem_responses(401, 403))
async def monitoring_report(actor: CurrentActor, session: SessionDep, now: NowDep) -> reports.MonitoringReport:
    """Aggregate counts for monitoring and funders (§2.3); counts 1-4 are shown as "<5"."""
    return await reports.monitoring(session, actor=actor, now=now)
