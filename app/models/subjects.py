"""Subjects: the people and organisations records are about (DESIGN §10); an employee
subject links to that employee's account, which is what makes a personnel file (§3.6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, model_validator
from sqlalchemy import JSON
from sqlmodel import Column, Field, SQLModel

from app.models.base import created_at_field, enum_field, uuid_pk


class SubjectKind(StrEnum):
    individual = "individual"
    organisation = "organisation"


class SubjectCategory(StrEnum):
    service_user = "service_user"
    member = "member"
    employee = "employee"
    trustee = "trustee"
    volunteer = "volunteer"
    intern = "intern"
    organisation = "organisation"


class Office(StrEnum):
    chair = "chair"
    executive_officer = "executive_officer"
    manager = "manager"


NAME_MAX = 200


class Officer(BaseModel):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    office: Office


class SubjectBase(SQLModel):
    """A subject's columns, as given, shown and stored."""

    kind: SubjectKind = enum_field(16)
    name: str = Field(min_length=1, max_length=NAME_MAX, index=True)
    category: SubjectCategory = enum_field(32, index=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", unique=True)


class SubjectDetails(SubjectBase):
    # Stored as JSON (the table's ``officers``), given and shown as Officer entries.
    officers: list[Officer] = Field(default_factory=list, max_length=20)


class SubjectCreate(SubjectDetails):
    @model_validator(mode="after")
    def _consistent(self) -> SubjectCreate:
        is_org = self.kind == SubjectKind.organisation
        if is_org != (self.category == SubjectCategory.organisation):
            raise ValueError("an organisation has category 'organisation', and only an organisation has it")
        if self.officers and not is_org:
            raise ValueError("only an organisation names officers")
        if self.user_id is not None and self.category != SubjectCategory.employee:
            raise ValueError("only an employee subject links to an account")
        if self.category == SubjectCategory.employee and self.user_id is None:
            raise ValueError("an employee subject links to that employee's account (user_id)")
        return self


class SubjectPublic(SubjectDetails):
    id: uuid.UUID
    created_at: datetime


class Subject(SubjectBase, table=True):
    __tablename__ = "subjects"

    id: uuid.UUID = uuid_pk()
    officers: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = created_at_field()
