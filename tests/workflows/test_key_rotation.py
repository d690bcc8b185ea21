"""`kmm rotate-key`: re-wrap every data key under a new master key while the service reads (§6.6)."""

from __future__ import annotations

import json
import uuid
from typing import cast

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Table, Text, literal, select, text, update
from sqlmodel import SQLModel

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


async def test_a_data_key_that_does_not_open_stops_the_rotation_at_its_row(  # type: ignore[no-untyped-def]
    client, factory, settings, clock, tmp_path, keep_keyring
) -> None:
    """A wrapped data key copied onto another record (bound to its record, §6.6) stops the
    rotation, named by table and row; a key the ring lacks is named as such."""
    import dataclasses
    import os

    own = dp.settings_with(settings, secrets_file=dp.copy_secrets(settings, tmp_path))
    state = AppState.build(own)
    try:
        alice = await factory.user("colleague")
        subj = await factory.subject(by=alice)
        intact, copied = [await factory.record(by=alice, subject=subj, content=c) for c in ("one", "two")]
        first = state.keyring.current_id
        contents = cast(Table, SQLModel.metadata.tables["record_contents"])
        async with state.engine.begin() as conn:  # the intact record's wrapped key, onto the other
            kid, wrapped = (await conn.execute(select(contents.c.key_id, contents.c.wrapped_key)
                                               .where(contents.c.record_id == rec_id(intact)))).one()
            await conn.execute(update(contents).where(contents.c.record_id == rec_id(copied))
                               .values(key_id=kid, wrapped_key=wrapped))

        with pytest.raises(key_rotation.RotationStopped) as failed:
            await key_rotation.rotate_key(state, batch_size=1, retire=True)
        message = str(failed.value)
        assert message == (f"record_contents.wrapped_key, row {copied['id']}: "
                           "the value fails its integrity check (altered, or copied from another row)")
        report = failed.value.report
        assert report is not None and report.stopped_at == {"column": "record_contents.wrapped_key",
                                                            "row": [copied["id"]]}
        assert report.data_keys_rewrapped == int(rec_id(intact) < rec_id(copied))
        assert report.key_ids == [report.current_key_id, first] == state.keyring.key_ids  # nothing retired
        service = create_app(dp.settings_with(own), clock=clock, configure_logs=False)  # the keys the file lists
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://test") as c:
            r = await c.get(f"/records/{intact['id']}", headers=alice.headers)
        assert r.status_code == 200 and r.json()["content"] == "one"
        await service.state.kmm.engine.dispose()

        # a ring without the key a data key is under: the key is named, not an integrity failure
        k = os.urandom(32)
        lacking = dataclasses.replace(state, keyring=Keyring({key_id(k): k}))
        with pytest.raises(key_rotation.RotationStopped, match=r"^record_contents\.wrapped_key, row .*: the value "
                           r"is under master key id [0-9a-f]{16}, which this process does not hold$"):
            await key_rotation.rewrap_all(lacking)
    finally:
        await state.engine.dispose()


async def test_kmm_rotate_key_stops_at_a_copied_value_and_says_how_far_it_got(  # type: ignore[no-untyped-def]
    client, factory, state, settings, clock, tmp_path, keep_keyring
) -> None:
    """`kmm rotate-key` meeting a value that does not open under its own row (§6.6) stops with
    exit code 1, names the column and row (never content), prints what the committed batches
    did, rolls nothing back and keeps every key; once the value is restored, `--rewrap-only`
    finishes the rotation."""
    import asyncio

    from typer.testing import CliRunner

    from app.cli import cli
    from tests.databases import env_for
    from tests.routers.test_encrypted_row_binding import MARK_A, MARK_B, _copy, two_disclosures

    own = dp.settings_with(settings, secrets_file=dp.copy_secrets(settings, tmp_path))
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, content="kept",
                               consent={"status": "refused", "refusal_reason": "asked not to"})
    made = await two_disclosures(client, by=alice, subject=subj)
    original = {str(d["id"]).replace("-", ""): d["summary"] for d in await dp.raw_rows(state, "disclosures")}
    await _copy(state, "disclosures", "summary", {"id": uuid.UUID(made[0])}, {"id": uuid.UUID(made[1])})
    intact_first = uuid.UUID(made[0]) < uuid.UUID(made[1])
    first = state.keyring.current_id

    def kmm(*args: str):  # type: ignore[no-untyped-def]
        # in a thread: the command runs an event loop of its own
        return asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env_for(own))

    r = await kmm("rotate-key", "--batch-size", "1")
    state.install_keys()
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)  # a message, not a traceback
    report = json.loads(r.stdout)
    new = report["current_key_id"]
    assert report["key_ids"] == [new, first] and report["retired_key_ids"] == []
    assert report["stopped_at"] == {"column": "disclosures.summary", "row": [made[1]]}
    assert report["data_keys_rewrapped"] == 1
    assert report["values_reencrypted"]["disclosures.summary"] == int(intact_first)
    assert "records.consent_refusal_reason" not in report["values_reencrypted"]  # not reached
    assert (f"rotate-key stopped at disclosures.summary, row {made[1]}: the value fails its integrity check"
            in r.stderr)
    assert f"1 data key(s) re-wrapped, {int(intact_first)} value(s) re-encrypted" in r.stderr
    assert "nothing was rolled back" in r.stderr and "kmm rotate-key --rewrap-only" in r.stderr
    for shown in (r.stdout, r.stderr):
        assert made[0] not in shown and MARK_A not in shown and MARK_B not in shown and "kmm2:" not in shown
    listed = [key_id(dp.key_rotation_decode(k)) for k in json.loads(own.secrets_file.read_text())["master_keys"]]
    assert listed == [new, first]

    # the service, with the keys the file lists, reads every value but the copied one
    service = create_app(dp.settings_with(own), clock=clock, configure_logs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://test") as c:
        r = await c.get(f"/records/{rec['id']}", headers=director.headers)
        assert r.status_code == 200 and r.json()["content"] == "kept", r.text
        assert r.json()["consent"]["refusal_reason"] == "asked not to"
        r = await c.get(f"/disclosures/{made[0]}", headers=director.headers)
        assert r.status_code == 200 and r.json()["summary"] == MARK_A
        assert (await c.get(f"/disclosures/{made[1]}", headers=director.headers)).status_code == 409
    await service.state.kmm.engine.dispose()
    state.install_keys()

    # restored (from a backup), the value opens again and the rotation finishes the rest
    table = cast(Table, SQLModel.metadata.tables["disclosures"])
    async with state.engine.begin() as conn:
        await conn.execute(update(table).where(table.c.id == uuid.UUID(made[1]))
                           .values(summary=literal(original[made[1].replace("-", "")], Text())))
    r = await kmm("rotate-key", "--rewrap-only", "--batch-size", "1")
    state.install_keys()
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["current_key_id"] == new and "stopped_at" not in report
    assert report["values_reencrypted"]["disclosures.summary"] == 2 - int(intact_first)
    assert report["values_reencrypted"]["records.consent_refusal_reason"] == 1 and report["data_keys_rewrapped"] == 0
    assert await key_rotation.references(state, first) == 0
    service = create_app(dp.settings_with(own), clock=clock, configure_logs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://test") as c:
        for rid, mark in zip(made, (MARK_A, MARK_B), strict=True):
            r = await c.get(f"/disclosures/{rid}", headers=director.headers)
            assert r.status_code == 200 and r.json()["summary"] == mark, r.text
    await service.state.kmm.engine.dispose()
