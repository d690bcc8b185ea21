"""Deployment wiring, checked without a Docker engine: the compose file and Dockerfile."""

from __future__ import annotations

import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

SECRET_NAMES = re.compile(r"PASSWORD|SECRET|KEY", re.I)
REQUIRED_VAR = re.compile(r"\$\{(\w+):\?[^}]*\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_postgres_16_with_a_health_check_and_a_named_volume(compose):
    db = compose["services"]["db"]
    assert db["image"] == "postgres:16"
    test = db["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))
    mounts = [v.split(":") for v in db["volumes"]]
    assert any(src in compose["volumes"] and dst == "/var/lib/postgresql/data" for src, dst, *_ in mounts)


def test_the_service_waits_for_a_healthy_database(compose):
    api = compose["services"]["api"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["build"] in (".", {"context": "."})


@pytest.mark.parametrize(("service", "user", "password"), [
    ("migrate", "kmm", "POSTGRES_PASSWORD"),  # the owner migrates
    ("api", "kmm_app", "KMM_APP_PASSWORD"),  # the service runs as the role that owns nothing
])
def test_database_url_points_at_the_compose_postgres(compose, service, user, password):
    env = _env(compose["services"][service])
    db_env = _env(compose["services"]["db"])
    url = urlsplit(REQUIRED_VAR.sub("pw", env["DATABASE_URL"]))
    assert url.scheme == "postgresql+psycopg"
    assert (url.hostname, url.port) == ("db", 5432)
    assert url.path == "/" + db_env["POSTGRES_DB"]
    assert url.username == user and "${" + password + ":?" in env["DATABASE_URL"]
    assert db_env["POSTGRES_USER"] == "kmm"


def test_the_service_starts_after_migrating_as_the_owner_and_does_not_migrate_itself(compose):
    migrate, api = compose["services"]["migrate"], compose["services"]["api"]
    assert migrate["command"] == ["kmm", "migrate"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["command"][:2] == ["kmm", "serve"] and "--no-migrate" in api["command"]
    # The database's first start creates the service's login role, from its own password.
    db = compose["services"]["db"]
    assert any(v.split(":")[1] == "/docker-entrypoint-initdb.d" for v in db["volumes"])
    script = (PROJECT_ROOT / "deploy/postgres-init/10-kmm-app-role.sh").read_text()
    assert "CREATE ROLE kmm_app LOGIN PASSWORD :'app_password'" in script
    assert REQUIRED_VAR.fullmatch(_env(db)["KMM_APP_PASSWORD"])


@pytest.mark.parametrize("service", ["api", "migrate"])
def test_production_with_every_secret_from_the_environment(compose, service):
    env = _env(compose["services"][service])
    assert env["KMM_ENV"] == "production"
    for name in ("KMM_JWT_SECRET", "KMM_MASTER_KEYS", "KMM_AUDIT_KEYS"):
        assert REQUIRED_VAR.fullmatch(env[name]), name


def test_no_literal_secrets(compose):
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if SECRET_NAMES.search(key):
                assert REQUIRED_VAR.fullmatch(value), f"{name}.{key} must come from ${{VAR:?}}"
            # A URL may carry a password only by reference.
            netloc = urlsplit(value).netloc if "://" in value else ""
            if "@" in netloc and ":" in netloc.split("@")[0]:
                assert REQUIRED_VAR.search(netloc.split("@")[0]), f"{name}.{key} has a literal password"


def test_the_example_env_file_holds_no_values():
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    assignments = [line for line in lines if line and not line.startswith("#")]
    assert assignments and all(line.endswith("=") for line in assignments)


def test_dockerfile_slim_base_production_and_non_root(dockerfile):
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    env = " ".join(args for instr, args in dockerfile if instr == "ENV")
    assert "KMM_ENV=production" in env
    users = [args for instr, args in dockerfile if instr == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    # Nothing runs as root after the switch, and the service starts after it.
    last_user = max(i for i, (instr, _) in enumerate(dockerfile) if instr == "USER")
    assert all(instr != "RUN" for instr, _ in dockerfile[last_user:])
    assert any(instr == "CMD" for instr, _ in dockerfile[last_user:])


def test_dockerfile_installs_and_serves_migrating_first(dockerfile):
    runs = " ".join(args for instr, args in dockerfile if instr == "RUN")
    assert re.search(r"pip install (-e )?\.", runs)
    copied = [shlex.split(args)[0] for instr, args in dockerfile if instr == "COPY"]
    for needed in ("app", "migrations", "pyproject.toml"):
        assert any(needed in c for c in copied), needed
    cmd = [args for instr, args in dockerfile if instr == "CMD"][-1]
    argv = yaml.safe_load(cmd)  # exec form is a JSON array
    assert argv[:2] == ["kmm", "serve"] and "--no-migrate" not in argv
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    health = [args for instr, args in dockerfile if instr == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]


def test_every_copied_path_exists(dockerfile):
    for instr, args in dockerfile:
        if instr == "COPY":
            *sources, _ = shlex.split(args)
            for src in sources:
                assert (PROJECT_ROOT / src).exists(), src


def test_dockerignore_keeps_local_state_out():
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "*.db", ".kmm-secrets.json", ".kmm-demo-logins.json"} <= ignored



def test_the_image_installs_the_wheel_not_an_editable_checkout(dockerfile):
    runs = " ".join(args for instr, args in dockerfile if instr == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs) and "pip install -e" not in runs


def test_workers_come_from_web_concurrency(dockerfile):
    env = " ".join(args for instr, args in dockerfile if instr == "ENV")
    assert re.search(r"\bWEB_CONCURRENCY=\d+", env)
    argv = yaml.safe_load([args for instr, args in dockerfile if instr == "CMD"][-1])
    assert "--workers" not in argv  # the environment decides: docker run -e WEB_CONCURRENCY=4


def test_compose_documents_docker_secrets_and_sets_the_workers(compose):
    api = compose["services"]["api"]
    env = _env(api)
    # Either way works; the compose file documents the *_FILE form beside the variables.
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "_FILE" in text
    assert "WEB_CONCURRENCY" in env


def test_compose_serves_with_the_workers_of_web_concurrency(compose):
    command = compose["services"]["api"]["command"]
    assert command[:2] == ["kmm", "serve"] and "--workers" not in command
