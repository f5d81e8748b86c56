"""Operations whose process died before they ended: finished by the worker, never left pending.

A service runs inside ``operations.operation``: its row says pending until the block ends. A
process killed meanwhile (SIGKILL, the OOM killer, a reboot) never ends it, and may leave its
target between two states (a row marked "removing", a row whose container was never made). So
each row carries the process that runs it, and the worker of that host finishes the rows of
processes that are gone (``sweep``, from the exit watcher's loop and at the worker's start)::

    operation row: pending, detail.process = {host, pid, started}
        |  the pid is gone, or is another process now (its start time differs)
        v
    the target as the kernel shows it --> done (it got there) | failed, "interrupted" (rolled back)

What "got there" means is per action (``_judge``): a create whose container exists is done, one
whose container was never made is rolled back (the row, its addresses and ports deleted); a
remove is finished; a start, stop, kill, pause is done if the container is in the state asked for.

Only processes of the worker's own host can be looked at (by pid): a web server on another
machine, or in another pid namespace, leaves its interrupted rows to the timeout of its caller.
"""

from __future__ import annotations

import logging
import socket

from django.utils import timezone

from runtime.errors import NoSuchContainer

from .operations import PROCESS, process_start_time
from .models import Container, Operation
from .runtime_access import get_runtime

log = logging.getLogger(__name__)

UNFINISHED = (Operation.STATE_PENDING, Operation.STATE_RUNNING)
# action -> the container states that mean it got where it was asked to go
REACHED = {
    "container.start": {Container.STATE_RUNNING},
    "container.restart": {Container.STATE_RUNNING},
    "container.unpause": {Container.STATE_RUNNING},
    "container.stop": {Container.STATE_EXITED, Container.STATE_CREATED},
    "container.kill": {Container.STATE_EXITED, Container.STATE_CREATED},
    "container.pause": {Container.STATE_PAUSED},
}


def alive(process: dict) -> bool:
    """Is the process that ran an operation still there? Unknown ones (another host) count as alive."""
    if process.get("host") != socket.gethostname():
        return True
    return process_start_time(int(process.get("pid") or 0)) == process.get("started")


def sweep(busy=None) -> list[str]:
    """Finish the unfinished operations of dead processes of this host; what was done, as sentences.

    ``busy(target_id)``: is a task for that target still queued or running? Then its operation is
    judged later, once the task is over (its dead caller may have sent it a moment before dying)."""
    finished = []
    for op in Operation.objects.filter(state__in=UNFINISHED, detail__has_key=PROCESS):
        process = (op.detail or {}).get(PROCESS)
        if not isinstance(process, dict) or alive(process) or (busy is not None and busy(op.target_id)):
            continue
        try:
            done, note = _judge(op)
        except Exception as error:
            log.exception("could not judge the interrupted operation %s", op.pk)
            done, note = False, f"interrupted, and its outcome could not be told: {error}"
        who = f"{op.source} process {process.get('pid')}"
        fields = {"state": Operation.STATE_DONE if done else Operation.STATE_FAILED, "finished": timezone.now()}
        if not done:
            fields["error"] = f"interrupted: the {who} that ran it ended before it finished; {note}"
        if Operation.objects.filter(pk=op.pk, state__in=UNFINISHED).update(**fields):
            finished.append(f"{op.action} {op.target_name or op.target_id[:12]}: {fields['state']} ({note})")
    if finished:
        log.warning("finished operations of processes that died: %s", "; ".join(finished))
    return finished


def _judge(op: Operation) -> tuple[bool, str]:
    """(done?, what became of the target) for an operation whose process died."""
    row = Container.objects.filter(pk=op.target_id).first() if op.target_id else None
    if op.action == "container.create":
        return _judge_create(op, row)
    if op.action == "container.remove":
        return _judge_remove(op, row)
    if row is None:
        return False, "its container is gone"
    wanted = REACHED.get(op.action)
    if wanted is None:
        return False, f"the container is {row.state}"
    if op.action == "container.restart" and row.started_at and row.started_at < op.created:
        return False, "the container was not started again"
    if op.action in ("container.stop", "container.kill") and row.state not in wanted:
        # The stop was marked manual before its task went: a policy must go on restarting what still runs.
        Container.objects.filter(pk=row.id).update(manually_stopped=False)
    return row.state in wanted, f"the container is {row.state}"


def _judge_create(op: Operation, row: Container | None) -> tuple[bool, str]:
    if row is None:
        return False, "no container was made"
    try:
        get_runtime().get(row.id)
        return True, f"the container was made ({row.state})"
    except NoSuchContainer:
        pass
    # Rows written, container never made: roll back. A create task still on its way finds no row
    # and makes nothing; one already making it leaves a container no row owns, which the reconcile removes.
    from . import watcher  # watcher runs this sweep

    watcher.forget_half_made(row)
    return False, "its container was never made: its row, addresses and ports were removed"


def _judge_remove(op: Operation, row: Container | None) -> tuple[bool, str]:
    if row is None:
        return True, "the container is removed"
    if row.state != Container.STATE_REMOVING:
        return False, f"the container stays, {row.state}"
    from . import watcher  # watcher runs this sweep

    watcher.finish_removal(row)
    return True, "its removal was finished"
