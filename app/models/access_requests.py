"""Subject and personnel access requests (DESIGN §5 "Access requests", §10; policy §3.4 to §3.6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import CheckConstraint, Index, LargeBinary
from sqlmodel import Column, Field, SQLModel

from app.models.audit import RecordAccess
from app.models.base import created_at_field, enum_field, utc_column, uuid_pk
from app.models.records import Classification, Purpose, Tombstone
from app.models.subjects import NAME_MAX


class AccessRequestKind(StrEnum):
    subject_access = "subject_access"  # records about a person or organisation (§3.4, §3.5)
    personnel_access = "personnel_access"  # an employee's own personnel records (§3.6)


class SignatoryCapacity(StrEnum):
    individual = "individual"
    chair = "chair"
    executive_officer = "executive_officer"
    manager = "manager"


class AccessRequestStatus(StrEnum):
    received = "received"
    approved = "approved"
    refused = "refused"
    fulfilled = "fulfilled"
    withdrawn = "withdrawn"


# A request is open (and can become overdue) until it is fulfilled, refused or withdrawn.
OPEN_STATUSES = (AccessRequestStatus.received, AccessRequestStatus.approved)
NOTICE_DAYS = 14  # "giving 14 days' notice" (§3.4, §3.6)
REFERENCE_MAX = 200
REASON_MAX = 1000


class AccessRequestBase(SQLModel):
    """The letter as logged: given, shown and stored alike."""

    kind: AccessRequestKind = enum_field(24)
    subject_id: uuid.UUID = Field(foreign_key="subjects.id")
    requester_subject_id: uuid.UUID = Field(foreign_key="subjects.id")
    signed_by: str = Field(min_length=1, max_length=NAME_MAX, description="the name the letter is signed with")
    signatory_capacity: SignatoryCapacity = enum_field(24)
    in_writing: bool = Field(description="a request must be a signed letter to the Director (§3.4, §3.6)")
    letter_reference: str = Field(min_length=1, max_length=REFERENCE_MAX)


class AccessRequestCreate(AccessRequestBase):
    received_at: AwareDatetime = Field(description="when the Director received the letter; not in the future")


class AccessRequestPublic(AccessRequestBase):
    id: uuid.UUID
    received_at: datetime
    due_at: datetime
    status: AccessRequestStatus
    overdue: bool
    logged_by: uuid.UUID
    created_at: datetime
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    decision_reason: str | None
    fulfilled_by: uuid.UUID | None
    fulfilled_at: datetime | None
    withdrawn_by: uuid.UUID | None
    withdrawn_at: datetime | None


class AccessDecision(BaseModel):
    approve: bool
    reason: str = Field(min_length=1, max_length=REASON_MAX)


class AccessWithdrawal(BaseModel):
    reason: str | None = Field(default=None, max_length=REASON_MAX)


class AccessRequest(AccessRequestBase, table=True):
    __tablename__ = "access_requests"
    __table_args__ = (
        Index("ix_access_requests_status_due", "status", "due_at"),
        Index("ix_access_requests_due_id", "due_at", "id"),
        Index("ix_access_requests_logged_by", "logged_by"),
        Index("ix_access_requests_subject", "subject_id"),
        CheckConstraint("status IN ('received', 'approved', 'refused', 'fulfilled', 'withdrawn')",
                        name="ck_access_requests_status"),
        CheckConstraint("kind IN ('subject_access', 'personnel_access')", name="ck_access_requests_kind"),
        CheckConstraint("signatory_capacity IN ('individual', 'chair', 'executive_officer', 'manager')",
                        name="ck_access_requests_capacity"),
        CheckConstraint("due_at > received_at", name="ck_access_requests_due"),
    )

    id: uuid.UUID = uuid_pk()
    received_at: datetime = utc_column()
    due_at: datetime = utc_column()
    status: AccessRequestStatus = enum_field(16, default=AccessRequestStatus.received)
    logged_by: uuid.UUID = Field(foreign_key="users.id")
    created_at: datetime = created_at_field()
    decided_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    decided_at: datetime | None = utc_column(nullable=True)
    decision_reason: str | None = Field(default=None, max_length=REASON_MAX)
    fulfilled_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    fulfilled_at: datetime | None = utc_column(nullable=True)
    withdrawn_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    withdrawn_at: datetime | None = utc_column(nullable=True)
    withdrawal_reason: str | None = Field(default=None, max_length=REASON_MAX)


class AccessPackageSealed(SQLModel, table=True):
    """The fulfilled package, encrypted under its own data key (§6.6).

    ``package_ct`` holds the package without its records (who read what, counts); each
    record is an ``AccessPackageItem`` of its own, so shredding a record (§4.6) removes it
    from every package in one statement. Only counts, ids and dates sit beside them in
    clear. The retention sweep destroys the package after ``retention_until`` (§6.5).
    """

    __tablename__ = "access_request_packages"
    __table_args__ = (Index("ix_access_request_packages_retention", "retention_until"),)

    request_id: uuid.UUID = Field(foreign_key="access_requests.id", primary_key=True)
    key_id: str = Field(max_length=32)
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    package_ct: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    record_count: int
    withheld_count: int
    generated_at: datetime = utc_column()
    retention_until: datetime = utc_column()


class AccessPackageItem(SQLModel, table=True):
    """One record released in a package: its title and content encrypted under the package's
    data key. ``item_ct`` is NULL once the record is destroyed; the package then shows the
    record's tombstone in its place (§4.6)."""

    __tablename__ = "access_package_items"
    __table_args__ = (Index("ix_access_package_items_record", "record_id"),)

    request_id: uuid.UUID = Field(foreign_key="access_request_packages.request_id", primary_key=True)
    record_id: uuid.UUID = Field(foreign_key="records.id", primary_key=True)
    position: int
    item_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


# -- the package as clients receive it ---------------------------------------------------


class PackageRecord(BaseModel):
    id: uuid.UUID
    title: str
    content: str
    classification: Classification
    purpose: Purpose
    label: Literal["CONFIDENTIAL"] | None
    created_at: datetime
    updated_at: datetime


class AccessHistoryEntry(RecordAccess):
    """One access to a record in the package: who, when, how (read, list, export), by which
    rule. Never what was seen."""

    record_id: uuid.UUID
    actor_name: str | None


class AccessPackage(BaseModel):
    label: Literal["CONFIDENTIAL"] = "CONFIDENTIAL"
    confidentiality: Classification
    request_id: uuid.UUID
    kind: AccessRequestKind
    subject_id: uuid.UUID
    requester_subject_id: uuid.UUID
    generated_at: datetime
    generated_by: uuid.UUID
    retention_until: datetime | None = Field(
        default=None, description="when the retention sweep destroys the stored package (§6.5)")
    records: list[PackageRecord]
    destroyed: list[Tombstone] = Field(
        default_factory=list, description="records released in the package and destroyed since (§4.6)")
    withheld_count: int
    access_history: list[AccessHistoryEntry]
