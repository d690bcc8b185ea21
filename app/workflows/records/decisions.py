"""Deciding about one record: the policy's answer, audited when it refuses, and what follows
a refusal (breach detection, §7.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Denied
from app.policy.actor import Actor
from app.policy.decide import Decision, decide
from app.policy.rules import Action
from app.workflows.audit.trail import add_event
from app.workflows.breach_reports.detection import detect_unauthorised_access
from app.workflows.records.queries import LoadedRecord


async def authorize(
    session: AsyncSession, *, actor: Actor, action: Action, loaded: LoadedRecord, now: datetime,
    audit_allow: bool = False,
) -> Decision:
    """Decide; a denial is audited, committed and raised as 403 with rule and clause."""
    decision = decide(actor, action, loaded.facts, now)
    if not decision.allowed:
        add_event(session, now=now, actor=actor, action=f"record.{action}", resource_type="record",
                  resource_id=loaded.record.id, decision="deny", rule=decision.rule, clause=decision.clause,
                  detail={"classification": loaded.record.classification})
        await session.commit()
        # A committed denial counts towards an unauthorised-access report (§7.2).
        await detect_unauthorised_access(session, actor=actor, record=loaded.record, action=action, now=now)
        raise Denied.of(decision, f"{action} denied")
    if audit_allow:
        add_event(session, now=now, actor=actor, action=f"record.{action}", resource_type="record",
                  resource_id=loaded.record.id, decision="allow", rule=decision.rule, clause=decision.clause,
                  **allow_flags(decision, loaded.record.classification))
    return decision


def allow_flags(decision: Decision, classification: str) -> dict[str, Any]:
    """The emergency flag and detail of an allowed read's audit event: a read through a grant,
    or through a line-manager relation less than a day old, is flagged (§4.5, §3.2)."""
    detail: dict[str, Any] = {"classification": classification}
    if decision.recent_relation:
        detail["recent_relation"] = True
    return {"emergency": decision.emergency or decision.recent_relation, "detail": detail}

