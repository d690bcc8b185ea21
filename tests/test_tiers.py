"""The two tiers of the suite: `make test` runs everything (CI does), `make test-fast` runs
all but the tests marked `slow` on SQLite, for the edit-run loop. Slow are the tests that
fuzz the contract, drive a browser, start a process or a real server, or measure memory."""

from __future__ import annotations

import ast
import re
import tomllib

import pytest

from tests.conftest import PROJECT_ROOT, SLOW_MODULES

# module -> its slow tests, or None when the whole module is slow
SLOW: dict[str, list[str] | None] = {
    "tests.test_contract": None,  # schemathesis
    "tests.test_browser": None,  # headless Chromium
    "tests.core.test_token_memory": None,  # a child process measuring its memory
    "tests.test_cli": [
        "test_migrate_an_unreachable_database_says_so",  # `python -m app.cli` in a subprocess
        "test_seed_demo_is_idempotent_and_prints_the_logins",  # the whole demo organisation, twice
    ],
    "tests.core.test_serving": ["test_kmm_serve_refuses_an_oversized_request_head_with_431"],  # a live server
    "tests.core.test_secret_files": ["test_demo_logins_are_0600_whatever_the_umask"],  # the demo organisation
    "tests.policy.test_filter_agreement": ["test_decide_and_sql_filter_agree"],  # a property test
    "tests.test_migrations": ["test_downgrade_to_base_and_up_again"],  # every migration down and up
    "tests.workflows.test_package_items_migration": [
        "test_0007_splits_packages_stored_whole_and_downgrade_joins_them"],  # a migration down and up
    "tests.test_packaging": ["test_a_wheel_installed_in_a_fresh_venv_migrates"],  # builds and installs a wheel
    "tests.test_migrate_lock": ["test_replicas_migrating_a_fresh_database_together_all_succeed"],  # processes
    "tests.test_operations": [
        "test_make_run_with_a_taken_port_exits_non_zero_with_the_message",  # `kmm serve` in a subprocess
        "test_metrics_sum_every_worker"],  # worker processes counting into one directory
    "tests.test_webhook_crash": [
        "test_a_delivery_in_flight_when_the_service_is_killed_arrives_after_restart"],  # kills a live service
}


def _slow(node: ast.expr) -> bool:
    """Whether a mark expression (or a list of them) is pytest.mark.slow; read, not imported,
    so that checking the tiers loads none of the slow modules."""
    marks = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    return any(ast.unparse(m) == "pytest.mark.slow" for m in marks)


def _marked(module: str) -> tuple[bool, set[str]]:
    """Whether the whole module is marked slow, and which of its test functions are."""
    tree = ast.parse((PROJECT_ROOT / (module.replace(".", "/") + ".py")).read_text())
    whole = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                and _slow(n.value) for n in tree.body)
    tests = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and any(_slow(d) for d in n.decorator_list)}
    return whole, tests


@pytest.mark.parametrize("module", sorted(SLOW))
def test_the_slow_tests_are_marked(module: str) -> None:
    whole, tests = _marked(module)
    names = SLOW[module]
    if names is None:
        assert whole, module
        return
    assert not whole, f"{module}: only its slow tests are marked"
    assert set(names) <= tests, f"{module}: {set(names) - tests}"


def test_the_fast_tier_does_not_collect_modules_slow_throughout() -> None:
    whole = {module.rsplit(".", 1)[1] + ".py" for module, names in SLOW.items() if names is None}
    assert whole == SLOW_MODULES


def test_the_marker_is_registered() -> None:
    pytest_options = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in pytest_options["markers"])
    assert "--strict-markers" in pytest_options["addopts"]


def _recipe(target: str) -> str:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    found = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert found, f"no make target {target}"
    return found.group(1)


def test_make_test_fast_runs_all_but_the_slow_tier_on_sqlite() -> None:
    recipe = _recipe("test-fast")
    assert "KMM_TEST_BACKEND=sqlite" in recipe and "pytest" in recipe
    assert re.search(r"""-m ["']not slow["']""", recipe)
    # make test (and so CI) deselects nothing
    for target in ("test-sqlite", "test-postgres"):
        assert "-m " not in _recipe(target)
    assert "make test\n" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_the_readme_names_both_tiers() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make test-fast" in readme and "make test" in readme and "slow" in readme
