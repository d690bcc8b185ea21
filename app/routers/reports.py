"""/reports: aggregate counts for monitoring and funders (§2.3)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CurrentActor, NowDep, SessionDep
from app.models.reports import MonitoringReport
from app.routers.responses import problem_responses
from app.workflows import reports

router = APIRouter(tags=["data protection"])


@router.get("/reports/monitoring", response_model=MonitoringReport, responses=problem_responses(401, 403))
async def monitoring_report(actor: CurrentActor, session: SessionDep, now: NowDep) -> MonitoringReport:
    """Aggregate counts for monitoring and funders (§2.3); counts 1-4 are shown as "<5"."""
    return await reports.monitoring(session, actor=actor, now=now)
