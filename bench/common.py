"""What the benchmarks share: where results go, one run at a time, leaving nothing of an engine behind."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

from runtime import Runtime
from runtime.mounts import mount_points, unmount

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT = RESULTS.parent.parent


def remove_engine(engine: Runtime) -> None:
    """Its containers, mounts, state root and cgroup parent."""
    for container in engine.list():
        engine.remove(container.id, force=True)
    engine.gc()
    for point in sorted(mount_points(engine.state.root), reverse=True):
        unmount(point)
    shutil.rmtree(engine.state.root, ignore_errors=True)
    for directory in Path("/sys/fs/cgroup").glob(f"*/{engine.state.cgroup_parent}"):
        directory.rmdir()


# --- one benchmark run at a time, and what a killed one left ------------------------------------------

SUITE_LOCK = Path("/tmp/berth-bench.lock")
INSIDE_SUITE = "BERTH_BENCH_SUITE"  # set for the benchmarks the suite runs: they share its lock


@contextmanager
def exclusive():
    """Hold the benchmarks' lock, then clear what an earlier, killed run left; refuse if a run is under way.

    Every name a benchmark makes starts with ``berth-bench-`` (or is a link ``bbd-``/``bbb``), so
    whatever carries one while nobody holds the lock is a killed run's. A benchmark the suite runs
    shares the suite's lock. SIGTERM ends the process through its finally clauses (clean-up).
    """
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    handle = None
    try:
        if not os.environ.get(INSIDE_SUITE):
            handle = open(SUITE_LOCK, "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SystemExit(f"another benchmark run holds {SUITE_LOCK}; wait for it to end") from None
            from .leftovers import remove_all

            remove_all()
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if handle is not None:
            handle.close()


def _exit_on_sigterm(signum, frame):
    # SIGTERM would end the process without its finally clauses: the engines would stay up.
    raise SystemExit(f"ended by signal {signum}")
