"""The audit chain is keyed (DESIGN §6): HMAC-SHA-256 under a key from the settings, never
in the database; verify reports event ids missing without an explanation, and the head."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from app.core.audit_keys import AuditKeys, installed_keys
from app.models.audit import GENESIS_HASH, AuditEvent, AuditSeal
from app.workflows.audit.canonical import canonical_event
from app.workflows.audit.links import link_hash, link_mac
from app.workflows.audit.seal import seal_all
from app.workflows.audit.verify import GAP_GRACE, verify_chain
from tests.audit_helpers import count, event_ids, tamper

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def _us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _expected_mac(key: bytes, seal: AuditSeal, canonical: str) -> str:
    """What the seal's hash must be, written out from the definition in docs/audit.md."""
    suffix = "" if seal.gap_from is None else f"|{seal.gap_from}|{_us(seal.sealed_at)}"
    message = (seal.prev_hash + canonical + suffix).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def _events_with_ids(state, *ids: int) -> None:
    async with state.engine.begin() as conn:
        await conn.execute(insert(AuditEvent), [{"id": i, "at": state.clock.now(), "action": f"test.{i}",
                                                 "emergency": False, "detail": {}} for i in ids])


async def _seals(state) -> list[AuditSeal]:
    async with state.sessionmaker() as session:
        return list((await session.execute(select(AuditSeal).order_by(AuditSeal.seq))).scalars())


async def _canonical(state, event_id: int) -> str:
    async with state.engine.connect() as conn:
        return str((await conn.execute(
            select(canonical_event(conn.dialect.name)).where(AuditEvent.id == event_id))).scalar_one())


def test_the_mac_is_hmac_sha256_over_the_link_and_a_recorded_gap():
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    mac = link_mac(KEY_A, GENESIS_HASH, "v1|1|x", sealed_at=at, gap_from=None)
    assert mac == hmac.new(KEY_A, f"{GENESIS_HASH}v1|1|x".encode(), hashlib.sha256).hexdigest()
    assert mac != link_mac(KEY_B, GENESIS_HASH, "v1|1|x", sealed_at=at, gap_from=None)
    # A seal that records missing ids covers where they begin, and when it was written.
    gap = link_mac(KEY_A, GENESIS_HASH, "v1|1|x", sealed_at=at, gap_from=7)
    assert gap == hmac.new(KEY_A, f"{GENESIS_HASH}v1|1|x|7|{_us(at)}".encode(), hashlib.sha256).hexdigest()


async def test_seals_are_macs_under_the_current_key(client, state):
    keys = AuditKeys([KEY_A])
    await _events_with_ids(state, 1, 2, 3)
    assert await seal_all(state.engine, state.clock.now(), keys) == 3
    seals = await _seals(state)
    for seal in seals:
        canonical = await _canonical(state, seal.event_id)
        assert seal.key_id == keys.current_id
        assert seal.hash == _expected_mac(KEY_A, seal, canonical)
        assert seal.hash != link_hash(seal.prev_hash, canonical)  # not the unkeyed SHA-256
    assert (await verify_chain(state.engine, state.clock.now(), keys)).ok
    # The key id names the key without revealing it.
    assert keys.current_id not in (KEY_A.hex(), KEY_A.decode("latin-1"))


async def test_a_chain_rebuilt_without_the_key_is_refused(client, state):
    await _events_with_ids(state, 1, 2, 3, 4)
    await seal_all(state.engine, state.clock.now())
    # Event 2 altered, and every link from it rebuilt as someone without the key can:
    # plain SHA-256, each prev_hash the rebuilt hash before it.
    await tamper(state, "UPDATE audit_events SET decision = 'deny' WHERE id = 2", table="audit_events")
    seals = await _seals(state)
    prev = seals[0].hash
    for seal in seals[1:]:
        forged = link_hash(prev, await _canonical(state, seal.event_id))
        await tamper(state, "UPDATE audit_seals SET prev_hash = :p, hash = :h WHERE seq = :s",
                     {"p": prev, "h": forged, "s": seal.seq}, table="audit_seals")
        prev = forged
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id, report.checked) == (False, 2, 4)


async def test_deleting_an_event_and_every_seal_then_resealing_is_caught(client, state, clock):
    await _events_with_ids(state, 1, 2, 3, 4, 5)
    await seal_all(state.engine, state.clock.now())
    assert (await verify_chain(state.engine, state.clock.now())).ok
    clock.advance(hours=3)
    await tamper(state, "DELETE FROM audit_events WHERE id = 3", table="audit_events")
    await tamper(state, "DELETE FROM audit_seals", table="audit_seals")
    report = await verify_chain(state.engine, state.clock.now())  # re-seals all four with the key
    assert report.checked == 4 and report.pending == 0
    assert (report.ok, report.first_broken_id, report.missing) == (False, 3, 1)


async def test_a_gap_record_made_to_look_timely_breaks_its_seal(client, state, clock):
    await _events_with_ids(state, 1, 2, 3)
    await seal_all(state.engine, state.clock.now())
    clock.advance(hours=3)
    await tamper(state, "DELETE FROM audit_events WHERE id = 2", table="audit_events")
    await tamper(state, "DELETE FROM audit_seals", table="audit_seals")
    await seal_all(state.engine, state.clock.now())  # event 3's seal records the gap, too late
    (event_3,) = [s for s in await _seals(state) if s.event_id == 3]
    assert event_3.gap_from == 2
    earlier = (event_3.sealed_at - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S.%f")
    await tamper(state, "UPDATE audit_seals SET sealed_at = :at WHERE event_id = 3", {"at": earlier},
                 table="audit_seals")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id) == (False, 3)


async def test_ids_missing_when_sealed_are_explained_and_stay_so(client, state, clock):
    # Ids the sealer found missing when it sealed the event after them (a rolled-back
    # transaction's, or one still running) are recorded in that seal.
    await _events_with_ids(state, 2, 5, 9)
    assert await seal_all(state.engine, state.clock.now()) == 3
    assert [s.gap_from for s in await _seals(state)] == [1, 3, 6]
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.missing) == (True, 0)
    await _events_with_ids(state, 7)  # a late commit inside a recorded gap
    clock.advance(days=30)
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.missing, report.checked) == (True, 0, 4)
    assert (await _seals(state))[-1].gap_from is None


async def test_an_id_missing_across_a_sealed_event_is_not_explained(client, state, clock):
    await _events_with_ids(state, 1, 2, 4, 5)
    await seal_all(state.engine, state.clock.now())
    clock.advance(hours=1)
    # Event 4 and its seal go (and the seal after it, so the links still meet): 3 and 4
    # are missing now, and the gap recorded at 4 covered only 3.
    await tamper(state, "DELETE FROM audit_seals WHERE seq >= 3", table="audit_seals")
    await tamper(state, "DELETE FROM audit_events WHERE id = 4", table="audit_events")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id, report.missing) == (False, 3, 2)


async def test_a_gap_is_explained_only_by_a_seal_written_soon_after_the_event(client, state, clock):
    await _events_with_ids(state, 1, 3)
    clock.advance(seconds=GAP_GRACE.total_seconds() + 1)  # the sealer was away too long
    await seal_all(state.engine, state.clock.now())
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id, report.missing) == (False, 2, 1)


@pytest.mark.postgres_only
async def test_a_rolled_back_transaction_leaves_no_unexplained_gap(client, state, clock):
    async def one(action: str, *, commit: bool = True) -> None:
        async with state.sessionmaker() as session:
            await session.execute(insert(AuditEvent).values(at=state.clock.now(), action=action,
                                                            emergency=False, detail={}))
            await (session.commit() if commit else session.rollback())

    await one("test.before")
    await one("test.gone", commit=False)  # its id is used up: sequences do not roll back
    await one("test.after")
    ids = await event_ids(state)
    assert ids[1] == ids[0] + 2  # a gap
    await seal_all(state.engine, state.clock.now())
    clock.advance(days=3)
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.missing) == (True, 0)


async def test_seals_under_an_old_key_verify_after_rotation_and_an_unknown_key_breaks(client, state):
    old, rotated = AuditKeys([KEY_A]), AuditKeys([KEY_B, KEY_A])
    await _events_with_ids(state, 1, 2)
    await seal_all(state.engine, state.clock.now(), old)
    await _events_with_ids(state, 3)
    await seal_all(state.engine, state.clock.now(), rotated)
    assert [s.key_id for s in await _seals(state)] == [old.current_id] * 2 + [rotated.current_id]
    assert (await verify_chain(state.engine, state.clock.now(), rotated)).ok
    # Without the old key the old seals cannot be checked: broken at the first of them.
    report = await verify_chain(state.engine, state.clock.now(), AuditKeys([KEY_B]))
    assert (report.ok, report.first_broken_id) == (False, 1)
    report = await verify_chain(state.engine, state.clock.now(), old)
    assert (report.ok, report.first_broken_id) == (False, 3)


async def test_the_report_names_the_head_and_an_expected_head_is_checked(client, state):
    await _events_with_ids(state, 1, 2, 3)
    report = await verify_chain(state.engine, state.clock.now())
    seals = await _seals(state)
    assert (report.last_seq, report.head_event_id, report.head_hash) == (3, 3, seals[-1].hash)
    assert report.head == f"3:{seals[-1].hash}"
    again = await verify_chain(state.engine, state.clock.now(), expect_head=(2, seals[1].hash))
    assert (again.ok, again.expected_head_found) == (True, True)
    wrong = await verify_chain(state.engine, state.clock.now(), expect_head=(2, seals[0].hash))
    assert (wrong.ok, wrong.expected_head_found, wrong.first_broken_id) == (False, False, None)
    beyond = await verify_chain(state.engine, state.clock.now(), expect_head=(4, seals[-1].hash))
    assert (beyond.ok, beyond.expected_head_found) == (False, False)


async def test_the_key_is_never_stored_in_the_database(client, state):
    await _events_with_ids(state, 1)
    await seal_all(state.engine, state.clock.now())
    (seal,) = await _seals(state)
    for key in installed_keys().secrets():
        assert key.hex() not in seal.model_dump_json()
    assert await count(state, AuditSeal) == 1


async def _unkeyed_seals(state, event_ids_: list[int], *, first_seq: int, prev: str) -> str:
    """Seals as the service wrote them before the chain was keyed (empty key_id, plain SHA-256)."""
    for offset, event_id in enumerate(event_ids_):
        digest = link_hash(prev, await _canonical(state, event_id))
        async with state.engine.begin() as conn:
            await conn.execute(insert(AuditSeal), [{"seq": first_seq + offset, "event_id": event_id, "prev_hash": prev,
                                                    "hash": digest, "sealed_at": state.clock.now(), "key_id": ""}])
        prev = digest
    return prev


async def test_seals_made_before_the_chain_was_keyed_verify_at_its_start_only(client, state, clock):
    await _events_with_ids(state, 1, 2, 4)  # 3 went missing before the upgrade: not judged
    await _unkeyed_seals(state, [1, 2, 4], first_seq=1, prev=GENESIS_HASH)
    clock.advance(days=1)
    await _events_with_ids(state, 5, 6)
    assert await seal_all(state.engine, state.clock.now()) == 2  # keyed from here on
    # The operator states how many there were at the upgrade (KMM_AUDIT_UNKEYED_SEALS):
    # no one without the key can add to them.
    upgraded = AuditKeys(installed_keys().secrets(), unkeyed_allowed=3)
    report = await verify_chain(state.engine, state.clock.now(), upgraded)
    assert (report.ok, report.checked, report.missing, report.unkeyed) == (True, 5, 0, 3)
    # By default none is accepted: a forger could rewrite a whole chain unkeyed.
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id, report.unkeyed) == (False, 1, 3)
    # An unkeyed seal after a keyed one is what a forger without the key would write.
    await _events_with_ids(state, 7)
    await _unkeyed_seals(state, [7], first_seq=6, prev=(await _seals(state))[-1].hash)
    report = await verify_chain(state.engine, state.clock.now(), AuditKeys(installed_keys().secrets(),
                                                                             unkeyed_allowed=10))
    assert (report.ok, report.first_broken_id) == (False, 7)
