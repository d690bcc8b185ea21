"""Webhooks never carry a breach report to anyone who may not know of it (§1.8, §7.1: the colleague
concerned never sees the report, not even a trace), a director concerned included.

A breach-report event goes only to subscriptions whose creator, an active director, may know of
the report, and is checked again before each post; a delivery log leaves out every delivery about
a report its reader may not know of, with pages and cursors that do not show the omission. The
subscription list and a subscription's own page say nothing of reports; there is no other path
(no single-delivery read, no replay).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import col, select

from app.models.webhooks import DeliveryStatus, WebhookDelivery, WebhookEvent, WebhookEventKind
from app.workflows.webhooks import delivery
from tests.factory import Factory, Person
from tests.webhook_receiver import Receiver

DESCRIPTION = "probe-breach-description-7c1e"
EVIDENCE = "probe-breach-evidence-2b9d"
CONTENT = "hook-side-door-content-41aa"
BREACH = "breach_report.opened"


@pytest.fixture
async def org(factory: Factory):
    """boss and other: directors; carol (colleague) manages bob; alice reports."""
    return await factory.breach_org()


async def _hook(client, director: Person, events: list[str], url: str = "https://hooks.kmm.example/in",
                **kw: Any) -> str:
    r = await client.post("/webhooks", headers=director.headers, json={"url": url, "events": events, **kw})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _report(factory: Factory, by: Person, concerned: Person, kind: str = "colleague_conduct") -> str:
    return await factory.breach_report(by=by, about=concerned, description=DESCRIPTION, kind=kind,
                                       evidence=EVIDENCE if kind == "colleague_conduct" else None)


async def _disclosure(client, factory: Factory, by: Person) -> str:
    subject = await factory.subject(by=by)
    r = await client.post("/disclosures", headers=by.headers,
                          json={"subject_id": subject["id"], "category": "child_abuse", "summary": CONTENT})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _stored(state, hook_id: str) -> list[tuple[str, str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """Every delivery the outbox holds for a subscription: (kind, status, payload data)."""
    async with state.sessionmaker() as s:
        rows = (await s.execute(
            select(WebhookDelivery.kind, WebhookDelivery.status, WebhookEvent.payload)
            .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
            .where(col(WebhookDelivery.subscription_id) == uuid.UUID(hook_id))
            .order_by(col(WebhookDelivery.created_at))
        )).all()
    return [(str(kind), str(status), json.loads(payload)["data"]) for kind, status, payload in rows]


async def _log(client, who: Person, hook_id: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/webhooks/{hook_id}/deliveries", headers=who.headers, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def _named(page: dict[str, Any]) -> list[str]:
    """What each delivery of a page is about: the report's or the disclosure's id."""
    return [item["payload"]["data"].get("breach_report_id") or item["payload"]["data"]["disclosure_id"]
            for item in page["items"]]


def _nothing_of(text: str, report_id: str) -> None:
    for marker in (report_id, DESCRIPTION, EVIDENCE, BREACH):
        assert marker not in text, marker


# -- the subscription the director concerned makes ---------------------------------------------------


async def test_webhook_deliveries_show_the_director_concerned_a_report_about_them(client, factory, state, org):
    """A director concerned by a report subscribes a webhook to breach_report.opened and reads its
    delivery log: the report is not there, and was never sent to the URL they chose."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    hook_id = await _hook(client, boss, [BREACH])
    theirs = await _hook(client, other, [BREACH], url="https://hooks.kmm.example/hr")

    report_id = await _report(factory, alice, boss)
    # boss may not know of it ...
    assert (await client.get(f"/breach-reports/{report_id}", headers=boss.headers)).status_code == 404

    # ... and the delivery log of the webhook does not name it
    r = await client.get(f"/webhooks/{hook_id}/deliveries", headers=boss.headers)
    assert r.status_code == 200, r.text
    assert report_id not in r.text, "the director concerned sees the report's id in a webhook delivery"
    assert r.json() == {"items": [], "next_cursor": None}
    # nothing is queued for boss's URL; the other director's subscription has it
    assert await _stored(state, hook_id) == []
    assert [(kind, data["breach_report_id"]) for kind, _, data in await _stored(state, theirs)] == [
        (BREACH, report_id)]
    assert _named(await _log(client, other, theirs)) == [report_id]


async def test_a_handler_filter_does_not_carry_a_report_to_the_director_concerned(client, factory, state, org):
    """boss names the handler of reports about them (the other director) on a subscription: the
    filter matches, the report still does not go to boss's URL. boss's filter for carol lets a
    report about bob through: boss may know of that one."""
    boss, other, carol, bob, alice = org["boss"], org["other"], org["carol"], org["bob"], org["alice"]
    to_other = await _hook(client, boss, [BREACH], handler_id=str(other.id))
    to_carol = await _hook(client, boss, [BREACH], handler_id=str(carol.id))
    others = await _hook(client, other, [BREACH], handler_id=str(other.id))

    about_boss = await _report(factory, alice, boss)
    about_bob = await _report(factory, alice, bob)

    assert await _stored(state, to_other) == []
    assert [data["breach_report_id"] for _, _, data in await _stored(state, others)] == [about_boss]
    assert [data for _, _, data in await _stored(state, to_carol)] == [
        {"breach_report_id": about_bob, "kind": "colleague_conduct", "handler_id": str(carol.id)}]
    _nothing_of(json.dumps(await _log(client, boss, to_other)), about_boss)
    assert _named(await _log(client, boss, to_carol)) == [about_bob]


# -- another director's subscription -------------------------------------------------------------------


async def test_webhook_deliveries_of_another_directors_hook_name_the_report(client, factory, clock, org):
    """The log of a subscription another director made shows boss everything but the report about
    boss; its maker sees all of it. The subscription list and page name no report."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    hook_id = await _hook(client, other, [BREACH, "disclosure.raised"], url="https://hooks.kmm.example/hr")
    before = await _disclosure(client, factory, alice)
    clock.advance(seconds=1)
    report_id = await _report(factory, alice, boss, kind="confidentiality_breach")
    clock.advance(seconds=1)
    after = await _disclosure(client, factory, alice)

    r = await client.get(f"/webhooks/{hook_id}/deliveries", headers=boss.headers)
    assert r.status_code == 200, r.text
    assert report_id not in r.text, "the director concerned reads another director's delivery log"
    _nothing_of(r.text, report_id)
    assert _named(r.json()) == [after, before]
    assert _named(await _log(client, other, hook_id)) == [after, report_id, before]

    for path in ("/webhooks", f"/webhooks/{hook_id}"):
        r = await client.get(path, headers=boss.headers)
        assert r.status_code == 200, r.text
        _nothing_of(r.text.replace(BREACH, ""), report_id)  # the events it asks for are listed, no report


async def test_pages_and_cursors_of_the_log_do_not_show_a_left_out_delivery(client, factory, clock, org):
    """Reports about boss come before, between and after two disclosures: boss's pages hold the
    disclosures alone, and no cursor leads to a page that would have held only a report."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    hook_id = await _hook(client, other, [BREACH, "disclosure.raised"])
    made: list[str] = []
    for step in ("report", "disclosure", "report", "disclosure", "report"):
        made.append(await _report(factory, alice, boss) if step == "report" else
                    await _disclosure(client, factory, alice))
        clock.advance(seconds=1)
    reports, disclosures = made[0::2], made[1::2]
    await factory.login(boss)
    await factory.login(other)

    newest_first = list(reversed(disclosures))
    page = await _log(client, boss, hook_id, limit=2)
    assert _named(page) == newest_first and page["next_cursor"] is None
    page = await _log(client, boss, hook_id, limit=1)
    assert _named(page) == newest_first[:1] and page["next_cursor"]
    page = await _log(client, boss, hook_id, limit=1, cursor=page["next_cursor"])
    assert _named(page) == newest_first[1:] and page["next_cursor"] is None
    for rid in reports:
        assert rid not in json.dumps(page)

    # the director who may know of them pages through all five
    seen, cursor = [], None
    while True:
        page = await _log(client, other, hook_id, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += _named(page)
        if not (cursor := page["next_cursor"]):
            break
    assert seen == list(reversed(made))


async def test_a_detection_report_about_a_director_reaches_neither_their_hook_nor_their_log(
        client, state, factory, org):
    """Three denied reads open an unauthorised-access report about boss (§7.2): boss's subscription
    gets nothing, and boss does not find it in the other director's log."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    mine = await _hook(client, boss, [BREACH])
    theirs = await _hook(client, other, [BREACH])
    subject = await factory.subject(by=alice)
    for _ in range(3):  # sensitive: a director does not read them by rank (§3.2)
        rec = await factory.record(by=alice, subject=subject, classification="sensitive", content=CONTENT)
        assert (await client.get(f"/records/{rec['id']}", headers=boss.headers)).status_code == 403

    [(kind, _, data)] = await _stored(state, theirs)
    assert kind == BREACH and data["kind"] == "unauthorised_access" and data["handler_id"] == str(other.id)
    report_id = data["breach_report_id"]
    assert await _stored(state, mine) == []
    assert (await _log(client, boss, theirs))["items"] == []
    _nothing_of(json.dumps(await _log(client, boss, mine)), report_id)
    assert _named(await _log(client, other, theirs)) == [report_id]


# -- a creator who is no longer an active director ---------------------------------------------------------


async def test_a_deactivated_director_s_subscription_gets_no_breach_report_events(client, state, factory, org):
    """A former colleague can do nothing (§7.2): once its creator is deactivated, a subscription
    gets no breach-report event, though other events go on. One made by an active director still
    gets the report."""
    other, bob, alice = org["other"], org["bob"], org["alice"]
    dave = await factory.user("director")
    daves = await _hook(client, dave, [BREACH, "disclosure.raised"])
    others = await _hook(client, other, [BREACH])
    r = await client.patch(f"/users/{dave.id}", headers=other.headers, json={"active": False})
    assert r.status_code == 200, r.text

    report_id = await _report(factory, alice, bob)
    disclosure_id = await _disclosure(client, factory, alice)

    assert [(kind, data.get("disclosure_id")) for kind, _, data in await _stored(state, daves)] == [
        ("disclosure.raised", disclosure_id)]
    assert [data["breach_report_id"] for _, _, data in await _stored(state, others)] == [report_id]
    # other may know of the report: dave's log shows other the disclosure, and no report was in it
    assert _named(await _log(client, other, daves)) == [disclosure_id]


async def test_a_subscription_whose_creator_is_no_longer_a_director_gets_no_breach_report_events(
        client, state, factory, org):
    """Subscriptions are a director's act (§4.5). dave, a director, subscribes, becomes a colleague
    and handles a report about erin, whom he now line-manages: he reads all of it, yet the
    subscription he made as a director is not sent it."""
    other, alice = org["other"], org["alice"]
    dave = await factory.user("director")
    daves = await _hook(client, dave, [BREACH])
    r = await client.patch(f"/users/{dave.id}", headers=other.headers, json={"role": "colleague"})
    assert r.status_code == 200, r.text
    erin = await factory.user("colleague", manager=dave)

    report_id = await _report(factory, alice, erin)
    r = await client.get(f"/breach-reports/{report_id}", headers=dave.headers)
    assert r.status_code == 200 and r.json()["view"] == "full" and r.json()["handler_id"] == str(dave.id)
    assert await _stored(state, daves) == []


# -- the delivery worker checks again before each post ---------------------------------------------------


async def test_the_worker_cancels_a_report_delivery_whose_creator_stopped_being_a_director(
        client, state, factory, org):
    """dave's subscription is sent a report while dave is a director; dave is deactivated before it
    goes out: it is cancelled, never posted. The other director's copy is posted."""
    other, bob, alice = org["other"], org["bob"], org["alice"]
    dave = await factory.user("director")
    async with Receiver() as receiver:
        daves = await _hook(client, dave, [BREACH], url=receiver.url.replace("/hook", "/dave"))
        others = await _hook(client, other, [BREACH], url=receiver.url)
        report_id = await _report(factory, alice, bob)
        assert [status for _, status, _ in await _stored(state, daves)] == ["pending"]
        r = await client.patch(f"/users/{dave.id}", headers=other.headers, json={"active": False})
        assert r.status_code == 200, r.text
        async with delivery.http_client(state.settings) as http:
            assert await delivery.deliver_due(state, http) == 1
            assert await delivery.deliver_due(state, http) == 0
    [got] = receiver.received
    assert got.path == "/hook" and json.loads(got.body)["data"]["breach_report_id"] == report_id
    assert [status for _, status, _ in await _stored(state, daves)] == [DeliveryStatus.cancelled]
    assert [status for _, status, _ in await _stored(state, others)] == [DeliveryStatus.delivered]
    [item] = (await _log(client, other, daves))["items"]
    assert item["status"] == "cancelled" and item["attempts"] == 0 and item["attempt_log"] == []


async def test_the_worker_never_posts_a_report_to_the_director_concerned_whatever_the_outbox_holds(
        client, state, factory, org):
    """A delivery of a report about boss to boss's subscription, already in the outbox (written
    without the creator check), is cancelled when claimed; an event about a report that cannot be
    found is cancelled too; boss's other deliveries go out."""
    boss, alice = org["boss"], org["alice"]
    async with Receiver() as receiver:
        hook_id = await _hook(client, boss, [BREACH, "disclosure.raised"], url=receiver.url)
        report_id = await _report(factory, alice, boss)
        now = state.clock.now()
        planted: list[uuid.UUID] = []
        async with state.sessionmaker() as s:
            for about in (uuid.UUID(report_id), uuid.uuid4()):
                event_id, delivery_id = uuid.uuid4(), uuid.uuid4()
                body = {"id": str(event_id), "type": BREACH, "created_at": "x",
                        "data": {"breach_report_id": str(about)}}
                await s.execute(insert(WebhookEvent).values(
                    id=event_id, kind=WebhookEventKind.breach_report_opened, resource_id=about,
                    payload=json.dumps(body), created_at=now))
                await s.execute(insert(WebhookDelivery).values(
                    id=delivery_id, subscription_id=uuid.UUID(hook_id), event_id=event_id,
                    kind=WebhookEventKind.breach_report_opened, status=DeliveryStatus.pending, attempts=0,
                    next_attempt_at=now, created_at=now))
                planted.append(delivery_id)
            await s.commit()
        disclosure_id = await _disclosure(client, factory, alice)
        async with delivery.http_client(state.settings) as http:
            assert await delivery.deliver_due(state, http) == 1
    [got] = receiver.received
    assert json.loads(got.body)["data"]["disclosure_id"] == disclosure_id
    async with state.sessionmaker() as s:
        statuses = dict((await s.execute(
            select(WebhookDelivery.id, WebhookDelivery.status).where(col(WebhookDelivery.id).in_(planted))
        )).all())
    assert statuses == {planted[0]: DeliveryStatus.cancelled, planted[1]: DeliveryStatus.cancelled}
    page = await _log(client, boss, hook_id)
    assert _named(page) == [disclosure_id]
    _nothing_of(json.dumps(page), report_id)
