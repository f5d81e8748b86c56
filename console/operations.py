"""Running a host's task and waiting for it, and the audit row around every action.

Shared by the services of containers, images and networks (``services``,
``network_services``): a service validates and writes its rows, then calls
``call(task, host, ...)`` inside ``operation(...)``.
"""

from __future__ import annotations

from contextlib import contextmanager

from celery.exceptions import TimeoutError as TaskTimeout
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runtime.errors import BerthError

from . import audit, roles, tasks
from .celery import host_queue
from .models import Operation


def call(task, host: str, *args, extra_wait: float = 0):
    """Run ``task`` on ``host``'s queue and wait; its result, or its runtime error raised again here."""
    if transaction.get_connection().in_atomic_block and not task.app.conf.task_always_eager:
        raise BerthError("a service was called inside a transaction: the worker could not see its rows")
    timeout = settings.BERTH_TASK_TIMEOUT + extra_wait
    try:
        # Not run at all once the caller gave up (a task redelivered after its worker died, say).
        result = task.apply_async(args=args, queue=host_queue(host), expires=timeout)
    except Exception as error:
        raise BerthError(f"could not queue {task.name} for host {host}: {error}") from error
    try:
        outcome = result.get(timeout=timeout)
    except TaskTimeout:
        raise BerthError(f"the worker of host {host} did not answer within {timeout:g} s") from None
    except Exception as error:
        raise BerthError(f"{task.name} failed on host {host}: {error}") from error
    finally:
        result.forget()
    if "error" in outcome:
        raise tasks.error_from_data(outcome)
    return outcome.get("result")


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
        target_id=target.id if target else "", target_name=target.name if target else name, detail=detail or {},
        **fields,
    )
