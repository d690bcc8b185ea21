"""Where the code for a route lives: the code for `/x` is in routers/x.py, workflows/x.py
(or the package workflows/x/) and models/x.py; every file says what it holds."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"


def _workflows_used(router: str) -> set[str]:
    """The top-level workflow modules (or packages) a router module imports."""
    tree = ast.parse((APP / "routers" / f"{router}.py").read_text())
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "app.workflows":
                used.update(alias.name for alias in node.names)
            elif node.module.startswith("app.workflows."):
                used.add(node.module.split(".")[2])
    return used


# Every router of a resource; the others serve the service itself (health, docs, the
# OpenAPI operation table, problem responses, the benchmark's baseline).
RESOURCES = sorted(p.stem for p in (APP / "routers").glob("*.py")
                   if p.stem not in {"__init__", "bench", "docs", "health", "operations", "responses"})
# Shared by several routers: every creating POST's Idempotency-Key handling; a record's
# access log is read from the audit trail, beside it (audit/access.py).
SHARED = {"idempotency"}
ALSO = {"records": {"audit"}}


def _models_used(router: str) -> set[str]:
    tree = ast.parse((APP / "routers" / f"{router}.py").read_text())
    return {node.module.split(".")[2] for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app.models.")}


def test_every_resource_router_is_listed():
    assert {"users", "service_clients", "auth", "audit", "subjects", "records"} <= set(RESOURCES)


@pytest.mark.parametrize("router", RESOURCES)
def test_a_router_is_served_by_the_workflow_of_its_name(router):
    assert _workflows_used(router) - SHARED - ALSO.get(router, set()) == {router}
    assert (APP / "workflows" / f"{router}.py").exists() or (APP / "workflows" / router).is_dir()


@pytest.mark.parametrize("router", RESOURCES)
def test_a_router_shows_the_models_of_its_name(router):
    # Legal holds and accuracy reviews are records' lifecycle (app/models/lifecycle.py).
    assert _models_used(router) <= {router} | ({"lifecycle"} if router == "records" else set())
    assert _models_used(router) == set() or (APP / "models" / f"{router}.py").exists()


def test_no_router_or_workflow_gathers_unrelated_resources():
    for gone in ("routers/data_protection.py", "routers/record_lifecycle.py", "workflows/sharing.py",
                 "workflows/records.py", "workflows/record_access.py", "workflows/accuracy.py",
                 "workflows/accounts.py", "workflows/sessions.py", "workflows/passwords.py", "models/accounts.py",
                 "workflows/audit_trail.py", "workflows/audit_chain.py", "workflows/audit_access.py",
                 "workflows/audit/chain.py", "workflows/packages.py"):
        assert not (APP / gone).exists(), gone


@pytest.mark.parametrize(("package", "named"), [
    ("records", {"content", "queries", "read", "commands"}),
    ("audit", {"trail", "canonical", "links", "seal", "verify", "access"}),
])
def test_a_workflow_package_is_small_files_named_for_what_they_hold(package, named):
    files = {p.stem: len(p.read_text().splitlines()) for p in (APP / "workflows" / package).glob("*.py")}
    assert {"__init__", *named} <= set(files)
    assert all(lines < 450 for lines in files.values()), files


@pytest.mark.parametrize(("package", "expected"), [
    ("access_requests", {"rules.py", "deadlines.py", "read.py", "intake.py", "transitions.py", "package.py",
                         "fulfilment.py", "package_retention.py"}),
    ("breach_reports", {"visibility.py", "routing.py", "reports.py", "investigation.py", "detection.py",
                        "compliance.py"}),
    ("webhooks", {"signing.py", "subscriptions.py", "outbox.py", "delivery.py"}),
])
def test_the_long_workflows_are_packages_of_small_files_named_for_what_they_hold(package, expected):
    assert not (APP / "workflows" / f"{package}.py").exists()
    files = {p.name: len(p.read_text().splitlines()) for p in (APP / "workflows" / package).glob("*.py")}
    assert {"__init__.py"} | expected <= set(files), files
    assert all(lines < 450 for lines in files.values()), files
    docstring = ast.get_docstring(ast.parse((APP / "workflows" / package / "__init__.py").read_text())) or ""
    assert all(f"- {name.removesuffix('.py')}:" in docstring for name in expected), docstring


def test_the_demo_organisation_is_one_package():
    assert not list(APP.glob("seed*.py"))
    from app.demo import seed_demo

    assert inspect.iscoroutinefunction(seed_demo)


def test_the_workflow_is_given_the_expected_version_not_the_header():
    """If-Match is parsed at the HTTP layer (app.deps.IfMatch); the workflow takes an int."""
    from app.deps import IfMatch, etag
    from app.workflows.records.commands import update_record

    assert etag(7) == '"v7"'
    assert IfMatch is not None
    from app.deps import IfMatchTag

    assert IfMatchTag(etag(7)).version == IfMatchTag("W/\"v7\"").version == 7
    params = inspect.signature(update_record).parameters
    assert "expected" in params and "if_match" not in params


def test_the_access_log_sits_beside_the_audit_trail():
    from app.workflows.audit import access

    assert callable(access.access_log) and callable(access.record_accesses)


@pytest.mark.parametrize(("module", "names"), [
    ("emergency_grants", ["EmergencyGrant", "GrantCreate", "GrantPublic"]),
    ("retention", ["SweepRequest", "SweepResult"]),
    ("reports", ["MonitoringReport"]),
])
def test_the_models_of_a_resource_are_in_models_of_its_name(module, names):
    import importlib

    models = importlib.import_module(f"app.models.{module}")
    assert all(getattr(models, name).__module__ == models.__name__ for name in names)
