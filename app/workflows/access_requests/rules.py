"""Who may ask (§3.4, §3.6) and who answers: pure checks, no database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.core.errors import PolicyDenied
from app.models.access_requests import AccessRequestCreate, AccessRequestKind, SignatoryCapacity
from app.models.subjects import Subject, SubjectCategory, SubjectKind
from app.policy.actor import Actor

RESOURCE = "access_request"
DIRECTOR_ONLY = ("director-only", "§3.4")


def clause_for(kind: str) -> str:
    return "§3.6" if kind == AccessRequestKind.personnel_access else "§3.4"


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: str
    clause: str
    reason: str


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def who_may_ask(data: AccessRequestCreate, subject: Subject) -> Refusal | None:
    """None if the letter may be accepted; otherwise the rule and clause that refuse it."""
    personnel = data.kind == AccessRequestKind.personnel_access
    clause = clause_for(data.kind)
    if not data.in_writing:
        return Refusal("in-writing", clause, "a request must be made in writing to the Director")
    if personnel and (subject.category != SubjectCategory.employee or subject.user_id is None):
        return Refusal("personnel-request", "§3.6", "a personnel request is about an employee's own records")
    if data.requester_subject_id != data.subject_id:
        return Refusal("signatory", clause,
                       "only the individual or organisation the records are about may request them")
    if subject.kind == SubjectKind.individual:
        if data.signatory_capacity != SignatoryCapacity.individual or not _same_name(data.signed_by, subject.name):
            return Refusal("signatory", clause, "the letter must be signed by the individual the records are about")
        return None
    signed_by_officer = data.signatory_capacity != SignatoryCapacity.individual and any(
        o.get("office") == data.signatory_capacity and _same_name(data.signed_by, str(o.get("name", "")))
        for o in subject.officers
    )
    if not signed_by_officer:
        return Refusal("signatory", clause,
                       "an organisation's letter must be signed by its Chair, Executive Officer or Manager on file")
    return None


def require_staff(actor: Actor) -> None:
    if not actor.is_staff:
        raise PolicyDenied("access requests are handled by staff; trustees see what is passed to them",
                           rule="staff-only", clause="§3.4")


def not_about_themself(actor: Actor, subject_user_id: uuid.UUID | None) -> None:
    """The employee asks and someone else answers (§3.6): a director does not decide or fulfil a
    request about themself; another director does."""
    if subject_user_id is not None and subject_user_id == actor.id:
        raise PolicyDenied("a request about yourself is decided and fulfilled by another director",
                           rule="access-request-self", clause="§3.6")
