"""Emergency grants (§4.5): a director's time-limited authorisation to read a record, or
every record about a subject."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, model_validator
from sqlalchemy import CheckConstraint, Index
from sqlmodel import Column, Field, SQLModel

from app.core.encrypted import EncryptedText
from app.models.base import created_at_field, utc_column, uuid_pk
from app.models.records import REASON_MAX


class GrantBase(SQLModel):
    """Who a grant is for, and the one record or subject it covers."""

    grantee_id: uuid.UUID = Field(foreign_key="users.id")
    record_id: uuid.UUID | None = Field(default=None, foreign_key="records.id")
    subject_id: uuid.UUID | None = Field(default=None, foreign_key="subjects.id")


class GrantCreate(GrantBase):
    reason: str = Field(min_length=1, max_length=REASON_MAX)
    expires_at: AwareDatetime

    @model_validator(mode="after")
    def _one_target(self) -> GrantCreate:
        if (self.record_id is None) == (self.subject_id is None):
            raise ValueError("give exactly one of record_id or subject_id")
        return self


class GrantPublic(GrantBase):
    id: uuid.UUID
    reason: str
    expires_at: datetime
    issued_by: uuid.UUID
    issued_at: datetime
    revoked_at: datetime | None
    active: bool = False


class EmergencyGrant(GrantBase, table=True):
    __tablename__ = "emergency_grants"
    __table_args__ = (
        Index("ix_emergency_grants_grantee", "grantee_id", "expires_at"),
        CheckConstraint("(record_id IS NULL) <> (subject_id IS NULL)", name="ck_grant_one_target"),
    )

    id: uuid.UUID = uuid_pk()
    reason: str = Field(sa_column=Column(EncryptedText(), nullable=False))  # free text: encrypted (§6.6)
    expires_at: datetime = utc_column()
    issued_by: uuid.UUID = Field(foreign_key="users.id")
    issued_at: datetime = created_at_field()
    revoked_at: datetime | None = utc_column(nullable=True)
    revoked_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
