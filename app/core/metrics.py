"""Prometheus metrics across worker processes.

With several workers, each counts into files of its own in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) and ``/metrics``, whichever worker answers, sums
them all. `kmm serve` sets the directory up before the workers start: the one named by
``PROMETHEUS_MULTIPROC_DIR``, emptied of a previous run's files, or a fresh temporary one
removed when serving ends. With one process the counts stay in memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

ENV = "PROMETHEUS_MULTIPROC_DIR"
__all__ = ["CONTENT_TYPE_LATEST", "multiprocess_directory", "render"]


@contextlib.contextmanager
def multiprocess_directory(*, enabled: bool = True) -> Iterator[Path | None]:
    """A clean metrics directory in the environment the workers inherit, for as long as they run."""
    if not enabled:
        yield None
        return
    chosen = os.environ.get(ENV)
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # the counts of a previous run's workers
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="kmm-metrics-"))
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def render() -> bytes:
    """The metrics in Prometheus' text format: every worker's when they share a directory."""
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
