"""/subjects: who information is about (§2.1); staff browse it, trustees do not."""

from __future__ import annotations

import uuid

from tests.factory import Factory
from tests.policy.org import events


async def test_create_individual_organisation_and_employee(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    org = await factory.subject(by=alice, kind="organisation", name="Riverside Tenants", category="organisation",
                                officers=[{"name": "Ada", "office": "chair"}, {"name": "Eli", "office": "manager"}])
    assert org["officers"] == [{"name": "Ada", "office": "chair"}, {"name": "Eli", "office": "manager"}]
    emp = await factory.subject(by=director, name="Alice", category="employee", user_id=str(alice.id))
    assert emp["user_id"] == str(alice.id)
    r = await client.post("/subjects", headers=director.headers, json={
        "kind": "individual", "name": "Alice again", "category": "employee", "user_id": str(alice.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "user_id"
    r = await client.get(f"/subjects/{org['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json() == org
    assert (await client.get(f"/subjects/{uuid.uuid4()}", headers=alice.headers)).status_code == 404
    created = await events(factory, action="subject.create")
    assert {e.resource_id for e in created} == {org["id"], emp["id"]}


async def test_list_search_filter_and_pages(client, factory: Factory):
    alice = await factory.user("colleague")
    names = ["Ann Smith", "Bob Smith", "Cat Jones", "Dan 50%_off", "Eve Smithers"]
    for name in names:
        await factory.subject(by=alice, name=name)
    await factory.subject(by=alice, kind="organisation", name="Smith Trust", category="organisation")

    async def names_of(**params) -> list[str]:  # type: ignore[no-untyped-def]
        r = await client.get("/subjects", headers=alice.headers, params=params)
        assert r.status_code == 200, r.text
        return [s["name"] for s in r.json()["items"]]

    assert await names_of(q="smith") == ["Ann Smith", "Bob Smith", "Eve Smithers", "Smith Trust"]
    assert await names_of(q="smith", category="organisation") == ["Smith Trust"]
    assert await names_of(q="50%_") == ["Dan 50%_off"]  # wildcards are literal
    assert await names_of(q="%") == ["Dan 50%_off"]
    seen: list[str] = []
    cursor = None
    while True:
        r = await client.get("/subjects", headers=alice.headers,
                             params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [s["name"] for s in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert seen == sorted([*names, "Smith Trust"])
    assert (await client.get("/subjects", headers=alice.headers, params={"cursor": "x.y"})).status_code == 400
    assert (await client.get("/subjects", headers=alice.headers, params={"category": "alien"})).status_code == 422


async def test_trustees_and_clients_without_scope_are_refused(client, factory: Factory, state):
    director = await factory.user("director")
    trustee = await factory.user("trustee")
    subject = await factory.subject(by=director, name="Private Person")
    for method, path in (("GET", "/subjects"), ("GET", f"/subjects/{subject['id']}"), ("POST", "/subjects")):
        r = await client.request(method, path, headers=trustee.headers,
                                 json={"kind": "individual", "name": "X", "category": "member"})
        assert r.status_code == 403, r.text
        assert (r.json()["rule"], r.json()["clause"]) == ("staff-only", "§3.1")
        assert "Private Person" not in r.text
    assert (await client.get("/subjects")).status_code == 401
    # each refusal at the door is audited, with the rule and clause
    from sqlmodel import select

    from app.models.audit import AuditEvent

    async with state.sessionmaker() as s:
        refused = list((await s.execute(select(AuditEvent).where(AuditEvent.action == "endpoint.denied"))).scalars())
    assert [(e.actor_id, e.rule, e.clause) for e in refused] == [(trustee.id, "staff-only", "§3.1")] * 3


async def test_an_employee_subject_links_only_to_an_employee_account(client, factory):
    director = await factory.user("director")
    volunteer = await factory.user("colleague", manager=director, staff_type="volunteer")
    r = await client.post("/subjects", headers=director.headers, json={
        "kind": "individual", "name": "Vic Volunteer", "category": "employee", "user_id": str(volunteer.id)})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "user_id"]
