"""Keeping records: create, read, list, update (optimistic locking), destroy (§4.6).

Every decision comes from app/policy and is an audit event. Title and content are
encrypted at rest with the record's own data key (§6.6).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import BindParameter, Select, Table, bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, delete, select

from app.core.config import Settings
from app.core.crypto import Keyring, decrypt, encrypt
from app.core.db import RowSource, scrub_after_shred
from app.core.errors import PolicyDenied, Problem, field_error, not_found
from app.core.pagination import CursorCodec
from app.core.security import TokenClaims
from app.models.accounts import AuthSession, User
from app.models.lifecycle import RecordReview
from app.models.records import (
    AccessLog,
    AccessLogEntry,
    AccessNote,
    Classification,
    Consent,
    ConsentStatus,
    Purpose,
    Record,
    RecordContent,
    RecordCreate,
    RecordNamedAccess,
    RecordPublic,
    RecordShare,
    RecordSummary,
    RecordUpdate,
    Subject,
    Tombstone,
)
from app.policy.actor import Actor
from app.policy.decide import Decision, RecordFacts, decide, facts_columns, records_filter
from app.policy.retention import RETENTION_RULE, may_choose_retention, schedule_date
from app.policy.rules import Action
from app.workflows import packages, webhooks
from app.workflows.audit_trail import AuditWriter, add_event, event_row
from app.workflows.breach_reports import detect_unauthorised_access
from app.workflows.record_access import record_accesses
from app.workflows.sessions import load_actor, row_actor, session_actor

LABEL = "CONFIDENTIAL"
_RECORDS = cast(Table, Record.__table__)  # type: ignore[attr-defined]
_CONTENTS = cast(Table, RecordContent.__table__)  # type: ignore[attr-defined]
_ACTOR_FIELDS = ("role", "active", "line_manager_id", "staff_type")
# The record columns a read shows (to_public), none of them encrypted: the hot path's rows
# are converted by the driver alone.
# A row of the hot path's statement (app.core.db.Rows): a Core row or a named tuple, with
# the columns of Record and RecordContent by name.
ReadRow = Any
_READ_FIELDS = ("id", "subject_id", "classification", "purpose", "custodian_id", "access_requester_id",
                "consent_status", "consent_obtained_at", "consent_purpose_explained", "retention_until",
                "review_due", "last_verified_at", "legal_hold", "version", "created_at", "updated_at",
                "destroyed_at")


@dataclass(slots=True)
class LoadedRecord:
    record: Record
    content: RecordContent | None
    facts: RecordFacts


# -- encryption ------------------------------------------------------------------


def _aad(record_id: uuid.UUID, field: str) -> bytes:
    return record_id.bytes + b":" + field.encode()


def seal_content(keyring: Keyring, record_id: uuid.UUID, *, title: str, content: str) -> RecordContent:
    key, kid, wrapped = keyring.new_data_key(aad=_aad(record_id, "key"))
    return RecordContent(
        record_id=record_id,
        key_id=kid,
        wrapped_key=wrapped,
        title_ct=encrypt(key, title.encode(), _aad(record_id, "title")),
        content_ct=encrypt(key, content.encode(), _aad(record_id, "content")),
    )


def open_content(keyring: Keyring, rc: RecordContent | ReadRow, *, with_content: bool = True,
                 ) -> tuple[str, str | None]:
    """Title and content of a content row (an entity, or its columns as read by the hot path)."""
    key = keyring.unwrap(rc.key_id, rc.wrapped_key, aad=_aad(rc.record_id, "key"))
    title = decrypt(key, rc.title_ct, _aad(rc.record_id, "title")).decode()
    content = decrypt(key, rc.content_ct, _aad(rc.record_id, "content")).decode() if with_content else None
    return title, content


# -- loading and deciding ------------------------------------------------------------


@functools.cache
def _record_statement(*, with_actor: bool, core: bool = False) -> Select[Any]:
    """The record, its encrypted content and its facts relative to ``:actor_id``; built once.

    With ``with_actor`` the same statement also checks the caller's account and session
    (``:actor_id``, ``:session_id``), so an authorised read is one round trip (DESIGN §11).
    ``core`` selects plain labelled columns instead of ORM entities, for the hot path
    (``read_record_fast``), which reads rows without a session.
    """
    custodian = aliased(User, name="custodian")
    employee = aliased(User, name="employee")
    actor_id: BindParameter[Any] = bindparam("actor_id")
    facts = facts_columns(actor_id)
    record_cols: tuple[Any, ...] = (Record, RecordContent)
    actor_cols: tuple[Any, ...] = (User, col(AuthSession.revoked_at))
    if core:
        record_cols = (*(_RECORDS.c[name] for name in _READ_FIELDS), *_CONTENTS.c)  # no name is in both
        # Named as sessions.row_actor reads them (no record or content column has these names).
        actor_cols = (*(col(getattr(User, f)) for f in _ACTOR_FIELDS), col(AuthSession.revoked_at))
    columns = (*record_cols, col(custodian.line_manager_id).label("custodian_lm"),
               col(employee.line_manager_id).label("employee_lm"), facts["shared"], facts["named"], facts["grant"],
               col(custodian.line_manager_since).label("custodian_lm_since"),
               col(employee.line_manager_since).label("employee_lm_since"),
               col(Subject.user_id).label("subject_user_id"))
    on_record = col(Record.id) == bindparam("record_id")
    if not with_actor:
        stmt = (
            sa_select(*columns)
            .join(custodian, col(custodian.id) == Record.custodian_id)
            .join(Subject, col(Subject.id) == Record.subject_id)
            .where(on_record)
        )
    else:
        stmt = (
            sa_select(*actor_cols, *columns)
            .select_from(User)
            .join(AuthSession, (col(AuthSession.user_id) == User.id) & (col(AuthSession.id) == bindparam("session_id")))
            .outerjoin(Record, on_record)
            .outerjoin(custodian, col(custodian.id) == Record.custodian_id)
            .outerjoin(Subject, col(Subject.id) == Record.subject_id)
            .where(col(User.id) == actor_id)
        )
    return (
        stmt.outerjoin(employee, col(employee.id) == Subject.user_id)
        .outerjoin(RecordContent, col(RecordContent.record_id) == Record.id)
    )


def _loaded(row: Any) -> LoadedRecord:
    record, content, custodian_lm, employee_lm, shared, named, grant, custodian_lm_since, employee_lm_since, \
        subject_user_id = row
    if record is None:
        raise not_found("record")
    return LoadedRecord(
        record=record,
        content=content,
        facts=RecordFacts(
            classification=Classification(record.classification),
            custodian_id=record.custodian_id,
            custodian_line_manager_id=custodian_lm,
            employee_line_manager_id=employee_lm,
            shared_with_actor=bool(shared),
            actor_named=bool(named),
            actor_grant_expires_at=grant,
            custodian_line_manager_since=custodian_lm_since,
            employee_line_manager_since=employee_lm_since,
            subject_user_id=subject_user_id,
        ),
    )


async def load_record(session: AsyncSession, record_id: uuid.UUID, *, actor: Actor, now: datetime) -> LoadedRecord:
    """The record, its encrypted content and the actor-relative facts, in one query."""
    row = (
        await session.execute(_record_statement(with_actor=False), {"record_id": record_id, "actor_id": actor.id})
    ).first()
    if row is None:
        raise not_found("record")
    return _loaded(row)


async def load_actor_and_record(
    session: AsyncSession, record_id: uuid.UUID, *, claims: TokenClaims
) -> tuple[Actor, LoadedRecord]:
    """The caller's account and session checked, and the record loaded, in one query."""
    row = (
        await session.execute(
            _record_statement(with_actor=True),
            {"record_id": record_id, "actor_id": uuid.UUID(claims.sub), "session_id": claims.sid},
        )
    ).first()
    actor = session_actor(row[0] if row else None, row[1] if row else None, claims.sid)
    assert row is not None
    return actor, _loaded(row[2:])


async def authorize(
    session: AsyncSession, *, actor: Actor, action: Action, loaded: LoadedRecord, now: datetime,
    audit_allow: bool = False,
) -> Decision:
    """Decide; a denial is audited, committed and raised as 403 with rule and clause."""
    decision = decide(actor, action, loaded.facts, now)
    if not decision.allowed:
        add_event(session, now=now, actor=actor, action=f"record.{action.value}", resource_type="record",
                  resource_id=loaded.record.id, decision="deny", rule=decision.rule, clause=decision.clause,
                  detail={"classification": loaded.record.classification})
        await session.commit()
        await after_denial(session, actor=actor, loaded=loaded, action=action, now=now)
        raise PolicyDenied(
            f"{action.value} denied: {decision.reason}", rule=decision.rule, clause=decision.clause
        )
    if audit_allow:
        add_event(session, now=now, actor=actor, action=f"record.{action.value}", resource_type="record",
                  resource_id=loaded.record.id, decision="allow", rule=decision.rule, clause=decision.clause,
                  **allow_flags(decision, loaded.record.classification))
    return decision


def allow_flags(decision: Decision, classification: str) -> dict[str, Any]:
    """The emergency flag and detail of an allowed read's audit event: a read through a grant,
    or through a line-manager relation less than a day old, is flagged (§4.5, §3.2)."""
    detail: dict[str, Any] = {"classification": classification}
    if decision.recent_relation:
        detail["recent_relation"] = True
    return {"emergency": decision.emergency or decision.recent_relation, "detail": detail}


async def after_denial(
    session: AsyncSession, *, actor: Actor, loaded: LoadedRecord, action: Action, now: datetime
) -> None:
    """Hook for what follows a committed denial (breach detection, §7.2)."""
    for hook in DENIAL_HOOKS:
        await hook(session, actor=actor, record=loaded.record, action=action, now=now)


# Coroutines called after a denial has been committed: (session, actor=, record=, action=, now=).
DENIAL_HOOKS: list[Any] = []
DENIAL_HOOKS.append(detect_unauthorised_access)  # three denials open a report (§7.2)


# -- shaping -------------------------------------------------------------------------


def label_for(classification: str) -> str | None:
    return None if classification == Classification.general else LABEL


def _summary_fields(r: Record | ReadRow) -> dict[str, Any]:
    return {
        "id": r.id, "subject_id": r.subject_id, "classification": r.classification, "purpose": r.purpose,
        "custodian_id": r.custodian_id, "label": label_for(r.classification), "version": r.version,
        "retention_until": r.retention_until, "review_due": r.review_due, "legal_hold": r.legal_hold,
        "created_at": r.created_at, "updated_at": r.updated_at,
    }


_ENTITLED = (
    select(RecordNamedAccess.user_id).where(col(RecordNamedAccess.record_id) == bindparam("record_id"))
    .order_by(col(RecordNamedAccess.user_id))
)


async def entitled_ids(session: AsyncSession, record: Record) -> list[uuid.UUID]:
    """Who is named on a sensitive record's list (§3.2); nobody for any other class."""
    if record.classification != Classification.sensitive:
        return []
    return list((await session.execute(_ENTITLED, {"record_id": record.id})).scalars())


def to_public(
    record: Record | ReadRow, *, title: str | None, content: str | None, entitled: list[uuid.UUID],
    decision: Decision | None,
) -> RecordPublic:
    return RecordPublic(
        **_summary_fields(record),
        title=title,
        content=content,
        access_requester_id=record.access_requester_id,
        entitled_user_ids=entitled,
        consent=Consent(status=record.consent_status, obtained_at=record.consent_obtained_at,  # type: ignore[arg-type]
                        purpose_explained=record.consent_purpose_explained,
                        # the hot path never shows a refusal (read_record_fast), so its rows need no reason
                        refusal_reason=record.consent_refusal_reason
                        if record.consent_status == ConsentStatus.refused else None),
        last_verified_at=record.last_verified_at,
        destroyed_at=record.destroyed_at,
        access=AccessNote(rule=decision.rule, clause=decision.clause, emergency=decision.emergency,
                          recent_relation=decision.recent_relation)
        if decision else None,
    )


def tombstone(record: Record) -> Tombstone:
    assert record.destroyed_at is not None
    return Tombstone(id=record.id, subject_id=record.subject_id,
                     classification=Classification(record.classification),
                     destroyed_at=record.destroyed_at, destroyed_by=record.destroyed_by,
                     reason=record.destroy_reason)


def gone(record: Record) -> Problem:
    return Problem(410, "this record was destroyed; only its tombstone remains", type="record-destroyed",
                   tombstone=tombstone(record).model_dump(mode="json"))


# -- validation shared by create and update -----------------------------------------------


async def _check_custodian(session: AsyncSession, custodian_id: uuid.UUID) -> User:
    user = await session.get(User, custodian_id)
    if user is None or not user.active or user.role not in ("colleague", "director"):
        raise field_error("custodian_id", "the custodian must be an active staff account")
    return user


def _check_retention(
    actor: Actor, *, retention: datetime, scheduled: datetime, classification: Classification,
    custodian_line_manager_id: uuid.UUID | None,
) -> None:
    """A retention date other than the schedule's is the custodian's line manager's or a director's choice (§6.5)."""
    if retention != scheduled and not may_choose_retention(
            actor, classification=classification, custodian_line_manager_id=custodian_line_manager_id):
        raise PolicyDenied("only the custodian's line manager or a director sets a retention date other than "
                           "the per-purpose schedule's", rule=RETENTION_RULE[0], clause=RETENTION_RULE[1])


async def _check_requester(session: AsyncSession, subject_id: uuid.UUID | None, classification: str) -> None:
    if classification == Classification.sensitive and subject_id is None:
        raise field_error("access_requester_id",
                          "a sensitive record names the individual or group who may request it (§3.2)",
                          rule="sensitive-label", clause="§3.2")
    if subject_id is not None and await session.get(Subject, subject_id) is None:
        raise field_error("access_requester_id", "no such subject")


async def _check_personnel(session: AsyncSession, *, actor: Actor, subject: Subject) -> None:
    """A personnel record is about an employee and made by their line manager or a director (§4.3)."""
    if subject.category != "employee" or subject.user_id is None:
        raise field_error("subject_id", "a personnel record is only about an employee subject",
                          rule="personnel", clause="§4.3")
    employee = await session.get(User, subject.user_id)
    if not actor.is_director and (employee is None or employee.line_manager_id != actor.id):
        raise PolicyDenied("only the employee's line manager or a director keeps personnel records",
                           rule="personnel", clause="§4.3")
    if subject.user_id == actor.id:
        raise PolicyDenied("nobody keeps their own personnel records: the employee asks in writing",
                           rule="personnel", clause="§3.6")


CONSENT_RULE, CONSENT_CLAUSE = "consent-refused", "§1.2, §6.1"


def check_consent(consent: Consent) -> None:
    """A refusal says why the person refused, and only a refusal has a reason (§1.2, §6.1)."""
    reason = consent.refusal_reason
    if consent.status == ConsentStatus.refused and (reason is None or not reason.strip()):
        message = "a refusal of consent records why the person refused (refusal_reason)"
    elif consent.status != ConsentStatus.refused and reason is not None:
        message = "only a refused consent has a refusal_reason"
    else:
        return
    raise Problem(422, f"consent.refusal_reason: {message}", type="validation-error", rule=CONSENT_RULE,
                  clause=CONSENT_CLAUSE,
                  errors=[{"loc": ["body", "consent", "refusal_reason"], "msg": message, "type": "value_error"}])


# -- create ----------------------------------------------------------------------


async def create_record(
    session: AsyncSession, *, data: RecordCreate, actor: Actor, now: datetime, keyring: Keyring,
    settings: Settings,
) -> RecordPublic:
    client_may = (actor.kind == "client" and actor.has_scope("records:write")
                  and data.classification == Classification.general)
    if not actor.is_staff and not client_may:
        raise PolicyDenied("only staff create records (a service client only general ones, with records:write)",
                           rule="custodian", clause="§4.2")
    subject = await session.get(Subject, data.subject_id)
    if subject is None:
        raise field_error("subject_id", "no such subject")
    custodian_id = data.custodian_id or (actor.id if actor.kind == "user" else None)
    if custodian_id is None:
        raise field_error("custodian_id", "a service client must name the custodian")
    custodian = await _check_custodian(session, custodian_id)
    await _check_requester(session, data.access_requester_id, data.classification)
    check_consent(data.consent)
    if data.classification == Classification.personnel:
        await _check_personnel(session, actor=actor, subject=subject)
    scheduled = schedule_date(now, data.purpose.value, settings.retention_days)
    retention = data.retention_until or scheduled
    _check_retention(actor, retention=retention, scheduled=scheduled, classification=data.classification,
                     custodian_line_manager_id=custodian.line_manager_id)
    record = Record(
        subject_id=subject.id,
        classification=data.classification.value,
        purpose=data.purpose.value,
        custodian_id=custodian_id,
        access_requester_id=data.access_requester_id,
        consent_status=data.consent.status.value,
        consent_obtained_at=data.consent.obtained_at,
        consent_purpose_explained=data.consent.purpose_explained,
        consent_refusal_reason=data.consent.refusal_reason,
        retention_until=retention,
        review_due=data.review_due or now + timedelta(days=settings.review_interval_days),
        created_by=actor.id if actor.kind == "user" else None,
        created_at=now,
        updated_at=now,
    )
    session.add(record)
    await session.flush()
    session.add(seal_content(keyring, record.id, title=data.title, content=data.content))
    add_event(session, now=now, actor=actor, action="record.create", resource_type="record",
              resource_id=record.id, decision="allow", rule="custodian", clause="§4.2",
              detail={"classification": record.classification, "purpose": record.purpose})
    await session.commit()
    return to_public(record, title=data.title, content=data.content, entitled=[], decision=None)


# -- read ------------------------------------------------------------------------


async def read_record(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime, keyring: Keyring
) -> RecordPublic:
    loaded = await load_record(session, record_id, actor=actor, now=now)
    return await _read_loaded(session, loaded=loaded, actor=actor, now=now, keyring=keyring)


async def read_record_general(
    session: AsyncSession, *, record_id: uuid.UUID, claims: TokenClaims, now: datetime, keyring: Keyring,
    rows: RowSource,
) -> RecordPublic:
    """GET /records/{id} in a session: every outcome, each audited (allow, deny, 404, 410, 401)."""
    if claims.kind == "user":  # the token's session and the record in one round trip
        actor, loaded = await load_actor_and_record(session, record_id, claims=claims)
    else:
        actor = await load_actor(rows, claims)
        loaded = await load_record(session, record_id, actor=actor, now=now)
    return await _read_loaded(session, loaded=loaded, actor=actor, now=now, keyring=keyring)


async def read_record_fast(
    rows: RowSource, audit: AuditWriter, *, record_id: uuid.UUID, claims: TokenClaims, now: datetime,
    keyring: Keyring,
) -> RecordPublic | None:
    """GET /records/{id} for an account, when it is a plain allowed read; else None.

    The hot path (DESIGN §11): one autocommit SELECT checks the token's account and
    session and loads the record, content and facts as plain rows (no ORM session); the
    policy decides from the same table as everywhere else; the read's audit event is
    committed by the group-commit writer before the content is returned. Anything else
    (no such record, a denial, a destroyed record, an ended session) returns None and
    the caller takes the general path, which answers and audits it exactly as before.
    """
    async with rows.connection() as conn:
        row = await conn.first(_record_statement(with_actor=True, core=True),
                               {"record_id": record_id, "actor_id": uuid.UUID(claims.sub), "session_id": claims.sid})
        actor = row_actor(row, claims)  # 401 unless the session is live and the account active
        assert row is not None
        if row.id is None:
            raise not_found("record")
        if row.record_id is None or row.destroyed_at is not None:
            return None  # destroyed: the general path audits the read and answers 410
        if row.consent_status == ConsentStatus.refused:
            return None  # its reason is encrypted text (EncryptedText), which the general path decrypts
        entitled = await conn.scalars(_ENTITLED, {"record_id": row.id}) if row.classification == "sensitive" else []
    facts = RecordFacts(
        classification=Classification(row.classification), custodian_id=row.custodian_id,
        custodian_line_manager_id=row.custodian_lm, employee_line_manager_id=row.employee_lm,
        shared_with_actor=bool(row.shared), actor_named=bool(row.named), actor_grant_expires_at=row.grant,
        custodian_line_manager_since=row.custodian_lm_since, employee_line_manager_since=row.employee_lm_since,
        subject_user_id=row.subject_user_id,
    )
    decision = decide(actor, Action.read, facts, now)
    if not decision.allowed:
        return None
    title, content = open_content(keyring, row)
    await audit.write(event_row(now=now, actor=actor, action="record.read", resource_type="record",
                                resource_id=row.id, decision="allow", rule=decision.rule, clause=decision.clause,
                                **allow_flags(decision, row.classification)))
    return to_public(row, title=title, content=content, entitled=entitled, decision=decision)


async def _read_loaded(
    session: AsyncSession, *, loaded: LoadedRecord, actor: Actor, now: datetime, keyring: Keyring
) -> RecordPublic:
    decision = await authorize(session, actor=actor, action=Action.read, loaded=loaded, now=now, audit_allow=True)
    if loaded.record.destroyed_at is not None or loaded.content is None:
        await session.commit()
        raise gone(loaded.record)
    title, content = open_content(keyring, loaded.content)
    entitled = await entitled_ids(session, loaded.record)
    await session.commit()
    return to_public(loaded.record, title=title, content=content, entitled=entitled, decision=decision)


_SUMMARY_FIELDS = ("id", "subject_id", "classification", "purpose", "custodian_id", "version", "retention_until",
                   "review_due", "legal_hold", "created_at", "updated_at")


def _param(name: str) -> BindParameter[Any]:
    # Not "required", so the statement can be compiled once with its constant IN lists
    # rendered (app.core.db); list_records always binds every one.
    return bindparam(name, required=False)


@functools.lru_cache(maxsize=256)
def _list_statement(shape: Actor, filters: tuple[str, ...], after: bool) -> Select[Any]:
    """GET /records for every actor of one shape, built once: ``:actor_id``, ``:now``, ``:limit``,
    ``:after`` and one ``:f_<name>`` per filter are bound per request (DESIGN §11)."""
    r, c = _RECORDS.c, _CONTENTS.c
    stmt = (
        sa_select(*(r[name] for name in _SUMMARY_FIELDS), c.key_id, c.wrapped_key, c.title_ct)
        .outerjoin(_CONTENTS, c.record_id == r.id)
        .where(records_filter(shape, _param("now"), actor_id=_param("actor_id")), r.destroyed_at.is_(None))
        .order_by(r.id)
        .limit(_param("limit"))
    )
    for name in filters:
        stmt = stmt.where(r[name] == _param(f"f_{name}"))
    if after:
        stmt = stmt.where(r.id > _param("after"))
    return stmt


def _shape(actor: Actor) -> Actor:
    """What the list filter depends on (kind, role, scopes, active), with the ids left out."""
    return dataclasses.replace(actor, id=uuid.UUID(int=0), line_manager_id=None, staff_type=None, session_id=None)


async def list_records(
    rows: RowSource, audit: AuditWriter, *, actor: Actor, now: datetime, keyring: Keyring, cursors: CursorCodec,
    limit: int, cursor: str | None, filters: dict[str, Any],
) -> tuple[list[RecordSummary], str | None]:
    """The records the actor may read, filtered in SQL: one statement (built once per kind
    of actor) on the hot path's connections, plain rows; one audit event for the list,
    committed by the group-commit writer before the page is returned."""
    given = {name: getattr(value, "value", value) for name, value in filters.items() if value is not None}
    params: dict[str, Any] = {"actor_id": actor.id, "now": now, "limit": limit + 1,
                              **{f"f_{name}": value for name, value in given.items()}}
    if cursor:
        (after,) = cursors.decode("records", cursor)
        params["after"] = uuid.UUID(str(after))
    stmt = _list_statement(_shape(actor), tuple(sorted(given)), "after" in params)
    async with rows.connection() as conn:
        found = await conn.all(stmt, params)
    items: list[RecordSummary] = []
    for row in found[:limit]:
        title = None
        if row.wrapped_key is not None:
            key = keyring.unwrap(row.key_id, row.wrapped_key, aad=_aad(row.id, "key"))
            title = decrypt(key, row.title_ct, _aad(row.id, "title")).decode()
        items.append(RecordSummary(**_summary_fields(row), title=title))
    nxt = cursors.encode("records", [str(found[limit - 1].id)]) if len(found) > limit else None
    await audit.write(event_row(now=now, actor=actor, action="record.list", resource_type="record",
                                decision="allow", rule="policy-filter", clause="§3.1",
                                detail={"count": len(items), "filters": sorted(given),
                                        "record_ids": [str(item.id) for item in items]}))
    return items, nxt


async def access_log(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime, cursors: CursorCodec,
    limit: int, cursor: str | None,
) -> AccessLog:
    """Who accessed the record (read it, saw it in a list, or exported it), when and by which
    rule, newest first, emergency reads flagged (DESIGN §6).

    For those answerable for it: whoever may update it (its custodian, their line manager,
    for personnel the employee's line manager), and directors, who oversee the policy.
    """
    before = int(cursors.decode("access-log", cursor)[0]) if cursor else None  # bad input first
    loaded = await load_record(session, record_id, actor=actor, now=now)
    decision = decide(actor, Action.update, loaded.facts, now)
    if not (decision.allowed or actor.is_director):
        add_event(session, now=now, actor=actor, action="record.access_log", resource_type="record",
                  resource_id=record_id, decision="deny", rule=decision.rule, clause=decision.clause)
        await session.commit()
        raise PolicyDenied("only those answerable for a record, and directors, see who read it",
                           rule=decision.rule, clause=decision.clause)
    rows = await record_accesses(session, [record_id], newest_first=True, limit=limit + 1, before=before)
    items = [AccessLogEntry(event_id=r.event_id, at=r.at, action=r.action, actor_id=r.actor_id,
                            actor_role=r.actor_role, rule=r.rule, clause=r.clause, emergency=r.emergency)
             for r in rows[:limit]]
    nxt = cursors.encode("access-log", [items[-1].event_id]) if len(rows) > limit else None
    add_event(session, now=now, actor=actor, action="record.access_log", resource_type="record",
              resource_id=record_id, decision="allow", rule="director" if not decision.allowed else decision.rule,
              clause="§3.1, §3.4" if not decision.allowed else decision.clause)
    await session.commit()
    return AccessLog(record_id=record_id, custodian_id=loaded.record.custodian_id,
                     custodian_line_manager_id=loaded.facts.custodian_line_manager_id, items=items, next_cursor=nxt)


# -- update ----------------------------------------------------------------------


def parse_if_match(if_match: str | None) -> int:
    if not if_match or if_match.strip() == "*":
        raise Problem(428, "send If-Match with the record's ETag to update it", type="precondition-required")
    tag = if_match.strip()
    tag = tag.removeprefix("W/").strip('"')
    try:
        return int(tag.removeprefix("v"))
    except ValueError as exc:
        raise Problem(412, "the If-Match ETag does not match the record", type="precondition-failed") from exc


def etag(version: int) -> str:
    return f'"v{version}"'


async def update_record(
    session: AsyncSession, *, record_id: uuid.UUID, data: RecordUpdate, if_match: str | None, actor: Actor,
    now: datetime, keyring: Keyring, settings: Settings,
) -> RecordPublic:
    expected = parse_if_match(if_match)
    loaded = await load_record(session, record_id, actor=actor, now=now)
    record = loaded.record
    decision = await authorize(session, actor=actor, action=Action.update, loaded=loaded, now=now)
    if record.destroyed_at is not None or loaded.content is None:
        raise gone(record)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        raise Problem(422, "nothing to change", type="validation-error")
    if any(changes.get(k, 0) is None for k in _NOT_NULL):
        raise Problem(422, f"{', '.join(_NOT_NULL[:-1])} and {_NOT_NULL[-1]} cannot be null (§6.4, §6.5)",
                      type="validation-error")
    if expected != record.version:
        raise Problem(412, "the record changed since you read it; fetch it again", type="precondition-failed")

    new_class = Classification(changes.get("classification", record.classification))
    old_class = Classification(record.classification)
    if new_class != old_class:
        try:
            await _check_reclassification(session, actor=actor, loaded=loaded, new_class=new_class)
        except PolicyDenied as denied:  # a refused move is a decision about the record: audit it
            # Nothing has been written yet, so committing the event alone is safe.
            add_event(session, now=now, actor=actor, action="record.reclassify", resource_type="record",
                      resource_id=record_id, decision="deny", rule=denied.extra["rule"],
                      clause=denied.extra["clause"], detail={"classification": [old_class.value, new_class.value]})
            await session.commit()
            raise
    if "custodian_id" in changes:
        await _check_custodian(session, changes["custodian_id"])
    requester = changes.get("access_requester_id", record.access_requester_id)
    await _check_requester(session, requester, new_class)
    if "consent" in changes:
        check_consent(data.consent or Consent())
    retention = _new_retention(record, changes, settings)
    try:
        _check_retention_move(actor, record=record, retention=retention, purpose=changes.get("purpose"),
                              classification=new_class, facts=loaded.facts, settings=settings)
    except PolicyDenied as denied:  # a refused move is a decision about the record: audit it
        add_event(session, now=now, actor=actor, action="record.retention", resource_type="record",
                  resource_id=record_id, decision="deny", rule=denied.extra["rule"], clause=denied.extra["clause"],
                  detail={"retention_until": [record.retention_until.isoformat(), retention.isoformat()]})
        await session.commit()
        raise

    values: dict[str, Any] = {"version": record.version + 1, "updated_at": now, "retention_until": retention}
    for key in ("classification", "purpose", "custodian_id", "access_requester_id", "review_due"):
        if key in changes:
            values[key] = changes[key].value if hasattr(changes[key], "value") else changes[key]
    dates = {"retention_until": [record.retention_until.isoformat(), retention.isoformat()],
             "review_due": [record.review_due.isoformat(), values.get("review_due", record.review_due).isoformat()]}
    if "consent" in changes:
        consent = data.consent or Consent()
        values.update(consent_status=consent.status.value, consent_obtained_at=consent.obtained_at,
                      consent_purpose_explained=consent.purpose_explained,
                      consent_refusal_reason=consent.refusal_reason)
    result = await session.execute(
        update(Record).where(col(Record.id) == record.id, col(Record.version) == expected).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise Problem(412, "the record changed since you read it; fetch it again", type="precondition-failed")

    title, content = open_content(keyring, loaded.content)
    if "title" in changes or "content" in changes:
        title = changes.get("title", title)
        content = changes.get("content", content)
        data_key = keyring.unwrap(loaded.content.key_id, loaded.content.wrapped_key, aad=_aad(record.id, "key"))
        await session.execute(
            update(RecordContent).where(col(RecordContent.record_id) == record.id).values(
                title_ct=encrypt(data_key, (title or "").encode(), _aad(record.id, "title")),
                content_ct=encrypt(data_key, (content or "").encode(), _aad(record.id, "content")),
            )
        )
    add_event(session, now=now, actor=actor, action="record.update", resource_type="record",
              resource_id=record.id, decision="allow", rule=decision.rule, clause=decision.clause,
              detail={"fields": sorted(changes), "version": record.version + 1, **dates,
                      **({"classification": [old_class.value, new_class.value]} if new_class != old_class else {})})
    await session.commit()
    await session.refresh(record)
    entitled = await entitled_ids(session, record)
    await session.commit()
    return to_public(record, title=title, content=content, entitled=entitled, decision=decision)


_NOT_NULL = ("title", "content", "classification", "purpose", "custodian_id", "retention_until", "review_due")


def _new_retention(record: Record, changes: dict[str, Any], settings: Settings) -> datetime:
    """The retention date after an update: the one asked for; else the schedule's for the new
    purpose where the date followed the schedule; else the date chosen before (§6.5)."""
    if "retention_until" in changes:
        return cast(datetime, changes["retention_until"])
    following = record.retention_until == schedule_date(record.created_at, record.purpose, settings.retention_days)
    if following and "purpose" in changes:
        return schedule_date(record.created_at, changes["purpose"].value, settings.retention_days)
    return record.retention_until


def _check_retention_move(
    actor: Actor, *, record: Record, retention: datetime, purpose: Purpose | None, classification: Classification,
    facts: RecordFacts, settings: Settings,
) -> None:
    """Whoever may update a record may keep its date or put it on the schedule; an earlier
    choice by someone entitled stays (§6.5). Any other date needs the line manager or a director."""
    current = record.retention_until
    chosen_before = current != schedule_date(record.created_at, record.purpose, settings.retention_days)
    if retention == current and chosen_before:
        return
    scheduled = schedule_date(record.created_at, purpose.value if purpose else record.purpose,
                              settings.retention_days)
    _check_retention(actor, retention=retention, scheduled=scheduled, classification=classification,
                     custodian_line_manager_id=facts.custodian_line_manager_id)


async def _check_reclassification(
    session: AsyncSession, *, actor: Actor, loaded: LoadedRecord, new_class: Classification
) -> None:
    old = loaded.facts.classification
    if old == Classification.personnel and not actor.is_director:
        raise PolicyDenied("only a director moves a record out of personnel", rule="personnel", clause="§4.3")
    if old == Classification.sensitive and not (
        actor.is_director or loaded.facts.custodian_line_manager_id == actor.id
    ):
        raise PolicyDenied("only the custodian's line manager or a director moves a record out of sensitive",
                           rule="line-manager", clause="§3.2")
    if new_class == Classification.personnel:
        subject = await session.get(Subject, loaded.record.subject_id)
        assert subject is not None
        await _check_personnel(session, actor=actor, subject=subject)


# -- destroy ---------------------------------------------------------------------


async def shred(
    session: AsyncSession, *, record_ids: list[uuid.UUID], by: uuid.UUID | None, reason: str, now: datetime
) -> int:
    """Remove content, data keys, review notes, shares and names for good; keep the tombstones (§4.6).

    Set-based, so a sweep shreds a batch in a few statements. Only records not already
    destroyed are stamped (so a concurrent destroy cannot win twice); returns how many.
    The caller audits and commits.
    """
    if not record_ids:
        return 0
    await session.execute(delete(RecordContent).where(col(RecordContent.record_id).in_(record_ids)))
    await drop_passed_on(session, record_ids)
    await session.execute(
        update(RecordReview).where(col(RecordReview.record_id).in_(record_ids)).values(note_ct=None)
    )
    result = await session.execute(
        update(Record)
        .where(col(Record.id).in_(record_ids), col(Record.destroyed_at).is_(None))
        .values(destroyed_at=now, destroyed_by=by, destroy_reason=reason, version=col(Record.version) + 1,
                updated_at=now, consent_refusal_reason=None)
        .execution_options(synchronize_session=False)
    )
    # After the records' row locks, so a package being fulfilled meanwhile is cleared too.
    await packages.forget_records(session, record_ids)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def drop_passed_on(session: AsyncSession, record_ids: list[uuid.UUID]) -> None:
    """Delete the shares and named access of shredded records (§4.6).

    Their reasons and consent references describe the record and its subject; the audit
    events of the shares and names still say who held it and when, without the reasons.
    """
    await session.execute(delete(RecordShare).where(col(RecordShare.record_id).in_(record_ids)))
    await session.execute(delete(RecordNamedAccess).where(col(RecordNamedAccess.record_id).in_(record_ids)))


def destroy_reason(*given: str | None) -> str:
    """The one reason given for a shred, from the body, the X-Reason header or the query."""
    reasons = {r for r in given if r is not None}
    if not reasons:
        raise field_error("reason", "say why the record is shredded: {\"reason\": ...} in the body, or X-Reason")
    if len(reasons) > 1:
        raise field_error("reason", "given more than once, differently; give it once")
    return reasons.pop()


async def destroy_record(
    session: AsyncSession, *, record_id: uuid.UUID, reason: str, actor: Actor, now: datetime
) -> Tombstone:
    loaded = await load_record(session, record_id, actor=actor, now=now)
    record = loaded.record
    decision = await authorize(session, actor=actor, action=Action.destroy, loaded=loaded, now=now)
    if record.destroyed_at is not None:
        raise gone(record)
    if record.legal_hold:
        raise Problem(409, "the record is under a director's legal hold and cannot be destroyed",
                      type="legal-hold", rule="legal-hold", clause="§6.5")
    if await shred(session, record_ids=[record.id], by=actor.id, reason=reason, now=now) != 1:
        await session.rollback()  # destroyed by someone else meanwhile
        await session.refresh(record)
        raise gone(record)
    add_event(session, now=now, actor=actor, action="record.destroy", resource_type="record",
              resource_id=record.id, decision="allow", rule=decision.rule, clause=decision.clause,
              detail={"classification": record.classification, "sweep": False})
    await webhooks.records_destroyed(session, records=[record], sweep=False, now=now)
    await session.commit()
    await scrub_after_shred(session)
    await session.refresh(record)
    return tombstone(record)
