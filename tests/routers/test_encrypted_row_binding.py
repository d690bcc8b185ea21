"""Encrypted free text is bound to its row and column (§6.6).

Every ``EncryptedText`` value is encrypted with its table, column and primary key as
associated data, so a ciphertext copied onto another row, or into another column of the
same row, does not open: the read is refused with a ``409`` problem (``integrity-error``)
that shows neither value, and the failure is logged without content.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, Text, literal, select, type_coerce, update
from sqlmodel import SQLModel

from app.core.crypto import Keyring
from app.core.encrypted import EncryptedText, install_keyring, installed_keyring
from tests import dataprot as dp
from tests.factory import Factory

MARK_A = "aad-marker-alpha"
MARK_B = "aad-marker-bravo"


async def _copy(state: Any, table_name: str, column: str, src: dict[str, Any], dst: dict[str, Any],
                into: str | None = None) -> None:
    """Copy a stored ciphertext as it is, from one row (or column) onto another, in raw SQL."""
    table = cast(Table, SQLModel.metadata.tables[table_name])
    raw = type_coerce(table.c[column], Text())
    async with state.engine.begin() as conn:
        value = (await conn.execute(select(raw).where(*(table.c[k] == v for k, v in src.items())))).scalar_one()
        assert value is not None
        result = await conn.execute(update(table).where(*(table.c[k] == v for k, v in dst.items()))
                                    .values({into or column: literal(value, Text())}))
        assert result.rowcount == 1


async def two_disclosures(client: Any, *, by: Any, subject: dict[str, Any]) -> list[str]:
    """Two disclosures about ``subject``, summaries MARK_A and MARK_B: their ids."""
    made = []
    for summary in (MARK_A, MARK_B):
        r = await client.post("/disclosures", headers=by.headers,
                              json={"subject_id": subject["id"], "category": "child_abuse", "summary": summary})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    return made


async def hooks_sharing_a_secret(client: Any, state: Any, *, by: Any, url: str) -> list[dict[str, Any]]:
    """Two subscriptions to ``disclosure.raised``, the second holding the first's secret as
    stored (a ciphertext copied onto another row): both as made."""
    hooks = []
    for _ in range(2):
        r = await client.post("/webhooks", headers=by.headers, json={"url": url, "events": ["disclosure.raised"]})
        assert r.status_code == 201, r.text
        hooks.append(r.json())
    await _copy(state, "webhook_subscriptions", "secret", {"id": uuid.UUID(hooks[0]["id"])},
                {"id": uuid.UUID(hooks[1]["id"])})
    return hooks


def _refused(r: Any, *markers: str) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/integrity-error") and body["clause"] == "§6.6"
    for marker in markers:
        assert marker not in r.text
    assert "kmm2:" not in r.text and "kmm1:" not in r.text  # nor any ciphertext


async def test_a_reason_copied_onto_another_record_does_not_open(client, factory: Factory, state, caplog):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)
    a = await factory.record(by=alice, subject=subj)
    b = await factory.record(by=alice, subject=subj)
    for rec, why in ((a, MARK_A), (b, MARK_B)):
        r = await client.delete(f"/records/{rec['id']}", headers={**manager.headers, "X-Reason": why})
        assert r.status_code == 200, r.text

    await _copy(state, "records", "destroy_reason", {"id": uuid.UUID(a["id"])}, {"id": uuid.UUID(b["id"])})

    with caplog.at_level(logging.ERROR):
        _refused(await client.get(f"/records/{b['id']}", headers=manager.headers), MARK_A, MARK_B)
    logged = [r for r in caplog.records if r.name == "kmm.encrypted"]
    assert logged and all(MARK_A not in r.getMessage() and MARK_A not in str(r.__dict__) for r in logged)
    assert any(getattr(r, "column", None) == "records.destroy_reason" for r in logged)
    # the row the ciphertext belongs to still reads
    r = await client.get(f"/records/{a['id']}", headers=manager.headers)
    assert r.status_code == 410 and r.json()["tombstone"]["reason"] == MARK_A


async def test_a_reason_copied_into_another_column_of_the_same_record_does_not_open(client, factory: Factory, state):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, consent={"status": "refused", "refusal_reason": MARK_A})
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": MARK_B})
    assert r.status_code == 200, r.text
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["consent"]["refusal_reason"] == MARK_A

    rid = {"id": uuid.UUID(rec["id"])}
    await _copy(state, "records", "legal_hold_reason", rid, rid, into="consent_refusal_reason")

    for who in (alice, director):
        _refused(await client.get(f"/records/{rec['id']}", headers=who.headers), MARK_A, MARK_B)


async def test_a_share_reason_is_bound_to_both_columns_of_its_key(client, factory: Factory, state):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    carl = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj)
    other = await factory.record(by=alice, subject=subj)
    for r_id, who, why in ((rec["id"], ben, MARK_A), (rec["id"], carl, MARK_B), (other["id"], ben, "other")):
        r = await client.post(f"/records/{r_id}/shares", headers=alice.headers,
                              json={"user_id": str(who.id), "reason": why})
        assert r.status_code == 201, r.text

    # same record, another user: the second column of the key differs
    await _copy(state, "record_shares", "reason", {"record_id": uuid.UUID(rec["id"]), "user_id": ben.id},
                {"record_id": uuid.UUID(rec["id"]), "user_id": carl.id})
    _refused(await client.get(f"/records/{rec['id']}/shares", headers=alice.headers), MARK_A, MARK_B)
    # same user, another record: the first column of the key differs
    await _copy(state, "record_shares", "reason", {"record_id": uuid.UUID(rec["id"]), "user_id": ben.id},
                {"record_id": uuid.UUID(other["id"]), "user_id": ben.id})
    _refused(await client.get(f"/records/{other['id']}/shares", headers=alice.headers), MARK_A)


async def test_disclosure_grant_and_breach_report_text_is_bound_to_its_row(client, factory: Factory, state):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)

    made = await two_disclosures(client, by=alice, subject=subj)
    await _copy(state, "disclosures", "summary", {"id": uuid.UUID(made[0])}, {"id": uuid.UUID(made[1])})
    _refused(await client.get(f"/disclosures/{made[1]}", headers=director.headers), MARK_A, MARK_B)
    _refused(await client.get("/disclosures", headers=director.headers), MARK_A, MARK_B)
    r = await client.get(f"/disclosures/{made[0]}", headers=director.headers)
    assert r.status_code == 200 and r.json()["summary"] == MARK_A

    sens = await factory.record(by=alice, subject=subj, classification="sensitive")
    grants = []
    for why in (MARK_A, MARK_B):
        r = await client.post("/emergency-grants", headers=director.headers, json={
            "grantee_id": str(bob.id), "reason": why, "record_id": sens["id"],
            "expires_at": (factory.state.clock.now() + timedelta(hours=1)).isoformat()})
        assert r.status_code == 201, r.text
        grants.append(r.json()["id"])
    await _copy(state, "emergency_grants", "reason", {"id": uuid.UUID(grants[0])}, {"id": uuid.UUID(grants[1])})
    _refused(await client.get("/emergency-grants", headers=director.headers), MARK_A, MARK_B)

    r = await client.post("/breach-reports", headers=alice.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(bob.id), "description": MARK_A, "evidence": MARK_B})
    assert r.status_code == 201, r.text
    report = r.json()["id"]
    rid = {"id": uuid.UUID(report)}
    await _copy(state, "breach_reports", "description", rid, rid, into="evidence")
    _refused(await client.get(f"/breach-reports/{report}", headers=director.headers), MARK_A, MARK_B)


async def test_every_value_is_stored_in_the_bound_format(client, factory: Factory, state):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, consent={"status": "refused", "refusal_reason": MARK_A})
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": MARK_B})
    assert r.status_code == 200, r.text
    (row,) = await dp.raw_rows(state, "records")
    assert row["consent_refusal_reason"].startswith("kmm2:") and row["legal_hold_reason"].startswith("kmm2:")
    assert MARK_A not in row["consent_refusal_reason"] and MARK_B not in row["legal_hold_reason"]


def test_a_value_without_its_row_is_never_encrypted() -> None:
    """A write that does not say which row the text belongs to is a programming error, not
    an unbound ciphertext."""
    import pytest

    from app.core.encrypted import Bound

    previous = installed_keyring()
    install_keyring(Keyring({"k": b"k" * 32}))
    try:
        column = EncryptedText()
        with pytest.raises(TypeError):
            column.process_bind_param("free text", cast(Any, None))
        stored = column.process_bind_param(Bound("free text", b"t:c:1"), cast(Any, None))
        assert stored is not None and stored.startswith("kmm2:k:") and "free text" not in stored
    finally:
        install_keyring(previous)


async def test_every_state_built_installs_its_keys_for_the_whole_process(client, factory: Factory, state,
                                                                      settings):
    """The column type cannot see the request: the last AppState built in a process (a
    replica, a CLI command, a configuration check) holds the keys every EncryptedText value
    is sealed and opened with. This test leaves another state's keys installed, as such a
    test does; the next one starts with the service's all the same (tests/conftest.py)."""
    import os

    from pydantic import SecretStr

    from app.core.encrypted import key_prefix
    from app.core.state import AppState
    from app.workflows.key_rotation import encode_key

    other = AppState.build(dp.settings_with(settings, master_keys=[SecretStr(encode_key(os.urandom(32)))]))
    try:
        assert installed_keyring() is other.keyring and other.keyring.current_id not in state.keyring
        alice = await factory.user("colleague", manager=await factory.user("director"))
        subj = await factory.subject(by=alice)
        r = await client.post("/disclosures", headers=alice.headers,
                              json={"subject_id": subj["id"], "category": "child_abuse", "summary": MARK_A})
        assert r.status_code == 201, r.text
        (row,) = await dp.raw_rows(state, "disclosures")
        assert row["summary"].startswith(key_prefix(other.keyring.current_id))
    finally:
        await other.engine.dispose()


async def test_rotating_the_key_never_rebinds_a_copied_value(client, factory: Factory, state):
    """`kmm rotate-key` opens each value with its own row's associated data: a copied value
    stops the rotation, named by column and row and without content, and stays unreadable;
    the values re-encrypted before it read under the ring the rotation leaves."""
    import dataclasses
    import os

    from app.core.crypto import key_id
    from app.core.encrypted import key_prefix
    from app.workflows import key_rotation

    # The values below are sealed with the keys the rotation starts from, whichever test ran before.
    assert installed_keyring() is state.keyring
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    made = await two_disclosures(client, by=alice, subject=subj)
    await _copy(state, "disclosures", "summary", {"id": uuid.UUID(made[0])}, {"id": uuid.UUID(made[1])})
    intact_first = uuid.UUID(made[0]) < uuid.UUID(made[1])  # the rotation goes in key order

    new = os.urandom(32)
    ring = Keyring({key_id(new): new, **{kid: state.keyring.key(kid) for kid in state.keyring.key_ids}})
    rotating = dataclasses.replace(state, keyring=ring)
    try:
        install_keyring(ring)
        with pytest.raises(key_rotation.RotationStopped) as failed:
            await key_rotation.rewrap_all(rotating, batch_size=1)
    finally:
        install_keyring(state.keyring)
    # Named by column and row: the copied value, never the intact one it was copied from.
    message = str(failed.value)
    assert message.startswith(f"disclosures.summary, row {made[1]}: ") and "integrity check" in message
    assert made[0] not in message and MARK_A not in message and MARK_B not in message
    report = failed.value.report
    assert report is not None and report.stopped_at == {"column": "disclosures.summary", "row": [made[1]]}
    # What it did before it stopped: the intact row when it comes first, in a batch of its own.
    assert report.values_reencrypted["disclosures.summary"] == int(intact_first)
    assert report.key_ids == ring.key_ids
    stored = {str(r["id"]).replace("-", ""): r["summary"] for r in await dp.raw_rows(state, "disclosures")}
    assert stored[made[0].replace("-", "")].startswith(key_prefix(key_id(new) if intact_first
                                                                   else state.keyring.current_id))
    _refused(await client.get(f"/disclosures/{made[1]}", headers=director.headers), MARK_A, MARK_B)
    # The intact row reads under the ring the rotation leaves: the new key first, the old ones still listed.
    try:
        install_keyring(ring)
        r = await client.get(f"/disclosures/{made[0]}", headers=director.headers)
        _refused(await client.get(f"/disclosures/{made[1]}", headers=director.headers), MARK_A, MARK_B)
    finally:
        install_keyring(state.keyring)
    assert r.status_code == 200 and r.json()["summary"] == MARK_A


async def test_a_webhook_secret_copied_from_another_subscription_never_signs(client, factory: Factory, state,
                                                                            caplog):
    from app.workflows.webhooks import delivery, signing
    from tests.webhook_receiver import Receiver

    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    async with Receiver() as receiver:
        hooks = await hooks_sharing_a_secret(client, state, by=director, url=receiver.url)
        subj = await factory.subject(by=alice)
        r = await client.post("/disclosures", headers=alice.headers,
                              json={"subject_id": subj["id"], "category": "child_abuse", "summary": MARK_A})
        assert r.status_code == 201, r.text
        with caplog.at_level(logging.ERROR):
            async with delivery.http_client(state.settings) as http:
                assert await delivery.deliver_due(state, http) == 1
    [got] = receiver.received  # only the subscription whose secret it is
    log = await client.get(f"/webhooks/{hooks[0]['id']}/deliveries", headers=director.headers)
    assert [d["id"] for d in log.json()["items"]] == [got.headers["x-kmm-delivery"]]
    now = int(factory.state.clock.now().timestamp())
    assert signing.verify_signature(hooks[0]["secret"], got.headers["x-kmm-signature"], got.body, now=now)
    assert any(getattr(r, "column", None) == "webhook_subscriptions.secret" for r in caplog.records)
    assert not any(h["secret"] in str(r.__dict__) for r in caplog.records for h in hooks)


@pytest.mark.parametrize("column", ["wrapped_key", "title_ct", "content_ct"])
async def test_a_record_content_copied_from_another_record_does_not_open(client, factory: Factory, state, column):
    """A record's data key and its title and content are bound to the record (§6.6): copied onto
    another record they do not open, and the read (and the list that shows the title) is a 409
    ``integrity-error`` without content, never a 500."""
    alice = await factory.user("colleague")
    subj = await factory.subject(by=alice)
    a = await factory.record(by=alice, subject=subj, title=MARK_A, content=MARK_A)
    b = await factory.record(by=alice, subject=subj, title=MARK_B, content=MARK_B)
    contents = cast(Table, SQLModel.metadata.tables["record_contents"])
    async with state.engine.begin() as conn:
        value = (await conn.execute(select(contents.c[column])
                                    .where(contents.c.record_id == uuid.UUID(a["id"])))).scalar_one()
        await conn.execute(update(contents).where(contents.c.record_id == uuid.UUID(b["id"]))
                           .values({column: value}))
    _refused(await client.get(f"/records/{b['id']}", headers=alice.headers), MARK_A, MARK_B)
    if column != "content_ct":  # a list shows titles only
        _refused(await client.get("/records", headers=alice.headers), MARK_A, MARK_B)
    r = await client.get(f"/records/{a['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["content"] == MARK_A
