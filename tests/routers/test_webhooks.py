"""/webhooks: directors' subscriptions, the outbox written with each event, signed delivery.

The receiver is a real HTTP server on 127.0.0.1 (tests/webhook_receiver.py); the delivery
worker's passes are driven here one at a time, with the clock moved by hand.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from app.models.webhooks import Webhook, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookEventKind
from app.workflows import retention
from app.workflows.webhooks import delivery, outbox, signing, subscriptions
from tests import dataprot as dp
from tests.factory import Factory, Person
from tests.webhook_receiver import Receiver

PROBLEM = "application/problem+json"
SECRET_NAME = "Sam Okafor-Webhookson"
CONTENT = "notes that must never leave in a webhook"


async def _count(state, model) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def _deliveries(state) -> list[tuple[WebhookDelivery, dict]]:  # type: ignore[no-untyped-def,type-arg]
    async with state.sessionmaker() as s:
        rows = (await s.execute(
            select(WebhookDelivery, WebhookEvent.payload)
            .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
            .order_by(col(WebhookDelivery.created_at), col(WebhookDelivery.kind))
        )).all()
        s.expunge_all()
        return [(d, json.loads(p)) for d, p in rows]


async def _hook(client, director: Person, events: list[str], url: str = "https://hooks.kmm.example/in",
                **kw) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = await client.post("/webhooks", headers=director.headers, json={"url": url, "events": events, **kw})
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
async def team(factory: Factory) -> dict[str, Person]:
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    return {"director": director, "manager": manager, "alice": alice}


def _no_content(payload: dict, *secrets: str) -> None:  # type: ignore[type-arg]
    text = json.dumps(payload)
    for s in (SECRET_NAME, CONTENT, *secrets):
        assert s not in text, s


# -- subscriptions ------------------------------------------------------------------------------


async def test_a_director_subscribes_and_sees_the_secret_once(client, state, team):
    hook = await _hook(client, team["director"], ["disclosure.raised", "record.destroyed"], description="case system")
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["events"] == ["disclosure.raised", "record.destroyed"] and hook["active"] is True
    got = await client.get(f"/webhooks/{hook['id']}", headers=team["director"].headers)
    assert got.status_code == 200 and "secret" not in got.json()
    listed = await client.get("/webhooks", headers=team["director"].headers)
    assert [h["id"] for h in listed.json()["items"]] == [hook["id"]] and "secret" not in listed.json()["items"][0]
    # Encrypted at rest (§6.6): the stored column never holds the secret.
    rows = await dp.raw_rows(state, "webhook_subscriptions")
    assert hook["secret"] not in json.dumps(rows, default=str)
    assert [e.resource_id for e in await dp.events(state, "webhook.create")] == [hook["id"]]


@pytest.mark.parametrize("who", ["manager", "alice"])
async def test_only_directors_manage_webhooks(client, state, team, who):
    hook = await _hook(client, team["director"], ["record.destroyed"])
    person = team[who]
    before = await _count(state, Webhook)
    for method, path, body in (("POST", "/webhooks", {"url": "https://x.example/h", "events": ["record.destroyed"]}),
                               ("GET", "/webhooks", None), ("GET", f"/webhooks/{hook['id']}", None),
                               ("DELETE", f"/webhooks/{hook['id']}", None),
                               ("GET", f"/webhooks/{hook['id']}/deliveries", None)):
        r = await client.request(method, path, headers=person.headers, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert (r.json()["rule"], r.json()["clause"]) == ("director-only", "§4.5")
        assert "whsec_" not in r.text and "x.example" not in r.text
    assert await _count(state, Webhook) == before
    denied = await dp.events(state, "endpoint.denied")
    assert len(denied) == 5 and all(e.decision == "deny" and e.actor_id == person.id for e in denied)


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.kmm.example/in", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("https://user:pw@hooks.kmm.example/in", "user name or password"),
    ("https://token@hooks.kmm.example/in", "user name or password"),
    ("https:///no-host", "http or https"),
    ("https://hooks.kmm.example:99999/in", "not a URL"),
    ("https://hooks.kmm.example/in#frag", "fragment"),
])
async def test_webhook_urls_are_refused_unless_plain_http_or_https(client, state, team, url, why):
    before = await dp.events(state, "webhook.create")
    r = await client.post("/webhooks", headers=team["director"].headers,
                          json={"url": url, "events": ["record.destroyed"]})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert (r.json()["rule"], r.json()["clause"]) == ("webhook-url", "§6.6") and why in r.json()["detail"]
    assert "pw@" not in r.text
    assert await _count(state, Webhook) == 0 and await dp.events(state, "webhook.create") == before


def test_production_refuses_plain_http_except_to_loopback():
    for url in ("http://127.0.0.1:9000/h", "http://localhost/h", "http://[::1]/h", "https://hooks.kmm.example/h"):
        assert subscriptions.check_url(url, production=True) == url
    with pytest.raises(Exception) as refused:
        subscriptions.check_url("http://hooks.kmm.example/h", production=True)
    assert refused.value.extra["rule"] == "webhook-url"  # type: ignore[attr-defined]
    assert subscriptions.check_url("http://hooks.kmm.example/h", production=False)


async def test_unknown_events_and_handlers_are_refused(client, state, team):
    r = await client.post("/webhooks", headers=team["director"].headers,
                          json={"url": "https://h.example/h", "events": ["record.read"]})
    assert r.status_code == 422
    r = await client.post("/webhooks", headers=team["director"].headers,
                          json={"url": "https://h.example/h", "events": []})
    assert r.status_code == 422
    r = await client.post("/webhooks", headers=team["director"].headers,
                          json={"url": "https://h.example/h", "events": ["breach_report.opened"],
                                "handler_id": str(uuid.uuid4())})
    assert r.status_code == 422 and "handler_id" in r.json()["detail"]
    assert await _count(state, Webhook) == 0


# -- the outbox: one delivery per subscription, in the event's transaction -------------------------


async def test_each_event_writes_ids_and_kinds_only(client, factory, state, clock, team):
    director, manager, alice = team["director"], team["manager"], team["alice"]
    every = await _hook(client, director, ["access_request.received", "breach_report.opened", "disclosure.raised",
                                           "record.destroyed"])
    await _hook(client, director, ["record.review_due"])  # wants none of these
    subj = await factory.subject(by=alice, name=SECRET_NAME)
    # access request received (§3.4)
    r = await client.post("/access-requests", headers=alice.headers, json={
        "kind": "subject_access", "subject_id": subj["id"], "requester_subject_id": subj["id"],
        "signed_by": SECRET_NAME, "signatory_capacity": "individual", "in_writing": True,
        "letter_reference": "LTR-SECRET-7", "received_at": (clock.now() - timedelta(days=1)).isoformat()})
    assert r.status_code == 201, r.text
    request = r.json()
    # breach report opened (§1.8), routed to the concerned colleague's line manager
    r = await client.post("/breach-reports", headers=alice.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(manager.id), "description": CONTENT,
        "evidence": "evidence text"})
    assert r.status_code == 201, r.text
    report = r.json()
    # disclosure raised (§5.1)
    r = await client.post("/disclosures", headers=alice.headers,
                          json={"subject_id": subj["id"], "category": "child_abuse", "summary": CONTENT})
    assert r.status_code == 201, r.text
    disclosure = r.json()
    # record destroyed (§4.6)
    rec = await factory.record(by=alice, subject=subj, title="Title secret", content=CONTENT)
    r = await client.request("DELETE", f"/records/{rec['id']}", headers=manager.headers,
                             json={"reason": "reason secret"})
    assert r.status_code == 200, r.text

    rows = await _deliveries(state)
    assert [(str(d.subscription_id), d.kind, d.status, d.attempts) for d, _ in rows] == [
        (every["id"], kind, "pending", 0) for kind in
        ("access_request.received", "breach_report.opened", "disclosure.raised", "record.destroyed")]
    payloads = {d.kind: p for d, p in rows}
    assert payloads["access_request.received"]["data"] == {
        "access_request_id": request["id"], "kind": "subject_access", "due_at": payloads[
            "access_request.received"]["data"]["due_at"]}
    assert payloads["breach_report.opened"]["data"] == {
        "breach_report_id": report["id"], "kind": "colleague_conduct", "handler_id": str(director.id)}
    assert payloads["disclosure.raised"]["data"] == {"disclosure_id": disclosure["id"], "category": "child_abuse"}
    assert payloads["record.destroyed"]["data"] == {"record_id": rec["id"], "classification": "confidential",
                                                    "sweep": False}
    for d, p in rows:
        assert p["type"] == d.kind and p["id"] == str(d.event_id)
        # Never the reporter, the colleague concerned or the subject: ids that say who, where not needed.
        _no_content(p, "LTR-SECRET-7", "Title secret", "reason secret", "evidence text", str(manager.id),
                    str(alice.id), subj["id"])


async def test_refusals_reads_and_lists_write_no_outbox(client, factory, state, clock, team):
    director, alice = team["director"], team["alice"]
    await _hook(client, director, [k.value for k in WebhookEventKind])
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj)
    r = await client.post("/access-requests", headers=alice.headers, json={
        "kind": "subject_access", "subject_id": subj["id"], "requester_subject_id": subj["id"],
        "signed_by": "Someone Else", "signatory_capacity": "individual", "in_writing": True,
        "letter_reference": "L", "received_at": (clock.now() - timedelta(days=1)).isoformat()})
    assert r.status_code == 422  # signed by someone else: refused, audited, never stored
    r = await client.request("DELETE", f"/records/{rec['id']}", headers=alice.headers, json={"reason": "x"})
    assert r.status_code == 403  # a custodian does not destroy
    for path in (f"/records/{rec['id']}", "/records", "/access-requests", "/disclosures", "/breach-reports"):
        assert (await client.get(path, headers=alice.headers)).status_code == 200
    assert await _count(state, WebhookEvent) == 0 and await _count(state, WebhookDelivery) == 0


async def test_breach_events_go_to_the_handler_s_system_only(client, state, factory, team):
    director, manager, alice = team["director"], team["manager"], team["alice"]
    bob = await factory.user("colleague", manager=manager)
    to_manager = await _hook(client, director, ["breach_report.opened"], handler_id=str(manager.id))
    to_director = await _hook(client, director, ["breach_report.opened"], handler_id=str(director.id))
    r = await client.post("/breach-reports", headers=alice.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(bob.id), "description": CONTENT, "evidence": "e"})
    assert r.status_code == 201, r.text
    rows = await _deliveries(state)
    assert [str(d.subscription_id) for d, _ in rows] == [to_manager["id"]]
    assert rows[0][1]["data"]["handler_id"] == str(manager.id)
    assert to_director["id"] not in {str(d.subscription_id) for d, _ in rows}


async def test_the_retention_sweep_writes_one_event_per_destroyed_record(client, factory, state, clock, team):
    director, manager, alice = team["director"], team["manager"], team["alice"]
    hook = await _hook(client, director, ["record.destroyed"])
    subj = await factory.subject(by=alice)
    soon = (clock.now() + timedelta(days=1)).isoformat()
    recs = [await factory.record(by=manager, subject=subj, custodian_id=str(alice.id), retention_until=soon)
            for _ in range(3)]
    clock.advance(days=2)
    async with state.sessionmaker() as session:
        result = await retention.sweep(session, now=clock.now(), actor=None, dry_run=False, batch_size=2)
    assert result.count == 3
    rows = await _deliveries(state)
    assert sorted(p["data"]["record_id"] for _, p in rows) == sorted(r["id"] for r in recs)
    assert all(str(d.subscription_id) == hook["id"] and p["data"]["sweep"] is True for d, p in rows)


async def test_an_event_rolls_back_with_its_change(client, factory, state, team):
    """The outbox is written in the event's transaction: no change, no delivery."""
    director, alice = team["director"], team["alice"]
    await _hook(client, director, ["disclosure.raised"])
    subj = await factory.subject(by=alice)
    async with state.sessionmaker() as session:
        await outbox.enqueue(session, kind=WebhookEventKind.disclosure_raised, now=state.clock.now(),
                             notices=[outbox.Notice(resource_id=uuid.uuid4(), data={"disclosure_id": "x"})])
        await session.rollback()
    assert await _count(state, WebhookDelivery) == 0
    r = await client.post("/disclosures", headers=alice.headers,  # consented without consent: refused
                          json={"subject_id": subj["id"], "category": "consented", "summary": CONTENT})
    assert r.status_code == 422
    assert await _count(state, WebhookDelivery) == 0 and await _count(state, WebhookEvent) == 0


# -- delivery to a real receiver ------------------------------------------------------------------


async def _raise(client, person: Person, subject_id: str) -> dict:  # type: ignore[type-arg]
    r = await client.post("/disclosures", headers=person.headers,
                          json={"subject_id": subject_id, "category": "child_abuse", "summary": CONTENT})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_deliveries_arrive_signed_and_are_logged(client, factory, state, clock, team):
    director, alice = team["director"], team["alice"]
    async with Receiver() as receiver:
        hook = await _hook(client, director, ["disclosure.raised"], url=receiver.url)
        subj = await factory.subject(by=alice)
        disclosure = await _raise(client, alice, subj["id"])
        async with delivery.http_client(state.settings) as http:
            assert await delivery.deliver_due(state, http) == 1
            assert await delivery.deliver_due(state, http) == 0  # delivered: never again
    [got] = receiver.received
    assert got.path == "/hook" and got.headers["content-type"] == "application/json"
    now = int(clock.now().timestamp())
    assert signing.verify_signature(hook["secret"], got.headers["x-kmm-signature"], got.body, now=now)
    assert not signing.verify_signature("whsec_wrong", got.headers["x-kmm-signature"], got.body, now=now)
    assert not signing.verify_signature(hook["secret"], got.headers["x-kmm-signature"], got.body + b" ", now=now)
    assert not signing.verify_signature(hook["secret"], got.headers["x-kmm-signature"], got.body, now=now + 3600)
    body = json.loads(got.body)
    assert body["type"] == "disclosure.raised" and body["data"] == {"disclosure_id": disclosure["id"],
                                                                     "category": "child_abuse"}
    assert got.headers["x-kmm-event"] == "disclosure.raised" and got.headers["x-kmm-event-id"] == body["id"]
    _no_content(body)
    log = await client.get(f"/webhooks/{hook['id']}/deliveries", headers=director.headers)
    assert log.status_code == 200
    [item] = log.json()["items"]
    assert item["id"] == got.headers["x-kmm-delivery"] and item["status"] == "delivered"
    assert item["attempts"] == 1 and item["payload"] == body and item["next_attempt_at"] is None
    assert [(a["attempt"], a["status_code"], a["error"]) for a in item["attempt_log"]] == [(1, 200, None)]


async def test_failures_are_retried_with_backoff_then_given_up(client, factory, state, clock, team):
    director, alice = team["director"], team["alice"]
    base = state.settings.webhook_backoff_seconds
    async with Receiver(statuses=[500, 302, 200]) as receiver:
        hook = await _hook(client, director, ["disclosure.raised"], url=receiver.url)
        subj = await factory.subject(by=alice)
        await _raise(client, alice, subj["id"])
        async with delivery.http_client(state.settings) as http:
            assert await delivery.deliver_due(state, http) == 1  # 500
            assert await delivery.deliver_due(state, http) == 0  # not due before its backoff
            clock.advance(seconds=base - 1)
            assert await delivery.deliver_due(state, http) == 0
            clock.advance(seconds=1)
            assert await delivery.deliver_due(state, http) == 1  # a redirect is not followed: failed
            clock.advance(seconds=2 * base)  # the backoff doubles
            assert await delivery.deliver_due(state, http) == 1  # 200
    assert len(receiver.received) == 3 and len({r.headers["x-kmm-event-id"] for r in receiver.received}) == 1
    [item] = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=director.headers)).json()["items"]
    assert item["status"] == "delivered" and item["attempts"] == 3
    assert [(a["attempt"], a["status_code"]) for a in item["attempt_log"]] == [(1, 500), (2, 302), (3, 200)]


async def test_an_unreachable_receiver_fails_after_the_last_attempt(client, state, clock, factory, team):
    director, alice = team["director"], team["alice"]
    async with Receiver() as receiver:
        url = receiver.url
    hook = await _hook(client, director, ["disclosure.raised"], url=url)  # nothing listens there now
    subj = await factory.subject(by=alice)
    await _raise(client, alice, subj["id"])
    async with delivery.http_client(state.settings) as http:
        for _ in range(state.settings.webhook_max_attempts):
            assert await delivery.deliver_due(state, http) == 1
            clock.advance(hours=7)  # past the longest backoff
        assert await delivery.deliver_due(state, http) == 0
    await factory.login(director)  # days have passed
    [item] = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=director.headers)).json()["items"]
    assert item["status"] == "failed" and item["attempts"] == state.settings.webhook_max_attempts
    assert {a["error"] for a in item["attempt_log"]} == {"ConnectError"}
    assert {a["status_code"] for a in item["attempt_log"]} == {None}


async def test_a_removed_webhook_gets_nothing_more(client, factory, state, team):
    director, alice = team["director"], team["alice"]
    hook = await _hook(client, director, ["disclosure.raised"])
    subj = await factory.subject(by=alice)
    await _raise(client, alice, subj["id"])
    r = await client.delete(f"/webhooks/{hook['id']}", headers=director.headers)
    assert r.status_code == 204
    await _raise(client, alice, subj["id"])
    [(d, _)] = await _deliveries(state)
    assert d.status == "cancelled"
    async with delivery.http_client(state.settings) as http:
        assert await delivery.deliver_due(state, http) == 0
    got = (await client.get(f"/webhooks/{hook['id']}", headers=director.headers)).json()
    assert got["active"] is False
    assert (await client.get(f"/webhooks/{uuid.uuid4()}", headers=director.headers)).status_code == 404
    assert (await client.delete(f"/webhooks/{uuid.uuid4()}", headers=director.headers)).status_code == 404
    assert [e.resource_id for e in await dp.events(state, "webhook.remove")] == [hook["id"]]


async def test_two_workers_never_claim_the_same_delivery(client, factory, state, team):
    director, alice = team["director"], team["alice"]
    await _hook(client, director, ["disclosure.raised"])
    subj = await factory.subject(by=alice)
    for _ in range(3):
        await _raise(client, alice, subj["id"])
    now = state.clock.now()
    first = await delivery.claim_due(state, now=now)
    second = await delivery.claim_due(state, now=now)
    assert len(first) == 3 and second == []
    later = now + delivery.claim_lease(state.settings) + timedelta(seconds=1)
    again = await delivery.claim_due(state, now=later)  # the claimer died: the lease ran out
    assert {c.id for c in again} == {c.id for c in first}
    assert await _count(state, WebhookAttempt) == 0


async def test_an_unauthorised_access_report_the_service_opens_is_announced_too(client, state, factory, team):
    """Three denied reads open a report (§7.2); its event goes out with it, naming only the handler."""
    director, manager, alice = team["director"], team["manager"], team["alice"]
    bob = await factory.user("colleague", manager=manager)
    hook = await _hook(client, director, ["breach_report.opened"])
    subj = await factory.subject(by=bob)
    recs = [await factory.record(by=bob, subject=subj) for _ in range(3)]
    for i, rec in enumerate(recs):
        assert (await client.get(f"/records/{rec['id']}", headers=alice.headers)).status_code == 403
        assert await _count(state, WebhookDelivery) == (1 if i == 2 else 0)
    [(delivery, payload)] = await _deliveries(state)
    assert str(delivery.subscription_id) == hook["id"]
    data = payload["data"]
    assert data["kind"] == "unauthorised_access" and data["handler_id"] == str(manager.id)
    _no_content(payload, str(alice.id), *(r["id"] for r in recs))
