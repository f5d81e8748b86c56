"""Running a host's task and waiting for it, and the audit row around every action.

Shared by the services of containers, images and networks (``services``,
``network_services``): a service validates and writes its rows, then calls
``call(task, host, ...)`` inside ``operation(...)``.
"""

from __future__ import annotations

import functools
import os
import socket
from contextlib import contextmanager

from django.utils import timezone

from . import audit, roles
from .broker import call  # noqa: F401 - the services' way to the worker, sent again if Redis restarted
from .models import Operation

PROCESS = "process"  # the key in Operation.detail naming the process that runs it


def require(user, action: str, source: str, target=None, name: str = "") -> None:
    """Raise PermissionDenied, recorded as a failed operation, unless the user's role allows ``action``.

    For pages that refuse before they validate; services check through ``operation``.
    """
    try:
        roles.check(user, action)
    except roles.PermissionDenied as error:
        _record(action, user, source, target, name, None, state=Operation.STATE_FAILED, error=str(error),
                finished=timezone.now())
        raise


@contextmanager
def operation(action: str, user, source: str, target=None, name: str = "",
              detail: dict | None = None):
    """An Operation row, pending until the block ends: done, or failed with the error's message.

    The user's role is checked first (``roles.MINIMUM_ROLE``); a refusal is recorded as a failed
    operation and raised. The row says where the change came from (``audit.current_origin``):
    the client's address for a page or a websocket, the peer's uid and pid for the API socket.
    """
    if source not in dict(Operation.SOURCES):
        raise ValueError(f"unknown operation source {source!r}")
    operation = _record(action, user, source, target, name, detail)
    try:
        roles.check(user, action)
        yield operation
    except BaseException as error:
        Operation.objects.filter(pk=operation.pk).update(
            state=Operation.STATE_FAILED, error=str(error) or type(error).__name__, finished=timezone.now(),
            target_id=operation.target_id, target_name=operation.target_name)
        raise
    Operation.objects.filter(pk=operation.pk).update(
        state=Operation.STATE_DONE, finished=timezone.now(),
        target_id=operation.target_id, target_name=operation.target_name)


def _record(action: str, user, source: str, target, name: str, detail: dict | None, **fields) -> Operation:
    return Operation.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None, source=source, action=action,
        origin="" if source == Operation.SOURCE_SYSTEM else audit.current_origin(),
        target_id=target.id if target else "", target_name=target.name if target else name,
        detail={**(detail or {}), PROCESS: this_process()}, **fields,
    )


def this_process() -> dict:
    """Who runs an operation: the worker finishes the rows of a process that died (``console.interrupted``)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _own_start_time(os.getpid())}


@functools.lru_cache(maxsize=8)
def _own_start_time(pid: int) -> int | None:
    """A process's start time never changes: read once per process (the pid is the key: a forked child
    has its own), not once per operation."""
    return process_start_time(pid)


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if gone."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None

__all__ = ["PROCESS", "call", "operation", "process_start_time", "require", "this_process"]
