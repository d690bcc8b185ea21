"""Audit events (DESIGN §6): append-only; chained by hash (see app/workflows/audit_trail.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Column, Field, SQLModel

from app.models.base import BigIntPK, utc_column


class AuditEventBase(SQLModel):
    at: datetime
    actor_id: uuid.UUID | None = None
    actor_kind: str | None = None  # "user" or "client"
    actor_role: str | None = None
    action: str
    resource_type: str | None = None
    resource_id: str | None = None
    decision: str | None = None  # "allow" or "deny"
    rule: str | None = None
    clause: str | None = None
    emergency: bool = False
    request_id: str | None = None
    client_ip: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_resource", "resource_type", "resource_id", "id"),
        Index("ix_audit_events_actor_at", "actor_id", "at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    at: datetime = utc_column(index=True)
    actor_id: uuid.UUID | None = None
    actor_kind: str | None = Field(default=None, max_length=8)
    actor_role: str | None = Field(default=None, max_length=16)
    action: str = Field(max_length=64, index=True)
    resource_type: str | None = Field(default=None, max_length=32)
    resource_id: str | None = Field(default=None, max_length=64)
    decision: str | None = Field(default=None, max_length=8)
    rule: str | None = Field(default=None, max_length=32)
    clause: str | None = Field(default=None, max_length=32)
    emergency: bool = False
    request_id: str | None = Field(default=None, max_length=64)
    client_ip: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AuditEventPublic(AuditEventBase):
    id: int
    prev_hash: str | None = None
    hash: str | None = None
