"""Records and the ways a record reaches someone (DESIGN §3, §10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import Index, LargeBinary
from sqlmodel import Column, Field, SQLModel

from app.core.encrypted import EncryptedText
from app.core.pagination import Page
from app.models.audit import RecordAccess
from app.models.base import created_at_field, enum_field, utc_column, uuid_pk

# -- vocabularies --------------------------------------------------------------


class Classification(StrEnum):
    general = "general"
    confidential = "confidential"
    sensitive = "sensitive"
    personnel = "personnel"


class Purpose(StrEnum):
    service_delivery = "service_delivery"
    equal_opportunities_monitoring = "equal_opportunities_monitoring"
    funder_reporting = "funder_reporting"
    personnel_administration = "personnel_administration"


class ConsentStatus(StrEnum):
    obtained = "obtained"
    pending = "pending"
    refused = "refused"
    not_required = "not_required"


TITLE_MAX = 200
# Even fully JSON-escaped (12 bytes a character at worst) a record fits the 1 MiB body limit.
CONTENT_MAX = 80_000
REASON_MAX = 500

# -- records -------------------------------------------------------------------


class Consent(BaseModel):
    status: ConsentStatus = ConsentStatus.pending
    obtained_at: AwareDatetime | None = None
    purpose_explained: bool = False
    # Why the person refused (§1.2, §6.1): required with, and only with, ``refused``.
    refusal_reason: str | None = Field(default=None, max_length=REASON_MAX)


class RecordBase(SQLModel):
    """The columns a record's input and its table share."""

    subject_id: uuid.UUID = Field(foreign_key="subjects.id")
    classification: Classification = enum_field(16)
    purpose: Purpose = enum_field(40)
    access_requester_id: uuid.UUID | None = Field(default=None, foreign_key="subjects.id")


class RecordCreate(RecordBase):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    content: str = Field(min_length=0, max_length=CONTENT_MAX)
    custodian_id: uuid.UUID | None = None
    consent: Consent = Field(default_factory=Consent)
    retention_until: AwareDatetime | None = None
    review_due: AwareDatetime | None = None


class RecordUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    content: str | None = Field(default=None, max_length=CONTENT_MAX)
    classification: Classification | None = None
    purpose: Purpose | None = None
    custodian_id: uuid.UUID | None = None
    access_requester_id: uuid.UUID | None = None
    consent: Consent | None = None
    retention_until: AwareDatetime | None = None
    review_due: AwareDatetime | None = None


class AccessNote(BaseModel):
    """How the caller came to see this record: the rule and clause that allowed it."""

    rule: str
    clause: str
    emergency: bool = False
    recent_relation: bool = False  # through a line-manager relation less than a day old (§3.2, §4.5)


class RecordSummary(BaseModel):
    id: uuid.UUID
    subject_id: uuid.UUID
    title: str | None
    classification: Classification
    purpose: Purpose
    custodian_id: uuid.UUID
    label: Literal["CONFIDENTIAL"] | None
    version: int
    retention_until: datetime
    review_due: datetime
    legal_hold: bool
    created_at: datetime
    updated_at: datetime


class RecordPublic(RecordSummary):
    content: str | None
    access_requester_id: uuid.UUID | None
    entitled_user_ids: list[uuid.UUID]
    consent: Consent
    last_verified_at: datetime | None
    destroyed_at: datetime | None
    access: AccessNote | None = None


class AccessLogEntry(RecordAccess):
    """One access to a record: who, when, how (``record.read``, ``record.list``,
    ``record.export``) and by which rule (no content)."""

    event_id: int


class AccessLog(Page[AccessLogEntry]):
    """A page of a record's access log, with who answers for the record."""

    record_id: uuid.UUID
    custodian_id: uuid.UUID
    custodian_line_manager_id: uuid.UUID | None


DESTROY_REASON_MAX = 500


class DestroyRequest(BaseModel):
    """The body of ``DELETE /records/{id}``: why it is shredded (§4.6)."""

    reason: str = Field(min_length=1, max_length=DESTROY_REASON_MAX)


class Tombstone(BaseModel):
    id: uuid.UUID
    subject_id: uuid.UUID
    classification: Classification
    destroyed_at: datetime
    destroyed_by: uuid.UUID | None
    reason: str | None


class Record(RecordBase, table=True):
    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_custodian_class", "custodian_id", "classification"),
        Index("ix_records_subject", "subject_id"),
        Index("ix_records_class_id", "classification", "id"),
    )

    id: uuid.UUID = uuid_pk()
    custodian_id: uuid.UUID = Field(foreign_key="users.id")
    consent_status: ConsentStatus = enum_field(16, default=ConsentStatus.pending)
    consent_obtained_at: datetime | None = utc_column(nullable=True)
    consent_purpose_explained: bool = False
    # Free text about the person: encrypted at rest (§6.6); input models cap it at REASON_MAX.
    consent_refusal_reason: str | None = Field(default=None, sa_column=Column(EncryptedText(), nullable=True))
    retention_until: datetime = utc_column()  # from the per-purpose schedule (§6.5)
    review_due: datetime = utc_column()  # §6.4
    last_verified_at: datetime | None = utc_column(nullable=True)
    legal_hold: bool = False
    # Free text that can name people: encrypted at rest (§6.6); input models cap it at REASON_MAX.
    legal_hold_reason: str | None = Field(default=None, sa_column=Column(EncryptedText(), nullable=True))
    version: int = 1
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
    destroyed_at: datetime | None = utc_column(nullable=True)
    destroyed_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    destroy_reason: str | None = Field(default=None, sa_column=Column(EncryptedText(), nullable=True))


class RecordContent(SQLModel, table=True):
    """The encrypted title and content and the record's wrapped data key (§6.6).

    Deleted when the record is destroyed, so nothing can decrypt it again (§4.6).
    """

    __tablename__ = "record_contents"

    record_id: uuid.UUID = Field(foreign_key="records.id", primary_key=True)
    key_id: str = Field(max_length=32)
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    title_ct: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    content_ct: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ShareCreate(BaseModel):
    user_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=REASON_MAX)


class SharePublic(BaseModel):
    record_id: uuid.UUID
    user_id: uuid.UUID
    reason: str
    shared_by: uuid.UUID
    shared_at: datetime


class RecordShare(SQLModel, table=True):
    __tablename__ = "record_shares"
    __table_args__ = (Index("ix_record_shares_user", "user_id", "record_id"),)

    record_id: uuid.UUID = Field(foreign_key="records.id", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    reason: str = Field(sa_column=Column(EncryptedText(), nullable=False))  # free text: encrypted (§6.6)
    shared_by: uuid.UUID = Field(foreign_key="users.id")
    shared_at: datetime = created_at_field()


class NamedAccessCreate(BaseModel):
    user_id: uuid.UUID
    consent_reference: str | None = Field(default=None, max_length=200)


class NamedAccessPublic(BaseModel):
    record_id: uuid.UUID
    user_id: uuid.UUID
    consent_reference: str
    added_by: uuid.UUID
    added_at: datetime


class RecordNamedAccess(SQLModel, table=True):
    __tablename__ = "record_named_access"
    __table_args__ = (Index("ix_record_named_access_user", "user_id", "record_id"),)

    record_id: uuid.UUID = Field(foreign_key="records.id", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    consent_reference: str = Field(max_length=200)
    added_by: uuid.UUID = Field(foreign_key="users.id")
    added_at: datetime = created_at_field()
