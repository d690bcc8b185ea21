"""/webhooks: directors subscribe other KMM systems to events (ids and kinds only).

A subscription's signing secret is in the creation response alone. Deliveries are signed,
retried with backoff from an outbox written with each event, and listed with every
attempt under ``/webhooks/{id}/deliveries``.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from app.core.pagination import Page
from app.deps import DirectorUser, LimitDep, NowDep, SessionDep, StateDep
from app.models.webhooks import DeliveryPublic, WebhookCreate, WebhookCreated, WebhookPublic
from app.routers.responses import problem_responses
from app.workflows.webhooks import subscriptions

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookCreated, responses=problem_responses(401, 403, 422))
async def create_webhook(body: WebhookCreate, actor: DirectorUser, session: SessionDep, state: StateDep,
                         now: NowDep, response: Response) -> WebhookCreated:
    """Subscribe a URL to events; the response holds the signing secret, shown this once."""
    created = await subscriptions.create_webhook(session, data=body, actor=actor, now=now, settings=state.settings)
    response.headers["Location"] = f"/webhooks/{created.id}"
    return created


@router.get("", response_model=Page[WebhookPublic], responses=problem_responses(400, 401, 403, 422))
async def list_webhooks(actor: DirectorUser, session: SessionDep, state: StateDep, limit: LimitDep,
                        cursor: str | None = Query(default=None, max_length=512)) -> Page[WebhookPublic]:
    return await subscriptions.list_webhooks(session, cursors=state.cursors, limit=limit, cursor=cursor)


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=problem_responses(401, 403, 404, 422))
async def get_webhook(webhook_id: uuid.UUID, actor: DirectorUser, session: SessionDep) -> WebhookPublic:
    return await subscriptions.get_webhook(session, webhook_id=webhook_id)


@router.delete("/{webhook_id}", status_code=204, responses=problem_responses(401, 403, 404, 422))
async def remove_webhook(webhook_id: uuid.UUID, actor: DirectorUser, session: SessionDep, now: NowDep) -> Response:
    """Stop it: pending deliveries are cancelled; it and its delivery log stay readable."""
    await subscriptions.remove_webhook(session, webhook_id=webhook_id, actor=actor, now=now)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryPublic],
            responses=problem_responses(400, 401, 403, 404, 422))
async def list_deliveries(webhook_id: uuid.UUID, actor: DirectorUser, session: SessionDep, state: StateDep,
                          now: NowDep, limit: LimitDep, cursor: str | None = Query(default=None, max_length=512)
                          ) -> Page[DeliveryPublic]:
    """Newest first, each with its payload (ids and kinds) and every attempt: when, status code or error;
    never one about a breach report the caller may not know of (§1.8, §7.1), nor one about the
    caller's own personnel file (§3.6)."""
    return await subscriptions.list_deliveries(session, webhook_id=webhook_id, actor=actor, now=now,
                                               cursors=state.cursors, limit=limit, cursor=cursor)
