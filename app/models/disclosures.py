"""Disclosures (DESIGN §5, §10; policy §1.3, §1.9, §5).

A disclosure is information passed outside KMM: by legal duty (§5.1-§5.3) or with the
individual's consent on record (§1.3). It is raised by a colleague, made (reported) by a
director, and closed only once the affected person has been told (§1.9, §5.4).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import JSON, Index
from sqlmodel import Column, Field, SQLModel

from app.core.encrypted import EncryptedText
from app.models.base import created_at_field, enum_field, utc_column, uuid_pk

# -- free text --------------------------------------------------------------------
# Free text a colleague writes about a case is sensitive: it is never logged or audited,
# and it will be encrypted at rest (§6.6). Every such column is built here, so switching
# them to the encrypted column type is a change in this one function.


def free_text_column(*, nullable: bool) -> Any:
    """Free text that can hold personal detail: encrypted at rest (§6.6).

    Its length is capped by the request schemas; the stored ciphertext is longer.
    """
    column: Column[str] = Column(EncryptedText(), nullable=nullable)
    return Field(default=None, sa_column=column) if nullable else Field(sa_column=column)


SUMMARY_MAX = 10_000
RECIPIENT_MAX = 200
REFERENCE_MAX = 200
MAX_RECORD_IDS = 100


class DisclosureCategory(StrEnum):
    child_abuse = "child_abuse"
    drug_trafficking = "drug_trafficking"
    money_laundering = "money_laundering"
    terrorism = "terrorism"
    treason = "treason"
    illegal_act = "illegal_act"
    risk_of_harm = "risk_of_harm"
    consented = "consented"


class DisclosureStatus(StrEnum):
    raised = "raised"
    reported = "reported"
    closed = "closed"


class InformMethod(StrEnum):
    letter = "letter"
    email = "email"
    telephone = "telephone"
    in_person = "in_person"
    other = "other"


CHILDRENS_SERVICES = "Children's Services / Social Services Department"
POLICE = "police"
DIRECTOR = "the Director"


class Route(BaseModel):
    """Where a category goes and the clause that authorises it."""

    recipient: str | None  # None: the one who raises it names the recipient
    clause: str
    director_chooses_authority: bool = False


ROUTES: dict[DisclosureCategory, Route] = {
    DisclosureCategory.child_abuse: Route(recipient=CHILDRENS_SERVICES, clause="§5.1"),
    DisclosureCategory.drug_trafficking: Route(recipient=POLICE, clause="§5.2"),
    DisclosureCategory.money_laundering: Route(recipient=POLICE, clause="§5.2"),
    DisclosureCategory.terrorism: Route(recipient=POLICE, clause="§5.2"),
    DisclosureCategory.treason: Route(recipient=POLICE, clause="§5.2"),
    DisclosureCategory.illegal_act: Route(recipient=DIRECTOR, clause="§5.3", director_chooses_authority=True),
    DisclosureCategory.risk_of_harm: Route(recipient=DIRECTOR, clause="§5.3", director_chooses_authority=True),
    DisclosureCategory.consented: Route(recipient=None, clause="§1.3"),
}


class DisclosureBase(SQLModel):
    """The columns a disclosure's input, output and table share."""

    subject_id: uuid.UUID = Field(foreign_key="subjects.id")
    category: DisclosureCategory = enum_field(32)
    consent_reference: str | None = Field(default=None, min_length=1, max_length=REFERENCE_MAX)


class DisclosureCreate(DisclosureBase):
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    record_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_RECORD_IDS)
    recipient: str | None = Field(default=None, min_length=1, max_length=RECIPIENT_MAX)


class DisclosureReport(BaseModel):
    authority: str | None = Field(default=None, min_length=1, max_length=RECIPIENT_MAX)
    reported_at: AwareDatetime
    reference: str | None = Field(default=None, min_length=1, max_length=REFERENCE_MAX)


class SubjectInformed(BaseModel):
    informed_at: AwareDatetime
    method: InformMethod


class DisclosurePublic(DisclosureBase):
    id: uuid.UUID
    clause: str
    summary: str
    record_ids: list[uuid.UUID]
    recipient: str
    status: DisclosureStatus
    raised_by: uuid.UUID
    created_at: datetime
    authority: str | None
    reference: str | None
    reported_at: datetime | None
    reported_by: uuid.UUID | None
    subject_informed_at: datetime | None
    subject_informed_method: InformMethod | None
    subject_informed_by: uuid.UUID | None
    closed_at: datetime | None
    closed_by: uuid.UUID | None


class Disclosure(DisclosureBase, table=True):
    __tablename__ = "disclosures"
    __table_args__ = (
        Index("ix_disclosures_created", "created_at", "id"),
        Index("ix_disclosures_raised_by", "raised_by", "created_at"),
        Index("ix_disclosures_subject", "subject_id"),
    )

    id: uuid.UUID = uuid_pk()
    clause: str = Field(max_length=16)
    summary: str = free_text_column(nullable=False)
    record_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    recipient: str = Field(max_length=RECIPIENT_MAX)
    status: DisclosureStatus = enum_field(16, default=DisclosureStatus.raised)
    raised_by: uuid.UUID = Field(foreign_key="users.id")
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
    authority: str | None = Field(default=None, max_length=RECIPIENT_MAX)
    reference: str | None = Field(default=None, max_length=REFERENCE_MAX)
    reported_at: datetime | None = utc_column(nullable=True)
    reported_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    subject_informed_at: datetime | None = utc_column(nullable=True)
    subject_informed_method: InformMethod | None = enum_field(16, default=None)
    subject_informed_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    closed_at: datetime | None = utc_column(nullable=True)
    closed_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
