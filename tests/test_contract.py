"""Contract fuzzing with schemathesis over every operation of the OpenAPI document.

Each operation is called in-process on the ASGI app with generated input, valid and
invalid, as a director and as a colleague. Every response must be: not a 5xx, a status
the operation documents, of a documented content type, and matching the documented
schema. New endpoints are covered as soon as they are mounted: nothing here lists them.

The app under test has its own database (a SQLite file, or its own Postgres schema)
migrated with Alembic, because schemathesis drives it from its own event-loop thread.

`make test` runs KMM_FUZZ_EXAMPLES (default 25) examples per operation and role with a
fixed seed, so CI is quick and repeatable; `make fuzz` runs many more with fresh
randomness (KMM_FUZZ_EXAMPLES=500). A failure prints the request as a curl command.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.python.asgi import get_client
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.core.config import Settings
from app.core.migrations import upgrade
from app.core.state import AppState
from app.main import create_app
from app.models.users import UserCreate
from app.workflows import users
from tests.databases import fresh_database
from tests.factory import PASSWORD

pytestmark = pytest.mark.slow  # fuzzes every operation: `make test` runs it, `make test-fast` does not

EXAMPLES = int(os.environ.get("KMM_FUZZ_EXAMPLES", "25"))
# `make test` is repeatable (a fixed seed); `make fuzz` sets KMM_FUZZ_RANDOM=1 for fresh input.
RANDOM = os.environ.get("KMM_FUZZ_RANDOM", "") == "1"


def _lax_coercion(failure: AcceptedNegativeData) -> bool:
    """A value of another JSON type that pydantic's lax mode converts: 0/1 for a boolean, a
    number for a date-time, "5" for an integer. Known and reported; the strict tests for
    the instances found are the xfail(strict=True) ones at the end of test_hostile_input.py.
    Every other kind of invalid input (missing, out of range, too long, unknown enum
    value, wrong format) must still be refused.
    """
    # The coverage phase words it one way, the fuzzing phase another.
    return "Incorrect type" in failure.message or "violates `type`" in failure.message


@schemathesis.check
def negative_data_rejected(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's negative_data_rejection, less pydantic's lax type coercion."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData as failure:
        if _lax_coercion(failure):
            return None
        raise


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejected,
]


@dataclass
class FuzzTarget:
    app: Any
    settings: Settings
    emails: dict[str, str]
    tokens: dict[str, str]


def _run(coro_fn: Any) -> Any:
    """Run a coroutine on its own loop in a worker thread (the test loop is not ours to use)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


def seed_users(s: Settings, *roles: str) -> dict[str, str]:
    """Create one account per role (the colleague managed by the director); returns emails by role."""
    emails = {role: f"fuzz-{role}-{uuid.uuid4().hex[:6]}@test.kmm" for role in roles}

    async def go() -> None:
        state = AppState.build(s)
        try:
            manager_id = None
            async with state.sessionmaker() as session:
                for role in roles:
                    user = await users.create_user(
                        session,
                        data=UserCreate(email=emails[role], full_name=f"Fuzz {role}", role=role,
                                        staff_type="employee" if role != "trustee" else None,
                                        line_manager_id=manager_id, password=PASSWORD),
                        passwords=state.passwords, now=state.clock.now(), actor=None,
                    )
                    if role == "director":
                        manager_id = user.id
        finally:
            await state.engine.dispose()

    _run(go)
    return emails


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    with fresh_database(tmp_path_factory.mktemp("fuzz"), log_json=True) as s:
        upgrade(s)
        emails = seed_users(s, "director", "colleague")
        app = create_app(s, configure_logs=False)
        tokens = {}
        with get_client(app) as client:
            for role, email in emails.items():
                r = client.post("/auth/token", data={"username": email, "password": PASSWORD})
                assert r.status_code == 200, r.text
                tokens[role] = r.json()["access_token"]
        yield FuzzTarget(app=app, settings=s, emails=emails, tokens=tokens)


def _openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, read without touching a database (collection time)."""
    tmp = Path(tempfile.mkdtemp(prefix="kmm-openapi-"))
    try:
        s = Settings(env="test", database_url=f"sqlite+aiosqlite:///{tmp / 'unused.db'}",
                     secrets_file=tmp / "secrets.json")
        return create_app(s, configure_logs=False).openapi()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _config(*, coverage: bool) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "phases": {"coverage": {"enabled": coverage}},
        # Invalid input may also be refused as too large (413): the body limit comes before validation.
        "checks": {"negative_data_rejection": {
            "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]}},
    })


# Loaded at import so each operation is its own test; the calls go to `target.app`.
# (schemathesis.pytest.from_fixture would load it lazily, but 4.32 sets `node._nodeid`,
# which pytest 9.2 no longer has.)
DOCUMENT = _openapi_document()
# The coverage phase (boundary values and one mutation per field, deterministic) runs as the
# director, who passes the most checks; the colleague, refused early by most rules, gets the
# random phase only, unless KMM_FUZZ_COVERAGE=all.
director_schema = schemathesis.openapi.from_dict(DOCUMENT, config=_config(coverage=True))
colleague_schema = schemathesis.openapi.from_dict(
    DOCUMENT, config=_config(coverage=os.environ.get("KMM_FUZZ_COVERAGE", "") == "all"))


def _headers_for(case: Any, target: FuzzTarget, role: str) -> dict[str, str]:
    token = target.tokens[role]
    if case.operation.path == "/auth/logout":
        # Logging out ends the session: log in afresh so the shared token keeps working.
        with get_client(target.app) as client:
            r = client.post("/auth/token", data={"username": target.emails[role], "password": PASSWORD})
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                         suppress_health_check=list(HealthCheck))


def check_contract(case: Any, target: FuzzTarget, role: str) -> None:
    case.call_and_validate(app=target.app, headers=_headers_for(case, target, role), checks=CHECKS)


@director_schema.parametrize()
@FUZZ_SETTINGS
def test_contract_as_director(case: Any, target: FuzzTarget) -> None:
    check_contract(case, target, "director")


@colleague_schema.parametrize()
@FUZZ_SETTINGS
def test_contract_as_colleague(case: Any, target: FuzzTarget) -> None:
    check_contract(case, target, "colleague")
