"""Who sees which requests; reading and listing them, filtered in SQL."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, not_, or_, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import not_found
from app.core.pagination import CursorCodec, Page, page_of
from app.models.access_requests import AccessRequest, AccessRequestKind, AccessRequestPublic, AccessRequestStatus
from app.models.subjects import Subject
from app.policy.actor import Actor
from app.workflows.access_requests.deadlines import is_overdue, overdue_sql
from app.workflows.access_requests.rules import require_staff


def to_public(request: AccessRequest, now: datetime) -> AccessRequestPublic:
    fields = {name: getattr(request, name, None) for name in AccessRequestPublic.model_fields if name != "overdue"}
    return AccessRequestPublic.model_validate({**fields, "overdue": is_overdue(request, now)})


def visible_sql(actor: Actor) -> ColumnElement[bool]:
    """Directors see every request; other staff those they logged and personnel requests about themselves."""
    if actor.is_director:
        return true()
    own_subject = select(Subject.id).where(col(Subject.user_id) == actor.id)
    return or_(
        col(AccessRequest.logged_by) == actor.id,
        and_(col(AccessRequest.kind) == AccessRequestKind.personnel_access,
             col(AccessRequest.subject_id).in_(own_subject)),
    )


async def load(session: AsyncSession, request_id: uuid.UUID, actor: Actor) -> tuple[AccessRequest, uuid.UUID | None]:
    """The request and the account of the subject it is about; 404 unless the actor may see it."""
    require_staff(actor)
    row = (
        await session.execute(
            select(AccessRequest, Subject.user_id)
            .join(Subject, col(Subject.id) == AccessRequest.subject_id)
            .where(col(AccessRequest.id) == request_id, visible_sql(actor))
        )
    ).first()
    if row is None:
        raise not_found("access request")
    return row[0], row[1]


async def get_request(
    session: AsyncSession, *, request_id: uuid.UUID, actor: Actor, now: datetime
) -> AccessRequestPublic:
    request, _ = await load(session, request_id, actor)
    return to_public(request, now)


async def list_requests(
    session: AsyncSession, *, actor: Actor, now: datetime, cursors: CursorCodec, limit: int,
    cursor: str | None, status: AccessRequestStatus | None, overdue: bool | None,
) -> Page[AccessRequestPublic]:
    """Visible requests by due date (then id), filtered in SQL."""
    require_staff(actor)
    query = (
        select(AccessRequest).where(visible_sql(actor))
        .order_by(col(AccessRequest.due_at), col(AccessRequest.id)).limit(limit + 1)
    )
    if status is not None:
        query = query.where(col(AccessRequest.status) == status)
    if overdue is not None:
        query = query.where(overdue_sql(now) if overdue else not_(overdue_sql(now)))
    if cursor:
        due, rid = cursors.decode("access-requests", cursor)
        after_due, after_id = datetime.fromisoformat(str(due)), uuid.UUID(str(rid))
        query = query.where(or_(col(AccessRequest.due_at) > after_due,
                                and_(col(AccessRequest.due_at) == after_due, col(AccessRequest.id) > after_id)))
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, lambda r: to_public(r, now), cursors=cursors, scope="access-requests", limit=limit,
                   key=lambda last: [last.due_at.isoformat(), str(last.id)])
