"""Passing a confidential record on (§3.1) and naming colleagues on a sensitive one (§3.2, §1.3)."""

from __future__ import annotations

from app.models.records import RecordNamedAccess, RecordShare
from tests.factory import Factory
from tests.policy.org import count, events


async def test_share_with_colleague_and_trustee_then_revoke(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    trustee = await factory.user("trustee")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    for who in (ben, trustee):
        r = await client.post(f"/records/{rec['id']}/shares", json={"user_id": str(who.id), "reason": "review"},
                              headers=alice.headers)
        assert r.status_code == 201, r.text
        assert r.json()["shared_by"] == str(alice.id) and r.json()["reason"] == "review"
        r = await client.get(f"/records/{rec['id']}", headers=who.headers)
        assert r.status_code == 200 and r.json()["access"]["rule"] == "shared"
    r = await client.get(f"/records/{rec['id']}/shares", headers=alice.headers)
    assert {s["user_id"] for s in r.json()} == {str(ben.id), str(trustee.id)}
    # A recipient cannot pass it on or see who else holds it.
    r = await client.post(f"/records/{rec['id']}/shares", json={"user_id": str(director.id), "reason": "x"},
                          headers=ben.headers)
    # The refusal cites what would allow it (the custodian), not the share the recipient holds.
    assert r.status_code == 403 and (r.json()["rule"], r.json()["clause"]) == ("custodian", "§4.2, §3.2")
    assert "only the custodian, the custodian's line manager or a director may share" in r.json()["detail"]
    assert (await client.get(f"/records/{rec['id']}/shares", headers=ben.headers)).status_code == 403
    r = await client.post(f"/records/{rec['id']}/shares", json={"user_id": str(ben.id), "reason": "again"},
                          headers=alice.headers)
    assert r.status_code == 409
    r = await client.delete(f"/records/{rec['id']}/shares/{ben.id}", headers=alice.headers)
    assert r.status_code == 204
    assert (await client.get(f"/records/{rec['id']}", headers=ben.headers)).status_code == 403
    assert (await client.delete(f"/records/{rec['id']}/shares/{ben.id}", headers=alice.headers)).status_code == 404
    assert [e.action for e in await events(factory, resource_id=rec["id"], actor_id=alice.id)
            if e.action.startswith("record.")] == ["record.create", "record.share", "record.share", "record.unshare"]


async def test_share_refusals_write_nothing(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    gone = await factory.user("colleague", manager=director, login=False)
    await client.patch(f"/users/{gone.id}", json={"active": False}, headers=director.headers)
    subject = await factory.subject(by=alice)
    conf = await factory.record(by=alice, subject=subject)
    sens = await factory.record(by=alice, subject=subject, classification="sensitive")
    general = await factory.record(by=alice, subject=subject, classification="general")
    for user_id in (gone.id, alice.id, subject["id"]):
        r = await client.post(f"/records/{conf['id']}/shares", json={"user_id": str(user_id), "reason": "r"},
                              headers=alice.headers)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "user_id", r.text
    for rec in (sens, general):
        r = await client.post(f"/records/{rec['id']}/shares", json={"user_id": str(director.id), "reason": "r"},
                              headers=alice.headers)
        assert r.status_code == 422 and r.json()["type"].endswith("not-shareable")
    assert await count(factory, RecordShare) == 0


async def test_named_access_add_list_remove(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    trustee = await factory.user("trustee", login=False)
    subject = await factory.subject(by=alice)
    sens = await factory.record(by=alice, subject=subject, classification="sensitive")
    conf = await factory.record(by=alice, subject=subject)
    body = {"user_id": str(ben.id), "consent_reference": "letter 12"}
    r = await client.post(f"/records/{conf['id']}/named-access", json=body, headers=alice.headers)
    assert r.status_code == 422 and r.json()["rule"] == "named"
    r = await client.post(f"/records/{sens['id']}/named-access", headers=alice.headers,
                          json={"user_id": str(trustee.id), "consent_reference": "letter 12"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "user_id"
    assert await count(factory, RecordNamedAccess) == 0
    r = await client.post(f"/records/{sens['id']}/named-access", json=body, headers=alice.headers)
    assert r.status_code == 201 and r.json()["consent_reference"] == "letter 12"
    assert (await client.post(f"/records/{sens['id']}/named-access", json=body,
                              headers=alice.headers)).status_code == 409
    r = await client.get(f"/records/{sens['id']}/named-access", headers=alice.headers)
    assert [n["user_id"] for n in r.json()] == [str(ben.id)]
    assert (await client.get(f"/records/{sens['id']}", headers=ben.headers)).json()["access"]["rule"] == "named"
    # A named colleague reads, but does not name others.
    r = await client.post(f"/records/{sens['id']}/named-access", headers=ben.headers,
                          json={"user_id": str(director.id), "consent_reference": "x"})
    assert r.status_code == 403 and (r.json()["rule"], r.json()["clause"]) == ("custodian", "§4.2, §3.2")
    assert "only the custodian or the custodian's line manager may share a sensitive record" in r.json()["detail"]
    r = await client.delete(f"/records/{sens['id']}/named-access/{ben.id}", headers=alice.headers)
    assert r.status_code == 204
    assert (await client.get(f"/records/{sens['id']}", headers=ben.headers)).status_code == 403
    r = await client.delete(f"/records/{sens['id']}/named-access/{ben.id}", headers=alice.headers)
    assert r.status_code == 404
