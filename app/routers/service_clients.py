"""/service-clients: other KMM systems, created by directors (secret shown once)."""

from __future__ import annotations

import secrets
import uuid

from fastapi import APIRouter, Query
from sqlmodel import select

from app.core.errors import field_error, not_found
from app.core.pagination import Page
from app.core.security import hash_secret
from app.deps import DirectorUser, LimitDep, NowDep, SessionDep, StateDep
from app.models.accounts import (
    ServiceClient,
    ServiceClientCreate,
    ServiceClientCreated,
    ServiceClientPublic,
)
from app.policy.scopes import SCOPES
from app.routers.responses import problem_responses
from app.workflows.audit_trail import add_event

router = APIRouter(prefix="/service-clients", tags=["service clients"])


@router.post("", status_code=201, response_model=ServiceClientCreated,
             responses=problem_responses(401, 403, 422))
async def create_client(
    body: ServiceClientCreate, actor: DirectorUser, session: SessionDep, now: NowDep
) -> ServiceClientCreated:
    unknown = sorted(set(body.scopes) - set(SCOPES))
    if unknown:
        raise field_error("scopes", f"unknown scopes: {', '.join(unknown)}")
    secret = secrets.token_urlsafe(32)
    client = ServiceClient(
        client_id="kmm-" + secrets.token_hex(8),
        name=body.name,
        scopes=sorted(set(body.scopes)),
        secret_hash=hash_secret(secret),
        created_by=actor.id,
        created_at=now,
    )
    session.add(client)
    await session.flush()
    add_event(session, now=now, actor=actor, action="service_client.create",
              resource_type="service_client", resource_id=client.id, decision="allow",
              rule="director", clause="§6.6", detail={"scopes": client.scopes})
    await session.commit()
    return ServiceClientCreated(**ServiceClientPublic.model_validate(client).model_dump(),
                                client_secret=secret)


@router.get("", response_model=Page[ServiceClientPublic],
            responses=problem_responses(400, 401, 403, 422))
async def list_clients(
    actor: DirectorUser, session: SessionDep, state: StateDep, limit: LimitDep,
    cursor: str | None = Query(default=None, max_length=512),
) -> Page[ServiceClient]:
    query = select(ServiceClient).order_by(ServiceClient.client_id).limit(limit + 1)
    if cursor:
        (after,) = state.cursors.decode("service-clients", cursor)
        query = query.where(ServiceClient.client_id > str(after))
    rows = list((await session.execute(query)).scalars())
    nxt = state.cursors.encode("service-clients", [rows[limit - 1].client_id]) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=nxt)


@router.delete("/{client_id}", status_code=204, responses=problem_responses(401, 403, 404, 422))
async def deactivate_client(
    client_id: uuid.UUID, actor: DirectorUser, session: SessionDep, now: NowDep
) -> None:
    client = await session.get(ServiceClient, client_id)
    if client is None:
        raise not_found("service client")
    client.active = False
    session.add(client)
    add_event(session, now=now, actor=actor, action="service_client.deactivate",
              resource_type="service_client", resource_id=client.id, decision="allow",
              rule="director", clause="§6.6")
    await session.commit()
