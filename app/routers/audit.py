"""/audit-events: directors read the audit trail and check its hash chain (DESIGN §6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.core.errors import Problem
from app.core.pagination import Page
from app.deps import DirectorUser, LimitDep, NowDep, SessionDep, StateDep
from app.models.audit import AuditEventFilter, AuditEventPublic, ChainReport
from app.routers.responses import problem_responses
from app.workflows.audit import trail
from app.workflows.audit.verify import verify_chain

router = APIRouter(prefix="/audit-events", tags=["audit"])


@router.get("", response_model=Page[AuditEventPublic], responses=problem_responses(400, 401, 403, 422))
async def list_events(
    actor: DirectorUser,
    session: SessionDep,
    state: StateDep,
    limit: LimitDep,
    filters: Annotated[AuditEventFilter, Query()],
    now: NowDep,
    cursor: str | None = Query(default=None, max_length=512),
) -> Page[AuditEventPublic]:
    """Events newest first; ``since`` is inclusive, ``until`` exclusive (both need a timezone)."""
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise Problem(422, "since must be before until", type="validation-error",
                      errors=[{"loc": ["query", "until"], "msg": "must be after since", "type": "value_error"}])
    return await trail.list_events(session, actor=actor, now=now, filters=filters, cursors=state.cursors,
                                   cursor=cursor, limit=limit)


@router.get("/verify", response_model=ChainReport, responses=problem_responses(401, 403))
async def verify(actor: DirectorUser, session: SessionDep, state: StateDep, now: NowDep) -> ChainReport:
    """Seal pending events, then recompute the whole chain; names the first broken event."""
    # Verify runs its own transactions: end the login check's first (on SQLite it holds
    # the single write lock the sealer needs).
    await session.commit()
    return await verify_chain(state.engine, now)
