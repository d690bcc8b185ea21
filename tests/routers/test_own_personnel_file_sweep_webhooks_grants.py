"""One's own personnel file (§3.6) leaves no trace in three more director views: the retention
sweep's answer (§6.5), webhook events about records (destroyed, due for review) and their
delivery logs, and the audit trail's events about emergency grants over it (§4.5). The sweep
still destroys the file; another director sees all of it; the director the file is about sees
everything else."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select

from app.models.webhooks import DeliveryStatus, WebhookDelivery, WebhookEvent, WebhookEventKind
from app.workflows import scheduler
from app.workflows.webhooks import delivery
from tests.factory import Factory, Person
from tests.webhook_receiver import Receiver

DESTROYED, REVIEW = "record.destroyed", "record.review_due"


async def _org(factory: Factory, clock, **fields: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """``boss``, a director with a personnel file kept by ``keeper`` (another director), and a
    record about someone else; both past their retention date (paper files brought in late)."""
    keeper = await factory.user("director")
    boss = await factory.user("director", manager=keeper)
    soon = (clock.now() - timedelta(days=1)).isoformat()
    file = await factory.record(by=keeper, subject=await factory.employee_subject(by=keeper, employee=boss),
                                classification="personnel", retention_until=soon, **fields)
    other = await factory.record(by=keeper, subject=await factory.subject(by=keeper), retention_until=soon,
                                 **fields)
    return {"keeper": keeper, "boss": boss, "file": file, "other": other}


async def _sweep(client, who: Person, *, dry_run: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.post("/retention/sweep", headers=who.headers, json={"dry_run": dry_run})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _events(client, who: Person, **params: Any) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = await client.get("/audit-events", headers=who.headers, params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# -- the retention sweep -------------------------------------------------------------------------


async def test_the_sweep_does_not_show_a_director_their_own_personnel_file(client, factory, clock):
    org = await _org(factory, clock)
    boss, file, other = org["boss"], org["file"], org["other"]
    dry = await _sweep(client, boss, dry_run=True)
    assert (dry["count"], dry["ids"]) == (1, [other["id"]]), "the dry run names the director's own personnel file"
    real = await _sweep(client, boss, dry_run=False)
    assert (real["count"], real["ids"]) == (1, [other["id"]]), "the sweep names the director's own personnel file"
    assert file["id"] not in json.dumps([dry, real])
    # ... and yet destroys it (§6.5)
    r = await client.get(f"/records/{file['id']}", headers=org["keeper"].headers)
    assert r.status_code == 410 and r.json()["tombstone"]["reason"].endswith(f"(sweep {real['sweep_id']})")


async def test_the_trail_of_a_sweep_adds_up_to_what_it_showed_the_director(client, factory, clock):
    """Whoever ran it, the director a destroyed file is about finds the sweep's answer and its
    trail agree: one ``record.destroy`` event per id shown, and no count to set against them."""
    org = await _org(factory, clock)
    keeper, boss, file, other = org["keeper"], org["boss"], org["file"], org["other"]
    real = await _sweep(client, keeper, dry_run=False)
    assert (real["count"], sorted(real["ids"])) == (2, sorted([file["id"], other["id"]]))  # another director
    for who, expected in ((boss, [other["id"]]), (keeper, sorted([file["id"], other["id"]]))):
        seen = await _events(client, who)
        destroyed = sorted(e["resource_id"] for e in seen
                           if e["action"] == "record.destroy" and e["detail"]["sweep_id"] == real["sweep_id"])
        assert destroyed == expected
        (summary,) = [e for e in seen if e["action"] == "retention.sweep"]
        assert summary["resource_id"] == real["sweep_id"] and summary["detail"] == {"packages": 0, "by": "director"}
    assert file["id"] not in json.dumps(await _events(client, boss))


async def test_another_director_sees_every_record_the_sweep_would_destroy(client, factory, clock):
    org = await _org(factory, clock)
    dry = await _sweep(client, org["keeper"], dry_run=True)
    assert (dry["count"], sorted(dry["ids"])) == (2, sorted([org["file"]["id"], org["other"]["id"]]))


# -- webhooks --------------------------------------------------------------------------------------


async def _hook(client, who: Person, url: str) -> str:  # type: ignore[no-untyped-def]
    r = await client.post("/webhooks", headers=who.headers, json={"url": url, "events": [DESTROYED, REVIEW]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _stored(state, hook_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every delivery the outbox holds for a subscription: (kind, record id)."""
    async with state.sessionmaker() as s:
        rows = (await s.execute(
            select(WebhookDelivery.kind, WebhookEvent.payload)
            .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
            .where(col(WebhookDelivery.subscription_id) == uuid.UUID(hook_id))
        )).all()
    return sorted((str(kind), json.loads(payload)["data"]["record_id"]) for kind, payload in rows)


async def _log(client, who: Person, hook_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.get(f"/webhooks/{hook_id}/deliveries", headers=who.headers, params={"limit": 200})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _destroy_and_remind(client, state, factory, clock) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Both directors subscribe to record events; both records come due for review, then the
    sweep destroys them."""
    org = await _org(factory, clock, review_due=(clock.now() - timedelta(hours=1)).isoformat())
    org["boss_hook"] = await _hook(client, org["boss"], "https://hooks.kmm.example/boss")
    org["keeper_hook"] = await _hook(client, org["keeper"], "https://hooks.kmm.example/keeper")
    async with state.sessionmaker() as session:
        assert await scheduler.remind_reviews(session, clock.now(), state.settings) == {"count": 2}
    await _sweep(client, org["keeper"], dry_run=False)
    return org


async def test_no_record_event_about_a_directors_own_file_is_queued_for_their_subscription(
        client, state, factory, clock):
    org = await _destroy_and_remind(client, state, factory, clock)
    file, other = org["file"]["id"], org["other"]["id"]
    assert await _stored(state, org["boss_hook"]) == [(DESTROYED, other), (REVIEW, other)], \
        "the director's own subscription is sent events about their own personnel file"
    assert await _stored(state, org["keeper_hook"]) == sorted(
        [(DESTROYED, file), (DESTROYED, other), (REVIEW, file), (REVIEW, other)])


async def test_a_delivery_log_leaves_out_the_readers_own_personnel_file(client, state, factory, clock):
    org = await _destroy_and_remind(client, state, factory, clock)
    file, other = org["file"]["id"], org["other"]["id"]
    page = await _log(client, org["boss"], org["keeper_hook"])  # another director's subscription
    assert sorted((i["kind"], i["payload"]["data"]["record_id"]) for i in page["items"]) == [
        (DESTROYED, other), (REVIEW, other)]
    assert file not in json.dumps(page), "a delivery log shows the director their own personnel file"
    page = await _log(client, org["keeper"], org["keeper_hook"])  # the allowed path
    assert sorted((i["kind"], i["payload"]["data"]["record_id"]) for i in page["items"]) == sorted(
        [(DESTROYED, file), (DESTROYED, other), (REVIEW, file), (REVIEW, other)])


async def test_the_worker_never_posts_a_record_event_to_the_director_it_is_about(client, state, factory, clock):
    """A ``record.review_due`` delivery about boss's file to boss's subscription, already in the
    outbox (written without the creator check), is cancelled when claimed and stays out of the
    log boss reads; the one about the other record goes out."""
    org = await _org(factory, clock)
    boss, file, other = org["boss"], org["file"]["id"], org["other"]["id"]
    async with Receiver() as receiver:
        r = await client.post("/webhooks", headers=boss.headers, json={"url": receiver.url, "events": [REVIEW]})
        assert r.status_code == 201, r.text
        hook_id = r.json()["id"]
        now = state.clock.now()
        planted: dict[str, uuid.UUID] = {}
        async with state.sessionmaker() as s:
            for about in (file, other):
                event_id, delivery_id = uuid.uuid4(), uuid.uuid4()
                body = {"id": str(event_id), "type": REVIEW, "created_at": "x", "data": {"record_id": about}}
                await s.execute(insert(WebhookEvent).values(
                    id=event_id, kind=WebhookEventKind.record_review_due, resource_id=uuid.UUID(about),
                    payload=json.dumps(body), created_at=now))
                await s.execute(insert(WebhookDelivery).values(
                    id=delivery_id, subscription_id=uuid.UUID(hook_id), event_id=event_id,
                    kind=WebhookEventKind.record_review_due, status=DeliveryStatus.pending, attempts=0,
                    next_attempt_at=now, created_at=now))
                planted[about] = delivery_id
            await s.commit()
        async with delivery.http_client(state.settings) as http:
            assert await delivery.deliver_due(state, http) == 1
            assert await delivery.deliver_due(state, http) == 0
    [got] = receiver.received
    assert json.loads(got.body)["data"]["record_id"] == other
    async with state.sessionmaker() as s:
        statuses = dict((await s.execute(
            select(WebhookDelivery.id, WebhookDelivery.status).where(col(WebhookDelivery.id).in_(planted.values()))
        )).all())
    assert statuses == {planted[file]: DeliveryStatus.cancelled, planted[other]: DeliveryStatus.delivered}
    page = await _log(client, boss, hook_id)
    assert [i["payload"]["data"]["record_id"] for i in page["items"]] == [other]
    assert file not in json.dumps(page)
    page = await _log(client, org["keeper"], hook_id)  # another director sees the cancelled one
    assert {i["payload"]["data"]["record_id"]: i["status"] for i in page["items"]} == {
        file: "cancelled", other: "delivered"}


# -- emergency grants in the audit trail -----------------------------------------------------------


async def test_the_trail_of_grants_over_a_directors_own_personnel_file_is_left_out(client, factory, clock):
    """Grants over boss's file, over boss's subject, and over another record, each issued and
    revoked by keeper: boss finds only the last in the trail, whatever the filter; keeper finds
    all three."""
    org = await _org(factory, clock)
    keeper, boss, file, other = org["keeper"], org["boss"], org["file"], org["other"]
    colleague = await factory.user("colleague", manager=keeper)
    grants = {
        "file": await factory.grant(by=keeper, to=colleague, record=file),
        "subject": await factory.grant(by=keeper, to=colleague, subject=file["subject_id"]),
        "other": await factory.grant(by=keeper, to=colleague, record=other),
    }
    for grant in grants.values():
        r = await client.delete(f"/emergency-grants/{grant['id']}", headers=keeper.headers)
        assert r.status_code == 200, r.text
    hidden = {grants["file"]["id"], grants["subject"]["id"]}
    for params in ({}, {"resource_type": "emergency_grant"}, {"action": "emergency_grant.issue"},
                   {"action": "emergency_grant.revoke"}, {"actor_id": str(keeper.id)},
                   *({"resource_id": g} for g in hidden)):
        seen = await _events(client, boss, **params)
        about = [(e["action"], e["resource_id"]) for e in seen if e["resource_type"] == "emergency_grant"]
        assert {g for _, g in about} <= {grants["other"]["id"]}, \
            f"the trail shows the director grants over their own personnel file: {params}"
        text = json.dumps(seen)
        assert file["id"] not in text
        assert not hidden & {e["resource_id"] for e in seen}
    seen = await _events(client, boss, resource_type="emergency_grant")
    assert sorted(e["action"] for e in seen) == ["emergency_grant.issue", "emergency_grant.revoke"]
    seen = await _events(client, keeper, resource_type="emergency_grant")  # the allowed path
    assert sorted((e["action"], e["resource_id"]) for e in seen) == sorted(
        (action, g["id"]) for g in grants.values() for action in ("emergency_grant.issue", "emergency_grant.revoke"))
