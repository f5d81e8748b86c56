"""The exit watcher: PID 1 exits noticed while no task is looking, and the reconcile at start.

It runs in the worker's main process, in a daemon thread started when the
worker is ready (Celery's ``worker_ready``). conmon writes ``exits/<id>``
(atomically, by rename) when PID 1 exits; an inotify watch on that folder
wakes the thread, which scans it. Where inotify is missing it polls every
25 ms; a full scan runs every second anyway::

    exits/<id> appears --> state.record(id): exited, exit code, finished_at --> event
                                |
                                +-- AutoRemove --> runtime remove, row deleted --> event removed=True
                                |
                                +-- restart policy says so (``console.restart``) --> "restarting",
                                    a timer in this process waits the back-off --> the start task's code

Before watching, the tasks a killed predecessor held are queued again
(``redelivery``), and ``reconcile`` makes the database match the host again
after any Berth process restarted (or the host rebooted): exits that happened
meanwhile are stored, interrupted removals finished, rows whose container is
gone marked dead (not rows whose create task has not run yet), containers no
row owns collected, images synced; then the network: bridges, veths and
published ports that rows expect remade, what no row owns collected
(``networking.reconcile``); then operations whose process died finished
(``interrupted``); last, stopped containers whose policy is ``always`` (or
``unless-stopped`` without a manual stop) started again. Every full scan
after that looks for operations whose process died again: a web server or
API killed in the middle of a request leaves no pending row behind.

Restarts wait on a ``threading.Timer`` here rather than a Celery countdown:
the back-off starts at 100 ms, finer than a trip through the broker's ETA
queue, and it is state of the moment like Docker's restart manager. A timer
lost with the worker is made good at its next start: reconcile starts the
``always`` and ``unless-stopped`` ones, and the first full scan looks at every
exit again (``considered`` starts empty), so an ``on-failure`` one is retried.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from runtime.errors import BerthError, NoSuchContainer

from . import collector, dns_sync, events, networking, redelivery, restart, state, volume_services
from .models import Container, Operation
from .runtime_access import get_runtime

log = logging.getLogger(__name__)

POLL = 0.025          # seconds between scans without inotify, or while an exit is not settled yet
FULL_SCAN = 1.0       # seconds between scans that look at every exit file again
ROTATE_LOGS = 30.0    # seconds between log rotations
UNSETTLED_LIMIT = 10  # seconds an exit file may wait for its container to settle before it is left alone
COLLECT = 2.0         # seconds between looks for stopped containers no row owns
STRAY_AGE = 2.0       # seconds a container directory without a row is left alone (it may be a moment old)
_ID = re.compile(r"[0-9a-f]{64}")
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x8, 0x80, 0x100
_STOPPED_STATES = (Container.STATE_EXITED, Container.STATE_DEAD)


def start_timer(delay: float, fire) -> threading.Timer:
    def fire_and_close() -> None:
        try:
            fire()
        finally:
            connection.close()  # the timer thread's own connection

    timer = threading.Timer(delay, fire_and_close)
    timer.name, timer.daemon = "berth-restart", True
    timer.start()
    return timer


class ExitWatcher:
    """``schedule(delay, fire)`` runs ``fire`` after ``delay`` seconds: a timer, or a test's recorder."""

    def __init__(self, host: str, schedule=start_timer):
        self.host = host
        self.runtime = get_runtime()
        self.exits = self.runtime.state.exits
        self.stopping = threading.Event()
        self.seen: dict[str, tuple[int, int]] = {}    # id -> (inode, mtime) of an exit file dealt with
        self.unsettled: dict[str, float] = {}          # id -> when its exit file was first seen
        self.schedule = schedule
        self.considered: dict[str, object] = {}       # id -> finished_at of the exit the policy was asked about
        self.delays: dict[str, float] = {}            # id -> the back-off of its last restart

    def run(self) -> None:
        try:
            reconcile(self.host)
        except Exception:
            log.exception("reconcile failed; watching exits anyway")
        inotify = _inotify(self.exits)
        last_full = last_rotation = last_collect = 0.0
        try:
            while not self.stopping.is_set():
                timeout = POLL if inotify is None or self.unsettled else FULL_SCAN
                _wait(inotify, timeout)
                now = time.monotonic()
                full = now - last_full >= FULL_SCAN
                try:
                    self.scan(full)
                    if full:
                        sweep_interrupted()  # each full scan: operations whose process died
                    if now - last_collect >= COLLECT:
                        collect_unowned()
                        last_collect = now
                    if now - last_rotation >= ROTATE_LOGS:
                        self.runtime.rotate_logs()
                        last_rotation = now
                except Exception:
                    log.exception("exit watcher: scan failed")
                last_full = now if full else last_full
                close_old_connections()
        finally:
            if inotify is not None:
                os.close(inotify)

    def stop(self) -> None:
        self.stopping.set()

    def scan(self, full: bool = False) -> None:
        files = _exit_files(self.exits)
        for name in set(self.seen) - set(files):
            del self.seen[name]
        for name in set(self.unsettled) - set(files):
            del self.unsettled[name]
        if full:
            self.forget_removed()
        todo = [name for name, key in files.items() if full or self.seen.get(name) != key]
        if not todo:
            return
        rows = {row.id: row for row in Container.objects.filter(pk__in=todo, host=self.host)}
        for name in todo:
            row = rows.get(name)
            if row is not None and not _settled(row):
                row = handle_exit(name)
            if row is None or _settled(row):
                self.seen[name] = files[name]
                self.unsettled.pop(name, None)
                if row is not None:
                    self.apply_policy(row)
            elif time.monotonic() - self.unsettled.setdefault(name, time.monotonic()) > UNSETTLED_LIMIT:
                log.warning("container %s has an exit file but stays %s; left alone", name, row.state)
                self.seen[name] = files[name]
                self.unsettled.pop(name, None)

    def forget_removed(self) -> None:
        """The back-off of removed containers. Not keyed on exit files: a restart removes its file,
        and the back-off must outlive that until the next exit."""
        for name in [name for name in self.considered if not self.runtime.state.container_dir(name).exists()]:
            del self.considered[name]
            self.delays.pop(name, None)

    def apply_policy(self, row: Container) -> None:
        """Once per exit (whoever stored it: a start task sees a quick exit first): schedule the
        restart its policy asks for, after the back-off."""
        if row.state != Container.STATE_EXITED or self.considered.get(row.id) == row.finished_at:
            return
        self.considered[row.id] = row.finished_at
        policy = restart.policy_of(row.host_config)
        # A start that failed (row.error) is no exit of a running PID 1: Docker restarts neither.
        if row.error or not restart.should_restart(policy, row.exit_code, row.restart_count, row.manually_stopped):
            self.delays.pop(row.id, None)
            return
        uptime = (row.finished_at - row.started_at).total_seconds() if row.started_at and row.finished_at else 0.0
        delay = restart.next_delay(self.delays.get(row.id), uptime)
        self.delays[row.id] = delay
        if mark_restarting(row):
            self.schedule(delay, lambda: restart_after_exit(row.id, row.finished_at))


def _stamp() -> dict:
    from .operations import PROCESS, this_process  # operations reaches tasks, which import this module

    return {PROCESS: this_process()}


def mark_restarting(row: Container) -> bool:
    """"restarting" while the back-off runs, unless something happened to it since the exit was seen."""
    with state.container_lock(row.id):
        marked = Container.objects.filter(pk=row.id, state=Container.STATE_EXITED, finished_at=row.finished_at,
                                          manually_stopped=False).update(state=Container.STATE_RESTARTING)
        if marked:
            events.container_changed(row.id, Container.STATE_RESTARTING, row.exit_code)
    return bool(marked)


def restart_after_exit(container_id: str, finished_at) -> None:
    """The back-off is over: start it through the start task's code (network set up again, events),
    unless a user stopped, started or removed it meanwhile. Runs in the worker, on its host."""
    from . import tasks  # tasks imports this module to start the watcher

    try:
        claimed = Container.objects.filter(
            pk=container_id, state__in=(Container.STATE_RESTARTING, Container.STATE_EXITED),
            finished_at=finished_at, manually_stopped=False,
        ).update(restart_count=F("restart_count") + 1)
        if not claimed:
            if Container.objects.filter(pk=container_id, state=Container.STATE_RESTARTING).exists():
                state.record(container_id)  # not "restarting" any more: what the host shows
            return
        networking.release_ports(container_id)  # a quick exit stored by its start task kept them
        outcome = tasks.start_container(container_id)
        if "error" in outcome:
            log.warning("restart of container %s failed: %s", container_id, outcome["message"])
    except Exception:
        log.exception("restart of container %s failed", container_id)


def _settled(row: Container) -> bool:
    """Nothing left to do for this exit: stored, and removed if it asked to be."""
    if row.state in (Container.STATE_REMOVING, Container.STATE_RESTARTING):
        return True  # its restart is scheduled: a new look would store "exited" again
    return row.state in _STOPPED_STATES and not row.auto_remove


def handle_exit(container_id: str) -> Container | None:
    """Store what the host shows; free the ports of an exited container, remove an exited
    AutoRemove one. The row, None once removed."""
    row = state.record(container_id)
    if row is not None and row.state in _STOPPED_STATES:
        if row.auto_remove:
            remove_after_exit(row)
            return None
        networking.release_ports(row.id)
        dns_sync.notify_for(row.id)
    return row


def remove_after_exit(row: Container) -> None:
    """``--rm``: the runtime's container and the row go; waiters on "removed" hear of it."""
    claimed = Container.objects.filter(pk=row.id, state=row.state).update(state=Container.STATE_REMOVING)
    if not claimed:
        return  # somebody else removes it, or it started again
    noted: dict = {}

    def note_removal() -> None:
        noted.update(rows_before_removal(row.id))
        noted["operation"] = Operation.objects.create(
            source=Operation.SOURCE_SYSTEM, action="container.remove", target_id=row.id, target_name=row.name,
            state=Operation.STATE_RUNNING, detail={"reason": "AutoRemove", **_stamp()})

    try:
        remove_with_network(row, note_removal)
    except BerthError as error:
        Container.objects.filter(pk=row.id).update(state=row.state)
        if "operation" in noted:
            Operation.objects.filter(pk=noted["operation"].pk).update(
                state=Operation.STATE_FAILED, error=str(error), finished=timezone.now())
        raise
    after_removal(row.id, noted)
    Operation.objects.filter(pk=noted["operation"].pk).update(state=Operation.STATE_DONE, finished=timezone.now())


def rows_before_removal(container_id: str, volumes: bool = True) -> dict:
    """What the rows tell before they go: are the container's names in a network's DNS, and (with
    ``volumes``) its anonymous volumes."""
    return {"named": dns_sync.is_named(container_id),
            "anonymous": volume_services.anonymous_volumes_of(container_id) if volumes else []}


def after_removal(container_id: str, noted: dict) -> None:
    """The row goes (published as removed), then the anonymous volumes ``noted`` and the DNS records."""
    state.forget(container_id)
    volume_services.release_anonymous_volumes(noted["anonymous"])
    dns_sync.notify_for(container_id, noted["named"])


def remove_with_network(row: Container, first: Callable[[], None] | None = None) -> None:
    """Force-remove the runtime's container while its network is torn down: both mostly wait for the
    kernel (PID 1's death, the overlay's unmount; the veths' deletion, the port map's transaction),
    and neither needs the other. The runtime's part runs in a thread (it touches no database);
    ``first``, when given, runs in the caller's thread before the network's part (reads of the rows
    before they go, say), so the runtime's part has begun meanwhile."""
    failure: list[BaseException] = []

    def remove_from_runtime() -> None:
        try:
            get_runtime().remove(row.id, force=True)
        except NoSuchContainer:
            pass
        except BaseException as error:  # raised in the caller's thread below
            failure.append(error)

    removing = threading.Thread(target=remove_from_runtime, name="berth-remove")
    removing.start()
    try:
        try:
            if first is not None:
                first()
        finally:
            networking.tear_down(row)
    finally:
        removing.join()
    if failure:
        raise failure[0]


# --- reconcile ------------------------------------------------------------------


def reconcile(host: str) -> None:
    """After restarts: make rows and host agree. Safe while tasks run (each step re-checks under the lock)."""
    engine = get_runtime()
    # The host first, then the rows: a row is written before its create task, so every
    # container listed here that has no row in the later query has none at all.
    on_host = {c.id: c for c in engine.recover()}
    rows = list(Container.objects.filter(host=host))
    for row in rows:
        try:
            _reconcile_row(engine, row, row.id in on_host)
        except Exception:
            log.exception("reconcile of container %s failed", row.id)
    owned = {row.id for row in rows}
    for container in on_host.values():
        # Made by a create whose caller gave up. A running one may belong to someone using
        # the runtime directly on this state root: never killed here.
        if container.id not in owned and not container.running and not Container.objects.filter(pk=container.id).exists():
            log.warning("removing container %s: no row owns it", container.id)
            engine.remove(container.id, force=True)
    engine.gc()
    state.store_images(host, engine.images.list())
    try:
        removed = networking.reconcile(host)
        if removed:
            log.warning("reconcile removed what no row owns: %s", ", ".join(removed))
    except Exception:
        log.exception("reconcile of the network failed")
    sweep_interrupted()
    start_by_policy(host)


def collect_unowned() -> list[str]:
    """Stopped containers no row owns, removed: what a create left when its caller rolled back (its
    row deleted) while the task, or a copy of it sent again after Redis restarted, was still making
    it. Rows are written before their containers, so a container without one is nobody's; running
    ones are never touched (someone may use the runtime directly on this state root)."""
    engine = get_runtime()
    on_disk = {entry.name: entry for entry in os.scandir(engine.state.containers) if _ID.fullmatch(entry.name)}
    if not on_disk:
        return []
    owned = set(Container.objects.filter(pk__in=list(on_disk)).values_list("id", flat=True))
    removed = []
    for name in set(on_disk) - owned:
        try:
            if time.time() - on_disk[name].stat().st_mtime < STRAY_AGE or engine.get(name).running:
                continue
            with state.container_lock(name):
                if not Container.objects.filter(pk=name).exists():
                    engine.remove(name, force=True)
                    removed.append(name)
        except (NoSuchContainer, FileNotFoundError):
            continue
    if removed:
        log.warning("removed stopped containers no row owns: %s", ", ".join(removed))
    return removed


def sweep_interrupted() -> None:
    """Operations whose process died, finished (``console.interrupted``)."""
    from . import interrupted  # it reaches the services' modules, which import this one

    try:
        interrupted.sweep(busy=redelivery.has_task_for)
    except Exception:
        log.exception("could not finish the operations of processes that died")


def start_by_policy(host: str) -> None:
    """Stopped containers whose policy starts them with the worker (after a host reboot, a worker
    restart, or a restart lost with the worker), through the start task's code."""
    from . import tasks  # tasks imports this module to start the watcher

    for row in Container.objects.filter(host=host, state=Container.STATE_EXITED):
        if restart.starts_with_worker(restart.policy_of(row.host_config), row.manually_stopped):
            # The worker's start clears a manual stop of an ``always`` one, as a daemon restart does.
            Container.objects.filter(pk=row.id).update(manually_stopped=False)
            outcome = tasks.start_container(row.id)
            if "error" in outcome:
                log.warning("start of container %s by its restart policy failed: %s", row.id, outcome["message"])


def finish_removal(row: Container) -> None:
    """A removal whose task never ran or never ended (its caller or the worker died): done now."""
    try:
        get_runtime().remove(row.id, force=True)
    except NoSuchContainer:
        pass
    networking.tear_down(row)
    state.forget(row.id)


def forget_half_made(row: Container) -> None:
    """A create whose container was never made (its caller died before the task ran): the row goes,
    and its addresses and ports with it, unless the container appeared meanwhile."""
    with state.container_lock(row.id):
        try:
            get_runtime().get(row.id)
            return
        except NoSuchContainer:
            pass
        if Container.objects.filter(pk=row.id, state=Container.STATE_CREATED).delete()[0]:
            events.container_changed(row.id, row.state, row.exit_code, removed=True)


def _reconcile_row(engine, row: Container, on_host: bool) -> None:
    if row.state == Container.STATE_REMOVING:
        finish_removal(row)  # a removal was interrupted
        return
    if on_host:
        handle_exit(row.id)
        return
    if row.state == Container.STATE_DEAD and not row.auto_remove:
        return  # found gone at an earlier start already
    if row.state == Container.STATE_CREATED and not row.path:
        # Never seen on the host: its create task has not run yet (queued again after the worker
        # died, see ``redelivery``). Not "dead": the task makes it, or ``interrupted`` rolls it back.
        return
    with state.container_lock(row.id):
        try:
            engine.get(row.id)
            return  # made meanwhile by its create task, which stores it
        except NoSuchContainer:
            pass
        if row.auto_remove:
            gone = Container.objects.filter(pk=row.id).delete()[0]
        else:
            gone = 0
            Container.objects.filter(pk=row.id).update(
                state=Container.STATE_DEAD, pid=0,
                error="the container's files are gone from the host (removed outside Berth, or lost)")
    events.container_changed(row.id, Container.STATE_DEAD, row.exit_code, removed=bool(gone))


# --- the thread and its inotify ------------------------------------------------------

_watcher: ExitWatcher | None = None


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    global _watcher
    try:
        redelivery.restore_orphaned(settings.BERTH_HOST)
    except Exception:
        log.exception("could not queue again the tasks a previous worker left unfinished")
    _watcher = ExitWatcher(settings.BERTH_HOST)
    threading.Thread(target=_watcher.run, name="berth-exit-watcher", daemon=True).start()
    collector.start(settings.BERTH_HOST)  # the host's one resource collector, in the same process


@worker_shutdown.connect
def on_worker_shutdown(sender=None, **kwargs) -> None:
    if _watcher is not None:
        _watcher.stop()
    collector.stop()


def _exit_files(directory) -> dict[str, tuple[int, int]]:
    files = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if _ID.fullmatch(entry.name):
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                files[entry.name] = (info.st_ino, info.st_mtime_ns)
    return files


def _inotify(directory) -> int | None:
    """An inotify fd watching ``directory`` for new files, or None (then the watcher polls)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(str(directory)), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE) < 0:
            os.close(fd)
            return None
        return fd
    except (OSError, AttributeError):
        return None


def _wait(inotify: int | None, timeout: float) -> None:
    """Until a file appears in exits/ (the events themselves are not needed: a scan follows) or timeout."""
    if inotify is None:
        time.sleep(timeout)
        return
    readable, _, _ = select.select([inotify], [], [], timeout)
    if readable:
        try:
            while os.read(inotify, 65536):
                pass
        except BlockingIOError:
            pass
