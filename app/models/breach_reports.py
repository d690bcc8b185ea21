"""Breach reports (DESIGN §5, §10; policy §1.7, §1.8, §7).

A complaint from outside, a colleague's concern about another's conduct, a breach of
confidentiality, a grievance, or unauthorised access found by the service itself. It is
handled by the line manager of the colleague concerned (or a director), whose finding
closes it. The colleague concerned never sees it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import ForeignKey, Index, text
from sqlmodel import Column, Field, SQLModel

from app.models.base import BigIntPK, created_at_field, enum_field, utc_column, uuid_pk
from app.models.disclosures import free_text_column

DESCRIPTION_MAX = 10_000
EVIDENCE_MAX = 10_000
NOTES_MAX = 10_000
COMPLAINANT_MAX = 200


class BreachKind(StrEnum):
    external_complaint = "external_complaint"  # §1.7
    colleague_conduct = "colleague_conduct"  # §1.8
    confidentiality_breach = "confidentiality_breach"  # §7.2
    grievance = "grievance"  # §7.1
    unauthorised_access = "unauthorised_access"  # §7.2, raised by the service itself


KIND_CLAUSE: dict[BreachKind, str] = {
    BreachKind.external_complaint: "§1.7",
    BreachKind.colleague_conduct: "§1.8",
    BreachKind.confidentiality_breach: "§7.2",
    BreachKind.grievance: "§7.1",
    BreachKind.unauthorised_access: "§7.2",
}


class BreachStatus(StrEnum):
    open = "open"
    investigating = "investigating"
    closed = "closed"


class HandlerBasis(StrEnum):
    """Why the handler holds a report (§1.8, §7.1): routed as the line manager, routed to a
    director, or assigned by a director. The relation it names must hold for them to keep it
    (app/workflows/breach_reports/rerouting.py)."""

    line_manager = "line_manager"
    director = "director"
    assigned = "assigned"


class Finding(StrEnum):
    substantiated = "substantiated"
    unsubstantiated = "unsubstantiated"
    malicious = "malicious"


class Outcome(StrEnum):
    disciplinary_action = "disciplinary_action"
    legal_action = "legal_action"
    disciplinary_action_against_reporter = "disciplinary_action_against_reporter"
    no_action = "no_action"


class BreachReportCreate(BaseModel):
    kind: BreachKind
    concerned_user_id: uuid.UUID | None = None
    description: str = Field(min_length=1, max_length=DESCRIPTION_MAX)
    evidence: str | None = Field(default=None, min_length=1, max_length=EVIDENCE_MAX)
    complainant_name: str | None = Field(default=None, min_length=1, max_length=COMPLAINANT_MAX)
    complaint_procedure_advised: bool | None = None


class BreachAssign(BaseModel):
    handler_id: uuid.UUID


class BreachFinding(BaseModel):
    finding: Finding
    notes: str | None = Field(default=None, min_length=1, max_length=NOTES_MAX)


class BreachReportBase(SQLModel):
    """What every view of a report and its table share."""

    kind: BreachKind = enum_field(32)
    status: BreachStatus = enum_field(16)
    created_at: datetime = created_at_field()


class BreachReportStatusView(BreachReportBase):
    """What the reporter sees of their own report: that it exists and where it stands."""

    view: Literal["status"] = "status"
    id: uuid.UUID


class BreachReportPublic(BreachReportBase):
    """What the handler and directors see."""

    view: Literal["full"] = "full"
    id: uuid.UUID
    clause: str
    reporter_id: uuid.UUID | None
    concerned_user_id: uuid.UUID | None
    handler_id: uuid.UUID
    description: str
    evidence: str | None
    evidence_event_ids: list[int]
    complainant_name: str | None
    complaint_procedure_advised: bool | None
    investigating_at: datetime | None
    finding: Finding | None
    outcome: Outcome | None
    notes: str | None
    found_by: uuid.UUID | None
    closed_at: datetime | None
    updated_at: datetime


class BreachReport(BreachReportBase, table=True):
    __tablename__ = "breach_reports"
    __table_args__ = (
        Index("ix_breach_reports_created", "created_at", "id"),
        Index("ix_breach_reports_handler", "handler_id", "status"),
        Index("ix_breach_reports_reporter", "reporter_id"),
        Index("ix_breach_reports_concerned", "concerned_user_id"),
        # At most one open unauthorised-access report per account: the key that keeps two
        # simultaneous detections from opening two reports (§7.2).
        Index("uq_breach_reports_open_detection", "concerned_user_id", unique=True,
              sqlite_where=text("kind = 'unauthorised_access' AND status <> 'closed'"),
              postgresql_where=text("kind = 'unauthorised_access' AND status <> 'closed'")),
    )

    id: uuid.UUID = uuid_pk()
    reporter_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")  # None: the service
    concerned_user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    handler_id: uuid.UUID = Field(foreign_key="users.id")
    handler_basis: HandlerBasis | None = enum_field(16, default=None)  # None: made before it was kept
    description: str = free_text_column(nullable=False)
    evidence: str | None = free_text_column(nullable=True)
    complainant_name: str | None = free_text_column(nullable=True)
    complaint_procedure_advised: bool | None = None
    investigating_at: datetime | None = utc_column(nullable=True)
    finding: Finding | None = enum_field(16, default=None)
    outcome: Outcome | None = enum_field(40, default=None)
    notes: str | None = free_text_column(nullable=True)
    found_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    updated_at: datetime = created_at_field()
    closed_at: datetime | None = utc_column(nullable=True)


class BreachReportEvent(SQLModel, table=True):
    """An audit event held as evidence of an unauthorised-access report (§7.2).

    Keyed by the event alone: an event is evidence of at most one report, so two
    detections adding the same denial at once cannot both add it.
    """

    __tablename__ = "breach_report_events"

    audit_event_id: int = Field(
        sa_column=Column(BigIntPK, ForeignKey("audit_events.id"), primary_key=True, autoincrement=False))
    report_id: uuid.UUID = Field(foreign_key="breach_reports.id", index=True)
