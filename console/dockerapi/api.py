"""The API's context: the services it calls, the local runtime it reads, live events, exec sessions.

Business rules live in ``console.services`` (sync functions over the Django
ORM); this process calls them in worker threads. Streams the services do not
carry (attach, logs, exec, archive, stats, top) come straight from the local
runtime's state root, read-only except where noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .events import ChannelEvents

THREADS = 64


def _close_old_connections() -> None:
    from django.conf import settings

    if settings.configured:
        from django.db import close_old_connections

        close_old_connections()


def _with_fresh_connections(fn, args, kwargs):
    """Run one unit of ORM work in a worker thread, as Django does around a request."""
    _close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        _close_old_connections()


def _default_root() -> Path:
    from django.conf import settings

    return Path(settings.BERTH_ROOT)


def local_runtime(root: Path | None = None):
    """The runtime over this host's state root: the console's shared one when it offers it."""
    try:
        from console.runtime_access import get_runtime
    except ImportError:
        get_runtime = None
    if get_runtime is not None and root is None:
        return get_runtime()
    from django.conf import settings

    from runtime import Runtime, StateRoot
    from runtime.paths import DEFAULT_CGROUP_PARENT

    parent = getattr(settings, "BERTH_CGROUP_PARENT", None) or os.environ.get("BERTH_CGROUP_PARENT",
                                                                             DEFAULT_CGROUP_PARENT)
    return Runtime(StateRoot(Path(root or _default_root()), parent))


class DockerAPI:
    """Everything a handler needs; tests hand in fakes, production takes the defaults."""

    def __init__(self, services=None, runtime=None, events=None, root: Path | str | None = None, store=None,
                 upload_limit: int = 64 << 30, stats_interval: float = 1.0, poll_interval: float = 1.0,
                 audit: bool | None = None):
        self._services = services
        # Rows in the audit for what no service carries (exec); fake services have no database to write to.
        self.audit = services is None if audit is None else audit
        if store is None:
            from .store import ModelStore

            store = ModelStore()
        self.store = store
        self._runtime = runtime
        self._given_root = Path(root) if root is not None else None
        self._root = self._given_root
        self.events = events if events is not None else ChannelEvents()
        self.upload_limit = upload_limit
        self.stats_interval = stats_interval
        self.poll_interval = poll_interval
        self.executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="dockerapi")
        from .handlers.execs import ExecRegistry

        self.execs = ExecRegistry()
        # Sizes asked for before a container's pty existed: applied when its run starts.
        self.pending_resize: dict[str, tuple[int, int]] = {}
        self._background: set[asyncio.Future] = set()

    @property
    def services(self):
        if self._services is None:
            from console import services

            self._services = services
        return self._services

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = _default_root()
        return self._root

    @property
    def runtime(self):
        if self._runtime is None:
            self._runtime = local_runtime(self._given_root)
        return self._runtime

    @property
    def tmp(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def operation(self, action: str, target, detail: dict | None = None):
        """The audit row (``console.operations.operation``) around an action done here, not in a service."""
        if not self.audit:
            return contextlib.nullcontext()
        from console.operations import operation

        return operation(action, None, "api", target=target, detail=detail)

    async def sync(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a worker thread, with Django's connection hygiene around it.

        In a copy of the caller's context, as ``asyncio.to_thread`` does: the audit's origin (the
        connection's peer, ``console.audit``) reaches the services.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, contextvars.copy_context().run,
                                          functools.partial(_with_fresh_connections, fn, args, kwargs))

    def spawn(self, coroutine) -> asyncio.Future:
        """Run ``coroutine`` on its own, outliving the request (asyncio only keeps weak references)."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
