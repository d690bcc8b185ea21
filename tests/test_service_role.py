"""PostgreSQL: the service's role, kmm_app, owns nothing and cannot change the audit trail.

The migrations create it and grant it what the service needs. Tests reach it with SET ROLE
inside a transaction (the suite connects as a superuser), in this run's own schema.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.exc import DBAPIError

from app.core.db import make_engine
from app.models.audit import AuditEvent, AuditSeal
from app.workflows.audit.seal import seal_all
from app.workflows.audit.verify import verify_chain
from tests.audit_helpers import count

pytestmark = pytest.mark.postgres_only

ROLE = "kmm_app"


async def _as_service_role(state, sql: str) -> None:
    async with state.engine.connect() as conn, conn.begin():
        await conn.execute(text(f"SET LOCAL ROLE {ROLE}"))
        await conn.execute(text(sql))


async def _two_sealed_events(state) -> None:
    async with state.engine.begin() as conn:
        await conn.execute(insert(AuditEvent), [{"at": state.clock.now(), "action": f"test.{i}", "emergency": False,
                                                 "detail": {}} for i in range(2)])
    await seal_all(state.engine, state.clock.now())


@pytest.mark.parametrize("table", ["audit_events", "audit_seals"])
@pytest.mark.parametrize(("statement", "refusal"), [
    ("UPDATE {t} SET {c} = {c}", "permission denied"),
    ("DELETE FROM {t}", "permission denied"),
    ("TRUNCATE {t} CASCADE", "permission denied"),
    ("ALTER TABLE {t} DISABLE TRIGGER {t}_append_only", "must be owner"),
    ("ALTER TABLE {t} DISABLE TRIGGER ALL", "must be owner"),
    ("DROP TRIGGER {t}_append_only ON {t}", "must be owner"),
])
async def test_the_service_role_cannot_change_the_trail(client, state, table, statement, refusal):
    await _two_sealed_events(state)
    column = "action" if table == "audit_events" else "hash"
    with pytest.raises(DBAPIError, match=refusal):
        await _as_service_role(state, statement.format(t=table, c=column))
    assert await count(state, AuditEvent) == 2
    assert await count(state, AuditSeal) == 2
    async with state.engine.connect() as conn:
        triggers = (await conn.execute(text(
            "SELECT count(*) FROM pg_trigger WHERE tgname = :name AND tgenabled = 'O'"
            " AND tgrelid = to_regclass(:table)"), {"name": f"{table}_append_only", "table": table})).scalar_one()
    assert triggers == 1


async def test_the_service_role_owns_nothing_and_has_only_what_it_needs(client, state):
    async with state.engine.connect() as conn:
        owned = (await conn.execute(text(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND pg_get_userbyid(c.relowner) = :role"),
            {"role": ROLE})).scalar_one()
        assert owned == 0
        rows = (await conn.execute(text(
            "SELECT c.relname, p.privilege, has_table_privilege(:role, c.oid, p.privilege) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege)"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"), {"role": ROLE})).all()
        super_ = (await conn.execute(text(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = :role"),
            {"role": ROLE})).scalar_one()
    assert super_ is False
    granted: dict[str, set[str]] = {}
    for table, privilege, has in rows:
        if has:
            granted.setdefault(table, set()).add(privilege)
    assert granted["audit_events"] == granted["audit_seals"] == {"SELECT", "INSERT"}
    assert granted["alembic_version"] == {"SELECT"}
    assert granted["records"] == granted["users"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert all("TRUNCATE" not in p for p in granted.values())
    assert set(granted) == {name for name, _, _ in rows}  # every table, nothing left out


async def test_the_service_runs_its_audit_trail_as_the_service_role(client, state, settings):
    """Events written, sealed and verified by connections that are kmm_app, as a deployed service's."""
    engine = make_engine(settings)

    @event.listens_for(engine.sync_engine, "connect")
    def _become_service_role(dbapi_conn, record):  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET ROLE {ROLE}")
        dbapi_conn.commit()

    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == ROLE
            await conn.execute(insert(AuditEvent), [{"at": state.clock.now(), "action": "test.as-service",
                                                     "emergency": False, "detail": {}}])
        assert await seal_all(engine, state.clock.now()) == 1
        report = await verify_chain(engine, state.clock.now())
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar_one()
            sealed = (await conn.execute(select(AuditSeal.event_id))).scalars().all()
    finally:
        await engine.dispose()
    assert (report.ok, report.checked, version) == (True, 1, 1)
    assert len(sealed) == 1
