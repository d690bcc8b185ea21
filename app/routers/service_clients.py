"""/service-clients: other KMM systems, created by directors (secret shown once)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from app.core.pagination import Page
from app.deps import DirectorUser, LimitDep, NowDep, SessionDep, StateDep
from app.models.service_clients import ServiceClientCreate, ServiceClientCreated, ServiceClientPublic
from app.routers.responses import problem_responses
from app.workflows import service_clients

router = APIRouter(prefix="/service-clients", tags=["service clients"])


@router.post("", status_code=201, response_model=ServiceClientCreated,
             responses=problem_responses(401, 403, 422))
async def create_client(
    body: ServiceClientCreate, actor: DirectorUser, session: SessionDep, now: NowDep
) -> ServiceClientCreated:
    """Create a client. The secret is in this response only; the service keeps its hash."""
    return await service_clients.create_client(session, data=body, now=now, actor=actor)


@router.get("", response_model=Page[ServiceClientPublic],
            responses=problem_responses(400, 401, 403, 422))
async def list_clients(
    actor: DirectorUser, session: SessionDep, state: StateDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
) -> Page[ServiceClientPublic]:
    return await service_clients.list_clients(session, cursors=state.cursors, limit=limit, cursor=cursor)


@router.post("/{client_id}/secret", response_model=ServiceClientCreated,
             responses=problem_responses(401, 403, 404, 422))
async def rotate_secret(
    client_id: uuid.UUID, actor: DirectorUser, session: SessionDep, now: NowDep
) -> ServiceClientCreated:
    """A new secret, in this response only. The old one, and every token got with it, stop
    working at once."""
    return await service_clients.rotate_client_secret(session, client_id=client_id, now=now, actor=actor)


@router.delete("/{client_id}", status_code=204, responses=problem_responses(401, 403, 404, 422))
async def deactivate_client(
    client_id: uuid.UUID, actor: DirectorUser, session: SessionDep, now: NowDep
) -> Response:
    await service_clients.deactivate_client(session, client_id=client_id, now=now, actor=actor)
    return Response(status_code=204)
