"""Hostile input: every refusal is the documented 4xx problem+json and
leaves the database exactly as it was (row counts of every table, before and after).

Most tests walk the OpenAPI document, so endpoints added later are covered without
editing this file: every string input has a maximum length, and going over it, giving
an unknown enum value, a malformed or unknown id, a bad `limit` or a forged `cursor` is
refused on every operation that takes one.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt
from sqlalchemy import text

from tests.conftest import _table_names
from tests.databases import IS_POSTGRES
from tests.factory import Factory, Person
from tests.oauth import TOKEN_PATHS, assert_token_error

METHODS = ("get", "post", "put", "patch", "delete")
# Strings that need no maxLength: their format or enum bounds them.
BOUNDED_FORMATS = {"uuid", "date-time", "date", "email", "binary"}
# Safe fillers for path parameters (an id nobody has).
NOBODY = "00000000-0000-4000-8000-000000000000"

SQL_AND_HTML = [
    "Robert'); DROP TABLE records; --",
    "' OR '1'='1' --",
    "1; SELECT pg_sleep(10); --",
    "\" UNION SELECT password_hash FROM users --",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "%s %(name)s {0} {name} ${jndi:ldap://x}",
    "\\x00 \\u0000 \\ufeff",
    "ＳＱＬ — naïve “quotes” ‮ rtl",
]


# -- helpers -------------------------------------------------------------------------


async def row_counts(state: Any) -> dict[str, int]:
    """Rows in every table, counted by one statement (a statement a table costs ten times as much)."""
    tables = _table_names()
    counts = ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)
    async with state.engine.connect() as conn:
        return dict(zip(tables, (await conn.execute(text(f"SELECT {counts}"))).one(), strict=True))


class Unchanged:
    """`async with Unchanged(state):` fails when any table's row count changed inside."""

    def __init__(self, state: Any, *, may_grow: frozenset[str] = frozenset()) -> None:
        self.state = state
        self.may_grow = may_grow

    async def __aenter__(self) -> Unchanged:
        self.before = await row_counts(self.state)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            after = await row_counts(self.state)
            changed = {t: (self.before[t], after[t]) for t in after
                       if after[t] != self.before[t] and not (t in self.may_grow and after[t] > self.before[t])}
            assert not changed, f"rows changed (before, after): {changed}"


def assert_problem(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == "application/problem+json", r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["status"] == r.status_code
    assert {"type", "title", "detail"} <= set(body)
    assert "Traceback" not in r.text
    return body


def documented(doc: dict[str, Any], path: str, method: str) -> set[int]:
    return {int(s) for s in doc["paths"][path][method]["responses"] if s.isdigit()}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def non_null(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without its `| null` alternative (FastAPI writes optionals as anyOf)."""
    schema = resolve(doc, schema)
    options = [resolve(doc, s) for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return options[0] if len(options) == 1 else schema


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def fill_path(path: str, op: dict[str, Any], value: str = NOBODY) -> str:
    for p in op.get("parameters", []):
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", value)
    return path


def json_body_schema(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return resolve(doc, content["application/json"]["schema"])


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
async def director(factory: Factory) -> Person:
    return await factory.user("director")


async def call(client: httpx.AsyncClient, method: str, url: str, person: Person, **kwargs: Any) -> httpx.Response:
    headers = {**person.headers, **kwargs.pop("headers", {})}
    return await client.request(method.upper(), url, headers=headers, **kwargs)


# -- every string input is bounded ------------------------------------------------------


def _unbounded_strings(doc: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]) -> Iterator[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return
        seen = seen | {name}
        yield from _unbounded_strings(doc, resolve(doc, schema), where, seen)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _unbounded_strings(doc, sub, where, seen)
    bounded = {"maxLength", "enum", "const"} & set(schema) or schema.get("format") in BOUNDED_FORMATS
    if schema.get("type") == "string" and not bounded:
        yield where
    if schema.get("type") == "array":
        if "maxItems" not in schema:
            yield where + "[] (no maxItems)"
        yield from _unbounded_strings(doc, schema.get("items", {}), where + "[]", seen)
    for name, prop in schema.get("properties", {}).items():
        yield from _unbounded_strings(doc, prop, f"{where}.{name}", seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _unbounded_strings(doc, extra, where + ".*", seen)


def all_unbounded_inputs(doc: dict[str, Any]) -> list[str]:
    unbounded: list[str] = []
    for path, method, op in operations(doc):
        label = f"{method.upper()} {path}"
        for p in op.get("parameters", []):
            unbounded += _unbounded_strings(doc, p.get("schema", {}), f"{label} {p['in']}:{p['name']}", set())
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            unbounded += _unbounded_strings(doc, content.get("schema", {}), f"{label} {media}", set())
    return unbounded


# Reported, outside the plumbing (app/models/service_clients.py ServiceClientBase.scopes: list[str]).
KNOWN_UNBOUNDED: set[str] = set()


async def test_every_string_input_has_a_max_length(doc: dict[str, Any]) -> None:
    """Request bodies, forms and parameters: no unbounded string (nor array) reaches the service."""
    new = [u for u in all_unbounded_inputs(doc) if u not in KNOWN_UNBOUNDED]
    assert not new, "inputs without maxLength/maxItems:\n" + "\n".join(new)


async def test_service_client_scopes_are_bounded(doc: dict[str, Any]) -> None:
    assert not KNOWN_UNBOUNDED & set(all_unbounded_inputs(doc))


def _bounded_string_props(doc: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[str, int]]:
    for name, prop in schema.get("properties", {}).items():
        prop = non_null(doc, prop)
        if prop.get("type") == "string" and "maxLength" in prop:
            yield name, int(prop["maxLength"])


def _enum_props(doc: dict[str, Any], schema: dict[str, Any]) -> Iterator[str]:
    for name, prop in schema.get("properties", {}).items():
        if "enum" in non_null(doc, prop):
            yield name


async def test_strings_over_their_maximum_are_refused(client, doc, director: Person, state) -> None:
    tried = 0
    async with Unchanged(state):
        for path, method, op in operations(doc):
            schema = json_body_schema(doc, op)
            if schema is None:
                continue
            for name, max_length in _bounded_string_props(doc, schema):
                r = await call(client, method, fill_path(path, op), director, json={name: "x" * (max_length + 1)})
                if path in TOKEN_PATHS:  # RFC 6749 §5.2 there, naming the field
                    assert name in assert_token_error(r, 400, error="invalid_request")["error_description"]
                    assert "x" * 50 not in r.text
                    continue
                body = assert_problem(r, 422)
                assert any(e["loc"] == ["body", name] and e["type"] in ("string_too_long", "value_error")
                           for e in body["errors"]), (method, path, name, body)
                assert "x" * 50 not in r.text, "the input is never echoed back"
                tried += 1
            for p in op.get("parameters", []):
                pschema = non_null(doc, p["schema"])
                if p["in"] == "query" and pschema.get("type") == "string" and "maxLength" in pschema:
                    r = await call(client, method, fill_path(path, op), director,
                                   params={p["name"]: "x" * (pschema["maxLength"] + 1)})
                    assert_problem(r, 422)
                    tried += 1
    assert tried >= 10


async def test_unknown_enum_values_are_refused(client, doc, director: Person, state) -> None:
    tried = 0
    async with Unchanged(state):
        for path, method, op in operations(doc):
            schema = json_body_schema(doc, op)
            for name in _enum_props(doc, schema) if schema else ():
                r = await call(client, method, fill_path(path, op), director, json={name: "no_such_value"})
                body = assert_problem(r, 422)
                assert any(e["loc"] == ["body", name] for e in body["errors"]), (method, path, name)
                tried += 1
            for p in op.get("parameters", []):
                if p["in"] == "query" and "enum" in non_null(doc, p["schema"]):
                    r = await call(client, method, fill_path(path, op), director, params={p["name"]: "no_such_value"})
                    assert_problem(r, 422)
                    tried += 1
    assert tried >= 10


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "' OR 1=1 --", "0" * 33, "%00", "..%2F..%2Fetc"])
async def test_malformed_ids_in_paths_are_refused(client, doc, director: Person, state, bad: str) -> None:
    async with Unchanged(state):
        for path, method, op in operations(doc):
            ids = [p for p in op.get("parameters", []) if p["in"] == "path"]
            if not ids:
                continue
            assert all(non_null(doc, p["schema"]).get("format") == "uuid" for p in ids), (path, ids)
            r = await call(client, method, fill_path(path, op, bad), director, json={})
            assert_problem(r, 404, 422)


async def test_unknown_ids_are_404_and_change_nothing(client, doc, director: Person, state) -> None:
    tried = 0
    async with Unchanged(state):
        for path, method, op in operations(doc):
            if method != "get" or "{" not in path:
                continue
            r = await call(client, method, fill_path(path, op, str(uuid.uuid4())), director)
            assert_problem(r, 404)
            tried += 1
    assert tried >= 8


# -- paging ----------------------------------------------------------------------------


def _list_operations(doc: dict[str, Any], param: str) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, method, op in operations(doc)
            if method == "get" and any(p["name"] == param and p["in"] == "query" for p in op.get("parameters", []))]


@pytest.mark.parametrize("limit", ["-1", "0", "201", str(10**30), "-" + str(10**30), "abc", "1.5", "1e3", "", "0x10"])
async def test_bad_limits_are_refused(client, doc, director: Person, state, limit: str) -> None:
    lists = _list_operations(doc, "limit")
    assert len(lists) >= 6
    async with Unchanged(state):
        for path, op in lists:
            r = await call(client, "get", fill_path(path, op), director, params={"limit": limit})
            body = assert_problem(r, 422)
            assert any(e["loc"] == ["query", "limit"] for e in body["errors"]), (path, body)


async def test_limit_bounds_are_documented(doc) -> None:
    for path, op in _list_operations(doc, "limit"):
        (limit,) = [p for p in op["parameters"] if p["name"] == "limit"]
        assert (limit["schema"].get("minimum"), limit["schema"].get("maximum")) == (1, 200), path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_forged_cursors_are_refused(client, doc, director: Person, factory: Factory, state) -> None:
    # A genuine cursor, issued for the users list.
    for _ in range(2):
        await factory.user("colleague", login=False)
    page = await call(client, "get", "/users", director, params={"limit": 1})
    assert page.status_code == 200, page.text
    genuine = page.json()["next_cursor"]
    assert genuine
    body, mac = genuine.split(".", 1)
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = [
        "garbage", ".", "a.b", "....", "%00", "null", "[]",
        f"{_b64(json.dumps(payload).encode())}.{'A' * len(mac)}",  # the right payload, a made-up MAC
        f"{_b64(json.dumps([payload[0], ['2000-01-01T00:00:00+00:00', NOBODY]]).encode())}.{mac}",  # tampered
        f"{body}.{mac[:-1]}",
        _b64(b"\xff\xfe\xfd") + "." + mac,
    ]
    lists = _list_operations(doc, "cursor")
    assert len(lists) >= 6
    async with Unchanged(state):
        for path, op in lists:
            for cursor in forged + ([genuine] if path != "/users" else []):  # another list's cursor
                r = await call(client, "get", fill_path(path, op), director, params={"cursor": cursor})
                assert_problem(r, 400, 422)
            r = await call(client, "get", fill_path(path, op), director, params={"cursor": "x" * 10_000})
            assert_problem(r, 422)
    # And the genuine one still works where it belongs.
    assert (await call(client, "get", "/users", director, params={"cursor": genuine})).status_code == 200


async def test_duplicate_query_parameters(client, director: Person, factory: Factory, state) -> None:
    """The last value counts (FastAPI's rule for a single-valued parameter); a bad last one is refused."""
    for _ in range(3):
        await factory.user("colleague", login=False)
    r = await call(client, "get", "/users?limit=500&limit=2", director)
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = await call(client, "get", "/records?classification=nope&classification=general", director)
    assert r.status_code == 200
    assert all(i["classification"] == "general" for i in r.json()["items"])
    async with Unchanged(state):
        assert_problem(await call(client, "get", "/users?limit=2&limit=500", director), 422)
        assert_problem(await call(client, "get", "/records?classification=general&classification=nope", director), 422)
        assert_problem(await call(client, "get", "/users?cursor=&cursor=forged", director), 400, 422)


# -- bodies ---------------------------------------------------------------------------

BODY_ROUTES = ["/records", "/subjects", "/users", "/emergency-grants", "/auth/refresh"]


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_bodies_over_the_limit_are_413(client, director: Person, state, path: str) -> None:
    limit = state.settings.max_body_bytes
    big = json.dumps({"title": "x" * (limit + 10)}).encode()

    async def stream() -> Any:  # no Content-Length: the limit is counted as it arrives
        for i in range(0, len(big), 64 * 1024):
            yield big[i:i + 64 * 1024]

    async with Unchanged(state):
        r = await call(client, "post", path, director, content=big, headers={"content-type": "application/json"})
        assert_problem(r, 413)
        r = await call(client, "post", path, director, content=stream(), headers={"content-type": "application/json"})
        assert_problem(r, 413)
        # A Content-Length that lies about a large body is refused before it is read.
        r = await call(client, "post", path, director, content=b"{}",
                       headers={"content-type": "application/json", "content-length": str(limit + 1)})
        assert r.status_code in (400, 413)


@pytest.mark.parametrize("depth", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_deeply_nested_json_is_refused(client, director: Person, state, path: str, depth: int) -> None:
    arrays = "[" * depth + "]" * depth
    objects = '{"a":' * depth + "1" + "}" * depth
    async with Unchanged(state):
        for raw in (arrays, objects, '{"title": ' + arrays + "}", '{"content": ' + objects + "}"):
            r = await call(client, "post", path, director, content=raw.encode(),
                           headers={"content-type": "application/json"})
            if path in TOKEN_PATHS:
                assert_token_error(r, 400, error="invalid_request")
            else:
                assert_problem(r, 400, 413, 422)


@pytest.mark.parametrize("raw", [
    b'{"name": "\xff\xfe\xfd"}', b"\xc3\x28", b'{"title": "\xed\xa0\x80"}', b"\x00\x00\x00{",
    b'{"title": "a"', b"", b"[]", b"null", b'"just a string"', b'{"title": NaN}', b'{"title": 1e999999}',
])
@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_undecodable_or_malformed_json_is_refused(client, director: Person, state, path: str,
                                                        raw: bytes) -> None:
    async with Unchanged(state):
        r = await call(client, "post", path, director, content=raw, headers={"content-type": "application/json"})
        if path in TOKEN_PATHS:
            assert_token_error(r, 400, error="invalid_request")
        else:
            assert_problem(r, 400, 422)


async def test_invalid_utf8_in_query_and_headers(client, director: Person, state) -> None:
    async with Unchanged(state):
        r = await call(client, "get", "/subjects?q=%FF%FE", director)
        assert r.status_code in (200, 422), r.text
        r = await client.get("/users/me", headers={"Authorization": b"Bearer \xff\xfe"})
        assert_problem(r, 401)


async def test_a_form_login_with_hostile_fields_is_refused(client, director: Person, state) -> None:
    async with Unchanged(state):
        for data in ({"username": "x" * 10_000, "password": "y"}, {"username": "a@b.c", "password": "p" * 10_000},
                     {"grant_type": "x" * 100}, {"username": director.email}):
            assert_token_error(await client.post("/auth/token", data=data), 400, error="invalid_request")
        assert_token_error(await client.post("/auth/token", data={"grant_type": "implicit"}), 400,
                           error="unsupported_grant_type")
    # A well-formed failed login is recorded (audit event, lockout count) and nothing else.
    async with Unchanged(state, may_grow=frozenset({"audit_events", "login_attempts"})):
        for name in ("' OR 1=1 --", director.email + "' --", "<script>@x.y"):
            assert_token_error(await client.post("/auth/token", data={"username": name, "password": "' OR '1'='1"}),
                               400, error="invalid_grant")


# -- SQL and HTML in every text field: stored and returned verbatim ----------------------


@pytest.mark.parametrize("payload", SQL_AND_HTML)
async def test_sql_and_html_are_stored_verbatim(client, director: Person, factory: Factory, state,
                                                payload: str) -> None:
    colleague = await factory.user("colleague", manager=director)
    before = await row_counts(state)
    subject = await call(client, "post", "/subjects", director, json={
        "kind": "organisation", "name": payload, "category": "organisation",
        "officers": [{"name": payload, "office": "chair"}]})
    assert subject.status_code == 201, subject.text
    sid = subject.json()["id"]
    assert subject.json()["name"] == payload and subject.json()["officers"][0]["name"] == payload
    record = await call(client, "post", "/records", director, json={
        "subject_id": sid, "title": payload, "content": payload, "classification": "confidential",
        "purpose": "service_delivery"})
    assert record.status_code == 201, record.text
    rid = record.json()["id"]
    share = await call(client, "post", f"/records/{rid}/shares", director,
                       json={"user_id": str(colleague.id), "reason": payload})
    assert share.status_code == 201, share.text
    assert share.json()["reason"] == payload

    got = (await call(client, "get", f"/records/{rid}", director)).json()
    assert (got["title"], got["content"]) == (payload, payload)
    assert (await call(client, "get", f"/subjects/{sid}", director)).json()["name"] == payload
    listed = await call(client, "get", "/subjects", director, params={"q": payload})
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["items"]] == [sid]
    assert (await call(client, "get", f"/records/{rid}/shares", director)).json()[0]["reason"] == payload

    after = await row_counts(state)
    assert after["subjects"] == before["subjects"] + 1
    assert after["records"] == before["records"] + 1
    assert after["users"] == before["users"]  # no table was touched beyond what was asked


async def test_nul_characters_are_refused_or_kept_never_a_500(client, director: Person, state) -> None:
    """PostgreSQL cannot store NUL in text: the service says 422 there, SQLite keeps it."""
    async with Unchanged(state) if IS_POSTGRES else _nothing():
        r = await call(client, "post", "/subjects", director,
                       json={"kind": "individual", "name": "a\u0000b", "category": "service_user"})
        if IS_POSTGRES:
            assert_problem(r, 422)
        else:
            assert r.status_code == 201 and r.json()["name"] == "a\u0000b"
        r = await call(client, "get", "/subjects", director, params={"q": "a\u0000b"})
        assert r.status_code in (200, 422), r.text


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


# -- token attacks missing from tests/routers/test_auth.py --------------------------------


async def test_hs256_signed_with_a_public_key_is_just_a_wrong_key(client, director: Person, state) -> None:
    """The RS256→HS256 confusion: the service verifies HS256 with its own secret only."""
    good = director.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.get_unverified_claims(good)
    public_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    sig = _b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    async with Unchanged(state):
        r = await client.get("/users/me", headers={"Authorization": f"Bearer {header}.{payload}.{sig}"})
        assert_problem(r, 401)


@pytest.mark.parametrize("change", [{"role": "director"}, {"exp": 4_102_444_800}, {"typ": "access", "extra": 1}])
async def test_tampered_payload_with_the_original_signature(client, factory: Factory, state,
                                                            change: dict[str, Any]) -> None:
    colleague = await factory.user("colleague")
    good = colleague.headers["Authorization"].removeprefix("Bearer ")
    header, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = f"{header}.{_b64(json.dumps({**claims, **change}).encode())}.{sig}"
    async with Unchanged(state):
        assert (await client.get("/users/me", headers=colleague.headers)).status_code == 200
        assert_problem(await client.get("/users/me", headers={"Authorization": f"Bearer {forged}"}), 401)


# -- known looseness outside the plumbing (flips to a pass once fixed) ---------------------


async def test_a_boolean_refuses_a_number(client, director: Person, state) -> None:
    async with Unchanged(state):
        assert_problem(await call(client, "post", "/retention/sweep", director, json={"dry_run": 0}), 422)


async def test_date_time_query_refuses_a_number(client, director: Person) -> None:
    r = await call(client, "get", "/audit-events", director, params={"until": "0.5"})
    assert_problem(r, 422)
