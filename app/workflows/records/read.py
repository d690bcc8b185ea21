"""Reading records: the fast and the general read of one record, and the list (§3.1, DESIGN §11).

Every read is an audit event; the hot path (``read_record_fast``, ``list_records``) reads
plain rows on autocommit connections and commits its event through the group-commit writer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.crypto import Keyring, decrypt
from app.core.db import RowSource
from app.core.encrypted import Sealed, installed_keyring, open_value, opening
from app.core.errors import not_found
from app.core.pagination import CursorCodec, Page, page_of
from app.core.security import TokenClaims
from app.models.records import ConsentStatus, RecordPublic, RecordSummary
from app.policy.actor import Actor
from app.policy.decide import RecordFacts, decide
from app.policy.rules import Action
from app.workflows.audit.trail import AuditWriter, event_row
from app.workflows.auth import load_actor, row_actor
from app.workflows.records.content import aad, open_content
from app.workflows.records.decisions import allow_flags, authorize
from app.workflows.records.queries import (
    ENTITLED,
    LoadedRecord,
    entitled_ids,
    list_shape,
    list_statement,
    load_actor_and_record,
    load_record,
    record_statement,
)
from app.workflows.records.shape import gone, summary_fields, to_public


async def read_record(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime, keyring: Keyring
) -> RecordPublic:
    loaded = await load_record(session, record_id, actor=actor)
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
        loaded = await load_record(session, record_id, actor=actor)
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
        row = await conn.first(record_statement(with_actor=True, core=True),
                               {"record_id": record_id, "actor_id": uuid.UUID(claims.sub), "session_id": claims.sid})
        actor = row_actor(row, claims)  # 401 unless the session is live and the account active
        assert row is not None
        if row.id is None:
            raise not_found("record")
        if row.record_id is None or row.destroyed_at is not None:
            return None  # destroyed: the general path audits the read and answers 410
        entitled = await conn.scalars(ENTITLED, {"record_id": row.id}) if row.classification == "sensitive" else []
    facts = RecordFacts(
        classification=row.classification, custodian_id=row.custodian_id,
        custodian_line_manager_id=row.custodian_lm, employee_line_manager_id=row.employee_lm,
        shared_with_actor=bool(row.shared), actor_named=bool(row.named), actor_grant_expires_at=row.grant,
        custodian_line_manager_since=row.custodian_lm_since, employee_line_manager_since=row.employee_lm_since,
        subject_user_id=row.subject_user_id,
    )
    decision = decide(actor, Action.read, facts, now)
    if not decision.allowed:
        return None
    title, content = open_content(keyring, row)
    reason = None
    if row.consent_status == ConsentStatus.refused:  # bound to its row and column, as EncryptedText opens it (§6.6)
        reason = open_value(installed_keyring(), _sealed(row.sealed_refusal_reason), "records",
                            "consent_refusal_reason", [row.id])
    await audit.write(event_row(now=now, actor=actor, action="record.read", resource_type="record",
                                resource_id=row.id, decision="allow", rule=decision.rule, clause=decision.clause,
                                **allow_flags(decision, row.classification)))
    return to_public(row, title=title, content=content, entitled=entitled, decision=decision, refusal_reason=reason)


def _sealed(stored: str | None) -> Sealed | None:
    return None if stored is None else Sealed(stored)


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
    return to_public(loaded.record, title=title, content=content, entitled=entitled, decision=decision,
                     refusal_reason=loaded.record.consent_refusal_reason)


async def list_records(
    rows: RowSource, audit: AuditWriter, *, actor: Actor, now: datetime, keyring: Keyring, cursors: CursorCodec,
    limit: int, cursor: str | None, filters: dict[str, Any],
) -> Page[RecordSummary]:
    """The records the actor may read, filtered in SQL: one statement (built once per kind
    of actor) on the hot path's connections, plain rows; one audit event for the list,
    committed by the group-commit writer before the page is returned."""
    given = {name: value for name, value in filters.items() if value is not None}
    params: dict[str, Any] = {"actor_id": actor.id, "now": now, "limit": limit + 1,
                              **{f"f_{name}": value for name, value in given.items()}}
    if cursor:
        (after,) = cursors.decode("records", cursor)
        params["after"] = uuid.UUID(str(after))
    stmt = list_statement(list_shape(actor), tuple(sorted(given)), "after" in params)
    async with rows.connection() as conn:
        found = await conn.all(stmt, params)

    def summary(row: Any) -> RecordSummary:
        title = None
        if row.wrapped_key is not None:
            with opening("record_contents", "wrapped_key", [row.id]):  # bound to its record (§6.6)
                key = keyring.unwrap(row.key_id, row.wrapped_key, aad=aad(row.id, "key"))
            with opening("record_contents", "title_ct", [row.id]):
                title = decrypt(key, row.title_ct, aad(row.id, "title")).decode()
        return RecordSummary(**summary_fields(row), title=title)

    page = page_of(found, summary, cursors=cursors, scope="records", limit=limit, key=lambda last: [str(last.id)])
    await audit.write(event_row(now=now, actor=actor, action="record.list", resource_type="record",
                                decision="allow", rule="policy-filter", clause="§3.1",
                                detail={"count": len(page.items), "filters": sorted(given),
                                        "record_ids": [str(item.id) for item in page.items]}))
    return page
