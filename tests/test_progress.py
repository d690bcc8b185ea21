"""Long jobs show progress: `kmm retention-sweep`, `rotate-key`, `audit-verify` and
`seed-demo` write plain lines to standard error when it is not a terminal (a bar when it
is); standard output keeps the result. The lines hold counts, never ids or content."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.core import progress
from app.core.config import Settings
from tests import dataprot as dp
from tests.databases import env_for, migrated_database

EVERY_STEP = {"KMM_PROGRESS_SECONDS": "0"}


def _lines(stderr: str, label: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{label}: ")]


@pytest.fixture
def seeded(tmp_path, state) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """A database of its own with the demo organisation in it (records, audit events)."""
    with migrated_database(tmp_path) as settings, dp.restore_keyring(state):
        r = CliRunner().invoke(cli, ["seed-demo"], env={**env_for(settings), **EVERY_STEP})
        assert r.exit_code == 0, r.output
        yield settings


def kmm(settings: Settings, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), input=input, env={**env_for(settings), **EVERY_STEP})


def test_seed_demo_reports_each_step(tmp_path, state):
    with migrated_database(tmp_path) as settings, dp.restore_keyring(state):
        r = kmm(settings, "seed-demo")
    assert r.exit_code == 0, r.output
    lines = _lines(r.stderr, "seed-demo")
    assert lines[0] == "seed-demo: started"
    steps = [line for line in lines[1:-1]]
    assert steps, lines
    total = int(re.search(r"/(\d+) steps", lines[-1]).group(1))  # type: ignore[union-attr]
    assert [re.match(r"seed-demo: (\d+)/", s).group(1) for s in steps] == [str(i) for i in range(1, total + 1)]  # type: ignore[union-attr]
    assert lines[-1].startswith(f"seed-demo: finished, {total}/{total} steps (100%)")
    assert "Demo logins" in r.stdout and "Demo logins" not in r.stderr
    assert "@demo.kmm.org.uk" not in r.stderr  # the logins go to standard output only


def test_rotate_key_reports_rows_rewrapped(seeded):
    r = kmm(seeded, "rotate-key", "--batch-size", "3")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)  # standard output stays the report alone
    done = report["data_keys_rewrapped"] + sum(report["values_reencrypted"].values())
    assert done > 3
    lines = _lines(r.stderr, "rotate-key")
    assert lines[0] == "rotate-key: started"
    counts = [int(m.group(1)) for m in (re.match(r"rotate-key: (\d+)/(\d+) rows", x) for x in lines) if m]
    assert counts == sorted(counts) and len(counts) >= 2
    assert lines[-1].startswith(f"rotate-key: finished, {done}/{done} rows (100%)")


def test_audit_verify_reports_the_events_checked(seeded):
    r = kmm(seeded, "audit-verify")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    lines = _lines(r.stderr, "audit-verify")
    assert lines[0] == "audit-verify: started"
    assert lines[-1].startswith(f"audit-verify: finished, {report['checked']}/{report['checked']} events (100%)")


async def test_retention_sweep_reports_each_batch(client, factory, state, settings, clock):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)
    ids = []
    for _ in range(3):
        rec = await factory.record(by=manager, subject=subj, custodian_id=str(alice.id),
                                   retention_until=(clock.now() - timedelta(days=2)).isoformat())
        ids.append(rec["id"])
    env = {**env_for(settings), **EVERY_STEP}
    with dp.restore_keyring(state):
        out = await asyncio.to_thread(CliRunner().invoke, cli, ["retention-sweep", "--batch-size", "1"], env=env)
    assert out.exit_code == 0, out.output
    assert "destroyed 3 record(s)" in out.stdout
    # The elapsed seconds follow the machine's load: every line ends with some.
    assert [re.sub(r", \d+s$", ", Ns", line) for line in _lines(out.stderr, "retention-sweep")] == [
        "retention-sweep: started",
        *(f"retention-sweep: {i}/3 records ({100 * i // 3}%), Ns" for i in (1, 2, 3)),
        "retention-sweep: finished, 3/3 records (100%), Ns",
    ]
    assert not any(rid in out.stderr or rid.replace("-", "") in out.stderr for rid in ids)


def test_plain_lines_are_periodic_not_one_per_step(monkeypatch):
    monkeypatch.setenv("KMM_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    with progress.reporting("job", unit="rows", total=1000, stream=out):
        for _ in range(1000):
            progress.advance(1)
    assert out.getvalue().splitlines() == ["job: started", "job: finished, 1000/1000 rows (100%), 0s"]


def test_a_terminal_gets_a_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with progress.reporting("job", unit="rows", total=10, stream=out) as reporter:
        assert isinstance(reporter, progress.Bar)
        progress.advance(10)
    assert "job" in out.getvalue() and "10/10" in out.getvalue()


def test_a_job_that_fails_says_it_stopped():
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress.reporting("job", unit="rows", total=4, stream=out):
        progress.advance(1)
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("job: stopped, 1/4 rows (25%)")


def test_without_a_command_nothing_is_reported():
    assert not progress.active()
    progress.set_total(5)
    progress.advance(5)  # no reporter: nothing happens, nothing fails
