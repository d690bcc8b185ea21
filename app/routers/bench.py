"""GET /bench/baseline/{record_id}: the benchmark's bare baseline.

The same primary-key select of a record and its stored content row as the read path,
through the same connections and rows (``state.rows``), with no authentication, policy,
decryption or audit. Mounted only when ``settings.bench_endpoints`` is true, which only
the benchmark sets: it reveals nothing but a record's id, class and version, and never
exists in a normal service.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from fastapi import APIRouter
from sqlalchemy import Table, bindparam, select

from app.core.errors import not_found
from app.deps import StateDep
from app.models.records import Record, RecordContent

router = APIRouter(prefix="/bench", tags=["bench"], include_in_schema=False)

_RECORDS = cast(Table, Record.__table__)  # type: ignore[attr-defined]
_CONTENTS = cast(Table, RecordContent.__table__)  # type: ignore[attr-defined]
_BY_ID = (
    select(*_RECORDS.c, *_CONTENTS.c)
    .outerjoin(_CONTENTS, _CONTENTS.c.record_id == _RECORDS.c.id)
    .where(_RECORDS.c.id == bindparam("record_id"))
)


@router.get("/baseline/{record_id}")
async def baseline(record_id: uuid.UUID, state: StateDep) -> dict[str, Any]:
    async with state.rows.connection() as rows:
        row = await rows.first(_BY_ID, {"record_id": record_id})
    if row is None:
        raise not_found("record")
    return {"id": row.id, "classification": row.classification, "version": row.version}
