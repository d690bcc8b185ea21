"""The OpenAPI document is one a client can be built on: every operation has a summary, a
description citing its clauses and a stable dotted operationId; tags are described; the
headers are documented; every field a problem can carry is in the problem schema; and the
request examples work, as printed, against `make run`'s demo."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import httpx

from app.demo import seed_demo

APP = Path(__file__).resolve().parents[2] / "app"
METHODS = {"get", "put", "post", "delete", "patch"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in spec["paths"].items() for m, op in item.items() if m in METHODS]


def test_every_operation_has_a_summary_a_clause_and_a_dotted_unique_id(app) -> None:
    spec = app.openapi()
    ops = _operations(spec)
    assert len(ops) > 50
    bad = [(m, p) for m, p, op in ops
           if not op.get("summary") or "§" not in op.get("description", "")
           or not re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", op.get("operationId", ""))]
    assert bad == []
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    by_id = {op["operationId"]: (m, p) for m, p, op in ops}
    assert by_id["records.read"] == ("GET", "/records/{record_id}")
    assert by_id["records.list"] == ("GET", "/records")
    assert by_id["records.create"] == ("POST", "/records")
    assert by_id["access_requests.fulfil"] == ("POST", "/access-requests/{request_id}/fulfil")


def test_every_tag_is_described(app) -> None:
    tags = app.openapi()["tags"]
    assert tags and all(t.get("description") for t in tags), tags


def test_the_headers_are_documented(app) -> None:
    spec = app.openapi()
    paths = spec["paths"]
    for method, path, status in (("get", "/records/{record_id}", "200"), ("patch", "/records/{record_id}", "200"),
                                 ("post", "/records", "201")):
        headers = paths[path][method]["responses"][status].get("headers", {})
        assert {"ETag", "X-Confidentiality", "Cache-Control"} <= set(headers), (method, path)
        assert headers["ETag"]["required"] is True and not headers["X-Confidentiality"].get("required")
    assert "X-Confidentiality" in paths["/records"]["get"]["responses"]["200"]["headers"]
    if_match = [p for p in paths["/records/{record_id}"]["patch"]["parameters"] if p["in"] == "header"
                and p["name"].lower() == "if-match"]
    assert len(if_match) == 1 and "412" in if_match[0]["description"] and "428" in if_match[0]["description"]
    throttled = paths["/auth/token"]["post"]["responses"]["429"]
    assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    unavailable = [op["responses"]["503"] for _, _, op in _operations(spec) if "503" in op["responses"]]
    assert unavailable and all("Retry-After" in r.get("headers", {}) for r in unavailable)


def _problem_fields_raised() -> set[str]:
    """Every keyword a problem is raised with anywhere in app/, beyond the constructor's own."""
    from app.core import errors

    own = {"status", "detail", "type", "title", "headers", "retry_after"}
    makers = {name for name, value in vars(errors).items()
              if isinstance(value, type) and issubclass(value, errors.Problem)}
    makers |= {"field_error", "problem_response", "problem_body"}
    found: set[str] = set()
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in makers:
                    found |= {k.arg for k in node.keywords if k.arg and k.arg not in own}
    return found


def test_every_problem_field_is_in_the_problem_schema(app) -> None:
    raised = _problem_fields_raised()
    assert {"rule", "clause", "errors", "tombstone", "allowed_by", "current_status"} <= raised  # the scan works
    schema = app.openapi()["components"]["schemas"]["ProblemDetail"]
    fields = set(schema["properties"])
    assert raised | {"request_id"} <= fields, sorted(raised - fields)
    for name in ("rule", "clause", "tombstone", "allowed_by", "errors", "request_id", "current_status", "missing"):
        assert schema["properties"][name].get("description"), name


async def _login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    r = await client.post("/auth/token", data={"username": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _examples(spec: dict[str, Any], method: str, path: str) -> list[dict[str, Any]]:
    body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
    return [e["value"] for e in body["examples"].values()]


async def test_the_request_examples_work_against_the_demo(client: httpx.AsyncClient, app, state) -> None:
    """What "Try it out" sends, as printed, succeeds for the demo's logins."""
    logins = {login.key: login for login in await seed_demo(state)}
    alice = await _login(client, logins["alice"].email, logins["alice"].password)
    amir = await _login(client, logins["manager.a"].email, logins["manager.a"].password)
    director = await _login(client, logins["director"].email, logins["director"].password)
    spec = app.openapi()
    for body in _examples(spec, "post", "/subjects"):
        r = await client.post("/subjects", json=body, headers=alice)
        assert r.status_code == 201, r.text
    made = []
    for body in _examples(spec, "post", "/records"):
        r = await client.post("/records", json=body, headers=alice)
        assert r.status_code == 201, r.text
        made.append(r)
    record = made[0].json()
    (patch,) = _examples(spec, "patch", "/records/{record_id}")
    r = await client.patch(f"/records/{record['id']}", json=patch,
                           headers={**alice, "If-Match": made[0].headers["ETag"]})
    assert r.status_code == 200, r.text
    (review,) = _examples(spec, "post", "/records/{record_id}/review")
    assert (await client.post(f"/records/{record['id']}/review", json=review, headers=alice)).status_code == 200
    (hold,) = _examples(spec, "post", "/records/{record_id}/legal-hold")
    assert (await client.post(f"/records/{record['id']}/legal-hold", json=hold, headers=director)).status_code == 200
    (destroy,) = _examples(spec, "delete", "/records/{record_id}")
    other = made[1].json()
    r = await client.request("DELETE", f"/records/{other['id']}", json=destroy, headers=amir)
    assert r.status_code == 200, r.text
    for body in _examples(spec, "post", "/access-requests"):
        r = await client.post("/access-requests", json=body, headers=alice)
        assert r.status_code == 201, r.text
        (decision,) = _examples(spec, "post", "/access-requests/{request_id}/decision")
        r = await client.post(f"/access-requests/{r.json()['id']}/decision", json=decision, headers=director)
        assert r.status_code == 200, r.text
    for path, who in (("/users", director), ("/service-clients", director), ("/breach-reports", alice)):
        for body in _examples(spec, "post", path):
            r = await client.post(path, json=body, headers=who)
            assert r.status_code == 201, (path, r.text)
    for body in _examples(spec, "post", "/disclosures"):
        r = await client.post("/disclosures", json=body, headers=alice)
        assert r.status_code == 201, r.text
    for body in _examples(spec, "post", "/retention/sweep"):
        r = await client.post("/retention/sweep", json=body, headers=director)
        assert r.status_code == 200, r.text
