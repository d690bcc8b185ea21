"""GET /bench/baseline/{record_id}: the benchmark's bare baseline (issue 7).

The same primary-key select of a record (and its stored content row) as the read path,
with no authentication, policy, decryption or audit. Mounted only when
``settings.bench_endpoints`` is true, which only the benchmark sets: it reveals nothing
but a record's id, class and version, and never exists in a normal service.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from sqlmodel import col, select

from app.core.errors import not_found
from app.deps import SessionDep
from app.models.records import Record, RecordContent

router = APIRouter(prefix="/bench", tags=["bench"], include_in_schema=False)


@router.get("/baseline/{record_id}")
async def baseline(record_id: uuid.UUID, session: SessionDep) -> dict[str, Any]:
    row = (
        await session.execute(
            select(Record, RecordContent.key_id)
            .outerjoin(RecordContent, col(RecordContent.record_id) == Record.id)
            .where(col(Record.id) == record_id)
        )
    ).first()
    if row is None:
        raise not_found("record")
    record = row[0]
    return {"id": record.id, "classification": record.classification, "version": record.version}
