"""The monitoring report (§2.3): aggregate counts, small ones suppressed."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from app.models.records import Classification, Purpose
from app.models.subjects import SubjectCategory

THRESHOLD = 5
SUPPRESSED: Literal["<5"] = "<5"

Count = int | Literal["<5"]


class CategoryCount(BaseModel):
    category: SubjectCategory
    count: Count


class PurposeClassCount(BaseModel):
    purpose: Purpose
    classification: Classification
    count: Count


class MonitoringReport(BaseModel):
    as_of: datetime
    suppression: str = (f"counts from 1 to {THRESHOLD - 1} are shown as \"{SUPPRESSED}\"; no totals are given, "
                        "so no suppressed count can be derived by subtraction")
    subjects_by_category: list[CategoryCount]
    records_by_purpose_and_classification: list[PurposeClassCount]
