"""The statements that load records: one record with its content and the facts the policy
decides from (relative to the caller), the hot path's row, and the list filtered in SQL.

Each statement is built once and bound per request (DESIGN §11).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BindParameter, Select, Table, Text, bindparam, type_coerce
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from app.core.errors import not_found
from app.core.security import TokenClaims
from app.models.auth import AuthSession
from app.models.records import Classification, Record, RecordContent, RecordNamedAccess
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.policy.decide import RecordFacts, facts_columns, records_filter
from app.workflows.auth import session_actor

RECORDS = cast(Table, Record.__table__)  # type: ignore[attr-defined]
CONTENTS = cast(Table, RecordContent.__table__)  # type: ignore[attr-defined]
_ACTOR_FIELDS = ("role", "active", "line_manager_id", "staff_type")
# The record columns a read shows (to_public), none of them encrypted: the hot path's rows
# are converted by the driver alone; the one encrypted column it shows, a refusal's reason,
# comes as stored (``sealed_refusal_reason``) and is opened by the hot path.
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


@functools.cache
def record_statement(*, with_actor: bool, core: bool = False) -> Select[Any]:
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
        record_cols = (*(RECORDS.c[name] for name in _READ_FIELDS), *CONTENTS.c,  # no name is in both
                       # stored as it is: the hot path opens it with the row's associated data (§6.6)
                       type_coerce(RECORDS.c.consent_refusal_reason, Text()).label("sealed_refusal_reason"))
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
            classification=record.classification,
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


async def load_record(session: AsyncSession, record_id: uuid.UUID, *, actor: Actor) -> LoadedRecord:
    """The record, its encrypted content and the actor-relative facts, in one query."""
    row = (
        await session.execute(record_statement(with_actor=False), {"record_id": record_id, "actor_id": actor.id})
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
            record_statement(with_actor=True),
            {"record_id": record_id, "actor_id": uuid.UUID(claims.sub), "session_id": claims.sid},
        )
    ).first()
    actor = session_actor(row[0] if row else None, row[1] if row else None, claims.sid)
    assert row is not None
    return actor, _loaded(row[2:])


ENTITLED = (
    select(RecordNamedAccess.user_id).where(col(RecordNamedAccess.record_id) == bindparam("record_id"))
    .order_by(col(RecordNamedAccess.user_id))
)


async def entitled_ids(session: AsyncSession, record: Record) -> list[uuid.UUID]:
    """Who is named on a sensitive record's list (§3.2); nobody for any other class."""
    if record.classification != Classification.sensitive:
        return []
    return list((await session.execute(ENTITLED, {"record_id": record.id})).scalars())


_SUMMARY_FIELDS = ("id", "subject_id", "classification", "purpose", "custodian_id", "version", "retention_until",
                   "review_due", "legal_hold", "created_at", "updated_at")


def _param(name: str) -> BindParameter[Any]:
    # Not "required", so the statement can be compiled once with its constant IN lists
    # rendered (app.core.db); list_records always binds every one.
    return bindparam(name, required=False)


@functools.lru_cache(maxsize=256)
def list_statement(shape: Actor, filters: tuple[str, ...], after: bool) -> Select[Any]:
    """GET /records for every actor of one shape, built once: ``:actor_id``, ``:now``, ``:limit``,
    ``:after`` and one ``:f_<name>`` per filter are bound per request (DESIGN §11)."""
    r, c = RECORDS.c, CONTENTS.c
    stmt = (
        sa_select(*(r[name] for name in _SUMMARY_FIELDS), c.key_id, c.wrapped_key, c.title_ct)
        .outerjoin(CONTENTS, c.record_id == r.id)
        .where(records_filter(shape, _param("now"), actor_id=_param("actor_id")), r.destroyed_at.is_(None))
        .order_by(r.id)
        .limit(_param("limit"))
    )
    for name in filters:
        stmt = stmt.where(r[name] == _param(f"f_{name}"))
    if after:
        stmt = stmt.where(r.id > _param("after"))
    return stmt


def list_shape(actor: Actor) -> Actor:
    """What the list filter depends on (kind, role, scopes, active), with the ids left out."""
    return dataclasses.replace(actor, id=uuid.UUID(int=0), line_manager_id=None, staff_type=None, session_id=None)

