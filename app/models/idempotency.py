"""Idempotency keys: which resource a POST that created made, so a retry gets it again.

A row holds no request or response content: the actor, the endpoint, the client's key, a
keyed hash of the request body, the status and the id of the resource created. A replay
rebuilds the response from the resource through the normal read path and its policy check.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from app.models.base import BigIntPK, created_at_field, utc_column


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # Two requests with one key at once: only one insert succeeds, the other's creation
        # rolls back with it.
        UniqueConstraint("actor_id", "endpoint", "key", name="uq_idempotency_keys_actor_endpoint_key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    actor_id: uuid.UUID  # an account or a service client
    endpoint: str = Field(max_length=32)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)  # HMAC-SHA256 of the request body, keyed by the service
    status_code: int
    resource_id: uuid.UUID
    created_at: datetime = created_at_field()
    expires_at: datetime = utc_column()
