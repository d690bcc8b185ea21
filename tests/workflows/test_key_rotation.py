"""`kmm rotate-key`: re-wrap every data key under a new master key while the service reads (§6.6)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from app.core.config import ConfigurationError
from app.core.crypto import Keyring, key_id
from app.core.encrypted import key_prefix
from app.core.state import AppState
from app.main import create_app
from app.workflows import key_rotation
from app.workflows.records.content import aad as record_aad
from tests import dataprot as dp


@pytest.fixture
def keep_keyring(state):  # type: ignore[no-untyped-def]
    with dp.restore_keyring(state):
        yield


async def _contents(state: AppState) -> dict[str, dict]:  # type: ignore[type-arg]
    return {str(r["record_id"]).replace("-", ""): r for r in await dp.raw_rows(state, "record_contents")}


async def _rotate(settings, **kw) -> key_rotation.RotationReport:  # type: ignore[no-untyped-def]
    """What `kmm rotate-key` does, in a state of its own (as the command's own process would)."""
    state = AppState.build(dp.settings_with(settings, secrets_file=settings.secrets_file))
    try:
        return await key_rotation.rotate_key(state, batch_size=2, **kw)
    finally:
        await state.engine.dispose()


async def _read_all(app, people_and_ids) -> list[str]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        out = []
        for person, rid in people_and_ids:
            r = await c.get(f"/records/{rid}", headers=person.headers)
            assert r.status_code == 200, r.text
            out.append(r.json()["content"])
        return out


async def test_rotation_rewraps_keys_only_and_every_process_keeps_reading(  # type: ignore[no-untyped-def]
    client, factory, settings, clock, tmp_path, keep_keyring
) -> None:
    own = dp.settings_with(settings, secrets_file=dp.copy_secrets(settings, tmp_path))
    running = create_app(own, clock=clock, configure_logs=False)  # the service, started before rotation
    running_state: AppState = running.state.kmm
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    ids = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=running), base_url="http://test") as c:
        for i in range(5):
            r = await c.post("/records", headers=alice.headers, json={
                "subject_id": subj["id"], "title": f"t{i}", "content": f"content {i}",
                "classification": "confidential", "purpose": "service_delivery"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = await c.post(f"/records/{ids[0]}/legal-hold", headers=director.headers,
                         json={"legal_hold": True, "reason": "solicitor's letter"})
        assert r.status_code == 200
    first_key = running_state.keyring.current_id
    before = await _contents(running_state)

    report = await _rotate(own)

    new_key = report.current_key_id
    assert new_key != first_key and report.key_ids == [new_key, first_key]
    assert report.data_keys_rewrapped == 5 and report.values_reencrypted["records.legal_hold_reason"] == 1
    after = await _contents(running_state)
    for rid, row in after.items():
        assert row["key_id"] == new_key and bytes(row["wrapped_key"]) != bytes(before[rid]["wrapped_key"])
        # content untouched: the very same ciphertext bytes
        assert bytes(row["title_ct"]) == bytes(before[rid]["title_ct"])
        assert bytes(row["content_ct"]) == bytes(before[rid]["content_ct"])
    (held,) = await dp.raw_rows(running_state, "records", "WHERE legal_hold_reason IS NOT NULL")
    assert held["legal_hold_reason"].startswith(key_prefix(new_key))
    secrets = json.loads(own.secrets_file.read_text())
    assert len(secrets["master_keys"]) == 2 and "jwt_secret" in secrets

    # the running process has never seen the new key: it reloads on meeting it
    running_state.install_keys()  # as in that process
    assert new_key not in running_state.keyring
    readers = [(alice, rid) for rid in ids]
    assert await _read_all(running, readers) == [f"content {i}" for i in range(5)]
    assert new_key in running_state.keyring and running_state.keyring.current_id == new_key
    async with running_state.sessionmaker() as session:
        from app.models.records import Record

        assert (await session.get(Record, uuid.UUID(str(held["id"])))).legal_hold_reason == "solicitor's letter"  # type: ignore[union-attr]
    # ...and now wraps new records under it
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=running), base_url="http://test") as c:
        r = await c.post("/records", headers=alice.headers, json={
            "subject_id": subj["id"], "title": "t5", "content": "content 5",
            "classification": "confidential", "purpose": "service_delivery"})
        ids.append(r.json()["id"])
    assert (await _contents(running_state))[ids[-1].replace("-", "")]["key_id"] == new_key

    # a process started after the rotation
    fresh = create_app(dp.settings_with(own), clock=clock, configure_logs=False)
    assert await _read_all(fresh, [(alice, rid) for rid in ids]) == [f"content {i}" for i in range(6)]

    # a second rotation retires the oldest key; everything still reads, old process and new
    report2 = await _rotate(own, retire=True)
    assert report2.retired_key_ids == [first_key]
    assert report2.key_ids == [report2.current_key_id, new_key]
    assert {key_id(dp.key_rotation_decode(k)) for k in json.loads(own.secrets_file.read_text())["master_keys"]} \
        == {report2.current_key_id, new_key}
    assert await _read_all(running, [(alice, rid) for rid in ids]) == [f"content {i}" for i in range(6)]
    assert first_key not in running_state.keyring  # reloaded: the retired key is gone from memory too
    newest = create_app(dp.settings_with(own), clock=clock, configure_logs=False)
    assert await _read_all(newest, [(alice, rid) for rid in ids]) == [f"content {i}" for i in range(6)]
    await key_rotation.verify_master_keys(newest.state.kmm)
    for app in (running, fresh, newest):
        await app.state.kmm.engine.dispose()


async def test_retire_drops_only_keys_nothing_uses(client, factory, settings, tmp_path, keep_keyring) -> None:  # type: ignore[no-untyped-def]
    own = dp.settings_with(settings, secrets_file=dp.copy_secrets(settings, tmp_path))
    state = AppState.build(own)
    try:
        alice = await factory.user("colleague")
        subj = await factory.subject(by=alice)
        rec = await factory.record(by=alice, subject=subj, content="kept")
        first = state.keyring.current_id
        await key_rotation.rotate_key(state)
        await key_rotation.rotate_key(state)
        assert len(state.keyring.key_ids) == 3 and state.keyring.key_ids[-1] == first
        assert await key_rotation.references(state, first) == 0
        # a process that had not reloaded wraps a record under the oldest key meanwhile
        stale = Keyring({first: state.keyring.key(first)})
        (row,) = await dp.raw_rows(state, "record_contents")
        data_key = state.keyring.unwrap(row["key_id"], bytes(row["wrapped_key"]), aad=record_aad(rec_id(rec), "key"))
        _, wrapped = stale.wrap(data_key, aad=record_aad(rec_id(rec), "key"))
        async with state.engine.begin() as conn:
            await conn.execute(text("UPDATE record_contents SET key_id = :k, wrapped_key = :w"),
                               {"k": first, "w": wrapped})
        assert await key_rotation.references(state, first) == 1
        # retiring re-wraps first, so the key is unused by then and goes; the record reads
        report = await key_rotation.rotate_key(state, retire=True)
        assert report.data_keys_rewrapped == 1 and first in report.retired_key_ids
        assert first not in state.keyring
        (row,) = await dp.raw_rows(state, "record_contents")
        assert row["key_id"] == state.keyring.current_id
        assert state.keyring.unwrap(row["key_id"], bytes(row["wrapped_key"]),
                                    aad=record_aad(rec_id(rec), "key")) == data_key
    finally:
        await state.engine.dispose()


def rec_id(rec: dict) -> uuid.UUID:  # type: ignore[type-arg]
    return uuid.UUID(rec["id"])


async def test_keys_from_the_environment_cannot_be_rotated_in_place(settings, keep_keyring) -> None:  # type: ignore[no-untyped-def]
    env = dp.settings_with(settings, master_keys=[SecretStr(key_rotation.encode_key(key_rotation.generate_key()))])
    state = AppState.build(env)
    try:
        with pytest.raises(key_rotation.KeysInEnvironment, match="KMM_MASTER_KEYS"):
            await key_rotation.rotate_key(state)
    finally:
        await state.engine.dispose()


async def test_a_wrong_master_key_refuses_to_start(client, factory, settings, clock, keep_keyring) -> None:  # type: ignore[no-untyped-def]
    wrong = dp.settings_with(settings, master_keys=[SecretStr(key_rotation.encode_key(key_rotation.generate_key()))])
    app = create_app(wrong, clock=clock, configure_logs=False)
    # an empty database has nothing to check: it starts
    async with app.router.lifespan_context(app):
        pass
    alice = await factory.user("colleague")
    subj = await factory.subject(by=alice)
    await factory.record(by=alice, subject=subj)
    before = await dp.raw_rows(app.state.kmm, "record_contents")
    with pytest.raises(ConfigurationError, match="cannot open the stored data keys.*refusing to start"):
        async with app.router.lifespan_context(app):
            pytest.fail("the service started with the wrong master key")
    assert await dp.raw_rows(app.state.kmm, "record_contents") == before
    # the right keys start
    right = create_app(dp.settings_with(settings), clock=clock, configure_logs=False)
    async with right.router.lifespan_context(right):
        pass
    for a in (app, right):
        await a.state.kmm.engine.dispose()


async def test_rotation_rewraps_access_packages_too(client, factory, settings, clock, tmp_path, keep_keyring) -> None:  # type: ignore[no-untyped-def]
    """A fulfilled access package has its own data key: retiring the old master key must not orphan it."""
    from tests.routers.test_access_requests import _decide, _log, _subject, letter

    own = dp.settings_with(settings, secrets_file=dp.copy_secrets(settings, tmp_path))
    state = AppState.build(own)
    try:
        director = await factory.user("director")
        alice = await factory.user("colleague", manager=director)
        sam = await _subject(factory, alice)
        await factory.record(by=alice, subject=sam, content="in the package")
        req = await _log(client, alice, letter(sam, clock))
        assert (await _decide(client, director, req["id"])).status_code == 200
        assert (await client.post(f"/access-requests/{req['id']}/fulfil", headers=director.headers)).status_code == 200
        first = state.keyring.current_id
        await key_rotation.rotate_key(state)
        await key_rotation.rotate_key(state, retire=True)
        assert first not in state.keyring
        (package,) = await dp.raw_rows(state, "access_request_packages")
        assert package["key_id"] == state.keyring.current_id
        # the service, reloading the ring from the same file, still opens the package
        app = create_app(own, clock=clock, configure_logs=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            r = await c.get(f"/access-requests/{req['id']}/package", headers=director.headers)
        assert r.status_code == 200, r.text
        assert "in the package" in r.text
        await app.state.kmm.engine.dispose()
    finally:
        await state.engine.dispose()
