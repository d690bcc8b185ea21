"""Webhooks: subscriptions, the outbox written with each event, and the delivery worker.

**Outbox.** ``enqueue`` writes the event and one delivery row per subscription that wants
it on the caller's session, so they commit (or roll back) with the change that causes
them: an access request logged, a breach report opened, a disclosure raised, a record
destroyed (by hand or by the retention sweep); the scheduler adds the due-soon, overdue
and review-due notices. Reads and lists never write it.

**Payloads** carry ids and kinds only: never content, titles, summaries or names (§6.3,
§6.6). The body is stored as posted, so every attempt sends the same bytes.

**Delivery** (``run_deliveries``, a background task of every service process): claim due
rows (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: a compare-and-set on the row), by
moving ``next_attempt_at`` past the request's timeout, commit, POST, then record the
attempt. A process that dies mid-delivery leaves the row to come due again when that
lease ends, so a delivery arrives **at least once**: receivers deduplicate on
``X-KMM-Event-Id``. A failed attempt is retried with exponential backoff up to
``KMM_WEBHOOK_MAX_ATTEMPTS``; then the delivery is ``failed``.

**Signature.** ``X-KMM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256 of "<t>.<body>">``
under the subscription's secret (shown once at creation, stored encrypted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.encrypted import IntegrityFailure, open_value
from app.core.errors import field_error, not_found
from app.core.pagination import CursorCodec, Page, next_cursor, page_of, page_query
from app.core.state import AppState
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
    WebhookEventKind,
    WebhookPublic,
)
from app.policy.actor import Actor
from app.workflows.audit.trail import add_event

log = logging.getLogger("kmm.webhooks")

RESOURCE = "webhook"
RULE, CLAUSE = "director-only", "§4.5"
SIGNATURE_HEADER = "X-KMM-Signature"
CLAIM_BATCH = 20
MAX_BACKOFF = timedelta(hours=6)
USER_AGENT = "kmm-records-webhooks/1"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def iso(at: datetime) -> str:
    """A time as the API writes it: UTC, ending in ``Z``."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- signing -------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header value: ``t=<timestamp>,v1=<hex HMAC-SHA-256 over "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: the MAC matches and the timestamp is recent (against replays)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


# -- subscriptions -------------------------------------------------------------------------


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
    hook = await session.get(Webhook, webhook_id)
    if hook is None:
        raise not_found("webhook")
    return hook


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


async def list_deliveries(session: AsyncSession, *, webhook_id: uuid.UUID, cursors: CursorCodec, limit: int,
                          cursor: str | None) -> Page[DeliveryPublic]:
    scope = f"webhook-deliveries:{webhook_id}"
    query = page_query(  # a forged cursor is refused (400) before anything is looked up
        select(WebhookDelivery, WebhookEvent.payload)
        .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
        .where(col(WebhookDelivery.subscription_id) == webhook_id),
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


# -- the outbox ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One event about one thing: its id and kinds, nothing else."""

    resource_id: uuid.UUID
    data: dict[str, Any]
    # Set for scheduled notices: the same kind about the same thing for the same date is sent once.
    occurrence_at: datetime | None = None


def _wants(hook: Any, kind: WebhookEventKind, data: dict[str, Any]) -> bool:
    if kind not in hook.events:
        return False
    if hook.handler_id is not None and kind is WebhookEventKind.breach_report_opened:
        return str(hook.handler_id) == data.get("handler_id")
    return True


async def enqueue(session: AsyncSession, *, kind: WebhookEventKind, notices: Sequence[Notice], now: datetime,
                  keep: bool = False) -> int:
    """Write the events and their deliveries on ``session`` (the caller commits); return the deliveries.

    An event no subscription wants is not written, unless ``keep`` (the scheduler keeps its
    notices so each is made once). One query for the subscriptions, however many notices.
    """
    if not notices:
        return 0
    hooks = (await session.execute(
        select(Webhook.id, Webhook.events, Webhook.handler_id).where(col(Webhook.active).is_(True))
    )).all()
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for notice in notices:
        wanting = [h.id for h in hooks if _wants(h, kind, notice.data)]
        if not wanting and not keep:
            continue
        event_id = uuid.uuid4()
        body = {"id": str(event_id), "type": kind, "created_at": iso(now), "data": notice.data}
        events.append({"id": event_id, "kind": kind, "resource_id": notice.resource_id,
                       "occurrence_at": notice.occurrence_at, "payload": json.dumps(body, separators=(",", ":")),
                       "created_at": now})
        deliveries.extend({"id": uuid.uuid4(), "subscription_id": hook_id, "event_id": event_id, "kind": kind,
                           "status": DeliveryStatus.pending, "attempts": 0, "next_attempt_at": now,
                           "created_at": now} for hook_id in wanting)
    if events:
        await session.execute(insert(WebhookEvent), events)
    if deliveries:
        await session.execute(insert(WebhookDelivery), deliveries)
    return len(deliveries)


# What each event carries: the ids and kinds an integrator needs to fetch the rest through the
# API with its own credentials (where the policy lets it), never who or what it is about.


async def access_request_received(session: AsyncSession, *, request: Any, now: datetime) -> None:
    await enqueue(session, kind=WebhookEventKind.access_request_received, now=now, notices=[Notice(
        resource_id=request.id,
        data={"access_request_id": str(request.id), "kind": request.kind, "due_at": iso(request.due_at)})])


async def breach_report_opened(session: AsyncSession, *, report: Any, now: datetime) -> None:
    """To the handler's system: the report's id and kind and who handles it, never who it concerns."""
    await enqueue(session, kind=WebhookEventKind.breach_report_opened, now=now, notices=[Notice(
        resource_id=report.id,
        data={"breach_report_id": str(report.id), "kind": report.kind, "handler_id": str(report.handler_id)})])


async def disclosure_raised(session: AsyncSession, *, disclosure: Any, now: datetime) -> None:
    await enqueue(session, kind=WebhookEventKind.disclosure_raised, now=now, notices=[Notice(
        resource_id=disclosure.id, data={"disclosure_id": str(disclosure.id), "category": disclosure.category})])


async def records_destroyed(session: AsyncSession, *, records: Sequence[Any], sweep: bool, now: datetime) -> None:
    await enqueue(session, kind=WebhookEventKind.record_destroyed, now=now, notices=[Notice(
        resource_id=r.id, data={"record_id": str(r.id), "classification": r.classification, "sweep": sweep})
        for r in records])


# -- delivery --------------------------------------------------------------------------------


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
        taken = []
        for d, url, sealed, payload in rows:
            try:  # bound to its subscription (§6.6): a secret copied from another is never used
                secret = open_value(state.keyring, sealed, Webhook.__tablename__, "secret", [d.subscription_id])
            except IntegrityFailure:
                continue  # logged; the delivery waits, unsigned and unsent, until the secret is replaced
            taken.append(Claimed(id=d.id, event_id=d.event_id, kind=d.kind, attempts=d.attempts, url=url,
                                 secret=str(secret), payload=payload))
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
