"""Files that hold secrets are owner-only (0600) from the moment they exist: the development
secrets file, the demo logins and the SQLite database. None is written through a symlink,
and `kmm rotate-key` never leaves a world-readable secrets file behind."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import ConfigurationError, Settings
from app.core.migrations import upgrade
from app.workflows import key_rotation
from tests.databases import FAST_ARGON2, env_for, fresh_database, migrated_database


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("KMM_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The most permissive umask: whatever is created owner-only is so by its own doing."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_development_secrets_file_is_0600_whatever_the_umask(tmp_path, loose_umask):
    path = tmp_path / "secrets.json"
    assert Settings(env="development", secrets_file=path).signing_key
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.json"]  # no temporary file left


def test_a_symlink_in_place_of_the_secrets_file_is_refused(tmp_path):
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"jwt_secret": "x" * 48, "master_keys": ["A" * 43 + "="]}))
    path = tmp_path / "secrets.json"
    path.symlink_to(planted)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        Settings(env="development", secrets_file=path).signing_key  # noqa: B018


def test_rotate_key_never_leaves_a_world_readable_secrets_file(tmp_path, loose_umask):
    path = tmp_path / "secrets.json"
    settings = Settings(env="development", secrets_file=path)
    settings.read_keyring()
    # A leftover temporary file that anyone may read (or a symlink planted there) is never reused.
    stale = path.with_name(path.name + ".tmp")
    stale.write_text("{}")
    os.chmod(stale, 0o644)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("untouched")
    decoy = path.with_name(".secrets.json.tmp")
    decoy.symlink_to(elsewhere)
    key_rotation.add_current_key(settings, os.urandom(32))
    assert mode(path) == 0o600
    assert len(json.loads(path.read_text())["master_keys"]) == 2
    assert elsewhere.read_text() == "untouched"
    leftovers = {p.name for p in tmp_path.iterdir()} - {"secrets.json", "elsewhere.json", stale.name, decoy.name}
    assert leftovers == set()


@pytest.mark.slow  # seeds the whole demo organisation
def test_demo_logins_are_0600_whatever_the_umask(tmp_path, loose_umask):
    with fresh_database(tmp_path) as db:
        runner = CliRunner()
        assert runner.invoke(cli, ["migrate"], env=env_for(db)).exit_code == 0
        r = runner.invoke(cli, ["seed-demo"], env=env_for(db))
        assert r.exit_code == 0, r.output
        logins = db.secrets_file.with_name(".kmm-demo-logins.json")
        assert mode(logins) == 0o600 and "director" in json.loads(logins.read_text())
        assert mode(db.secrets_file) == 0o600
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_demo_logins_are_never_read_or_written_through_a_symlink(tmp_path):
    with migrated_database(tmp_path) as db:
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text("{}")
        logins = db.secrets_file.with_name(".kmm-demo-logins.json")
        logins.symlink_to(elsewhere)
        r = CliRunner().invoke(cli, ["seed-demo"], env=env_for(db))
        assert r.exit_code == 2, r.output
        assert "is a symbolic link" in r.stderr
        assert elsewhere.read_text() == "{}" and logins.is_symlink()


def test_a_new_sqlite_database_is_0600(tmp_path):
    old = os.umask(0o022)  # the usual one: files are world-readable unless made otherwise
    try:
        path = tmp_path / "kmm.db"
        upgrade(Settings(env="test", database_url=f"sqlite:///{path}", secrets_file=tmp_path / "s.json",
                         **FAST_ARGON2))
    finally:
        os.umask(old)
    made = [p for p in tmp_path.iterdir() if p.name.startswith("kmm.db")]
    assert made and {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}
