from tests.factory import Factory


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.headers["x-request-id"]


async def test_readyz(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text


async def test_login_and_me(client, factory: Factory):
    d = await factory.user("director")
    r = await client.get("/users/me", headers=d.headers)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == d.email
    assert r.json()["role"] == "director"
