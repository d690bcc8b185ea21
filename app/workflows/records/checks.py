"""Checks shared by creating, updating and passing on records: the accounts named, the
requester, personnel, the retention date and consent (§3.2, §4.3, §6.5, §1.2)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Invalid, PolicyDenied, field_error
from app.models.records import Classification, Consent, ConsentStatus
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.policy.retention import RETENTION_RULE, may_choose_retention


async def check_active_user(
    session: AsyncSession, user_id: uuid.UUID, *, field: str = "user_id", staff_only: bool = False
) -> User:
    user = await session.get(User, user_id)
    if user is None or not user.active:
        raise field_error(field, "no such active account")
    if staff_only and user.role not in ("colleague", "director"):
        raise field_error(field, "only a colleague can be named on a sensitive record")
    return user


async def check_custodian(session: AsyncSession, custodian_id: uuid.UUID) -> User:
    user = await session.get(User, custodian_id)
    if user is None or not user.active or user.role not in ("colleague", "director"):
        raise field_error("custodian_id", "the custodian must be an active staff account")
    return user


def check_retention(
    actor: Actor, *, retention: datetime, scheduled: datetime, classification: Classification,
    custodian_line_manager_id: uuid.UUID | None,
) -> None:
    """A retention date other than the schedule's is the custodian's line manager's or a director's choice (§6.5)."""
    if retention != scheduled and not may_choose_retention(
            actor, classification=classification, custodian_line_manager_id=custodian_line_manager_id):
        raise PolicyDenied("only the custodian's line manager or a director sets a retention date other than "
                           "the per-purpose schedule's", rule=RETENTION_RULE[0], clause=RETENTION_RULE[1])


async def check_requester(session: AsyncSession, subject_id: uuid.UUID | None, classification: str) -> None:
    if classification == Classification.sensitive and subject_id is None:
        raise field_error("access_requester_id",
                          "a sensitive record names the individual or group who may request it (§3.2)",
                          rule="sensitive-label", clause="§3.2")
    if subject_id is not None and await session.get(Subject, subject_id) is None:
        raise field_error("access_requester_id", "no such subject")


async def check_personnel(session: AsyncSession, *, actor: Actor, subject: Subject) -> None:
    """A personnel record is about an employee and made by their line manager or a director (§4.3)."""
    if subject.category != "employee" or subject.user_id is None:
        raise field_error("subject_id", "a personnel record is only about an employee subject",
                          rule="personnel", clause="§4.3")
    employee = await session.get(User, subject.user_id)
    if not actor.is_director and (employee is None or employee.line_manager_id != actor.id):
        raise PolicyDenied("only the employee's line manager or a director keeps personnel records",
                           rule="personnel", clause="§4.3")
    if subject.user_id == actor.id:
        raise PolicyDenied("nobody keeps their own personnel records: the employee asks in writing",
                           rule="personnel", clause="§3.6")


CONSENT_RULE, CONSENT_CLAUSE = "consent-refused", "§1.2, §6.1"


def check_consent(consent: Consent) -> None:
    """A refusal says why the person refused, and only a refusal has a reason (§1.2, §6.1)."""
    reason = consent.refusal_reason
    if consent.status == ConsentStatus.refused and (reason is None or not reason.strip()):
        message = "a refusal of consent records why the person refused (refusal_reason)"
    elif consent.status != ConsentStatus.refused and reason is not None:
        message = "only a refused consent has a refusal_reason"
    else:
        return
    raise Invalid(f"consent.refusal_reason: {message}", type="validation-error", rule=CONSENT_RULE,
                  clause=CONSENT_CLAUSE,
                  errors=[{"loc": ["body", "consent", "refusal_reason"], "msg": message, "type": "value_error"}])
