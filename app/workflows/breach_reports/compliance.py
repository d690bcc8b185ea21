"""What the compliance summary lists about breach reports (DESIGN §5 "Data protection").

Each check takes the actor whose summary it is, and lists only reports that actor may know
of (``visible``); without one (``None``) it is the service's own view of every report.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.models.breach_reports import BreachKind, BreachReport
from app.policy.actor import Actor
from app.workflows.breach_reports.reports import UNRESOLVED
from app.workflows.breach_reports.visibility import visible


async def complaints_without_procedure_advised(session: AsyncSession, now: datetime, settings: Settings,
                                               actor: Actor | None = None) -> list[str]:
    """External complaints whose complainant has not been told about the Complaint Procedure (§1.7)."""
    query = select(BreachReport.id).where(col(BreachReport.kind) == BreachKind.external_complaint,
                                          col(BreachReport.complaint_procedure_advised).is_(False))
    if actor is not None:
        query = query.where(visible(actor))
    rows = await session.execute(query.order_by(col(BreachReport.created_at), col(BreachReport.id)))
    return [str(i) for i in rows.scalars()]


async def open_too_long(session: AsyncSession, now: datetime, settings: Settings,
                        actor: Actor | None = None) -> list[str]:
    """Reports still open or under investigation after settings.breach_open_too_long_days."""
    cutoff = now - timedelta(days=settings.breach_open_too_long_days)
    query = select(BreachReport.id).where(col(BreachReport.status).in_(UNRESOLVED),
                                          col(BreachReport.created_at) < cutoff)
    if actor is not None:
        query = query.where(visible(actor))
    rows = await session.execute(query.order_by(col(BreachReport.created_at), col(BreachReport.id)))
    return [str(i) for i in rows.scalars()]
