"""Migrations at start take a lock: replicas (or operators) migrating one database at the
same moment all end at head, none fails half-way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from app.core.migrations import head_revisions
from tests.conftest import PROJECT_ROOT
from tests.databases import env_for, fresh_database, sync_engine

REPLICAS = 3


@pytest.mark.slow  # three `kmm migrate` processes
def test_replicas_migrating_a_fresh_database_together_all_succeed(tmp_path):
    with fresh_database(tmp_path) as settings:
        env = {**os.environ, **env_for(settings)}
        procs = [subprocess.Popen([sys.executable, "-m", "app.cli", "migrate"], cwd=PROJECT_ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(REPLICAS)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        for code, out, err in results:
            assert code == 0, err
            assert "database migrated to head" in out
            assert "Traceback" not in err
        engine = sync_engine(settings)
        with engine.connect() as conn:
            versions = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
        engine.dispose()
        assert frozenset(versions) == head_revisions() and len(versions) == len(head_revisions())
