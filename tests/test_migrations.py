"""The migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table)
from app.core.db import UTCDateTime
from app.core.migrations import alembic_config, head_revisions, upgrade
from tests.databases import fresh_database, sync_engine


def _is_utc_type_noise(diff: Any) -> bool:
    """UTCDateTime is a TypeDecorator over DateTime(timezone=True); a database reflects
    only the DateTime/TIMESTAMP under it. Alembic compares the implementation type, so
    with today's versions no such difference arises (checked on both backends). Should a
    version start reporting decorator-vs-implementation, that is not a schema difference
    and is ignored here; any other type change is still reported."""
    if not isinstance(diff, list):  # modify_* differences come as a list of tuples
        return False
    return all(
        d[0] == "modify_type"
        and isinstance(d[6], UTCDateTime)
        and any(name in str(d[5]).upper() for name in ("DATETIME", "TIMESTAMP"))
        for d in diff
    )


def _differences(settings) -> list[Any]:  # type: ignore[no-untyped-def]
    engine = sync_engine(settings)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return [d for d in compare_metadata(ctx, SQLModel.metadata) if not _is_utc_type_noise(d)]
    finally:
        engine.dispose()


def test_models_and_migrations_agree(tmp_path):
    with fresh_database(tmp_path) as settings:
        upgrade(settings)
        assert _differences(settings) == []


def test_the_check_notices_a_missing_migration(tmp_path):
    """The comparison above can fail: with migrations that change the schema undone (0012 and
    every later one; some later ones change data only), it reports the difference."""
    with fresh_database(tmp_path) as settings:
        upgrade(settings)
        command.downgrade(alembic_config(settings), "0011")
        assert _differences(settings) != []


@pytest.mark.slow  # every migration down to base and up again
def test_downgrade_to_base_and_up_again(tmp_path):
    with fresh_database(tmp_path) as settings:
        upgrade(settings)
        command.downgrade(alembic_config(settings), "base")
        engine = sync_engine(settings)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        engine.dispose()
        upgrade(settings)
        assert _differences(settings) == []


def test_there_is_one_head():
    assert len(head_revisions()) == 1


def _as_of(model, *names):  # type: ignore[no-untyped-def]
    """The model's table with only these columns: an insert into an older schema sends no
    default of a column added since."""
    from sqlalchemy import Column, MetaData, Table

    table = model.__table__
    return Table(table.name, MetaData(), *(Column(n, table.c[n].type, primary_key=table.c[n].primary_key)
                                           for n in names))


def test_records_without_dates_get_the_schedule_s(tmp_path):
    """Records made before every record had both dates get them from the schedule (§6.4, §6.5)."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from alembic.script import ScriptDirectory
    from sqlalchemy import insert, select

    from app.models.records import Record
    from app.models.subjects import Subject
    from app.models.users import User

    with fresh_database(tmp_path, retention_days={"service_delivery": 10, "funder_reporting": 20}) as settings:
        before = ScriptDirectory.from_config(alembic_config(settings)).get_revision("0010").down_revision
        upgrade(settings, str(before))
        made = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
        verified = made + timedelta(days=3)
        user_id, subject_id = uuid.uuid4(), uuid.uuid4()
        rows = {uuid.uuid4(): ("service_delivery", None, None, None),
                uuid.uuid4(): ("funder_reporting", None, None, verified),
                uuid.uuid4(): ("equal_opportunities_monitoring", None, None, None),
                uuid.uuid4(): ("service_delivery", made + timedelta(days=1), made + timedelta(days=2), None)}
        engine = sync_engine(settings)
        try:
            with engine.begin() as conn:
                conn.execute(insert(_as_of(User, "id", "email", "full_name", "role", "active", "password_hash",
                                           "created_at")).values(
                    id=user_id, email="m@test.kmm", full_name="M", role="colleague", active=True,
                    password_hash="x", created_at=made))
                conn.execute(insert(Subject.__table__).values(  # type: ignore[attr-defined]
                    id=subject_id, kind="individual", name="S", category="service_user", officers=[],
                    created_at=made))
                for rid, (purpose, retention, review, last) in rows.items():
                    conn.execute(insert(Record.__table__).values(  # type: ignore[attr-defined]
                        id=rid, subject_id=subject_id, classification="general", purpose=purpose,
                        custodian_id=user_id, consent_status="pending", consent_purpose_explained=False,
                        legal_hold=False, version=1, created_at=made, updated_at=made,
                        retention_until=retention, review_due=review, last_verified_at=last))
            upgrade(settings)
            with engine.connect() as conn:
                t = Record.__table__  # type: ignore[attr-defined]
                got = {r.id: (r.retention_until, r.review_due)
                       for r in conn.execute(select(t.c.id, t.c.retention_until, t.c.review_due))}
        finally:
            engine.dispose()
        year = timedelta(days=settings.review_interval_days)
        ids = list(rows)
        assert got == {
            ids[0]: (made + timedelta(days=10), made + year),
            ids[1]: (made + timedelta(days=20), verified + year),
            ids[2]: (made + timedelta(days=6 * 365), made + year),  # not in this schedule: the default
            ids[3]: (made + timedelta(days=1), made + timedelta(days=2)),  # dates already set stay
        }
        assert _differences(settings) == []


def test_unbound_encrypted_text_is_bound_to_its_row_and_back(tmp_path):
    """Values stored in the unbound ``kmm1`` format become ``kmm2``, bound to their row and
    column (§6.6); downgrade gives ``kmm1`` back."""
    import uuid
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic.script import ScriptDirectory
    from sqlalchemy import insert, text

    from app.core.crypto import Keyring
    from app.core.encrypted import decrypt_text, encrypt_text, row_aad, unseal
    from app.models.records import Record, RecordShare
    from app.models.subjects import Subject
    from app.models.users import User

    with fresh_database(tmp_path) as settings:
        before = ScriptDirectory.from_config(alembic_config(settings)).get_revision("0014").down_revision
        upgrade(settings, str(before))
        keyring = Keyring(settings.read_keyring())
        made = datetime(2026, 3, 4, tzinfo=UTC)
        user_id, subject_id, rid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        engine = sync_engine(settings)
        try:
            with engine.begin() as conn:
                conn.execute(insert(_as_of(User, "id", "email", "full_name", "role", "active", "password_hash",
                                           "created_at")).values(
                    id=user_id, email="m@test.kmm", full_name="M", role="colleague", active=True,
                    password_hash="x", created_at=made))
                conn.execute(insert(_as_of(Subject, "id", "kind", "name", "category", "officers", "created_at"))
                             .values(id=subject_id, kind="individual", name="S", category="service_user",
                                     officers=[], created_at=made))
                conn.execute(insert(_as_of(Record, "id", "subject_id", "classification", "purpose", "custodian_id",
                                           "consent_status", "consent_purpose_explained", "legal_hold", "version",
                                           "created_at", "updated_at", "retention_until", "review_due")).values(
                    id=rid, subject_id=subject_id, classification="general", purpose="service_delivery",
                    custodian_id=user_id, consent_status="pending", consent_purpose_explained=False,
                    legal_hold=True, version=1, created_at=made, updated_at=made, retention_until=made,
                    review_due=made))
                conn.execute(text("UPDATE records SET legal_hold_reason = :v"),
                             {"v": encrypt_text(keyring, "held-marker")})
                shares = sa.table("record_shares", *(sa.column(c, sa.Uuid()) for c in ("record_id", "user_id",
                                                                                      "shared_by")),
                                  sa.column("shared_at", RecordShare.__table__.c.shared_at.type),  # type: ignore[attr-defined]
                                  sa.column("reason", sa.Text()))
                conn.execute(insert(shares).values(record_id=rid, user_id=user_id, shared_by=user_id, shared_at=made,
                                                   reason=encrypt_text(keyring, "share-marker")))

            def stored() -> tuple[str, str]:
                with engine.connect() as conn:
                    return (conn.execute(text("SELECT legal_hold_reason FROM records")).scalar_one(),
                            conn.execute(text("SELECT reason FROM record_shares")).scalar_one())

            upgrade(settings)
            held, shared = stored()
            assert held.startswith("kmm2:") and shared.startswith("kmm2:")
            assert unseal(keyring, held, row_aad("records", "legal_hold_reason", [rid])) == "held-marker"
            assert unseal(keyring, shared, row_aad("record_shares", "reason", [rid, user_id])) == "share-marker"
            command.downgrade(alembic_config(settings), str(before))
            held, shared = stored()
            assert (decrypt_text(keyring, held), decrypt_text(keyring, shared)) == ("held-marker", "share-marker")
        finally:
            engine.dispose()


def test_who_chose_each_password_comes_from_the_trail(tmp_path):
    """0017 sets ``credentials_set_by`` of accounts already there from the audit trail: the
    director of the last allowed ``account.create`` or ``account.password_reset`` about each
    (§3.2, §1.8); an account's own change, a refusal and an account made on the server set
    nothing."""
    import uuid
    from datetime import UTC, datetime

    from alembic.script import ScriptDirectory
    from sqlalchemy import insert, select

    from app.models.audit import AuditEvent
    from app.models.users import User

    with fresh_database(tmp_path) as settings:
        before = ScriptDirectory.from_config(alembic_config(settings)).get_revision("0017").down_revision
        upgrade(settings, str(before))
        made = datetime(2026, 3, 4, tzinfo=UTC)
        boss, other, created, reset, own, refused, server = (uuid.uuid4() for _ in range(7))
        users = _as_of(User, "id", "email", "full_name", "role", "active", "password_hash", "created_at")

        def event(action: str, actor: uuid.UUID | None, about: uuid.UUID, decision: str = "allow") -> dict:
            return {"at": made, "action": action, "actor_id": actor, "actor_kind": "user" if actor else None,
                    "actor_role": "director" if actor else None, "resource_type": "user",
                    "resource_id": str(about), "decision": decision, "emergency": False, "detail": {}}

        engine = sync_engine(settings)
        try:
            with engine.begin() as conn:
                for n, user_id in enumerate((boss, other, created, reset, own, refused, server)):
                    conn.execute(insert(users).values(id=user_id, email=f"u{n}@test.kmm", full_name=f"U{n}",
                                                      role="director" if n < 2 else "colleague", active=True,
                                                      password_hash="x", created_at=made))
                conn.execute(insert(AuditEvent.__table__), [  # type: ignore[attr-defined]
                    event("account.create", None, boss),
                    event("account.create", boss, other),
                    event("account.create", boss, created),
                    event("account.create", boss, reset),
                    event("account.password_reset", other, reset),
                    event("account.create", boss, own),
                    event("account.password_change", own, own),
                    event("account.create", other, refused),
                    event("account.password_reset", boss, refused, decision="deny"),
                    event("account.create", None, server),
                    event("account.update", boss, server),
                ])
            upgrade(settings)
            with engine.connect() as conn:
                t = User.__table__  # type: ignore[attr-defined]
                got = dict(conn.execute(select(t.c.id, t.c.credentials_set_by)).all())
        finally:
            engine.dispose()
        assert got == {boss: None, other: boss, created: boss, reset: other, own: boss, refused: other, server: None}
        assert _differences(settings) == []


def test_why_each_handler_holds_its_report_comes_from_the_trail(tmp_path):
    """0018 sets ``handler_basis`` of reports already there from the audit trail: the latest of
    each report's create or rerouted event (its ``routed_to``) and assign event (§1.8, §7.1); a
    report with none keeps NULL."""
    import uuid
    from datetime import UTC, datetime

    from alembic.script import ScriptDirectory
    from sqlalchemy import Column, Text, insert, select

    from app.models.audit import AuditEvent
    from app.models.breach_reports import BreachReport
    from app.models.users import User

    with fresh_database(tmp_path) as settings:
        before = ScriptDirectory.from_config(alembic_config(settings)).get_revision("0018").down_revision
        upgrade(settings, str(before))
        made = datetime(2026, 3, 4, tzinfo=UTC)
        boss = uuid.uuid4()
        routed, rerouted, assigned, silent = (uuid.uuid4() for _ in range(4))
        users = _as_of(User, "id", "email", "full_name", "role", "active", "password_hash", "created_at")
        reports = _as_of(BreachReport, "id", "kind", "status", "handler_id", "created_at", "updated_at")
        reports.append_column(Column("description", Text()))  # as stored: the ciphertext's text

        def event(action: str, about: uuid.UUID, **detail: str) -> dict:
            return {"at": made, "action": action, "actor_id": boss, "actor_kind": "user", "actor_role": "director",
                    "resource_type": "breach_report", "resource_id": str(about), "decision": "allow",
                    "emergency": False, "detail": detail}

        engine = sync_engine(settings)
        try:
            with engine.begin() as conn:
                conn.execute(insert(users).values(id=boss, email="b@test.kmm", full_name="B", role="director",
                                                  active=True, password_hash="x", created_at=made))
                for report_id in (routed, rerouted, assigned, silent):
                    conn.execute(insert(reports).values(
                        id=report_id, kind="grievance", status="open", handler_id=boss,
                        description="kmm2:x:y", created_at=made, updated_at=made))
                conn.execute(insert(AuditEvent.__table__), [  # type: ignore[attr-defined]
                    event("breach_report.create", routed, routed_to="line_manager"),
                    event("breach_report.create", rerouted, routed_to="line_manager"),
                    event("breach_report.rerouted", rerouted, routed_to="director"),
                    event("breach_report.create", assigned, routed_to="director"),
                    event("breach_report.assign", assigned),
                    event("breach_report.finding", assigned),
                ])
            upgrade(settings)
            with engine.connect() as conn:
                t = BreachReport.__table__  # type: ignore[attr-defined]
                got = dict(conn.execute(select(t.c.id, t.c.handler_basis)).all())
        finally:
            engine.dispose()
        assert got == {routed: "line_manager", rerouted: "director", assigned: "assigned", silent: None}
        assert _differences(settings) == []
