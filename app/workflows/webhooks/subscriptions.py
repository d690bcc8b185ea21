"""Subscriptions (directors only, §4.5): subscribe a URL to events, read, list and stop them,
and read a subscription's deliveries with each attempt (never one about a breach report the
reader may not know of, §1.8, §7.1).

The secret is shown once, in the creation response, and stored encrypted (§6.6).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.errors import field_error
from app.core.lookup import get_or_missing
from app.core.pagination import CursorCodec, Page, next_cursor, page_of, page_query
from app.models.users import User
from app.models.webhooks import (
    AttemptPublic,
    DeliveryPublic,
    DeliveryStatus,
    Webhook,
    WebhookAttempt,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookEvent,
    WebhookPublic,
)
from app.policy.actor import Actor
from app.workflows.audit.trail import add_event
from app.workflows.webhooks import audience

RESOURCE = "webhook"
RULE, CLAUSE = "director-only", "§4.5"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, production: bool) -> str:
    """An http(s) URL with a host and no credentials; in production https, or http to loopback.

    Which hosts are reachable is the operator's to decide (egress rules): directors, who alone
    subscribe, choose among the KMM systems they are allowed to reach.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError:
        raise field_error("url", "not a URL", rule="webhook-url", clause="§6.6") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise field_error("url", "must be an http or https URL with a host", rule="webhook-url", clause="§6.6")
    if parts.username is not None or parts.password is not None:
        raise field_error("url", "must not carry a user name or password; the receiver checks the signature",
                          rule="webhook-url", clause="§6.6")
    if parts.fragment:
        raise field_error("url", "must not have a fragment", rule="webhook-url", clause="§6.6")
    if production and parts.scheme == "http" and not _is_loopback(host):
        raise field_error("url", "must be https in production (plain http only to this host's loopback)",
                          rule="webhook-url", clause="§6.6")
    return url


def _public(w: Webhook) -> WebhookPublic:
    return WebhookPublic.model_validate(w)


async def create_webhook(session: AsyncSession, *, data: WebhookCreate, actor: Actor, now: datetime,
                         settings: Settings) -> WebhookCreated:
    url = check_url(data.url, production=settings.env == "production")
    if data.handler_id is not None and await session.get(User, data.handler_id) is None:
        raise field_error("handler_id", "no such account")
    secret = "whsec_" + secrets.token_urlsafe(32)
    hook = Webhook(url=url, description=data.description, handler_id=data.handler_id,
                   events=list(dict.fromkeys(data.events)), secret=secret,
                   created_at=now, created_by=actor.id)
    session.add(hook)
    await session.flush()
    add_event(session, now=now, actor=actor, action="webhook.create", resource_type=RESOURCE, resource_id=hook.id,
              decision="allow", rule=RULE, clause=CLAUSE, detail={"events": hook.events})
    await session.commit()
    return WebhookCreated(**_public(hook).model_dump(), secret=secret)


async def _load(session: AsyncSession, webhook_id: uuid.UUID) -> Webhook:
    return await get_or_missing(session, Webhook, webhook_id, name="webhook")


async def get_webhook(session: AsyncSession, *, webhook_id: uuid.UUID) -> WebhookPublic:
    return _public(await _load(session, webhook_id))


async def list_webhooks(session: AsyncSession, *, cursors: CursorCodec, limit: int, cursor: str | None
                        ) -> Page[WebhookPublic]:
    query = page_query(select(Webhook), Webhook, cursors=cursors, scope="webhooks", cursor=cursor, limit=limit)
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, _public, cursors=cursors, scope="webhooks", limit=limit)


async def remove_webhook(session: AsyncSession, *, webhook_id: uuid.UUID, actor: Actor, now: datetime) -> None:
    """Stop it: no new deliveries, pending ones cancelled; it and its delivery log stay to be read."""
    hook = await _load(session, webhook_id)
    if not hook.active:
        return
    hook.active = False
    hook.removed_at = now
    await session.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.subscription_id) == hook.id,
               col(WebhookDelivery.status) == DeliveryStatus.pending)
        .values(status=DeliveryStatus.cancelled)
    )
    add_event(session, now=now, actor=actor, action="webhook.remove", resource_type=RESOURCE, resource_id=hook.id,
              decision="allow", rule=RULE, clause=CLAUSE)
    await session.commit()


async def list_deliveries(session: AsyncSession, *, webhook_id: uuid.UUID, actor: Actor, now: datetime,
                          cursors: CursorCodec, limit: int, cursor: str | None) -> Page[DeliveryPublic]:
    """Newest first, with payloads and attempts; never a delivery of an event about a breach report
    the reader may not know of (§1.8, §7.1), nor of a record event about the reader's own
    personnel file (§3.6), whoever made the subscription. Those are left out in
    SQL before the page is cut, so neither the page nor its cursor shows that any were there."""
    scope = f"webhook-deliveries:{webhook_id}"
    query = page_query(  # a forged cursor is refused (400) before anything is looked up
        select(WebhookDelivery, WebhookEvent.payload)
        .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
        .where(col(WebhookDelivery.subscription_id) == webhook_id, audience.events_known_to(actor, now)),
        WebhookDelivery, cursors=cursors, scope=scope, cursor=cursor, limit=limit)
    await _load(session, webhook_id)
    rows = (await session.execute(query)).all()
    page = rows[:limit]
    attempts: dict[uuid.UUID, list[AttemptPublic]] = {d.id: [] for d, _ in page}
    if attempts:
        for a in (await session.execute(
            select(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(list(attempts)))
            .order_by(col(WebhookAttempt.id))
        )).scalars():
            attempts[a.delivery_id].append(AttemptPublic(attempt=a.attempt, at=a.at, status_code=a.status_code,
                                                         error=a.error, duration_ms=a.duration_ms))
    items = [
        DeliveryPublic(id=d.id, event_id=d.event_id, kind=d.kind, status=d.status, attempts=d.attempts,
                       next_attempt_at=d.next_attempt_at if d.status == DeliveryStatus.pending else None,
                       created_at=d.created_at, delivered_at=d.delivered_at, payload=json.loads(payload),
                       attempt_log=attempts[d.id])
        for d, payload in page
    ]
    return Page(items=items, next_cursor=next_cursor([d for d, _ in rows], cursors=cursors, scope=scope, limit=limit))
