"""A Python client generated from the served OpenAPI document (openapi-python-client, a dev
dependency) carries one whole flow against `kmm serve` on loopback over SQLite: log in,
add a subject, keep a record, read it back, update it with the ETag as If-Match, and be
refused what only a director may do, with the rule and clause in the typed problem."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import kmm_env, kmm_serve, run_kmm

pytestmark = pytest.mark.slow

EMAIL, PASSWORD = "alice@client.kmm.example.org", "generated clients read well"
PACKAGE = "kmm_generated_client"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("client")
    env = kmm_env(tmp, "client.db")
    run_kmm(env, "migrate")
    run_kmm(env, "create-user", "--email", EMAIL, "--name", "Alice Client", "--role", "colleague",
            "--staff-type", "employee", "--password-stdin", stdin=PASSWORD + "\n")
    with kmm_serve(env, tmp / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def generated(served: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The client package generated from the document the server serves."""
    generator = Path(sys.executable).with_name("openapi-python-client")
    if not generator.exists():
        pytest.skip("openapi-python-client is missing: pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("generated")
    spec = tmp / "openapi.json"
    spec.write_bytes(httpx.get(f"{served}/openapi.json", timeout=10).content)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(generator), "generate", "--path", str(spec), "--output-path", str(tmp / PACKAGE),
                           "--meta", "none"], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr  # every schema understood
    sys.path.insert(0, str(tmp))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_generated_client_logs_in_keeps_a_record_and_reads_it(served: str, generated: Any) -> None:
    m = importlib.import_module(f"{PACKAGE}.models")
    auth_token = importlib.import_module(f"{PACKAGE}.api.auth.auth_token")
    subjects_create = importlib.import_module(f"{PACKAGE}.api.subjects.subjects_create")
    records = {name: importlib.import_module(f"{PACKAGE}.api.records.records_{name}")
               for name in ("create", "read", "update", "legal_hold")}

    anonymous = generated.Client(base_url=served)
    tokens = auth_token.sync(client=anonymous, body=m.BodyAuthToken(username=EMAIL, password=PASSWORD))
    assert isinstance(tokens, m.TokenPair), tokens
    client = generated.AuthenticatedClient(base_url=served, token=tokens.access_token)

    subject = subjects_create.sync(client=client, body=m.SubjectCreate.from_dict(
        {"kind": "individual", "name": "Casey Client", "category": "service_user"}))
    assert isinstance(subject, m.SubjectPublic), subject

    created = records["create"].sync_detailed(client=client, body=m.RecordCreate.from_dict({
        "subject_id": str(subject.id), "title": "Visit notes", "content": "Agreed a plan.",
        "classification": "confidential", "purpose": "service_delivery"}))
    assert created.status_code == 201, created.content
    record = created.parsed
    assert isinstance(record, m.RecordPublic) and record.label == "CONFIDENTIAL"
    assert created.headers["X-Confidentiality"] == "confidential"

    read = records["read"].sync_detailed(record.id, client=client)
    assert read.status_code == 200 and isinstance(read.parsed, m.RecordPublic)
    assert (read.parsed.title, read.parsed.content) == ("Visit notes", "Agreed a plan.")
    assert (read.parsed.access.rule, read.parsed.access.clause) == ("custodian", "§4.2, §3.2")

    updated = records["update"].sync_detailed(record.id, client=client, if_match=read.headers["ETag"],
                                              body=m.RecordUpdate.from_dict({"title": "Visit notes (revised)"}))
    assert updated.status_code == 200 and updated.parsed.version == record.version + 1, updated.content

    refused = records["legal_hold"].sync_detailed(record.id, client=client,
                                                  body=m.LegalHoldChange.from_dict({"legal_hold": True,
                                                                                    "reason": "tribunal"}))
    assert refused.status_code == 403 and isinstance(refused.parsed, m.ProblemDetail), refused.content
    assert refused.parsed.rule and refused.parsed.clause.startswith("§")
    assert "Agreed a plan." not in refused.content.decode()
