"""The retention sweep (§6.5): what is asked, and what it destroyed (or would)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field, StrictBool


class SweepRequest(BaseModel):
    dry_run: StrictBool  # 0 or "no" must not start a real sweep


class SweepResult(BaseModel):
    sweep_id: uuid.UUID
    dry_run: bool
    as_of: datetime
    count: int
    ids: list[uuid.UUID]
    package_count: int = 0
    package_ids: list[uuid.UUID] = Field(
        default_factory=list, description="access requests whose stored package is (or would be) destroyed")
