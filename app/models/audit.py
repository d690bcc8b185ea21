"""Audit events (DESIGN §6): append-only; chained by hash by the sealer (app/workflows/audit/seal.py)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, field_validator
from sqlalchemy import JSON, BigInteger, ForeignKey, Index, PrimaryKeyConstraint, String, text
from sqlmodel import Column, Field, SQLModel

from app.models.base import BigIntPK, utc_column

_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?")

GENESIS_HASH = "0" * 64


class AuditEventBase(SQLModel):
    at: datetime = utc_column(index=True)
    actor_id: uuid.UUID | None = None
    actor_kind: str | None = Field(default=None, max_length=8)  # "user" or "client"
    actor_role: str | None = Field(default=None, max_length=16)
    action: str = Field(max_length=64, index=True)
    resource_type: str | None = Field(default=None, max_length=32)
    resource_id: str | None = Field(default=None, max_length=64)
    decision: str | None = Field(default=None, max_length=8)  # "allow" or "deny"
    rule: str | None = Field(default=None, max_length=32)
    clause: str | None = Field(default=None, max_length=32)
    emergency: bool = False
    request_id: str | None = Field(default=None, max_length=64)
    client_ip: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)


class AuditEvent(AuditEventBase, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_resource", "resource_type", "resource_id", "id"),
        Index("ix_audit_events_actor_at", "actor_id", "at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))


class AuditEventRecord(SQLModel, table=True):
    """One record an event about many records showed (a list view): an index of the ids in
    the event's ``detail["record_ids"]``, so a record's access log finds its list views by key.

    The database writes these rows itself, in the statement that inserts the event (a
    trigger made by the migrations), so every writer fills it and it commits with the event.
    It holds nothing the chained event does not: it can be rebuilt from the trail. No foreign
    key: only that trigger writes it, from the event just inserted, and a per-row key check
    would cost the list (the hot path) about a millisecond per 50 ids.
    """

    __tablename__ = "audit_event_records"
    __table_args__ = (PrimaryKeyConstraint("record_id", "event_id"),)

    record_id: str = Field(sa_column=Column(String(36), nullable=False))
    event_id: int = Field(sa_column=Column(BigInteger(), nullable=False))


class AuditSeal(SQLModel, table=True):
    """An event's place in the hash chain; written only by the sealer, never changed.

    ``seq`` runs 1..n in the order events were sealed; ``hash`` is HMAC-SHA-256, under
    the key ``key_id`` names, over ``prev_hash``, the event's canonical serialisation and
    the seal's own ``seq``, ``sealed_at`` and ``gap_from`` (docs/audit.md). ``gap_from``
    is the first of the ids found missing just below the event when it was sealed (None:
    none). A seal with the empty ``key_id`` was made before the chain was keyed: plain
    SHA-256 over ``prev_hash`` and the event, accepted only at the start of the chain and
    only as many as KMM_AUDIT_UNKEYED_SEALS says.
    """

    __tablename__ = "audit_seals"
    # Verify reads the few seals that record missing ids, and the unkeyed ones (made
    # before the chain was keyed), without reading every seal.
    __table_args__ = (
        Index("ix_audit_seals_gaps", "event_id", postgresql_where=text("gap_from IS NOT NULL"),
              sqlite_where=text("gap_from IS NOT NULL")),
        Index("ix_audit_seals_unkeyed", "seq", "event_id", postgresql_where=text("key_id = ''"),
              sqlite_where=text("key_id = ''")),
    )

    seq: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    event_id: int = Field(
        sa_column=Column(BigInteger(), ForeignKey("audit_events.id"), nullable=False, unique=True)
    )
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    sealed_at: datetime = utc_column()
    key_id: str = Field(default="", sa_column=Column(String(16), nullable=False))
    gap_from: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))


class AuditEventPublic(AuditEventBase):
    id: int
    seq: int | None = None  # None until the sealer has chained the event
    prev_hash: str | None = None
    hash: str | None = None


class AuditEventFilter(BaseModel):
    """Query filters of ``GET /audit-events``; every one is optional and they combine with AND."""

    actor_id: uuid.UUID | None = None
    resource_type: str | None = Field(default=None, min_length=1, max_length=32)
    resource_id: str | None = Field(default=None, min_length=1, max_length=64)
    action: str | None = Field(default=None, min_length=1, max_length=64)
    decision: Literal["allow", "deny"] | None = None
    since: AwareDatetime | None = None  # inclusive
    until: AwareDatetime | None = None  # exclusive

    @field_validator("since", "until", mode="before")
    @classmethod
    def _not_a_number(cls, v: Any) -> Any:
        # pydantic would read "0.5" as a Unix time; the contract says an RFC 3339 date-time
        if isinstance(v, int | float) or (isinstance(v, str) and _NUMBER.fullmatch(v.strip())):
            raise ValueError("give a date-time such as 2026-11-26T09:00:00Z, not a number")
        return v


class RecordAccess(BaseModel):
    """An access to a record as the audit trail tells it (app/workflows/audit/access.py): when,
    how (``record.read``, ``record.list``, ``record.export``), by whom and by which rule; never
    what was seen. A record's access log and an access package's history each show it with
    fields of their own (DESIGN §5, §6)."""

    at: datetime
    action: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    rule: str | None
    clause: str | None
    emergency: bool


class ChainReport(BaseModel):
    """What ``verify_chain`` found."""

    ok: bool
    checked: int  # sealed events whose hash and links were recomputed
    first_broken_id: int | None = None  # the event at the first broken link, in seal order
    pending: int = 0  # events committed after the sealing pass, not yet chained
    last_seq: int = 0
    head_hash: str = GENESIS_HASH  # record it elsewhere to detect a truncated tail later
    head_event_id: int | None = None  # the event the last seal seals
    head: str = f"0:{GENESIS_HASH}"  # "<last_seq>:<head_hash>", what `kmm audit-verify --expect-head` takes
    # Event ids missing below the newest event that no seal explains (deleted events):
    # how many, counted in whole runs; the first of them is first_broken_id when no link is broken.
    missing: int = 0
    expected_head_found: bool | None = None  # with an expected head: whether the chain still has it
    unkeyed: int = 0  # seals made before the chain was keyed (KMM_AUDIT_UNKEYED_SEALS says how many verify)
