"""/compliance: what needs a director's attention under the data protection policy (§6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import DirectorUser, NowDep, SessionDep, StateDep
from app.routers.responses import problem_responses
from app.workflows import compliance

router = APIRouter(tags=["data protection"])


@router.get("/compliance/summary", responses=problem_responses(401, 403))
async def compliance_summary(
    actor: DirectorUser, session: SessionDep, state: StateDep, now: NowDep
) -> dict[str, Any]:
    """For each check, the ids needing attention and how many: `{"name": {"ids": [...], "count": n}}`."""
    return await compliance.summary(session, actor=actor, now=now, settings=state.settings)
