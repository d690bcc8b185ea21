from tests.factory import Factory


async def test_create_read_list_update_destroy(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    other = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)
    r = await client.post("/records", headers=alice.headers, json={
        "subject_id": subj["id"], "title": "Case notes", "content": "secret-marker-123",
        "classification": "confidential", "purpose": "service_delivery"})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["label"] == "CONFIDENTIAL" and rec["custodian_id"] == str(alice.id)
    assert r.headers["cache-control"] == "no-store"
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["content"] == "secret-marker-123"
    assert r.json()["access"]["rule"] == "custodian"
    assert r.headers["x-confidentiality"] == "confidential"
    etag = r.headers["etag"]
    # another colleague: denied
    r = await client.get(f"/records/{rec['id']}", headers=other.headers)
    assert r.status_code == 403
    body = r.json()
    assert body["rule"] == "shared" and body["clause"] == "§3.1"
    assert "secret-marker-123" not in r.text
    # line manager reads
    r = await client.get(f"/records/{rec['id']}", headers=manager.headers)
    assert r.status_code == 200 and r.json()["access"]["rule"] == "line-manager"
    # list
    r = await client.get("/records", headers=other.headers)
    assert r.status_code == 200 and r.json()["items"] == []
    r = await client.get("/records", headers=alice.headers)
    assert [i["id"] for i in r.json()["items"]] == [rec["id"]]
    assert r.json()["items"][0]["title"] == "Case notes"
    # update needs If-Match
    r = await client.patch(f"/records/{rec['id']}", headers=alice.headers, json={"content": "v2"})
    assert r.status_code == 428
    r = await client.patch(f"/records/{rec['id']}", headers={**alice.headers, "If-Match": etag},
                           json={"content": "v2"})
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "v2" and r.json()["version"] == 2
    r = await client.patch(f"/records/{rec['id']}", headers={**alice.headers, "If-Match": etag},
                           json={"content": "v3"})
    assert r.status_code == 412
    # share with other, who can then read
    r = await client.post(f"/records/{rec['id']}/shares", headers=alice.headers,
                          json={"user_id": str(other.id), "reason": "covering"})
    assert r.status_code == 201, r.text
    r = await client.get(f"/records/{rec['id']}", headers=other.headers)
    assert r.status_code == 200 and r.json()["access"]["rule"] == "shared"
    # custodian cannot destroy; line manager can
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "done"}, headers=alice.headers)
    assert r.status_code == 403
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "done"}, headers=manager.headers)
    assert r.status_code == 200, r.text
    r = await client.get(f"/records/{rec['id']}", headers=manager.headers)
    assert r.status_code == 410 and r.json()["tombstone"]["id"] == rec["id"]
