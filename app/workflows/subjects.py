"""The subject directory (§2.1): who information is about."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import field_error
from app.core.lookup import get_or_missing
from app.core.pagination import CursorCodec, Page, page_of
from app.models.subjects import Subject, SubjectCategory, SubjectCreate, SubjectPublic
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.audit.trail import add_event


async def get_subject(session: AsyncSession, subject_id: uuid.UUID) -> Subject:
    return await get_or_missing(session, Subject, subject_id, name="subject")


async def create_subject(session: AsyncSession, *, data: SubjectCreate, actor: Actor, now: datetime,
                         subject_id: uuid.UUID | None = None) -> Subject:
    """``subject_id``: a chosen id (the demo's, so the docs' examples name a subject that exists)."""
    if data.user_id is not None:
        user = await session.get(User, data.user_id)
        if user is None or user.role == "trustee":
            raise field_error("user_id", "no such staff account")
        if user.staff_type != "employee":
            raise field_error("user_id", "an employee subject links to an employee's account (staff_type employee)")
        taken = (await session.execute(select(Subject.id).where(col(Subject.user_id) == data.user_id))).first()
        if taken:
            raise field_error("user_id", "this account already has a subject")
    subject = Subject(
        id=subject_id or uuid.uuid4(),
        kind=data.kind,
        name=data.name,
        category=data.category,
        officers=[o.model_dump(mode="json") for o in data.officers],
        user_id=data.user_id,
        created_by=actor.id if actor.kind == "user" else None,
        created_at=now,
    )
    session.add(subject)
    await session.flush()
    add_event(session, now=now, actor=actor, action="subject.create", resource_type="subject",
              resource_id=subject.id, decision="allow", rule="staff", clause="§2.1")
    await session.commit()
    return subject


async def list_subjects(
    session: AsyncSession, *, cursors: CursorCodec, limit: int, cursor: str | None,
    q: str | None, category: SubjectCategory | None,
) -> Page[SubjectPublic]:
    query = select(Subject).order_by(col(Subject.name), col(Subject.id)).limit(limit + 1)
    if cursor:
        name, sid = cursors.decode("subjects", cursor)
        query = query.where(
            (col(Subject.name) > name) | ((col(Subject.name) == name) & (col(Subject.id) > uuid.UUID(str(sid))))
        )
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(Subject.name).ilike(f"%{escaped}%", escape="\\"))
    if category:
        query = query.where(col(Subject.category) == category)
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, SubjectPublic.model_validate, cursors=cursors, scope="subjects", limit=limit,
                   key=lambda last: [last.name, str(last.id)])
