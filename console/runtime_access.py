"""The runtime and the networking layer of this host, for the processes that may touch them.

The worker's tasks and its exit watcher are the callers that change
containers. The API process uses the runtime too, but only to stream what
the kernel holds on this host (attach, logs, exec): those need the
connection handed to conmon's socket or runc, which a Celery result cannot
carry. Networking (bridges, veths, namespaces, nftables) is the worker's
alone.

The web process makes no Runtime (it may run as an unprivileged user, see
scripts/web-user): it reads containers' log files, found by ``log_path``,
and asks the API for a shell.
"""

import importlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from django.conf import settings

from runtime import Runtime, StateRoot
from runtime import logs as runtime_logs
from runtime.errors import BerthError


def get_runtime() -> Runtime:
    """One Runtime per state root and cgroup parent, made on first use (settings may change in tests)."""
    return _runtime(str(settings.BERTH_ROOT), settings.BERTH_CGROUP_PARENT)


def log_path(container_id: str) -> Path:
    """The container's log file on this host, found without a Runtime (which would make the state root's folders)."""
    return runtime_logs.container_log_path(settings.BERTH_ROOT, container_id)


@lru_cache(maxsize=8)
def _runtime(root: str, cgroup_parent: str) -> Runtime:
    return Runtime(StateRoot(Path(root), cgroup_parent))


def networking_api(module: str | None = None) -> ModuleType:
    """The module of the networking layer: Networking, BridgeSpec, EndpointSpec, PortSpec.

    ``settings.BERTH_NETWORKING`` names it (``runtime.network``; tests name a stand-in).
    """
    module = module or settings.BERTH_NETWORKING
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BerthError(f"bridge networking is not available: {module}: {error}") from None


def get_networking():
    """One Networking per module, nftables table, namespace prefix and state root, made on first use.

    Its own state (the published-ports registry, its lock) lives under
    ``BERTH_ROOT/network/<table>``; ``BERTH_ADDRESS_POOLS`` replaces the
    default pools subnets are picked from.
    """
    return _networking(settings.BERTH_NETWORKING, settings.BERTH_NFT_TABLE, settings.BERTH_NETNS_PREFIX,
                       str(settings.BERTH_ROOT), tuple(settings.BERTH_ADDRESS_POOLS))


@lru_cache(maxsize=8)
def _networking(module: str, table: str, netns_prefix: str, root: str, pools: tuple[str, ...]):
    return networking_api(module).Networking(table=table, netns_prefix=netns_prefix,
                                             state_dir=Path(root) / "network" / table, pools=list(pools) or None)
