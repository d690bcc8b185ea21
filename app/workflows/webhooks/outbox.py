"""The outbox: each event and one delivery per subscription that wants it, written on the
caller's session so that they commit (or roll back) with the change that causes them.

Payloads carry ids and kinds only: never content, titles, summaries or names (§6.3, §6.6).
The body is stored as posted, so every attempt sends the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.models.webhooks import (
    BREACH_REPORT_EVENTS,
    RECORD_EVENTS,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventKind,
)
from app.workflows.webhooks import audience


def iso(at: datetime) -> str:
    """A time as the API writes it: UTC, ending in ``Z``."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Notice:
    """One event about one thing: its id and kinds, nothing else."""

    resource_id: uuid.UUID
    data: dict[str, Any]
    # Set for scheduled notices: the same kind about the same thing for the same date is sent once.
    occurrence_at: datetime | None = None


def _wants(hook: Any, kind: WebhookEventKind, data: dict[str, Any]) -> bool:
    """The subscription asks for this event. For a breach-report event that is not enough: its
    creator must also be one who may know of the report (``audience.known_to_creators``)."""
    if kind not in hook.events:
        return False
    if hook.handler_id is not None and kind in BREACH_REPORT_EVENTS:
        return str(hook.handler_id) == data.get("handler_id")
    return True


async def enqueue(session: AsyncSession, *, kind: WebhookEventKind, notices: Sequence[Notice], now: datetime,
                  keep: bool = False) -> int:
    """Write the events and their deliveries on ``session`` (the caller commits); return the deliveries.

    An event no subscription wants is not written, unless ``keep`` (the scheduler keeps its
    notices so each is made once). One query for the subscriptions, however many notices; a
    breach-report event goes only to subscriptions whose creator may know of the report (§1.8,
    §7.1: the URL is the creator's choice, and the creator may be the colleague concerned), and
    a record event never to a subscription whose creator the record is the own personnel file of
    (§3.6); each asks at most two more.
    """
    if not notices:
        return 0
    hooks = (await session.execute(
        select(Webhook.id, Webhook.events, Webhook.handler_id, Webhook.created_by)
        .where(col(Webhook.active).is_(True))
    )).all()
    wanted = [(notice, [h for h in hooks if _wants(h, kind, notice.data)]) for notice in notices]
    if kind in BREACH_REPORT_EVENTS:
        known = await audience.known_to_creators(
            session, {(h.created_by, notice.resource_id) for notice, wanting in wanted for h in wanting})
        wanted = [(notice, [h for h in wanting if (h.created_by, notice.resource_id) in known])
                  for notice, wanting in wanted]
    if kind in RECORD_EVENTS:
        own = await audience.own_records_of_creators(
            session, {(h.created_by, notice.resource_id) for notice, wanting in wanted for h in wanting}, now)
        wanted = [(notice, [h for h in wanting if (h.created_by, notice.resource_id) not in own])
                  for notice, wanting in wanted]
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for notice, wanting in wanted:
        if not wanting and not keep:
            continue
        event_id = uuid.uuid4()
        body = {"id": str(event_id), "type": kind, "created_at": iso(now), "data": notice.data}
        events.append({"id": event_id, "kind": kind, "resource_id": notice.resource_id,
                       "occurrence_at": notice.occurrence_at, "payload": json.dumps(body, separators=(",", ":")),
                       "created_at": now})
        deliveries.extend({"id": uuid.uuid4(), "subscription_id": h.id, "event_id": event_id, "kind": kind,
                           "status": DeliveryStatus.pending, "attempts": 0, "next_attempt_at": now,
                           "created_at": now} for h in wanting)
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
    """The report's id and kind and who handles it, never who it concerns; only to subscriptions
    whose creator may know of the report (``enqueue``, §1.8, §7.1)."""
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
