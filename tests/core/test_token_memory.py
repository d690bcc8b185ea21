"""Refused tokens cost no lasting memory: a worker's resident set stays where it was.

A real measurement (VmRSS from /proc) in a child process of its own, so nothing pytest
holds skews it. It does no database work (every request is refused at the token), so it
runs once, in the SQLite run of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.databases import IS_POSTGRES

pytestmark = [
    pytest.mark.slow,  # a child process serving 20,000 requests
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc"),
    pytest.mark.skipif(IS_POSTGRES, reason="touches no database: the SQLite run measures it"),
]

BUDGET_KIB = 20 * 1024


def test_refused_tokens_leave_the_workers_memory_where_it_was(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.memory_probe", str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["statuses"] == [401]
    # 20,000 requests with one forged token
    assert seen["after_fixed_kib"] - seen["start_kib"] < BUDGET_KIB, seen
    # and then 50 distinct 1 MB tokens
    assert seen["end_kib"] - seen["start_kib"] < BUDGET_KIB, seen
