"""What every benchmark does last: leave nothing of its engine behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime import Runtime
from runtime.mounts import mount_points, unmount


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
