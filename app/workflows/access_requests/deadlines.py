"""The 14-day due date (§3.4) and what is overdue: a request neither fulfilled, refused nor
withdrawn by then."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.models.access_requests import NOTICE_DAYS, OPEN_STATUSES, AccessRequest


def due_for(received_at: datetime) -> datetime:
    return received_at + timedelta(days=NOTICE_DAYS)


def is_overdue(request: AccessRequest, now: datetime) -> bool:
    """Neither fulfilled, refused nor withdrawn by its due date."""
    return request.status in OPEN_STATUSES and request.due_at < now


def overdue_sql(now: datetime) -> ColumnElement[bool]:
    """The same condition as ``is_overdue``, for lists and the compliance summary."""
    return and_(col(AccessRequest.status).in_(OPEN_STATUSES), col(AccessRequest.due_at) < now)


async def overdue_ids(session: AsyncSession, now: datetime, settings: Settings) -> list[str]:
    """Requests neither fulfilled, refused nor withdrawn by their due date: one query."""
    rows = await session.execute(
        select(AccessRequest.id).where(overdue_sql(now)).order_by(col(AccessRequest.due_at), col(AccessRequest.id))
    )
    return [str(i) for i in rows.scalars()]
