"""An account whose password a director chose does not extend that director's reach.

A director who makes an account (``POST /users``) or resets its password
(``POST /users/{id}/password``) knows the password, and the account's own change since may be
theirs too: the service cannot tell. Until another director resets it, the account counts as
that director where the policy keeps something from them: it is not made someone's line manager
by them (§3.2, §4.5, rule ``line-manager-change``), and it sees no breach report about them
(§1.8, §7.1, ``breach_reports.visible``)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from app.models.breach_reports import BreachReport
from app.models.users import User
from app.models.webhooks import WebhookDelivery, WebhookEvent
from tests.factory import Factory, Person
from tests.policy.org import events

SECRET = "chosen-password-sensitive-31ad"
DESCRIPTION = "chosen-password-description-7c1e"
EVIDENCE = "chosen-password-evidence-2b9d"
CHOSEN = "a password the director chose"
TEMPORARY = "the director chose this temporary one"
OWN = "and the account then changed it itself"
LINE_MANAGER_CHANGE = ("line-manager-change", "§4.5, §3.2")


async def stored(factory: Factory, user_id: uuid.UUID | str) -> User:
    async with factory.state.sessionmaker() as session:
        user = await session.get(User, uuid.UUID(str(user_id)))
        assert user is not None
        return user


async def handler_of(factory: Factory, report_id: str) -> uuid.UUID:
    """Straight from the table: no visibility involved."""
    async with factory.state.sessionmaker() as session:
        report = await session.get(BreachReport, uuid.UUID(report_id))
        assert report is not None
        return report.handler_id


async def made_by(client: httpx.AsyncClient, factory: Factory, director: Person, role: str = "colleague",
                  **fields: Any) -> Person:
    """An account a director makes through POST /users with a password of their choosing, logged
    in with that password (as the director could)."""
    email = f"made-{uuid.uuid4().hex[:8]}@test.kmm"
    r = await client.post("/users", headers=director.headers, json={
        "email": email, "full_name": f"Made {role.title()}", "role": role, "staff_type": "employee",
        "password": CHOSEN, **fields})
    assert r.status_code == 201, r.text
    person = Person(user=await stored(factory, r.json()["id"]), headers={})
    assert (await factory.login(person, CHOSEN)).status_code == 200
    return person


async def reset_and_change(client: httpx.AsyncClient, factory: Factory, director: Person, person: Person,
                           *, own: str = OWN) -> None:
    """A director resets the account's password, then whoever knows it logs in, makes the
    required change and refreshes: ``person`` holds an unrestricted session."""
    r = await client.post(f"/users/{person.id}/password", headers=director.headers, json={"new_password": TEMPORARY})
    assert r.status_code == 204 and r.content == b"", r.text
    assert (await factory.login(person, TEMPORARY)).json()["password_change_required"] is True
    r = await client.post("/users/me/password", headers=person.headers,
                          json={"current_password": TEMPORARY, "new_password": own})
    assert r.status_code == 204, r.text
    r = await client.post("/auth/refresh", json={"refresh_token": person.refresh_token})
    assert r.status_code == 200 and r.json()["password_change_required"] is False
    person.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    person.refresh_token = r.json()["refresh_token"]


def assert_denied(r: httpx.Response, rule: str, clause: str, status: int = 403) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert (body["rule"], body["clause"]) == (rule, clause), body
    for marker in (SECRET, DESCRIPTION, EVIDENCE, CHOSEN, TEMPORARY, OWN):
        assert marker not in r.text
    return body


# -- line management (§3.2, §4.5) ----------------------------------------------------------------


@pytest.fixture
async def team(factory: Factory) -> dict[str, Any]:
    """boss and other: directors; alice, managed by other, keeps a sensitive record."""
    boss = await factory.user("director")
    other = await factory.user("director")
    alice = await factory.user("colleague", manager=other)
    subject = await factory.subject(by=alice)
    sensitive = await factory.record(by=alice, subject=subject, classification="sensitive", content=SECRET)
    return {"boss": boss, "other": other, "alice": alice, "record": sensitive}


async def refused_as_line_manager(client: httpx.AsyncClient, factory: Factory, director: Person, alice: Person,
                                  manager_id: uuid.UUID) -> None:
    """The change is refused like making oneself the line manager: 403, rule and clause, an
    audited denial, and alice's line manager as it was."""
    before = (await stored(factory, alice.id)).line_manager_id
    denials = len(await events(factory, action="account.update", resource_id=str(alice.id)))
    r = await client.patch(f"/users/{alice.id}", headers=director.headers, json={"line_manager_id": str(manager_id)})
    body = assert_denied(r, *LINE_MANAGER_CHANGE)
    assert "another director makes that change" in body["detail"]
    after = await events(factory, action="account.update", resource_id=str(alice.id))
    assert [(e.decision, e.rule, e.clause, e.actor_id) for e in after[denials:]] == [
        ("deny", *LINE_MANAGER_CHANGE, director.id)]
    assert after[-1].detail == {"line_manager_id": [str(before), str(manager_id)]}
    assert (await stored(factory, alice.id)).line_manager_id == before


async def test_a_director_makes_a_puppet_line_manager_and_reads_a_sensitive_record(client, factory: Factory, team):
    """A director may not make themself a colleague's line manager; nor an account they made
    with a password they chose, which they log in as to read the colleague's sensitive record."""
    boss, alice, record = team["boss"], team["alice"], team["record"]
    assert_denied(await client.get(f"/records/{record['id']}", headers=boss.headers), "named", "§3.2")
    await refused_as_line_manager(client, factory, boss, alice, boss.id)  # the guard

    puppet = await made_by(client, factory, boss)
    assert (await stored(factory, puppet.id)).credentials_set_by == boss.id
    await refused_as_line_manager(client, factory, boss, alice, puppet.id)

    r = await client.get(f"/records/{record['id']}", headers=puppet.headers)
    assert_denied(r, "named", "§3.2")
    r = await client.get("/records", headers=puppet.headers)
    assert r.status_code == 200 and record["id"] not in r.text and SECRET not in r.text


async def test_an_account_whose_password_the_director_reset_counts_as_them(client, factory: Factory, team):
    """Resetting an existing colleague's password gives the director the same hold on it; the
    account's own change afterwards keeps it (the director may have made that change too)."""
    boss, other, alice = team["boss"], team["other"], team["alice"]
    dave = await factory.user("colleague", manager=other)
    assert (await stored(factory, dave.id)).credentials_set_by is None  # made on the server
    await reset_and_change(client, factory, boss, dave)
    assert (await stored(factory, dave.id)).credentials_set_by == boss.id
    await refused_as_line_manager(client, factory, boss, alice, dave.id)


async def test_a_director_whose_password_the_manager_chose_does_not_approve_it(client, factory: Factory, team):
    """The second director must not be the new line manager in disguise: a director account
    whose password boss chose does not make boss (or boss's puppet) someone's line manager."""
    boss, alice = team["boss"], team["alice"]
    deputy = await made_by(client, factory, boss, role="director")
    await refused_as_line_manager(client, factory, deputy, alice, boss.id)
    # The other way round: deputy's own puppet, by deputy, is refused as well.
    puppet = await made_by(client, factory, deputy)
    await refused_as_line_manager(client, factory, deputy, alice, puppet.id)


async def test_another_director_makes_the_puppet_a_line_manager(client, factory: Factory, state, team):
    """The change boss may not make alone, another director may (as for boss themself); the
    puppet then reads alice's sensitive record through the relation, flagged as recent."""
    boss, other, alice, record = team["boss"], team["other"], team["alice"], team["record"]
    puppet = await made_by(client, factory, boss)
    r = await client.patch(f"/users/{alice.id}", headers=other.headers, json={"line_manager_id": str(puppet.id)})
    assert r.status_code == 200, r.text
    assert r.json()["line_manager_id"] == str(puppet.id)
    changed = (await events(factory, action="account.update", resource_id=str(alice.id)))[-1]
    assert (changed.decision, changed.actor_id) == ("allow", other.id)
    r = await client.get(f"/records/{record['id']}", headers=puppet.headers)
    assert r.status_code == 200, r.text
    assert r.json()["access"] == {"rule": "line-manager", "clause": "§1.3, §3.3, §4.2", "emergency": False,
                                  "recent_relation": True}


async def test_accounts_no_director_chose_a_password_for_are_made_line_managers(client, factory: Factory, team):
    """The refusal is no wider than the hold: an account made on the server, or one whose
    password another director chose, is made a line manager by boss as before."""
    boss, other, alice = team["boss"], team["other"], team["alice"]
    carol = await factory.user("colleague", manager=other)
    r = await client.patch(f"/users/{alice.id}", headers=boss.headers, json={"line_manager_id": str(carol.id)})
    assert r.status_code == 200, r.text
    theirs = await made_by(client, factory, other)
    r = await client.patch(f"/users/{alice.id}", headers=boss.headers, json={"line_manager_id": str(theirs.id)})
    assert r.status_code == 200, r.text
    assert (await stored(factory, alice.id)).line_manager_id == theirs.id


async def test_only_another_directors_reset_lifts_the_hold(client, factory: Factory, team):
    """The puppet's own password change keeps boss's hold; a reset by another director replaces
    it, and then boss may make the account a line manager."""
    boss, other, alice = team["boss"], team["other"], team["alice"]
    puppet = await made_by(client, factory, boss)
    r = await client.post("/users/me/password", headers=puppet.headers,
                          json={"current_password": CHOSEN, "new_password": OWN})
    assert r.status_code == 204, r.text
    assert (await stored(factory, puppet.id)).credentials_set_by == boss.id
    await refused_as_line_manager(client, factory, boss, alice, puppet.id)

    await reset_and_change(client, factory, other, puppet, own="the owner's own choice at last")
    assert (await stored(factory, puppet.id)).credentials_set_by == other.id
    r = await client.patch(f"/users/{alice.id}", headers=boss.headers, json={"line_manager_id": str(puppet.id)})
    assert r.status_code == 200, r.text
    # and now other, who chose the password, may not make the same change again
    bob = await factory.user("colleague", manager=other)
    await refused_as_line_manager(client, factory, other, bob, puppet.id)


async def test_an_account_made_with_a_puppet_line_manager_is_made(client, factory: Factory, team):
    """POST /users sets only the new account's own line manager: it has no records yet for the
    relation to open (as when a director makes an account under themself)."""
    boss = team["boss"]
    puppet = await made_by(client, factory, boss)
    under = await made_by(client, factory, boss, line_manager_id=str(puppet.id))
    assert (await stored(factory, under.id)).line_manager_id == puppet.id


# -- breach reports (§1.8, §7.1) -----------------------------------------------------------------


@pytest.fixture
async def org(factory: Factory) -> dict[str, Person]:
    """boss and other: directors; carol (colleague) manages bob; alice reports."""
    return await factory.breach_org()


async def reported(factory: Factory, reporter: Person, about: Person) -> str:
    return await factory.breach_report(by=reporter, about=about, description=DESCRIPTION, evidence=EVIDENCE)


async def sees(client: httpx.AsyncClient, person: Person, report_id: str) -> bool:
    """Whether the account knows of the report, by the report and by the list; both agree."""
    one = await client.get(f"/breach-reports/{report_id}", headers=person.headers)
    listed = await client.get("/breach-reports", headers=person.headers, params={"limit": 200})
    assert listed.status_code == 200, listed.text
    in_list = report_id in {item["id"] for item in listed.json()["items"]}
    if one.status_code == 404:
        assert not in_list and DESCRIPTION not in one.text and report_id not in listed.text
        return False
    assert one.status_code == 200 and in_list, one.text
    return True


async def report_events(client: httpx.AsyncClient, person: Person) -> set[str]:
    """The reports a director finds events about in the audit trail, whatever the filter."""
    found: set[str] = set()
    for params in ({}, {"resource_type": "breach_report"}, {"action": "breach_report.create"}):
        r = await client.get("/audit-events", headers=person.headers, params={"limit": 200, **params})
        assert r.status_code == 200, r.text
        found |= {e["resource_id"] for e in r.json()["items"] if e["resource_type"] == "breach_report"}
    return found


async def test_the_director_concerned_resets_the_handlers_password_and_reads_the_report(client, factory, org):
    """A director resets another account's password (POST /users/{id}/password) and so knows it:
    they log in as the handler, make the required change, refresh, and read the report about
    themself. The service never asks that the reset reach the account's owner."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    report_id = await reported(factory, alice, boss)
    assert await handler_of(factory, report_id) == other.id
    temporary = "boss chose this temporary one"
    r = await client.post(f"/users/{other.id}/password", headers=boss.headers, json={"new_password": temporary})
    assert r.status_code == 204, r.text
    r = await client.post("/auth/token", data={"username": other.email, "password": temporary})
    assert r.status_code == 200, r.text
    tokens = r.json()
    as_other = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = await client.post("/users/me/password", headers=as_other,
                          json={"current_password": temporary, "new_password": "and now boss owns this one"})
    assert r.status_code == 204, r.text
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    as_other = {"Authorization": f"Bearer {r.json()['access_token']}"}

    r = await client.get(f"/breach-reports/{report_id}", headers=as_other)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert DESCRIPTION not in r.text, "the director concerned read the report about them as its handler"
    r = await client.get("/breach-reports", headers=as_other)
    assert r.status_code == 200 and r.json()["items"] == []
    r = await client.get("/compliance/summary", headers=as_other)
    assert r.status_code == 200 and report_id not in r.text
    assert report_id not in await report_events(client, Person(user=other.user, headers=as_other))
    # No other director could take it: it stays with other, waiting for one (next test).
    assert await handler_of(factory, report_id) == other.id


async def test_a_report_the_handler_no_longer_sees_goes_to_another_director(client, factory, clock, org):
    """The concerned director's reset does not bury the report: it is routed again, to a director
    whose password they did not choose, in the same transaction. Nothing of it reaches the
    director concerned: not the reset's answer, its event, nor the trail (the move is an event
    about the report, which they may not know of)."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    clock.advance(seconds=1)
    third = await factory.user("director")
    report_id = await reported(factory, alice, boss)
    assert await handler_of(factory, report_id) == other.id  # the earliest director but boss
    await reset_and_change(client, factory, boss, other)

    assert await handler_of(factory, report_id) == third.id
    assert not await sees(client, other, report_id)
    assert await sees(client, third, report_id)
    r = await client.get(f"/breach-reports/{report_id}", headers=third.headers)
    assert (r.json()["view"], r.json()["handler_id"], r.json()["description"]) == ("full", str(third.id), DESCRIPTION)
    moved = await events(factory, action="breach_report.rerouted", resource_id=report_id)
    assert [(e.actor_id, e.decision, e.rule, e.clause) for e in moved] == [(boss.id, "allow", "routing", "§1.8")]
    assert moved[0].detail == {"kind": "colleague_conduct", "status": "open", "handler_id": str(third.id),
                               "previous_handler_id": str(other.id), "routed_to": "director",
                               "account_id": str(other.id)}
    reset = (await events(factory, action="account.password_reset", resource_id=str(other.id)))[-1]
    assert (reset.actor_id, reset.detail) == (boss.id, {})
    assert report_id not in await report_events(client, boss)
    assert report_id not in await report_events(client, other)
    assert report_id in await report_events(client, third)


async def test_a_closed_report_is_not_routed_again(client, factory, clock, org):
    boss, other, alice = org["boss"], org["other"], org["alice"]
    clock.advance(seconds=1)
    await factory.user("director")
    report_id = await reported(factory, alice, boss)
    r = await client.post(f"/breach-reports/{report_id}/finding", headers=other.headers,
                          json={"finding": "unsubstantiated"})
    assert r.status_code == 200, r.text
    await reset_and_change(client, factory, boss, other)
    assert await handler_of(factory, report_id) == other.id
    assert await events(factory, action="breach_report.rerouted") == []
    assert not await sees(client, other, report_id)


async def test_reports_about_anyone_else_stay_with_the_account(client, factory, org):
    """The account boss reset loses only reports about boss: one about bob stays visible to
    its handler carol and to other, in the list and in the audit trail."""
    boss, other, carol, bob, alice = org["boss"], org["other"], org["carol"], org["bob"], org["alice"]
    about_bob = await reported(factory, alice, bob)
    about_boss = await reported(factory, alice, boss)
    await reset_and_change(client, factory, boss, carol)
    await reset_and_change(client, factory, boss, other, own="other's next one, chosen alone")
    assert await handler_of(factory, about_bob) == carol.id
    assert await sees(client, carol, about_bob)
    assert await sees(client, other, about_bob) and not await sees(client, other, about_boss)
    assert await report_events(client, other) == {about_bob}


async def test_a_reporter_whose_password_the_concerned_chose_loses_its_status(client, factory, clock, org):
    """The reporter follows its report's status, but boss may be the one logged in as it."""
    boss, alice = org["boss"], org["alice"]
    report_id = await reported(factory, alice, boss)
    assert await sees(client, alice, report_id)
    await reset_and_change(client, factory, boss, alice)
    assert not await sees(client, alice, report_id)
    # Another director's reset gives it back, the owner's own change does not.
    await reset_and_change(client, factory, org["other"], alice, own="alice's own, chosen once more")
    assert await sees(client, alice, report_id)


async def test_routing_passes_over_accounts_whose_password_the_concerned_chose(client, factory, clock, org):
    """A report about boss goes neither to a line manager nor to a director whose password boss
    chose: they would not see it."""
    boss, other, alice = org["boss"], org["other"], org["alice"]
    clock.advance(seconds=1)
    third = await factory.user("director")
    puppet = await made_by(client, factory, boss)
    r = await client.patch(f"/users/{boss.id}", headers=other.headers, json={"line_manager_id": str(puppet.id)})
    assert r.status_code == 200, r.text
    await reset_and_change(client, factory, boss, other)
    report_id = await reported(factory, alice, boss)
    assert await handler_of(factory, report_id) == third.id
    assert not await sees(client, puppet, report_id)
    # A report about someone else still goes to that line manager.
    dave = await factory.user("colleague", manager=puppet)
    assert await handler_of(factory, await reported(factory, alice, dave)) == puppet.id


async def test_a_director_does_not_assign_a_report_to_an_account_the_concerned_holds(client, factory, clock, org):
    boss, other, alice = org["boss"], org["other"], org["alice"]
    clock.advance(seconds=1)
    third = await factory.user("director")
    report_id = await reported(factory, alice, boss)
    puppet = await made_by(client, factory, boss)
    r = await client.post(f"/breach-reports/{report_id}/assign", headers=third.headers,
                          json={"handler_id": str(puppet.id)})
    body = assert_denied(r, "concerned-never-sees", "§1.8", status=422)
    assert body["errors"][0]["loc"] == ["body", "handler_id"]
    assert await handler_of(factory, report_id) == other.id
    r = await client.post(f"/breach-reports/{report_id}/assign", headers=third.headers,
                          json={"handler_id": str(alice.id)})
    assert r.status_code == 200 and r.json()["handler_id"] == str(alice.id)


async def test_an_assigned_handler_whose_password_the_concerned_reset_is_replaced(client, factory, clock, org):
    """A director's assignment holds while the assignee is staff, but not once the colleague
    concerned chose the assignee's password: the report goes where routing sends it."""
    boss, other, carol, alice = org["boss"], org["other"], org["carol"], org["alice"]
    clock.advance(seconds=1)
    third = await factory.user("director")
    report_id = await reported(factory, alice, boss)
    r = await client.post(f"/breach-reports/{report_id}/assign", headers=third.headers,
                          json={"handler_id": str(carol.id)})
    assert r.status_code == 200, r.text
    await reset_and_change(client, factory, boss, carol)
    assert await handler_of(factory, report_id) == other.id
    assert not await sees(client, carol, report_id) and await sees(client, other, report_id)


async def test_a_reset_by_a_director_not_concerned_moves_nothing(client, factory, clock, org):
    boss, other, alice = org["boss"], org["other"], org["alice"]
    clock.advance(seconds=1)
    third = await factory.user("director")
    report_id = await reported(factory, alice, boss)
    await reset_and_change(client, factory, third, other)
    assert await handler_of(factory, report_id) == other.id
    assert await events(factory, action="breach_report.rerouted") == []
    assert await sees(client, other, report_id)


async def test_webhooks_of_an_account_whose_password_the_concerned_chose_carry_nothing(client, factory, state, org):
    """A subscription reaches a report only through its creator's visibility (``visible``), so
    a director whose password boss reset receives no event about a report about boss."""
    boss, other, bob, alice = org["boss"], org["other"], org["bob"], org["alice"]
    r = await client.post("/webhooks", headers=other.headers, json={
        "url": "https://hooks.kmm.example/in", "events": ["breach_report.opened"]})
    assert r.status_code == 201, r.text
    hook_id = r.json()["id"]
    await reset_and_change(client, factory, boss, other)
    about_boss = await reported(factory, alice, boss)
    about_bob = await reported(factory, alice, bob)
    async with state.sessionmaker() as session:
        queued = set((await session.execute(
            select(WebhookEvent.resource_id)
            .join(WebhookDelivery, col(WebhookDelivery.event_id) == col(WebhookEvent.id))
            .where(col(WebhookDelivery.subscription_id) == uuid.UUID(hook_id)))).scalars())
    assert queued == {uuid.UUID(about_bob)}
    r = await client.get(f"/webhooks/{hook_id}/deliveries", headers=other.headers, params={"limit": 200})
    assert r.status_code == 200, r.text
    assert about_boss not in r.text and about_bob in r.text
