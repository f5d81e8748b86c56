"""The runtime of this host, for the processes that may touch it.

The worker's tasks and its exit watcher are the callers that change
containers. The API process uses it too, but only to stream what the kernel
holds on this host (attach, logs, exec): those need the connection handed to
conmon's socket or runc, which a Celery result cannot carry.
"""

from functools import lru_cache
from pathlib import Path

from django.conf import settings

from runtime import Runtime, StateRoot


def get_runtime() -> Runtime:
    """One Runtime per state root and cgroup parent, made on first use (settings may change in tests)."""
    return _runtime(str(settings.BERTH_ROOT), settings.BERTH_CGROUP_PARENT)


@lru_cache(maxsize=8)
def _runtime(root: str, cgroup_parent: str) -> Runtime:
    return Runtime(StateRoot(Path(root), cgroup_parent))
