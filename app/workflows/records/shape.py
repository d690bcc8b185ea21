"""What a caller is shown of a record: the public view, the summary in a list, the tombstone."""

from __future__ import annotations

import uuid
from typing import Any

from app.core.errors import Gone
from app.models.records import (
    AccessNote,
    Classification,
    Consent,
    ConsentStatus,
    Record,
    RecordPublic,
    Tombstone,
)
from app.policy.decide import Decision
from app.workflows.records.queries import ReadRow

LABEL = "CONFIDENTIAL"


def label_for(classification: str) -> str | None:
    return None if classification == Classification.general else LABEL


def summary_fields(r: Record | ReadRow) -> dict[str, Any]:
    return {
        "id": r.id, "subject_id": r.subject_id, "classification": r.classification, "purpose": r.purpose,
        "custodian_id": r.custodian_id, "label": label_for(r.classification), "version": r.version,
        "retention_until": r.retention_until, "review_due": r.review_due, "legal_hold": r.legal_hold,
        "created_at": r.created_at, "updated_at": r.updated_at,
    }


def to_public(
    record: Record | ReadRow, *, title: str | None, content: str | None, entitled: list[uuid.UUID],
    decision: Decision | None, refusal_reason: str | None,
) -> RecordPublic:
    return RecordPublic(
        **summary_fields(record),
        title=title,
        content=content,
        access_requester_id=record.access_requester_id,
        entitled_user_ids=entitled,
        consent=Consent(status=record.consent_status, obtained_at=record.consent_obtained_at,
                        purpose_explained=record.consent_purpose_explained,
                        refusal_reason=refusal_reason if record.consent_status == ConsentStatus.refused else None),
        last_verified_at=record.last_verified_at,
        destroyed_at=record.destroyed_at,
        access=AccessNote(rule=decision.rule, clause=decision.clause, emergency=decision.emergency,
                          recent_relation=decision.recent_relation)
        if decision else None,
    )


def tombstone(record: Record) -> Tombstone:
    assert record.destroyed_at is not None
    return Tombstone(id=record.id, subject_id=record.subject_id,
                     classification=record.classification,
                     destroyed_at=record.destroyed_at, destroyed_by=record.destroyed_by,
                     reason=record.destroy_reason)


def gone(record: Record) -> Gone:
    return Gone("this record was destroyed; only its tombstone remains", type="record-destroyed",
                   tombstone=tombstone(record).model_dump(mode="json"))
