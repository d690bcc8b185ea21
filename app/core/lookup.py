"""Finding the one row a request names, or a 404 that says what was missing."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.core.errors import not_found

T = TypeVar("T")


async def get_or_missing(session: AsyncSession, model: type[T], key: Any, *, name: str, lock: bool = False) -> T:
    """The row of ``model`` with primary key ``key`` (locked for update with ``lock``); else 404 ``name``."""
    found = await session.get(model, key, with_for_update=lock or None)
    if found is None:
        raise not_found(name)
    return found


async def one_or_missing(session: AsyncSession, query: SelectOfScalar[T], *, name: str, lock: bool = False) -> T:
    """The one row ``query`` finds (a query that also says who may know of it: a row hidden
    from the caller is missing to them alike); else 404 ``name``."""
    if lock:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise not_found(name)
    return found
