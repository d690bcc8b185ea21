"""A stored value that fails its integrity check is an audit event (§6.6).

An encrypted value that does not open as its own row's (copied from another row, altered, or
under a key the service does not hold) is refused with a 409 ``integrity-error``. The refusal
is also written to the audit trail, so a director finds it in ``GET /audit-events``: action
``integrity.failure``, about the resource the value belongs to, naming who asked and which
column failed, never any content. An event about a breach report stays hidden from whoever
may not know of the report (§1.8, §7.1).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select, update
from sqlmodel import SQLModel, col

from app.core.encrypted import EncryptedText
from app.models.audit import AuditEvent
from app.models.webhooks import WebhookDelivery
from tests.factory import Factory
from tests.routers.test_encrypted_row_binding import MARK_A, MARK_B, _copy, _refused, hooks_sharing_a_secret

ACTION = "integrity.failure"


async def _failures(client: Any, who: Any) -> list[dict[str, Any]]:
    r = await client.get("/audit-events", headers=who.headers, params={"action": ACTION})
    assert r.status_code == 200, r.text
    assert MARK_A not in r.text and MARK_B not in r.text
    return cast(list[dict[str, Any]], r.json()["items"])


async def _failures_stored(state: Any) -> int:
    async with state.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(AuditEvent)
                                       .where(col(AuditEvent.action) == ACTION))).scalar_one())


async def _copy_content(state: Any, column: str, src: str, dst: str) -> None:
    contents = cast(Table, SQLModel.metadata.tables["record_contents"])
    async with state.engine.begin() as conn:
        value = (await conn.execute(select(contents.c[column])
                                    .where(contents.c.record_id == uuid.UUID(src)))).scalar_one()
        await conn.execute(update(contents).where(contents.c.record_id == uuid.UUID(dst)).values({column: value}))


@pytest.mark.parametrize("column", ["content_ct", "title_ct", "wrapped_key"])
async def test_a_record_read_that_fails_its_integrity_check_is_audited(client, factory: Factory, state, column):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    a = await factory.record(by=alice, subject=subj, title=MARK_A, content=MARK_A)
    b = await factory.record(by=alice, subject=subj, title=MARK_B, content=MARK_B)
    assert await _failures(client, director) == []

    await _copy_content(state, column, a["id"], b["id"])
    _refused(await client.get(f"/records/{b['id']}", headers=alice.headers), MARK_A, MARK_B)

    [event] = await _failures(client, director)
    assert event["actor_id"] == str(alice.id) and event["actor_kind"] == "user"
    assert (event["resource_type"], event["resource_id"]) == ("record", b["id"])
    assert (event["decision"], event["rule"], event["clause"]) == ("deny", "integrity-check", "§6.6")
    assert event["detail"] == {"column": f"record_contents.{column}"}


@pytest.mark.parametrize("column", ["title_ct", "wrapped_key"])
async def test_a_list_that_fails_on_one_title_audits_that_record(client, factory: Factory, state, column):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    a = await factory.record(by=alice, subject=subj, title=MARK_A)
    b = await factory.record(by=alice, subject=subj, title=MARK_B)
    await _copy_content(state, column, a["id"], b["id"])
    _refused(await client.get("/records", headers=alice.headers), MARK_A, MARK_B)
    [event] = await _failures(client, director)
    assert (event["actor_id"], event["resource_id"]) == (str(alice.id), b["id"])
    assert event["detail"] == {"column": f"record_contents.{column}"}


async def test_an_unaltered_read_writes_no_failure(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    rec = await factory.record(by=alice, subject=await factory.subject(by=alice), content=MARK_A)
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["content"] == MARK_A
    assert await _failures(client, director) == []


async def test_a_breach_report_failure_is_hidden_from_whoever_may_not_know_of_the_report(
        client, factory: Factory, state):
    director = await factory.user("director")
    concerned = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    report = await factory.breach_report(by=alice, about=concerned, description=MARK_A, evidence=MARK_B)
    rid = {"id": uuid.UUID(report)}
    await _copy(state, "breach_reports", "description", rid, rid, into="evidence")
    _refused(await client.get(f"/breach-reports/{report}", headers=director.headers), MARK_A, MARK_B)

    [event] = await _failures(client, director)
    assert (event["resource_type"], event["resource_id"]) == ("breach_report", report)
    assert event["detail"] == {"column": "breach_reports.evidence"}
    assert await _failures(client, concerned) == []  # the director concerned finds no trace


async def test_a_webhook_secret_that_fails_is_audited_by_the_delivery(client, factory: Factory, state):
    from app.workflows.webhooks import delivery
    from tests.webhook_receiver import Receiver

    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    async with Receiver() as receiver:
        hooks = [h["id"] for h in await hooks_sharing_a_secret(client, state, by=director, url=receiver.url)]
        r = await client.post("/disclosures", headers=alice.headers, json={
            "subject_id": (await factory.subject(by=alice))["id"], "category": "child_abuse", "summary": MARK_A})
        assert r.status_code == 201, r.text
        async with delivery.http_client(state.settings) as http:
            assert await delivery.deliver_due(state, http) == 1
            [event] = await _failures(client, director)
            assert event["actor_id"] is None
            assert (event["resource_type"], event["resource_id"]) == ("webhook", hooks[1])
            assert event["detail"] == {"column": "webhook_subscriptions.secret"}
            # Held, not tried again at every pass: looked at again once the hold is over.
            async with state.engine.connect() as conn:
                held = (await conn.execute(select(WebhookDelivery.status, WebhookDelivery.attempts).where(
                    col(WebhookDelivery.subscription_id) == uuid.UUID(hooks[1])))).all()
            assert [tuple(h) for h in held] == [("pending", 0)]  # no attempt counted: it waits
            state.clock.advance(minutes=5)
            assert await delivery.deliver_due(state, http) == 0
            assert await _failures_stored(state) == 1
            state.clock.advance(seconds=delivery.MAX_BACKOFF.total_seconds())
            assert await delivery.deliver_due(state, http) == 0
            assert await _failures_stored(state) == 2
        assert len(receiver.received) == 1


def test_every_encrypted_column_is_audited_as_its_resource() -> None:
    """A table that gains an encrypted column must say which resource a failure is about."""
    from app.workflows.audit.trail import INTEGRITY_RESOURCES

    encrypted = {t.name for t in SQLModel.metadata.sorted_tables
                 if any(isinstance(c.type, EncryptedText) for c in t.columns)}
    assert encrypted | {"record_contents"} <= set(INTEGRITY_RESOURCES)
