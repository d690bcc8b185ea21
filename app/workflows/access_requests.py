"""Subject and personnel access requests (§3.4 to §3.6; DESIGN §5 "Access requests").

A request is a signed letter to the Director, logged by any staff account. It is due
14 days after receipt and moves ``received → approved | refused``, ``approved →
fulfilled``, and to ``withdrawn`` from either open state. Every transition is a
conditional UPDATE on the expected status, so two concurrent decisions cannot both
succeed. Fulfilment builds the package once and stores it encrypted (§6.6).

Audit events carry ids and statuses only: no names, letter text or reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.crypto import Keyring, decrypt, encrypt
from app.core.errors import Conflict, Gone, Invalid, PolicyDenied, field_error, not_found
from app.core.pagination import CursorCodec, Page, page_of
from app.models.access_requests import (
    NOTICE_DAYS,
    OPEN_STATUSES,
    AccessDecision,
    AccessHistoryEntry,
    AccessPackage,
    AccessPackageItem,
    AccessPackageSealed,
    AccessRequest,
    AccessRequestCreate,
    AccessRequestKind,
    AccessRequestPublic,
    AccessRequestStatus,
    AccessWithdrawal,
    PackageRecord,
    SignatoryCapacity,
)
from app.models.records import Classification, Record, RecordContent
from app.models.subjects import Subject, SubjectCategory, SubjectKind
from app.policy.actor import Actor
from app.workflows import packages, webhooks
from app.workflows.audit.access import record_accesses
from app.workflows.audit.trail import add_event
from app.workflows.records.content import open_content
from app.workflows.records.shape import label_for, tombstone

S = AccessRequestStatus
RESOURCE = "access_request"
DIRECTOR_ONLY = ("director-only", "§3.4")


def clause_for(kind: str) -> str:
    return "§3.6" if kind == AccessRequestKind.personnel_access else "§3.4"


# -- deadlines -----------------------------------------------------------------------


def due_for(received_at: datetime) -> datetime:
    return received_at + timedelta(days=NOTICE_DAYS)


def is_overdue(request: AccessRequest, now: datetime) -> bool:
    """Neither fulfilled, refused nor withdrawn by its due date."""
    return request.status in OPEN_STATUSES and request.due_at < now


def overdue_sql(now: datetime) -> ColumnElement[bool]:
    """The same condition as ``is_overdue``, for lists and the compliance summary."""
    return and_(col(AccessRequest.status).in_(OPEN_STATUSES), col(AccessRequest.due_at) < now)


def to_public(request: AccessRequest, now: datetime) -> AccessRequestPublic:
    fields = {name: getattr(request, name, None) for name in AccessRequestPublic.model_fields if name != "overdue"}
    return AccessRequestPublic.model_validate({**fields, "overdue": is_overdue(request, now)})


# -- who may ask (§3.4, §3.6) -------------------------------------------------------------


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


def _require_staff(actor: Actor) -> None:
    if not actor.is_staff:
        raise PolicyDenied("access requests are handled by staff; trustees see what is passed to them",
                           rule="staff-only", clause="§3.4")


# -- intake ----------------------------------------------------------------------------


async def log_request(
    session: AsyncSession, *, data: AccessRequestCreate, actor: Actor, now: datetime
) -> AccessRequestPublic:
    """Log a letter received by the Director; refused letters are audited, never stored."""
    _require_staff(actor)
    if data.received_at > now:
        raise field_error("received_at", "the Director cannot have received it in the future")
    subject = await session.get(Subject, data.subject_id)
    if subject is None:
        raise field_error("subject_id", "no such subject")
    if data.requester_subject_id != subject.id and await session.get(Subject, data.requester_subject_id) is None:
        raise field_error("requester_subject_id", "no such subject")
    refusal = who_may_ask(data, subject)
    if refusal is not None:
        add_event(session, now=now, actor=actor, action="access_request.create", resource_type=RESOURCE,
                  decision="deny", rule=refusal.rule, clause=refusal.clause,
                  detail={"kind": data.kind, "subject_id": str(subject.id)})
        await session.commit()
        raise Invalid(refusal.reason, type="policy-denied", rule=refusal.rule, clause=refusal.clause)
    await _refuse_duplicate(session, subject_id=subject.id, letter_reference=data.letter_reference)
    request = AccessRequest(
        kind=data.kind,
        subject_id=subject.id,
        requester_subject_id=data.requester_subject_id,
        signed_by=data.signed_by,
        signatory_capacity=data.signatory_capacity,
        in_writing=True,
        letter_reference=data.letter_reference,
        received_at=data.received_at,
        due_at=due_for(data.received_at),
        status=S.received,
        logged_by=actor.id,
        created_at=now,
    )
    session.add(request)
    await session.flush()
    add_event(session, now=now, actor=actor, action="access_request.create", resource_type=RESOURCE,
              resource_id=request.id, decision="allow", rule="signatory", clause=clause_for(request.kind),
              detail={"kind": request.kind, "subject_id": str(subject.id), "status": request.status})
    await webhooks.access_request_received(session, request=request, now=now)
    await session.commit()
    return to_public(request, now)


async def _refuse_duplicate(session: AsyncSession, *, subject_id: uuid.UUID, letter_reference: str) -> None:
    """One letter is one request (§3.4): the same reference (case and surrounding spaces aside)
    for the same subject, unless that request was withdrawn, is a duplicate (409, naming it).
    On PostgreSQL the check holds a lock per subject until the transaction ends, so two
    loggings of one letter at once cannot both pass it (SQLite writes one at a time)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                              {"name": f"kmm-access-letter:{subject_id}"})
    existing = (await session.execute(
        select(AccessRequest.id).where(
            col(AccessRequest.subject_id) == subject_id,
            func.lower(func.trim(col(AccessRequest.letter_reference))) == letter_reference.strip().lower(),
            col(AccessRequest.status) != S.withdrawn.value,
        ).limit(1)
    )).scalar_one_or_none()
    if existing is not None:
        raise Conflict("this letter is already logged for this subject", type="duplicate-request",
                       rule="one-letter-one-request", clause="§3.4", existing_id=str(existing))


# -- who sees what ----------------------------------------------------------------------


def visible_sql(actor: Actor) -> ColumnElement[bool]:
    """Directors see every request; other staff those they logged and personnel requests about themselves."""
    if actor.is_director:
        return true()
    own_subject = select(Subject.id).where(col(Subject.user_id) == actor.id)
    return or_(
        col(AccessRequest.logged_by) == actor.id,
        and_(col(AccessRequest.kind) == AccessRequestKind.personnel_access,
             col(AccessRequest.subject_id).in_(own_subject)),
    )


async def _load(session: AsyncSession, request_id: uuid.UUID, actor: Actor) -> tuple[AccessRequest, uuid.UUID | None]:
    """The request and the account of the subject it is about; 404 unless the actor may see it."""
    _require_staff(actor)
    row = (
        await session.execute(
            select(AccessRequest, Subject.user_id)
            .join(Subject, col(Subject.id) == AccessRequest.subject_id)
            .where(col(AccessRequest.id) == request_id, visible_sql(actor))
        )
    ).first()
    if row is None:
        raise not_found("access request")
    return row[0], row[1]


async def get_request(
    session: AsyncSession, *, request_id: uuid.UUID, actor: Actor, now: datetime
) -> AccessRequestPublic:
    request, _ = await _load(session, request_id, actor)
    return to_public(request, now)


async def list_requests(
    session: AsyncSession, *, actor: Actor, now: datetime, cursors: CursorCodec, limit: int,
    cursor: str | None, status: AccessRequestStatus | None, overdue: bool | None,
) -> Page[AccessRequestPublic]:
    """Visible requests by due date (then id), filtered in SQL."""
    _require_staff(actor)
    query = (
        select(AccessRequest).where(visible_sql(actor))
        .order_by(col(AccessRequest.due_at), col(AccessRequest.id)).limit(limit + 1)
    )
    if status is not None:
        query = query.where(col(AccessRequest.status) == status)
    if overdue is not None:
        query = query.where(overdue_sql(now) if overdue else not_(overdue_sql(now)))
    if cursor:
        due, rid = cursors.decode("access-requests", cursor)
        after_due, after_id = datetime.fromisoformat(str(due)), uuid.UUID(str(rid))
        query = query.where(or_(col(AccessRequest.due_at) > after_due,
                                and_(col(AccessRequest.due_at) == after_due, col(AccessRequest.id) > after_id)))
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, lambda r: to_public(r, now), cursors=cursors, scope="access-requests", limit=limit,
                   key=lambda last: [last.due_at.isoformat(), str(last.id)])


# -- transitions ---------------------------------------------------------------------------


def _conflict(request: AccessRequest, to: S) -> Conflict:
    return Conflict(f"a {request.status} request cannot become {to}", type="invalid-transition",
                   current_status=request.status)


async def _transition(
    session: AsyncSession, *, request: AccessRequest, to: S, allowed_from: tuple[S, ...], values: dict[str, Any],
    actor: Actor, now: datetime, action: str, rule: str, clause: str,
) -> None:
    """Move ``request`` to ``to`` only if it is still in the status it was read in; audit it.

    The caller commits. A concurrent transition makes the UPDATE match no row: 409.
    """
    if request.status not in allowed_from:
        raise _conflict(request, to)
    result = await session.execute(
        update(AccessRequest)
        .where(col(AccessRequest.id) == request.id, col(AccessRequest.status) == request.status)
        .values(status=to, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise Conflict("the request changed meanwhile; fetch it again", type="invalid-transition")
    add_event(session, now=now, actor=actor, action=action, resource_type=RESOURCE, resource_id=request.id,
              decision="allow", rule=rule, clause=clause, detail={"from": request.status, "status": to})


async def _finish(session: AsyncSession, request: AccessRequest, now: datetime) -> AccessRequestPublic:
    await session.commit()
    await session.refresh(request)
    return to_public(request, now)


def _not_about_themself(actor: Actor, subject_user_id: uuid.UUID | None) -> None:
    """The employee asks and someone else answers (§3.6): a director does not decide or fulfil a
    request about themself; another director does."""
    if subject_user_id is not None and subject_user_id == actor.id:
        raise PolicyDenied("a request about yourself is decided and fulfilled by another director",
                           rule="access-request-self", clause="§3.6")


async def decide_request(
    session: AsyncSession, *, request_id: uuid.UUID, data: AccessDecision, actor: Actor, now: datetime
) -> AccessRequestPublic:
    """A director (app.deps.director_only) approves or refuses a received request, with a reason (§3.4)."""
    request, subject_user_id = await _load(session, request_id, actor)
    _not_about_themself(actor, subject_user_id)
    return await apply_decision(session, request=request, data=data, actor=actor, now=now)


async def apply_decision(
    session: AsyncSession, *, request: AccessRequest, data: AccessDecision, actor: Actor, now: datetime
) -> AccessRequestPublic:
    to = S.approved if data.approve else S.refused
    await _transition(session, request=request, to=to, allowed_from=(S.received,), actor=actor, now=now,
                      values={"decided_by": actor.id, "decided_at": now, "decision_reason": data.reason},
                      action="access_request.decide", rule=DIRECTOR_ONLY[0], clause=clause_for(request.kind))
    return await _finish(session, request, now)


async def withdraw_request(
    session: AsyncSession, *, request_id: uuid.UUID, data: AccessWithdrawal, actor: Actor, now: datetime
) -> AccessRequestPublic:
    """Whoever may see the request may withdraw it while it is open: directors, the account that
    logged it, and the employee a personnel request is about (their own letter)."""
    request, _ = await _load(session, request_id, actor)
    await _transition(session, request=request, to=S.withdrawn, allowed_from=(S.received, S.approved),
                      values={"withdrawn_by": actor.id, "withdrawn_at": now, "withdrawal_reason": data.reason},
                      actor=actor, now=now, action="access_request.withdraw", rule="filer-or-director",
                      clause=clause_for(request.kind))
    return await _finish(session, request, now)


# -- the package (§3.4, §3.5, §3.6) ------------------------------------------------------------


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


def _aad(request_id: uuid.UUID, part: str) -> bytes:
    return b"access-package:" + request_id.bytes + b":" + part.encode()


def _item_aad(request_id: uuid.UUID, record_id: uuid.UUID) -> bytes:
    return _aad(request_id, "item:" + record_id.hex)


def seal_package(keyring: Keyring, package: AccessPackage) -> tuple[AccessPackageSealed, list[AccessPackageItem]]:
    """The package without its records, and one item per record, all under one data key."""
    rid = package.request_id
    assert package.retention_until is not None
    key, kid, wrapped = keyring.new_data_key(aad=_aad(rid, "key"))
    header = package.model_copy(update={"records": [], "destroyed": []})
    sealed = AccessPackageSealed(
        request_id=rid, key_id=kid, wrapped_key=wrapped,
        package_ct=encrypt(key, header.model_dump_json().encode(), _aad(rid, "package")),
        record_count=len(package.records), withheld_count=package.withheld_count,
        generated_at=package.generated_at, retention_until=package.retention_until,
    )
    items = [
        AccessPackageItem(request_id=rid, record_id=r.id, position=i,
                          item_ct=encrypt(key, r.model_dump_json().encode(), _item_aad(rid, r.id)))
        for i, r in enumerate(package.records)
    ]
    return sealed, items


def open_package(
    keyring: Keyring, sealed: AccessPackageSealed, items: Sequence[tuple[AccessPackageItem, Record]] = (),
) -> AccessPackage:
    """The stored package with its items, in order; a destroyed record shows as its tombstone."""
    rid = sealed.request_id
    key = keyring.unwrap(sealed.key_id, sealed.wrapped_key, aad=_aad(rid, "key"))
    package = AccessPackage.model_validate_json(decrypt(key, sealed.package_ct, _aad(rid, "package")))
    records = list(package.records)  # a package stored whole, with its records inside, opens as it was
    destroyed = []
    for item, record in sorted(items, key=lambda pair: pair[0].position):
        if item.item_ct is not None:
            records.append(PackageRecord.model_validate_json(decrypt(key, item.item_ct, _item_aad(rid, record.id))))
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
    return open_package(keyring, sealed, [(item, record) for item, record in rows.tuples()])


async def fulfil_request(
    session: AsyncSession, *, request_id: uuid.UUID, actor: Actor, now: datetime, keyring: Keyring,
    settings: Settings,
) -> AccessRequestPublic:
    """A director fulfils an approved request: the package is built and stored encrypted, once,
    and kept for ``package_retention_days`` (§6.5)."""
    request, subject_user_id = await _load(session, request_id, actor)
    _not_about_themself(actor, subject_user_id)
    if request.status != S.approved:
        raise _conflict(request, S.fulfilled)
    package = await build_package(session, request=request, actor=actor, now=now, keyring=keyring,
                                  retention_until=now + timedelta(days=settings.package_retention_days))
    await _transition(session, request=request, to=S.fulfilled, allowed_from=(S.approved,), actor=actor, now=now,
                      values={"fulfilled_by": actor.id, "fulfilled_at": now},
                      action="access_request.fulfil", rule=DIRECTOR_ONLY[0], clause=clause_for(request.kind))
    sealed, items = seal_package(keyring, package)
    session.add(sealed)
    await session.flush()
    session.add_all(items)
    for record in package.records:  # each released record is an export on its own access log (DESIGN §6)
        add_event(session, now=now, actor=actor, action="record.export", resource_type="record",
                  resource_id=record.id, decision="allow", rule="access-request", clause=clause_for(request.kind),
                  detail={"access_request_id": str(request.id), "classification": record.classification})
    return await _finish(session, request, now)


async def download_package(
    session: AsyncSession, *, request_id: uuid.UUID, actor: Actor, now: datetime, keyring: Keyring
) -> AccessPackage:
    """Directors; and the employee a fulfilled personnel request is about (§3.6). Audited either way."""
    request, employee_user_id = await _load(session, request_id, actor)
    own = request.kind == AccessRequestKind.personnel_access and employee_user_id == actor.id
    rule, clause = ("personnel-request", "§3.6") if own else (DIRECTOR_ONLY[0], clause_for(request.kind))
    if not (actor.is_director or own):
        add_event(session, now=now, actor=actor, action="access_request.package_download", resource_type=RESOURCE,
                  resource_id=request.id, decision="deny", rule=rule, clause=clause,
                  detail={"status": request.status})
        await session.commit()
        raise PolicyDenied("only a director, or the employee a personnel request is about, receives the package",
                           rule=rule, clause=clause)
    if request.status != S.fulfilled:
        raise Conflict(f"the package is ready once the request is fulfilled; it is {request.status}",
                      type="not-fulfilled", current_status=request.status)
    package = await load_package(session, keyring, request.id)
    if package is None:
        raise Gone("the package was destroyed at the end of its retention period", type="package-destroyed",
                      rule=packages.RULE, clause=packages.CLAUSE)
    add_event(session, now=now, actor=actor, action="access_request.package_download", resource_type=RESOURCE,
              resource_id=request.id, decision="allow", rule=rule, clause=clause,
              detail={"status": request.status, "records": len(package.records),
                      "withheld": package.withheld_count})
    if not own:
        # The director receives sensitive content only to send it to the requester named on
        # the file (§3.5), never by rank (§3.2): each such item is a flagged export that shows
        # on the record's own access log.
        for record in package.records:
            if record.classification == Classification.sensitive:
                add_event(session, now=now, actor=actor, action="record.export", resource_type="record",
                          resource_id=record.id, decision="allow", rule="access-request", clause="§3.5",
                          emergency=True, detail={"access_request_id": str(request.id),
                                                  "classification": record.classification,
                                                  "via": "package_download"})
    await session.commit()
    return package


# -- compliance (DESIGN §5 "Data protection") ------------------------------------------------------


async def overdue_ids(session: AsyncSession, now: datetime, settings: Settings) -> list[str]:
    """Requests neither fulfilled, refused nor withdrawn by their due date: one query."""
    rows = await session.execute(
        select(AccessRequest.id).where(overdue_sql(now)).order_by(col(AccessRequest.due_at), col(AccessRequest.id))
    )
    return [str(i) for i in rows.scalars()]
