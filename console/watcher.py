"""The exit watcher: PID 1 exits noticed while no task is looking, and the reconcile at start.

It runs in the worker's main process, in a daemon thread started when the
worker is ready (Celery's ``worker_ready``). conmon writes ``exits/<id>``
(atomically, by rename) when PID 1 exits; an inotify watch on that folder
wakes the thread, which scans it. Where inotify is missing it polls every
25 ms; a full scan runs every second anyway::

    exits/<id> appears --> state.record(id): exited, exit code, finished_at --> event
                                |
                                +-- AutoRemove --> runtime remove, row deleted --> event removed=True

Before watching, ``reconcile`` makes the database match the host again after
any Berth process restarted: exits that happened meanwhile are stored,
interrupted removals finished, rows whose container is gone marked dead,
containers no row owns collected, images synced; then the network: what
rows expect remade, what no row owns collected (``networking.reconcile``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import select
import threading
import time

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from runtime.errors import BerthError, NoSuchContainer

from . import collector, dns_sync, events, networking, state, volume_services
from .models import Container, Operation
from .runtime_access import get_runtime

log = logging.getLogger(__name__)

POLL = 0.025          # seconds between scans without inotify, or while an exit is not settled yet
FULL_SCAN = 1.0       # seconds between scans that look at every exit file again
ROTATE_LOGS = 30.0    # seconds between log rotations
UNSETTLED_LIMIT = 10  # seconds an exit file may wait for its container to settle before it is left alone
_ID = re.compile(r"[0-9a-f]{64}")
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x8, 0x80, 0x100
_STOPPED_STATES = (Container.STATE_EXITED, Container.STATE_DEAD)


class ExitWatcher:
    def __init__(self, host: str):
        self.host = host
        self.runtime = get_runtime()
        self.exits = self.runtime.state.exits
        self.stopping = threading.Event()
        self.seen: dict[str, tuple[int, int]] = {}    # id -> (inode, mtime) of an exit file dealt with
        self.unsettled: dict[str, float] = {}          # id -> when its exit file was first seen

    def run(self) -> None:
        try:
            reconcile(self.host)
        except Exception:
            log.exception("reconcile failed; watching exits anyway")
        inotify = _inotify(self.exits)
        last_full = last_rotation = 0.0
        try:
            while not self.stopping.is_set():
                timeout = POLL if inotify is None or self.unsettled else FULL_SCAN
                _wait(inotify, timeout)
                now = time.monotonic()
                full = now - last_full >= FULL_SCAN
                try:
                    self.scan(full)
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
            elif time.monotonic() - self.unsettled.setdefault(name, time.monotonic()) > UNSETTLED_LIMIT:
                log.warning("container %s has an exit file but stays %s; left alone", name, row.state)
                self.seen[name] = files[name]
                self.unsettled.pop(name, None)


def _settled(row: Container) -> bool:
    """Nothing left to do for this exit: stored, and removed if it asked to be."""
    if row.state == Container.STATE_REMOVING:
        return True
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
    named = dns_sync.is_named(row.id)
    anonymous = volume_services.anonymous_volumes_of(row.id)
    operation = Operation.objects.create(source=Operation.SOURCE_SYSTEM, action="container.remove",
                                         target_id=row.id, target_name=row.name, state=Operation.STATE_RUNNING,
                                         detail={"reason": "AutoRemove"})
    try:
        remove_with_network(row)
    except BerthError as error:
        Container.objects.filter(pk=row.id).update(state=row.state)
        Operation.objects.filter(pk=operation.pk).update(state=Operation.STATE_FAILED, error=str(error),
                                                         finished=timezone.now())
        raise
    state.forget(row.id)
    volume_services.release_anonymous_volumes(anonymous)
    dns_sync.notify_for(row.id, named)
    Operation.objects.filter(pk=operation.pk).update(state=Operation.STATE_DONE, finished=timezone.now())


def remove_with_network(row: Container) -> None:
    """Force-remove the runtime's container while its network is torn down: both mostly wait for the
    kernel (PID 1's death, the overlay's unmount; the veths' deletion, the port map's transaction),
    and neither needs the other. The runtime's part runs in a thread (it touches no database)."""
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


def _reconcile_row(engine, row: Container, on_host: bool) -> None:
    if row.state == Container.STATE_REMOVING:
        # A removal was interrupted: finish it.
        if on_host:
            engine.remove(row.id, force=True)
        networking.tear_down(row)
        state.forget(row.id)
        return
    if on_host:
        handle_exit(row.id)
        return
    if row.state == Container.STATE_DEAD and not row.auto_remove:
        return  # found gone at an earlier start already
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
