"""/subjects: the directory of people and organisations information is about."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.core.errors import PolicyDenied
from app.core.pagination import Page
from app.deps import CurrentActor, LimitDep, NowDep, SessionDep, StateDep, refuse
from app.models.subjects import Subject, SubjectCategory, SubjectCreate, SubjectPublic
from app.policy.actor import Actor
from app.routers.responses import problem_responses
from app.workflows import subjects

router = APIRouter(prefix="/subjects", tags=["subjects"])


def _directory_user(scope: str):  # type: ignore[no-untyped-def]
    async def check(request: Request, actor: CurrentActor, session: SessionDep, now: NowDep) -> Actor:
        if not (actor.is_staff or (actor.kind == "client" and actor.has_scope(scope))):
            await refuse(request, session, actor, now, PolicyDenied(
                "the subject directory is for staff; trustees see what is passed to them",
                rule="staff-only", clause="§3.1"))
        return actor

    return Depends(check)


Reader = Annotated[Actor, _directory_user("subjects:read")]
Writer = Annotated[Actor, _directory_user("subjects:write")]


@router.post("", status_code=201, response_model=SubjectPublic, responses=problem_responses(401, 403, 422))
async def create_subject(body: SubjectCreate, actor: Writer, session: SessionDep, now: NowDep) -> Subject:
    return await subjects.create_subject(session, data=body, actor=actor, now=now)


@router.get("", response_model=Page[SubjectPublic], responses=problem_responses(400, 401, 403, 422))
async def list_subjects(
    actor: Reader, session: SessionDep, state: StateDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
    q: str | None = Query(default=None, max_length=200, description="search by name"),
    category: SubjectCategory | None = None,
) -> Page[SubjectPublic]:
    return await subjects.list_subjects(session, cursors=state.cursors, limit=limit, cursor=cursor, q=q,
                                        category=category)


@router.get("/{subject_id}", response_model=SubjectPublic, responses=problem_responses(401, 403, 404, 422))
async def get_subject(subject_id: uuid.UUID, actor: Reader, session: SessionDep) -> Subject:
    return await subjects.get_subject(session, subject_id)
