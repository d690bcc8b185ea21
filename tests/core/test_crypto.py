"""Envelope encryption, the reloading keyring, EncryptedText, and the raw-column check (§6.6)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from app.core.audit_keys import AuditKeys, installed_keys
from app.core.crypto import DecryptionError, Keyring, key_id
from app.core.encrypted import (
    EncryptedText,
    bound,
    decrypt_text,
    encrypt_text,
    encrypted_columns,
    installed_keyring,
    key_prefix,
    open_value,
    row_aad,
    seal,
    stored_key_id,
    unseal,
)
from app.main import create_app
from tests import dataprot as dp
from tests.databases import fresh_database

AAD = b"aad"


def _ring(*keys: bytes, source=None) -> Keyring:  # type: ignore[no-untyped-def]
    return Keyring({key_id(k): k for k in keys}, source=source)


def test_wrap_unwrap_and_rewrap_keep_the_data_key() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    old = _ring(k1)
    data_key, kid, wrapped = old.new_data_key(aad=AAD)
    both = _ring(k2, k1)
    kid2, wrapped2 = both.rewrap(kid, wrapped, aad=AAD)
    assert kid2 == key_id(k2) != kid
    assert both.unwrap(kid2, wrapped2, aad=AAD) == data_key
    with pytest.raises(DecryptionError):
        both.unwrap(kid2, wrapped2, aad=b"other record")
    with pytest.raises(DecryptionError):
        old.unwrap(kid2, wrapped2, aad=AAD)  # no source: cannot learn the new key


def test_unknown_key_id_reloads_from_source_once_and_known_ids_never_do() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    calls: list[int] = []
    current = {key_id(k1): k1}

    def source() -> dict[str, bytes]:
        calls.append(1)
        return dict(current)

    ring = _ring(k1, source=source)
    _, kid1, wrapped1 = ring.new_data_key(aad=AAD)
    for _ in range(3):
        ring.unwrap(kid1, wrapped1, aad=AAD)
    assert calls == []  # a known id costs nothing

    # another process rotates: k2 becomes current in the source
    writer = _ring(k2, k1)
    _, kid2, wrapped2 = writer.new_data_key(aad=AAD)
    current.clear()
    current.update({key_id(k2): k2, key_id(k1): k1})
    assert kid2 not in ring
    ring.unwrap(kid2, wrapped2, aad=AAD)
    assert len(calls) == 1 and ring.current_id == kid2
    ring.unwrap(kid2, wrapped2, aad=AAD)
    assert len(calls) == 1

    # an id no source knows is an error, not a loop
    with pytest.raises(DecryptionError):
        ring.unwrap("0" * 16, wrapped2, aad=AAD)


def test_a_failing_source_keeps_the_keys_already_loaded() -> None:
    k1 = os.urandom(32)

    def broken() -> dict[str, bytes]:
        raise ValueError("half-written file")

    ring = _ring(k1, source=broken)
    _, kid, wrapped = ring.new_data_key(aad=AAD)
    assert ring.reload() is False
    assert len(ring.unwrap(kid, wrapped, aad=AAD)) == 32


def test_the_write_path_refreshes_a_stale_ring() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    current = {key_id(k1): k1}
    ring = Keyring(dict(current), source=lambda: dict(current), refresh_seconds=0)
    current.clear()
    current.update({key_id(k2): k2, key_id(k1): k1})
    kid, _ = ring.wrap(os.urandom(32), aad=AAD)
    assert kid == key_id(k2)


def test_encrypted_text_roundtrip_and_format() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    old, new = _ring(k1), _ring(k2, k1)
    here, there = row_aad("t", "note", [1]), row_aad("t", "note", [2])
    stored = seal(old, "Mrs Example's solicitor asked", here)
    assert stored.startswith(key_prefix(key_id(k1))) and "Example" not in stored
    assert stored_key_id(stored) == key_id(k1)
    assert unseal(new, stored, here) == "Mrs Example's solicitor asked"
    assert seal(old, "same", here) != seal(old, "same", here)  # random nonce
    for wrong in ("plain text, never encrypted", stored[:-4] + "AAAA"):  # tampered
        with pytest.raises(DecryptionError):
            unseal(new, wrong, here)
    with pytest.raises(DecryptionError):
        unseal(new, stored, there)  # another row's
    assert row_aad("t", "note", [1]) != row_aad("t", "other", [1]) != row_aad("u", "note", [1])
    # the unbound format, which only the migrations read and write
    legacy = encrypt_text(old, "Mrs Example's solicitor asked")
    assert legacy.startswith("kmm1:") and stored_key_id(legacy) == key_id(k1)
    assert decrypt_text(new, legacy) == "Mrs Example's solicitor asked"
    with pytest.raises(DecryptionError):
        unseal(new, legacy, here)  # the service never opens an unbound value


async def test_encrypted_text_column_on_a_table_of_its_own(state) -> None:  # type: ignore[no-untyped-def]
    metadata = MetaData()
    table = Table("t_encrypted_probe", metadata, Column("id", Integer, primary_key=True),
                  Column("note", EncryptedText()))
    assert [(t.name, c.name) for t, c in encrypted_columns(metadata)] == [("t_encrypted_probe", "note")]
    async with state.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        async with state.engine.begin() as conn:
            await conn.execute(insert(table), [{"id": 1, "note": bound(table.name, "note", [1], "probe-marker")},
                                               {"id": 2, "note": None}])
        async with state.engine.connect() as conn:
            sealed = (await conn.execute(select(table.c.note).where(table.c.id == 1))).scalar_one()
            assert open_value(state.keyring, sealed, table.name, "note", [1]) == "probe-marker"
            raw = (await conn.execute(text("SELECT note FROM t_encrypted_probe ORDER BY id"))).scalars().all()
        assert raw[0].startswith(key_prefix(state.keyring.current_id)) and "probe-marker" not in raw[0]
        assert raw[1] is None
    finally:
        async with state.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)


async def test_no_column_of_any_table_holds_content_in_clear(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    """A database dump alone reveals no content (§6.6): title, content, reasons, notes."""
    marker = "ZQX-private-marker-7731"
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)
    kept = await factory.record(by=alice, subject=subj, title=f"title {marker}", content=f"content {marker}")
    r = await client.patch(f"/records/{kept['id']}", headers={**alice.headers, "If-Match": '"v1"'},
                           json={"content": f"updated {marker} again", "title": f"{marker} retitled"})
    assert r.status_code == 200, r.text
    r = await client.post(f"/records/{kept['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": f"claim by {marker}"})
    assert r.status_code == 200, r.text
    r = await client.post(f"/records/{kept['id']}/review", headers=alice.headers, json={"note": f"{marker} ok"})
    assert r.status_code == 200, r.text
    shredded = await factory.record(by=alice, subject=subj, content=marker)
    r = await client.delete(f"/records/{shredded['id']}", headers=manager.headers,
                            params={"reason": f"asked by {marker}"})
    assert r.status_code == 200, r.text

    # the API still gives it back to those entitled...
    r = await client.get(f"/records/{kept['id']}", headers=alice.headers)
    assert r.json()["content"] == f"updated {marker} again"
    assert (await client.get(f"/records/{shredded['id']}", headers=manager.headers)).json()["tombstone"][
        "reason"] == f"asked by {marker}"
    # ...but no stored value, in any table, holds it
    leaks = [(t, c) for t, c, v in await dp.all_raw_values(state) if dp.contains(v, marker)]
    assert leaks == []
    rows = await dp.raw_rows(state, "records", "WHERE legal_hold_reason IS NOT NULL")
    assert rows and all(r["legal_hold_reason"].startswith("kmm2:") for r in rows)


async def test_each_test_starts_with_the_session_apps_keys(app, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An app built by one test installs its own keys for the process; the next test's
    ``state`` installs the session app's again, so what it seals (a webhook's secret, say)
    opens with ``state.keyring``."""
    with fresh_database(tmp_path) as other:
        await create_app(other, configure_logs=False).state.kmm.engine.dispose()
    keyring, audit_keys = installed_keyring(), installed_keys()
    session_audit_ids = AuditKeys(app.state.kmm.settings.audit_key_list).ids()
    assert keyring is not app.state.kmm.keyring and audit_keys.ids() != session_audit_ids
    state = request.getfixturevalue("state")  # as the next test's fixtures would
    assert installed_keyring() is state.keyring
    assert installed_keys().ids() == session_audit_ids
