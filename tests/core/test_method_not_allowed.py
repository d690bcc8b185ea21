"""A 405 lists in `Allow` every method its path supports, for every path of the contract; a
literal path (`/users/me`) is its own resource, not a value of a sibling's parameter."""

from __future__ import annotations

import re
import uuid

from tests.core.test_errors import assert_problem

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _allow(r) -> set[str]:  # type: ignore[no-untyped-def]
    return {m.strip() for m in r.headers["allow"].split(",")}


async def test_options_on_records_lists_get_and_post(client):
    r = await client.options("/records")
    assert_problem(r, 405)
    assert _allow(r) == {"GET", "POST"}


async def test_every_path_answers_a_wrong_method_with_all_its_methods(client, app):
    paths = app.openapi()["paths"]
    checked = 0
    for template, operations in paths.items():
        supported = {m.upper() for m in operations} & METHODS
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        for method in sorted(METHODS - supported) + ["OPTIONS"]:
            r = await client.request(method, path)
            assert r.status_code == 405, (method, template, r.status_code)
            assert _allow(r) == supported, (method, template, r.headers["allow"])
            checked += 1
    assert checked > 50


async def test_patch_users_me_is_405_not_a_validation_error(client, factory):
    director = await factory.user("director")
    for method in ("PATCH", "DELETE", "POST"):
        r = await client.request(method, "/users/me", json={"role": "director"}, headers=director.headers)
        assert_problem(r, 405)
        assert _allow(r) == {"GET"}
    assert (await client.get("/users/me", headers=director.headers)).status_code == 200
    # The parameter still takes every other value, and a malformed id is still a 422.
    r = await client.patch(f"/users/{director.id}", json={"active": True}, headers=director.headers)
    assert r.status_code == 200, r.text
    assert (await client.patch("/users/not-an-id", json={}, headers=director.headers)).status_code == 422
