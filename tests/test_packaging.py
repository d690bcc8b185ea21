"""Packaging: `pip install .` (not editable) ships the migrations, and `make run` installs
only what the service needs at run time."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from app.core.migrations import head_revisions
from tests.conftest import PROJECT_ROOT


def _make_dry_run(target: str) -> str:
    """The commands `make TARGET` would run from a fresh clone (every target out of date)."""
    r = subprocess.run(["make", "-n", "-B", target], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _pip_installs(commands: str) -> list[str]:
    return [line for line in commands.splitlines() if re.search(r"pip install .*-e ", line)]


def test_make_run_installs_only_the_runtime_dependencies():
    installs = _pip_installs(_make_dry_run("run"))
    assert installs, "make run installs the project"
    assert all("[dev]" not in line for line in installs), installs


@pytest.mark.parametrize("target", ["test", "lint"])
def test_make_test_and_lint_install_the_dev_tools(target):
    installs = _pip_installs(_make_dry_run(target))
    assert any("'.[dev]'" in line or '".[dev]"' in line or " .[dev]" in line for line in installs), installs


def test_make_run_serves_on_the_port_given():
    commands = _make_dry_run("run")
    serve = [line for line in commands.splitlines() if "kmm serve" in line]
    assert serve and "--port 8000" in serve[-1]
    r = subprocess.run(["make", "-n", "-B", "run", "PORT=8765"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                       timeout=60)
    serve = [line for line in r.stdout.splitlines() if "kmm serve" in line]
    assert serve and "--port 8765" in serve[-1]


def test_the_runtime_dependencies_hold_no_dev_tool():
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[=<>~! ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    dev = {re.split(r"[\[=<>~! ]", dep, maxsplit=1)[0].lower() for dep in project["optional-dependencies"]["dev"]}
    assert not names & dev
    assert not names & {"pytest", "ruff", "mypy", "hypothesis", "schemathesis", "playwright", "py-spy"}
    # Declared but never imported: nothing in app/ uses structlog.
    assert "structlog" not in names


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_migrates(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
                        str(PROJECT_ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("kmm_records-*.whl")

    # A fresh venv whose own site-packages comes first; the dependencies are this venv's,
    # reached through a path file (no index needed). The project's editable install is
    # not among them: a .pth line adds a directory, it does not run the finder installed there.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_kmm_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    r = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    work = tmp_path / "elsewhere"  # no checkout here: the migrations come from the wheel
    work.mkdir()
    database = work / "kmm.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMM_", "DATABASE_URL", "PYTHON"))}
    env.update({"DATABASE_URL": f"sqlite:///{database}", "KMM_SECRETS_FILE": str(work / "secrets.json")})
    where = subprocess.run([str(python), "-c", "import app; print(app.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    r = subprocess.run([str(venv / "bin" / "kmm"), "migrate"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "database migrated to head" in r.stdout
    with sqlite3.connect(database) as conn:
        assert {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")} == head_revisions()
