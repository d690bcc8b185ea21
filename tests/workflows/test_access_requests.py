"""Access-request workflow internals: the conditional transition, the compliance check,
the sealed package and the demo seed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func
from sqlmodel import col, select

from app.core.crypto import DecryptionError
from app.core.errors import Problem
from app.demo import seed_demo
from app.models.access_requests import AccessDecision, AccessPackageSealed, AccessRequest
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.access_requests import deadlines, fulfilment, transitions
from app.workflows.access_requests import package as package_flow
from app.workflows.compliance import checks
from tests.factory import Factory
from tests.routers.test_access_requests import _decide, _log, _subject, letter


async def test_a_decision_on_a_stale_read_cannot_overwrite_a_newer_one(client, factory: Factory, state, clock):
    director = await factory.user("director")
    colleague = await factory.user("colleague", manager=director)
    sam = await _subject(factory, colleague)
    made = await _log(client, colleague, letter(sam, clock))
    async with state.sessionmaker() as s:
        stale = await s.get(AccessRequest, uuid.UUID(made["id"]))
        await s.commit()
    assert stale is not None and stale.status == "received"
    assert (await _decide(client, director, made["id"], approve=True)).status_code == 200
    # A second decision that read the request before the first committed: its UPDATE matches no row.
    async with state.sessionmaker() as s:
        with pytest.raises(Problem) as err:
            await transitions.apply_decision(s, request=stale, actor=Actor.for_user(director.user),
                                             now=clock.now(), data=AccessDecision(approve=False, reason="late"))
    assert err.value.status == 409
    async with state.sessionmaker() as s:
        fresh = await s.get(AccessRequest, uuid.UUID(made["id"]))
        assert fresh is not None and (fresh.status, fresh.decision_reason) == ("approved",
                                                                               "letter checked against the file")


async def test_compliance_lists_overdue_requests_in_one_query(client, factory: Factory, state, clock):
    director = await factory.user("director")
    colleague = await factory.user("colleague", manager=director)
    sam = await _subject(factory, colleague)
    old = await _log(client, colleague, letter(sam, clock, received_at=(clock.now() - timedelta(days=20)).isoformat()))
    older = await _log(client, colleague, letter(sam, clock,
                                                 received_at=(clock.now() - timedelta(days=30)).isoformat()))
    done = await _log(client, colleague, letter(sam, clock, received_at=(clock.now() - timedelta(days=20)).isoformat()))
    await _log(client, colleague, letter(sam, clock))  # not yet due
    assert (await _decide(client, director, done["id"], approve=False)).status_code == 200
    assert (await _decide(client, director, old["id"], approve=True)).status_code == 200  # approved, not fulfilled

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    check = checks()["access_requests_overdue"]
    event.listen(state.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with state.sessionmaker() as s:
            ids = await check(s, clock.now(), state.settings)
    finally:
        event.remove(state.engine.sync_engine, "before_cursor_execute", count)
    assert ids == [older["id"], old["id"]]  # by due date
    assert len([st for st in statements if "access_requests" in st]) == 1
    clock.advance(days=15)
    async with state.sessionmaker() as s:
        assert len(await check(s, clock.now(), state.settings)) == 3


async def test_the_stored_package_opens_only_for_its_own_request(client, factory: Factory, state, clock):
    director = await factory.user("director")
    sam = await _subject(factory, director)
    made = await _log(client, director, letter(sam, clock))
    await _decide(client, director, made["id"])
    assert (await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)).status_code == 200
    async with state.sessionmaker() as s:
        sealed = await s.get(AccessPackageSealed, uuid.UUID(made["id"]))
    assert sealed is not None
    assert package_flow.open_package(state.keyring, sealed).request_id == uuid.UUID(made["id"])
    moved = AccessPackageSealed(**{**sealed.model_dump(), "request_id": uuid.uuid4()})
    with pytest.raises(DecryptionError):
        package_flow.open_package(state.keyring, moved)


async def test_demo_seed_has_one_request_in_each_state_and_is_idempotent(client, state, clock):
    await seed_demo(state)
    await seed_demo(state)
    async with state.sessionmaker() as s:
        rows = list((await s.execute(select(AccessRequest))).scalars())
        packages = (await s.execute(select(func.count()).select_from(AccessPackageSealed))).scalar_one()
    assert sorted(r.status for r in rows) == ["approved", "fulfilled", "received", "refused", "withdrawn"]
    overdue = [r for r in rows if deadlines.is_overdue(r, clock.now())]
    assert [r.status for r in overdue] == ["received"]
    assert packages == 1
    fulfilled = next(r for r in rows if r.status == "fulfilled")
    assert fulfilled.kind == "personnel_access"
    # The employee it is about may download it.
    async with state.sessionmaker() as s:
        alice = (await s.execute(select(User).where(col(User.email).startswith("alice@")))).scalar_one()
        package = await fulfilment.download_package(s, request_id=fulfilled.id, actor=Actor.for_user(alice),
                                                    now=clock.now(), keyring=state.keyring)
    assert package.records and all(r.classification == "personnel" for r in package.records)
