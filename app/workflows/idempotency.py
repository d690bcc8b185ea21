"""Idempotent creation: a POST that creates, retried with the same ``Idempotency-Key`` by
the same actor, gets the first result and creates nothing more.

The key's row is written in the creating transaction itself (at its commit), so a creation
and its key stand or fall together: two requests with one key at once cannot both create
(the unique constraint refuses the second insert and its whole transaction rolls back,
audit events included), and a refused request keeps no key. The row holds the status and
the id of the resource, never its content; a replay rebuilds the response from the resource
through the normal read path and its policy check, so a caller who may no longer read it
gets that refusal rather than a stored copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import delete, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.errors import Conflict, Invalid
from app.models.idempotency import IdempotencyKey
from app.policy.actor import Actor

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    value: T
    replayed: bool


def fingerprint(settings: Settings, *, endpoint: str, body: BaseModel) -> str:
    """A keyed hash of the request: equal bodies match, and the row reveals nothing of them."""
    key = hashlib.sha256(b"kmm-idempotency:" + settings.signing_key.encode()).digest()
    payload = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hmac.new(key, f"{endpoint}\0{payload}".encode(), hashlib.sha256).hexdigest()


async def _find(session: AsyncSession, *, actor: Actor, endpoint: str, key: str, now: datetime
                ) -> IdempotencyKey | None:
    """The live row for the key; the actor's expired keys are dropped on the way."""
    await session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.actor_id) == actor.id,
                                                       col(IdempotencyKey.expires_at) <= now))
    return (await session.execute(
        select(IdempotencyKey).where(col(IdempotencyKey.actor_id) == actor.id,
                                     col(IdempotencyKey.endpoint) == endpoint, col(IdempotencyKey.key) == key)
    )).scalar_one_or_none()


def _check_same(row: IdempotencyKey, fp: str) -> None:
    if not hmac.compare_digest(row.fingerprint, fp):
        # The IETF draft (httpapi-idempotency-key-header §2.7): 422 for a key reused with another body.
        raise Invalid("this Idempotency-Key was used with a different request; use a new key",
                      type="idempotency-key-reused")


async def create_once(
    session: AsyncSession,
    *,
    key: str | None,
    actor: Actor,
    endpoint: str,
    body: BaseModel,
    model: type[Any],
    now: datetime,
    settings: Settings,
    create: Callable[[], Awaitable[T]],
    replay: Callable[[uuid.UUID], Awaitable[T]],
    status_code: int = 201,
) -> Outcome[T]:
    """Run ``create`` once per (actor, endpoint, key); a retry gets ``replay(resource_id)``.

    ``model`` is the table of the resource ``create`` makes: the one new row of it in the
    creating transaction is the resource the key remembers.
    """
    if key is None:
        return Outcome(await create(), replayed=False)
    fp = fingerprint(settings, endpoint=endpoint, body=body)
    found = await _find(session, actor=actor, endpoint=endpoint, key=key, now=now)
    if found is not None:
        _check_same(found, fp)
        await session.commit()
        return Outcome(await replay(found.resource_id), replayed=True)
    await session.commit()

    made: list[uuid.UUID] = []
    sync = session.sync_session

    def _collect(sess: Any, *_: Any) -> None:
        made.extend(o.id for o in sess.new if isinstance(o, model) and o.id not in made)

    def _remember(sess: Any) -> None:
        _collect(sess)
        if made and not any(isinstance(o, IdempotencyKey) for o in sess.new):
            sess.add(IdempotencyKey(actor_id=actor.id, endpoint=endpoint, key=key, fingerprint=fp,
                                    status_code=status_code, resource_id=made[0], created_at=now,
                                    expires_at=now + timedelta(hours=settings.idempotency_key_hours)))

    event.listen(sync, "before_flush", _collect)
    event.listen(sync, "before_commit", _remember)
    try:
        value = await create()
    except IntegrityError:
        lost = True  # another request with this key committed first: this creation rolled back whole
        await session.rollback()
    else:
        lost = False
    finally:
        event.remove(sync, "before_flush", _collect)
        event.remove(sync, "before_commit", _remember)
    if lost:
        found = await _find(session, actor=actor, endpoint=endpoint, key=key, now=now)
        if found is None:
            raise Conflict("the change conflicts with what is stored")
        _check_same(found, fp)
        await session.commit()
        return Outcome(await replay(found.resource_id), replayed=True)
    return Outcome(value, replayed=False)


def mark(response: Any, outcome: Outcome[Any]) -> None:
    """Say on a replayed answer that it is one (the resource was created by an earlier request)."""
    if outcome.replayed:
        response.headers["Idempotency-Replayed"] = "true"
