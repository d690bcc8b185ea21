"""Retention and review dates (§6.4, §6.5), as data and pure functions.

Every record keeps a retention date and a review date. The retention date follows the
per-purpose schedule (``Settings.retention_days``): the record's creation plus the days its
purpose keeps it. Anyone who may update a record may keep that date or put it back on the
schedule; choosing another date, earlier or later, is a decision for the custodian's line
manager or a director, the people answerable for how long the record is kept. Personnel
records are kept by the employee's line manager (§4.3), so there only a director chooses.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from app.models.records import Classification
from app.policy.actor import Actor

# The rule and clause a refused move cites.
RETENTION_RULE = ("retention-schedule", "§6.5")
# A purpose missing from the schedule keeps its records this long.
DEFAULT_DAYS = 6 * 365


def schedule_date(created_at: datetime, purpose: str, days_by_purpose: Mapping[str, int]) -> datetime:
    """The retention date the schedule gives a record made at ``created_at`` for ``purpose``."""
    return created_at + timedelta(days=days_by_purpose.get(purpose, DEFAULT_DAYS))


def may_choose_retention(
    actor: Actor, *, classification: Classification, custodian_line_manager_id: uuid.UUID | None
) -> bool:
    """Whether ``actor`` may set a retention date other than the schedule's (§6.5)."""
    if actor.is_director:
        return True
    return (actor.kind == "user" and classification != Classification.personnel
            and custodian_line_manager_id is not None and custodian_line_manager_id == actor.id)
