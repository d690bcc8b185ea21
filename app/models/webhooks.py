"""Webhook subscriptions, the outbox of their deliveries, and the scheduler's job table.

An event that other KMM systems subscribe to (``WebhookEventKind``) is written to
``webhook_events``, with one ``webhook_deliveries`` row per subscription that wants it,
in the same transaction as the change that causes it: nothing is lost if the process
dies after the commit. A delivery worker posts them, signed, and records every attempt
in ``webhook_attempts``. Payloads carry ids and kinds only, never content or names.

``scheduled_jobs`` holds, per scheduled job, when it last ran and the lease of the one
process running it now (app/workflows/scheduler.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from app.core.encrypted import EncryptedText
from app.models.base import BigIntPK, created_at_field, enum_field, utc_column, uuid_pk

URL_MAX = 2000
DESCRIPTION_MAX = 200


class WebhookEventKind(StrEnum):
    access_request_received = "access_request.received"
    access_request_due_soon = "access_request.due_soon"
    access_request_overdue = "access_request.overdue"
    breach_report_opened = "breach_report.opened"
    disclosure_raised = "disclosure.raised"
    record_destroyed = "record.destroyed"
    record_review_due = "record.review_due"


# Events about a breach report: each goes only where the report may be known (§1.8, §7.1).
BREACH_REPORT_EVENTS = frozenset(k for k in WebhookEventKind if k.startswith("breach_report."))
# Events about a record: none goes to, or is shown to, a director it is a trace of their own
# personnel file to (§3.6).
RECORD_EVENTS = frozenset(k for k in WebhookEventKind if k.startswith("record."))


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # every attempt failed; no more are made
    # Not sent: the subscription was removed, or (a breach-report event) its creator may not
    # know of the report, before it went out.
    cancelled = "cancelled"


# -- subscriptions ---------------------------------------------------------------------


class WebhookBase(SQLModel):
    url: str = Field(min_length=1, max_length=URL_MAX,
                     description="https URL the events are posted to (http only to this host's loopback "
                                 "in production); no user or password in it")
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX,
                                    description="what the receiving system is, for the people who manage it")
    handler_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id",
        description="breach_report events only for reports routed to this account (the handler's system); "
                    "whatever the filter, only reports the subscription's creator may know of (§1.8, §7.1)")


class WebhookCreate(WebhookBase):
    events: list[WebhookEventKind] = Field(min_length=1, max_length=len(WebhookEventKind))


class WebhookPublic(WebhookBase):
    id: uuid.UUID
    events: list[WebhookEventKind]
    active: bool
    created_at: datetime
    created_by: uuid.UUID


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="the signing secret: shown once, here, and never again")


class Webhook(WebhookBase, table=True):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_created", "created_at", "id"),)

    id: uuid.UUID = uuid_pk()
    events: list[WebhookEventKind] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The HMAC key, encrypted at rest (§6.6); only the delivery worker reads it.
    secret: str = Field(sa_column=Column(EncryptedText(), nullable=False))
    active: bool = Field(default=True)
    created_at: datetime = created_at_field()
    created_by: uuid.UUID = Field(foreign_key="users.id")
    removed_at: datetime | None = utc_column(nullable=True)


# -- the outbox --------------------------------------------------------------------------


class WebhookEvent(SQLModel, table=True):
    """One event, as posted: ``payload`` is the exact JSON body (ids and kinds only).

    ``resource_id`` and ``occurrence_at`` make a scheduled notice happen once: the same
    kind about the same thing for the same date is refused by the unique constraint.
    Events from requests leave ``occurrence_at`` NULL (never equal to another).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("kind", "resource_id", "occurrence_at", name="uq_webhook_events_once"),
        # Housekeeping finds old events other than scheduled notices by it (§6.5): the notices,
        # kept for good, are not scanned on the way.
        Index("ix_webhook_events_occurrence_created", "occurrence_at", "created_at"),
    )

    id: uuid.UUID = uuid_pk()
    kind: WebhookEventKind = enum_field(40)
    resource_id: uuid.UUID | None = Field(default=None)
    occurrence_at: datetime | None = utc_column(nullable=True)
    payload: str
    created_at: datetime = created_at_field()


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at", "id"),
        # An event's deliveries: whether any is left before housekeeping deletes the event, and
        # PostgreSQL's foreign-key check on that delete (§6.5).
        Index("ix_webhook_deliveries_event", "event_id"),
    )

    id: uuid.UUID = uuid_pk()
    subscription_id: uuid.UUID = Field(foreign_key="webhook_subscriptions.id")
    event_id: uuid.UUID = Field(foreign_key="webhook_events.id")
    kind: WebhookEventKind = enum_field(40)
    status: DeliveryStatus = enum_field(16, default=DeliveryStatus.pending)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = created_at_field()
    created_at: datetime = created_at_field()
    delivered_at: datetime | None = utc_column(nullable=True)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    delivery_id: uuid.UUID = Field(foreign_key="webhook_deliveries.id")
    attempt: int
    at: datetime = created_at_field()
    status_code: int | None = Field(default=None)
    # The error's type (``ConnectTimeout``), never a message: the receiver's answer is not kept.
    error: str | None = Field(default=None, max_length=64)
    duration_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class AttemptPublic(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryPublic(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    kind: WebhookEventKind
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
    attempt_log: list[AttemptPublic]


# -- the scheduler -----------------------------------------------------------------------


class ScheduledJob(SQLModel, table=True):
    """A scheduled job's last run and the lease of the process running it (one at a time)."""

    __tablename__ = "scheduled_jobs"

    name: str = Field(primary_key=True, max_length=40)
    last_started_at: datetime | None = utc_column(nullable=True)
    last_finished_at: datetime | None = utc_column(nullable=True)
    last_outcome: str | None = Field(default=None, max_length=64)
    lease_holder: str | None = Field(default=None, max_length=120)
    lease_until: datetime | None = utc_column(nullable=True)
