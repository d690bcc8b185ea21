"""The package a fulfilled request sends (§3.4, §3.5, §3.6): what it holds, built once,
sealed under one data key and opened again, a shredded record showing as its tombstone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.crypto import Keyring, decrypt, encrypt
from app.models.access_requests import (
    AccessHistoryEntry,
    AccessPackage,
    AccessPackageItem,
    AccessPackageSealed,
    AccessRequest,
    AccessRequestKind,
    PackageRecord,
)
from app.models.records import Classification, Record, RecordContent
from app.policy.actor import Actor
from app.workflows.audit.access import record_accesses
from app.workflows.records.content import open_content
from app.workflows.records.shape import label_for, tombstone


def in_scope_sql(request: AccessRequest) -> ColumnElement[bool]:
    """What the request asks for: on a §3.6 request the employee's live personnel records, and
    on a §3.4 request the subject's other live records."""
    where = and_(col(Record.subject_id) == request.subject_id, col(Record.destroyed_at).is_(None))
    if request.kind == AccessRequestKind.personnel_access:
        # "all of their personnel records" (§3.6): not every record about the employee
        return and_(where, col(Record.classification) == Classification.personnel)
    return and_(where, col(Record.classification) != Classification.personnel)


def released_sql(request: AccessRequest) -> ColumnElement[bool]:
    """Of those, what is released: sensitive only where the file names the requester (§3.5)."""
    return or_(
        col(Record.classification).in_([Classification.general, Classification.confidential,
                                         Classification.personnel]),
        and_(col(Record.classification) == Classification.sensitive,
             col(Record.access_requester_id).is_not(None),
             col(Record.access_requester_id) == request.requester_subject_id),
    )


async def build_package(
    session: AsyncSession, *, request: AccessRequest, actor: Actor, now: datetime, keyring: Keyring,
    retention_until: datetime,
) -> AccessPackage:
    released = released_sql(request).label("released")
    rows = (
        await session.execute(
            select(Record, RecordContent, released)
            .outerjoin(RecordContent, and_(col(RecordContent.record_id) == Record.id, released_sql(request)))
            .where(in_scope_sql(request))
            .order_by(col(Record.created_at), col(Record.id))
            # A record being shredded meanwhile is either left out or cleared from the package
            # by the shredding, never kept in it (§4.6).
            .with_for_update(of=Record)
        )
    ).all()
    records: list[PackageRecord] = []
    withheld = 0
    for record, content, is_released in rows:
        if not is_released or content is None:
            withheld += 1
            continue
        title, text = open_content(keyring, content)
        records.append(PackageRecord(
            id=record.id, title=title, content=text or "", classification=record.classification,
            purpose=record.purpose, label=label_for(record.classification),
            created_at=record.created_at, updated_at=record.updated_at,
        ))
    history = await _access_history(session, [r.id for r in records])
    order = list(Classification)
    most = max((order.index(r.classification) for r in records), default=1)
    return AccessPackage(
        confidentiality=order[max(most, 1)], request_id=request.id, kind=request.kind,
        subject_id=request.subject_id, requester_subject_id=request.requester_subject_id, generated_at=now,
        generated_by=actor.id, retention_until=retention_until, records=records, withheld_count=withheld,
        access_history=history,
    )


async def _access_history(session: AsyncSession, record_ids: list[uuid.UUID]) -> list[AccessHistoryEntry]:
    """Who accessed the released records (read, listed, exported), when and by which rule."""
    return await record_accesses(session, record_ids, AccessHistoryEntry, newest_first=False)


def aad(request_id: uuid.UUID, part: str) -> bytes:
    return b"access-package:" + request_id.bytes + b":" + part.encode()


def item_aad(request_id: uuid.UUID, record_id: uuid.UUID) -> bytes:
    return aad(request_id, "item:" + record_id.hex)


def seal_package(keyring: Keyring, package: AccessPackage) -> tuple[AccessPackageSealed, list[AccessPackageItem]]:
    """The package without its records, and one item per record, all under one data key."""
    rid = package.request_id
    assert package.retention_until is not None
    key, kid, wrapped = keyring.new_data_key(aad=aad(rid, "key"))
    header = package.model_copy(update={"records": [], "destroyed": []})
    sealed = AccessPackageSealed(
        request_id=rid, key_id=kid, wrapped_key=wrapped,
        package_ct=encrypt(key, header.model_dump_json().encode(), aad(rid, "package")),
        record_count=len(package.records), withheld_count=package.withheld_count,
        generated_at=package.generated_at, retention_until=package.retention_until,
    )
    items = [
        AccessPackageItem(request_id=rid, record_id=r.id, position=i,
                          item_ct=encrypt(key, r.model_dump_json().encode(), item_aad(rid, r.id)))
        for i, r in enumerate(package.records)
    ]
    return sealed, items


def open_package(
    keyring: Keyring, sealed: AccessPackageSealed, items: Sequence[tuple[AccessPackageItem, Record]] = (),
) -> AccessPackage:
    """The stored package with its items, in order; a destroyed record shows as its tombstone."""
    rid = sealed.request_id
    key = keyring.unwrap(sealed.key_id, sealed.wrapped_key, aad=aad(rid, "key"))
    package = AccessPackage.model_validate_json(decrypt(key, sealed.package_ct, aad(rid, "package")))
    records = list(package.records)  # a package stored whole, with its records inside, opens as it was
    destroyed = []
    for item, record in sorted(items, key=lambda pair: pair[0].position):
        if item.item_ct is not None:
            records.append(PackageRecord.model_validate_json(decrypt(key, item.item_ct, item_aad(rid, record.id))))
        elif record.destroyed_at is not None:
            destroyed.append(tombstone(record))
    return package.model_copy(update={"records": records, "destroyed": destroyed,
                                      "retention_until": sealed.retention_until})


async def load_package(session: AsyncSession, keyring: Keyring, request_id: uuid.UUID) -> AccessPackage | None:
    sealed = await session.get(AccessPackageSealed, request_id)
    if sealed is None:
        return None
    rows = await session.execute(
        select(AccessPackageItem, Record).join(Record, col(Record.id) == AccessPackageItem.record_id)
        .where(col(AccessPackageItem.request_id) == request_id)
    )
    return open_package(keyring, sealed, [(item, record) for item, record in rows])  # a Row unpacks as a tuple
