"""Progress of long jobs (`kmm retention-sweep`, `prune`, `rotate-key`, `audit-verify`, `seed-demo`).

A workflow reports through ``set_total`` and ``advance``, which do nothing unless a command
opened ``reporting``: the service's own calls pay nothing. On a terminal the command shows a
bar (rich, which typer brings); otherwise plain lines on standard error, one when the job
starts, then at most one every ``KMM_PROGRESS_SECONDS`` (10 by default), and one at the end.
Standard output stays the command's result. Lines hold counts, never anything stored.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO


class Reporter:
    def set_total(self, total: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def advance(self, n: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self, *, failed: bool = False) -> None:  # pragma: no cover - interface
        raise NotImplementedError


_current: ContextVar[Reporter | None] = ContextVar("kmm_progress", default=None)


def active() -> bool:
    """Whether a command shows progress (a workflow may then count what is ahead)."""
    return _current.get() is not None


def set_total(total: int) -> None:
    reporter = _current.get()
    if reporter is not None:
        reporter.set_total(total)


def advance(n: int = 1) -> None:
    reporter = _current.get()
    if reporter is not None and n:
        reporter.advance(n)


class Lines(Reporter):
    """``label: 200/1000 (20%), 3s`` lines, at most one every ``interval`` seconds."""

    def __init__(self, label: str, unit: str, stream: TextIO, interval: float) -> None:
        self.label, self.unit, self.stream, self.interval = label, unit, stream, interval
        self.total: int | None = None
        self.done = 0
        self.started = self.last = time.monotonic()
        self._say("started")

    def _say(self, what: str) -> None:
        self.stream.write(f"{self.label}: {what}\n")
        self.stream.flush()

    def _count(self) -> str:
        elapsed = f"{time.monotonic() - self.started:.0f}s"
        if self.total:
            return f"{self.done}/{self.total} {self.unit} ({100 * self.done // self.total}%), {elapsed}"
        return f"{self.done} {self.unit}, {elapsed}"

    def set_total(self, total: int) -> None:
        self.total = total

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._say(self._count())

    def finish(self, *, failed: bool = False) -> None:
        self._say(("stopped, " if failed else "finished, ") + self._count())


class Bar(Reporter):
    def __init__(self, label: str, unit: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(),
                                 console=Console(file=stream), transient=False)
        self.task = self.progress.add_task(label, total=None)
        self.progress.start()

    def set_total(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def finish(self, *, failed: bool = False) -> None:
        self.progress.stop()


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("KMM_PROGRESS_SECONDS", "10")))
    except ValueError:
        return 10.0


@contextlib.contextmanager
def reporting(label: str, *, unit: str = "", total: int | None = None,
              stream: TextIO | None = None) -> Iterator[Reporter]:
    """Show the progress of what runs inside; a bar on a terminal, else plain lines."""
    out: Any = stream if stream is not None else sys.stderr
    reporter: Reporter = Bar(label, unit, out) if out.isatty() else Lines(label, unit, out, _interval())
    if total is not None:
        reporter.set_total(total)
    token = _current.set(reporter)
    try:
        yield reporter
    except BaseException:
        reporter.finish(failed=True)
        raise
    else:
        reporter.finish()
    finally:
        _current.reset(token)
