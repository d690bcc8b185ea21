"""Service clients (DESIGN §2, §6.6): other systems' credentials, their secrets shown once
and stored hashed; deactivating a client or rotating its secret ends its sessions."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import field_error
from app.core.lookup import get_or_missing
from app.core.pagination import CursorCodec, Page, page_of
from app.core.security import hash_secret
from app.models.service_clients import ServiceClient, ServiceClientCreate, ServiceClientCreated, ServiceClientPublic
from app.policy.actor import Actor
from app.policy.scopes import EXCLUSIVE_CLAUSE, EXCLUSIVE_RULE, SCOPES, clashes
from app.workflows.audit.trail import add_event
from app.workflows.auth import end_sessions


async def create_client(
    session: AsyncSession, *, data: ServiceClientCreate, now: datetime, actor: Actor | None
) -> ServiceClientCreated:
    """A new client (by a director, or by ``kmm create-client`` with no actor); its secret is
    returned this once and only its hash is kept."""
    unknown = sorted(set(data.scopes) - set(SCOPES))
    if unknown:
        raise field_error("scopes", f"unknown scopes: {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    clash = clashes(data.scopes)
    if clash:
        raise field_error("scopes", "a client may not hold " + "; ".join(clash), rule=EXCLUSIVE_RULE,
                          clause=EXCLUSIVE_CLAUSE)
    secret = secrets.token_urlsafe(32)
    client = ServiceClient(
        client_id="kmm-" + secrets.token_hex(8),
        name=data.name,
        scopes=sorted(set(data.scopes)),
        secret_hash=hash_secret(secret),
        created_by=actor.id if actor else None,
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


async def list_clients(
    session: AsyncSession, *, cursors: CursorCodec, limit: int, cursor: str | None
) -> Page[ServiceClientPublic]:
    query = select(ServiceClient).order_by(col(ServiceClient.client_id)).limit(limit + 1)
    if cursor:
        (after,) = cursors.decode("service-clients", cursor)
        query = query.where(col(ServiceClient.client_id) > str(after))
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, ServiceClientPublic.model_validate, cursors=cursors, scope="service-clients", limit=limit,
                   key=lambda last: [last.client_id])


async def deactivate_client(
    session: AsyncSession, *, client_id: uuid.UUID, now: datetime, actor: Actor
) -> None:
    """The client can no longer log in, and the tokens it holds fail on their next use."""
    client = await _get_client(session, client_id)
    client.active = False
    await _end_and_record(session, client, now=now, actor=actor, action="service_client.deactivate",
                          reason="deactivated")


async def _get_client(session: AsyncSession, client_id: uuid.UUID, *, lock: bool = False) -> ServiceClient:
    return await get_or_missing(session, ServiceClient, client_id, name="service client", lock=lock)


async def _end_and_record(
    session: AsyncSession, client: ServiceClient, *, now: datetime, actor: Actor, action: str, reason: str
) -> None:
    """Store the client's change, end its sessions and commit both with their event (§6.6)."""
    session.add(client)
    await end_sessions(session, client_id=client.id, now=now, reason=reason)
    add_event(session, now=now, actor=actor, action=action, resource_type="service_client",
              resource_id=client.id, decision="allow", rule="director", clause="§6.6")
    await session.commit()


async def rotate_client_secret(
    session: AsyncSession, *, client_id: uuid.UUID, now: datetime, actor: Actor
) -> ServiceClientCreated:
    """A new secret, returned this once; the old one stops working at once, and so do the
    tokens got with it (the old secret may have leaked)."""
    client = await _get_client(session, client_id, lock=True)
    secret = secrets.token_urlsafe(32)
    client.secret_hash = hash_secret(secret)
    await _end_and_record(session, client, now=now, actor=actor, action="service_client.rotate_secret",
                          reason="secret_rotated")
    return ServiceClientCreated(**ServiceClientPublic.model_validate(client).model_dump(),
                                client_secret=secret)
