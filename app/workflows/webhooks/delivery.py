"""Delivery, a background task of every service process: claim due deliveries, post them
signed, record each attempt.

A claim moves ``next_attempt_at`` past the request's timeout (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``; SQLite: a compare-and-set on the row) and commits before posting. A process that
dies mid-delivery leaves the row to come due again when that lease ends, so a delivery
arrives at least once: receivers deduplicate on ``X-KMM-Event-Id``. A failed attempt is
retried with exponential backoff up to ``KMM_WEBHOOK_MAX_ATTEMPTS``; then the delivery is
``failed``. A breach-report delivery whose subscription's creator may not know of the report
(§1.8, §7.1; ``audience.known_to_creators``) is ``cancelled`` when claimed, never posted, and
so is a record delivery whose subscription's creator the record is the own personnel file of
(§3.6; ``audience.own_records_of_creators``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.encrypted import IntegrityFailure, installed_keyring, open_value
from app.core.state import AppState
from app.models.webhooks import (
    BREACH_REPORT_EVENTS,
    RECORD_EVENTS,
    DeliveryStatus,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)
from app.workflows.audit.trail import INTEGRITY_ACTION, add_event, integrity_fields
from app.workflows.webhooks import audience
from app.workflows.webhooks.signing import SIGNATURE_HEADER, signature

log = logging.getLogger("kmm.webhooks")

CLAIM_BATCH = 20
MAX_BACKOFF = timedelta(hours=6)
USER_AGENT = "kmm-records-webhooks/1"


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    event_id: uuid.UUID
    kind: str
    attempts: int
    url: str
    secret: str
    payload: str


def claim_lease(settings: Settings) -> timedelta:
    """How long a claimed delivery is left alone: past the request's timeout, with a margin."""
    return timedelta(seconds=settings.webhook_timeout_seconds * 1.5 + 1)


def backoff(settings: Settings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: doubling from KMM_WEBHOOK_BACKOFF_SECONDS, at most 6 hours."""
    seconds = settings.webhook_backoff_seconds * 2 ** min(attempts - 1, 20)
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


async def _about(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID]]:
    """Delivery -> (its subscription's creator, what its event is about)."""
    if not ids:
        return {}
    return {d: (creator, about) for d, creator, about in (await session.execute(
        select(WebhookDelivery.id, Webhook.created_by, WebhookEvent.resource_id)
        .join(Webhook, col(Webhook.id) == col(WebhookDelivery.subscription_id))
        .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
        .where(col(WebhookDelivery.id).in_(ids))
    )).all() if about is not None}


async def _withheld(session: AsyncSession, claimed: list[WebhookDelivery], now: datetime) -> set[uuid.UUID]:
    """The claimed deliveries to be cancelled unsent: a breach-report event whose subscription's
    creator may not know of the report (§1.8, §7.1), a record event about the creator's own
    personnel file (§3.6). The creator is judged when the event is written and again here,
    before each post: an account can stop being an active director in between, a record can
    be reclassified, and a retry can come days later. Nothing is asked when no such delivery is
    claimed.
    """
    reports = [d.id for d in claimed if d.kind in BREACH_REPORT_EVENTS]
    records = [d.id for d in claimed if d.kind in RECORD_EVENTS]
    withheld: set[uuid.UUID] = set()
    if reports:
        about = await _about(session, reports)
        known = await audience.known_to_creators(session, about.values())
        withheld |= {d for d in reports if about.get(d) not in known}
    if records:
        about = await _about(session, records)
        own = await audience.own_records_of_creators(session, about.values(), now)
        withheld |= {d for d in records if about.get(d) in own}
    return withheld


async def claim_due(state: AppState, *, now: datetime, limit: int = CLAIM_BATCH) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for this process: one short transaction."""
    async with state.sessionmaker() as session:
        due = (
            select(WebhookDelivery.id)
            .where(col(WebhookDelivery.status) == DeliveryStatus.pending,
                   col(WebhookDelivery.next_attempt_at) <= now)
            .order_by(col(WebhookDelivery.next_attempt_at)).limit(limit)
        )
        if not state.settings.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        ids = list((await session.execute(due)).scalars())
        if not ids:
            await session.rollback()
            return []
        # Compare-and-set: whoever moves next_attempt_at first holds the delivery until the lease ends.
        claimed = list((await session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(ids), col(WebhookDelivery.status) == DeliveryStatus.pending,
                   col(WebhookDelivery.next_attempt_at) <= now)
            .values(next_attempt_at=now + claim_lease(state.settings))
            .returning(col(WebhookDelivery.id))
            .execution_options(synchronize_session=False)
        )).scalars())
        rows = (await session.execute(
            select(WebhookDelivery, col(Webhook.url), col(Webhook.secret), col(WebhookEvent.payload))
            .join(Webhook, col(Webhook.id) == col(WebhookDelivery.subscription_id))
            .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
            .where(col(WebhookDelivery.id).in_(claimed))
        )).all() if claimed else []
        withheld = await _withheld(session, [d for d, *_ in rows], now)
        taken, held, broken = [], [], dict[uuid.UUID, IntegrityFailure]()
        for d, url, sealed, payload in rows:
            if d.id in withheld:
                continue
            try:  # bound to its subscription (§6.6): a secret copied from another is never used
                secret = open_value(installed_keyring(), sealed, Webhook.__tablename__, "secret", [d.subscription_id])
            except IntegrityFailure as refused:
                held.append(d.id)
                broken.setdefault(d.subscription_id, refused)
                continue
            taken.append(Claimed(id=d.id, event_id=d.event_id, kind=d.kind, attempts=d.attempts, url=url,
                                 secret=str(secret), payload=payload))
        if held:
            # Unsigned and unsent, the delivery waits until the secret opens again (restored),
            # looked at again every MAX_BACKOFF; each look is logged and audited once per
            # subscription (§6.6), with no attempt counted.
            await session.execute(
                update(WebhookDelivery).where(col(WebhookDelivery.id).in_(held))
                .values(next_attempt_at=now + MAX_BACKOFF).execution_options(synchronize_session=False))
        if withheld:
            await session.execute(
                update(WebhookDelivery).where(col(WebhookDelivery.id).in_(withheld))
                .values(status=DeliveryStatus.cancelled).execution_options(synchronize_session=False))
        for failure in broken.values():
            add_event(session, now=now, action=INTEGRITY_ACTION, **integrity_fields(failure, None))
        await session.commit()
    return taken


async def post(client: httpx.AsyncClient, item: Claimed, *, now: datetime) -> tuple[int | None, str | None]:
    """POST one delivery; the status code, or the error's type (its message is not kept)."""
    body = item.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-KMM-Event": item.kind,
        "X-KMM-Event-Id": str(item.event_id),
        "X-KMM-Delivery": str(item.id),
        SIGNATURE_HEADER: signature(item.secret, int(now.timestamp()), body),
    }
    try:
        response = await client.post(item.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__[:64]
    return response.status_code, None


async def record_attempt(state: AppState, item: Claimed, *, status_code: int | None, error: str | None,
                         started: datetime, duration_ms: int) -> None:
    settings, now = state.settings, state.clock.now()
    attempts = item.attempts + 1
    ok = status_code is not None and 200 <= status_code < 300
    if ok:
        values: dict[str, Any] = {"status": DeliveryStatus.delivered, "delivered_at": now}
    elif attempts >= settings.webhook_max_attempts:
        values = {"status": DeliveryStatus.failed}
    else:
        values = {"next_attempt_at": now + backoff(settings, attempts)}
    async with state.sessionmaker() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == item.id, col(WebhookDelivery.status) == DeliveryStatus.pending)
            .values(attempts=attempts, **values)
            .execution_options(synchronize_session=False)
        )
        session.add(WebhookAttempt(delivery_id=item.id, attempt=attempts, at=started, status_code=status_code,
                                   error=error if not ok else None, duration_ms=duration_ms))
        await session.commit()


async def deliver_due(state: AppState, client: httpx.AsyncClient) -> int:
    """Claim what is due, post it all concurrently, record each attempt; return how many were tried."""
    now = state.clock.now()
    claimed = await claim_due(state, now=now)

    async def one(item: Claimed) -> None:
        started = time.monotonic()
        status_code, error = await post(client, item, now=now)
        await record_attempt(state, item, status_code=status_code, error=error, started=now,
                             duration_ms=int((time.monotonic() - started) * 1000))

    await asyncio.gather(*(one(item) for item in claimed))
    return len(claimed)


def http_client(settings: Settings) -> httpx.AsyncClient:
    # No redirects (a 3xx is a failed attempt: the URL a director chose is the only one posted
    # to), no credentials or proxies from the environment.
    return httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False)


async def run_deliveries(state: AppState) -> None:
    """Deliver until cancelled; never let an error escape (the next pass tries again)."""
    async with http_client(state.settings) as client:
        while True:
            tried = 0
            work = asyncio.ensure_future(deliver_due(state, client))
            try:
                tried = await asyncio.shield(work)
            except asyncio.CancelledError:
                # Shutting down: what is in flight is abandoned; its lease lets it come due again.
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                raise
            except Exception as exc:
                log.warning("webhook delivery pass failed; retrying", extra={"error": type(exc).__name__})
            if tried < CLAIM_BATCH:
                await asyncio.sleep(state.settings.webhook_poll_seconds)
