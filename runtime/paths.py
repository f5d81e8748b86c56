"""Where the runtime keeps its state.

Everything lives under one state root (``BERTH_ROOT``, default
``/var/lib/berth``) so a test suite can run a whole engine in a temporary
folder without touching a live install. Kernel objects that are not files
(cgroups) take their parent name from ``BERTH_CGROUP_PARENT`` for the same
reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/var/lib/berth"
DEFAULT_CGROUP_PARENT = "berth"


def tree_size(top: Path) -> int:
    """Bytes of the files under ``top`` (a container layer, a volume); vanishing files are skipped."""
    total = 0
    for directory, _, files in os.walk(top):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class StateRoot:
    root: Path
    cgroup_parent: str = DEFAULT_CGROUP_PARENT

    @classmethod
    def from_env(cls) -> "StateRoot":
        return cls(
            Path(os.environ.get("BERTH_ROOT", DEFAULT_ROOT)),
            os.environ.get("BERTH_CGROUP_PARENT", DEFAULT_CGROUP_PARENT),
        )

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def exits(self) -> Path:
        """conmon writes one file per container here when PID 1 exits."""
        return self.root / "exits"

    @property
    def runc_root(self) -> Path:
        """runc's own state, kept apart from any other runc user on the host."""
        return self.root / "runc"

    @property
    def tmp(self) -> Path:
        """Scratch space on the same filesystem, so finished work is renamed in atomically."""
        return self.root / "tmp"

    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id

    def ensure(self) -> None:
        for path in (self.images, self.containers, self.exits, self.runc_root, self.tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
