"""Migration 0007 splits packages stored whole into items (a record shredded meanwhile keeps
no content) and gives them a retention date; its downgrade puts the live items back."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import col, select

from app.core.crypto import decrypt
from app.core.migrations import alembic_config, upgrade
from app.core.state import AppState
from app.demo import seed_demo
from app.models.access_requests import AccessPackageSealed, AccessRequest
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.access_requests import fulfilment
from app.workflows.access_requests import package as package_flow
from tests import dataprot as dp
from tests.databases import fresh_database, sync_engine


def _blob(state: AppState, sealed_row) -> dict:  # type: ignore[no-untyped-def]
    rid = sealed_row.request_id
    rid = rid if isinstance(rid, uuid.UUID) else uuid.UUID(str(rid))
    key = state.keyring.unwrap(sealed_row.key_id, bytes(sealed_row.wrapped_key), aad=package_flow.aad(rid, "key"))
    return dict(json.loads(decrypt(key, bytes(sealed_row.package_ct), package_flow.aad(rid, "package"))))


@pytest.mark.slow  # migrates a database of its own down and up again
async def test_0007_splits_packages_stored_whole_and_downgrade_joins_them(tmp_path, state, clock):
    with dp.restore_keyring(state), fresh_database(tmp_path) as settings:
        await asyncio.to_thread(upgrade, settings)
        fresh = AppState.build(settings, clock=clock)
        try:
            # Two packages: the demo's personnel one, and its approved subject access request fulfilled.
            await seed_demo(fresh)
            async with fresh.sessionmaker() as s:
                director = (await s.execute(select(User).where(col(User.role) == "director"))).scalars().first()
                approved = (await s.execute(select(AccessRequest).where(col(AccessRequest.status) == "approved")
                                            )).scalar_one()
                assert director is not None
                await fulfilment.fulfil_request(s, request_id=approved.id, actor=Actor.for_user(director),
                                                now=clock.now(), keyring=fresh.keyring, settings=settings)
            async with fresh.sessionmaker() as s:
                before = {}
                for sealed in (await s.execute(select(AccessPackageSealed))).scalars().all():
                    package = await package_flow.load_package(s, fresh.keyring, sealed.request_id)
                    assert package is not None and package.records
                    before[sealed.request_id] = package
            assert len(before) == 2
            kept, shredded_in = approved.id, next(rid for rid in before if rid != approved.id)
            shredded = before[shredded_in].records[0]
            await fresh.engine.dispose()

            # Down: each package is stored whole again, with its records inside.
            await asyncio.to_thread(command.downgrade, alembic_config(settings), "0007-1")
            engine = sync_engine(settings)
            try:
                with engine.connect() as conn:
                    for row in conn.execute(text("SELECT * FROM access_request_packages")).all():
                        whole = _blob(fresh, row)
                        rid = uuid.UUID(whole["request_id"])
                        assert [r["id"] for r in whole["records"]] == [str(r.id) for r in before[rid].records]
                        assert "retention_until" not in whole
                    # A record shredded while packages were stored whole: its content is still in the blob.
                    conn.execute(text("UPDATE records SET destroyed_at = :at WHERE id = :id"),
                                 {"at": clock.now(), "id": shredded.id.hex if settings.is_sqlite else shredded.id})
                    conn.commit()
            finally:
                engine.dispose()

            # Up again: split into items; the shredded record's content is gone from storage.
            await asyncio.to_thread(upgrade, settings)
            async with fresh.sessionmaker() as s:
                after = {}
                for sealed in (await s.execute(select(AccessPackageSealed))).scalars().all():
                    assert sealed.retention_until == sealed.generated_at + timedelta(
                        days=settings.package_retention_days)
                    assert _blob(fresh, sealed)["records"] == []
                    after[sealed.request_id] = await package_flow.load_package(s, fresh.keyring,
                                                                               sealed.request_id)
            assert after[kept] is not None and after[kept].records == before[kept].records
            assert after[kept].destroyed == []
            gone = after[shredded_in]
            assert gone is not None
            assert gone.records == before[shredded_in].records[1:]
            assert [t.id for t in gone.destroyed] == [shredded.id]
            items = await dp.raw_rows(fresh, "access_package_items")
            assert len(items) == sum(len(p.records) for p in before.values())
            assert [i["item_ct"] is None for i in items].count(True) == 1
        finally:
            await fresh.engine.dispose()
