"""Stored access-request packages as data subject to §4.6 and §6.5.

A package's records are stored one row each (``access_package_items``), so that shredding
a record removes its title and content from every package in one statement, in the
shredding transaction; the package then shows the record's tombstone. Packages carry a
retention date and the retention sweep destroys them after it. This module imports models
only, so the record workflows can call it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.models.access_requests import AccessPackageItem, AccessPackageSealed
from app.policy.actor import Actor
from app.workflows.access_requests.rules import RESOURCE
from app.workflows.audit.trail import add_event

RULE, CLAUSE = "retention", "§6.5"


async def forget_records(session: AsyncSession, record_ids: list[uuid.UUID]) -> None:
    """Remove the records' titles and contents from every stored package (§4.6, §6.5).

    Part of shredding: the caller's transaction commits it with the records' tombstones.
    """
    if record_ids:
        await session.execute(
            update(AccessPackageItem)
            .where(col(AccessPackageItem.record_id).in_(record_ids), col(AccessPackageItem.item_ct).is_not(None))
            .values(item_ct=None)
            .execution_options(synchronize_session=False)
        )


def expired_sql(now: datetime) -> ColumnElement[bool]:
    """Packages past their retention date (§6.5)."""
    return col(AccessPackageSealed.retention_until) < now


async def expired_ids(session: AsyncSession, now: datetime) -> list[uuid.UUID]:
    rows = await session.execute(
        select(AccessPackageSealed.request_id).where(expired_sql(now)).order_by(col(AccessPackageSealed.request_id))
    )
    return list(rows.scalars())


async def destroy_expired(
    session: AsyncSession, *, now: datetime, actor: Actor | None, sweep_id: uuid.UUID
) -> list[uuid.UUID]:
    """Destroy every package past its retention date, in one transaction; each is audited.

    The package, its key and its items are deleted; the request stays, fulfilled, and its
    download answers 410. Returns the request ids. The caller's transaction is committed here.
    """
    try:
        ids = list((await session.execute(
            select(AccessPackageSealed.request_id).where(expired_sql(now))
            .order_by(col(AccessPackageSealed.request_id)).with_for_update()
        )).scalars())
        if ids:
            await session.execute(delete(AccessPackageItem).where(col(AccessPackageItem.request_id).in_(ids)))
            await session.execute(
                delete(AccessPackageSealed).where(col(AccessPackageSealed.request_id).in_(ids))
                .execution_options(synchronize_session=False)
            )
        for rid in ids:
            add_event(session, now=now, actor=actor, action="access_request.package_destroy",
                      resource_type=RESOURCE, resource_id=rid, decision="allow", rule=RULE, clause=CLAUSE,
                      detail={"sweep": True, "sweep_id": str(sweep_id)})
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return ids
