"""Host tasks: thin adapters between the host's queue and the runtime.

A task takes a primary key (or plain values), makes one runtime call, stores
what the kernel now shows (``console.state``, which also publishes the event)
and returns plain data. A runtime error comes back as data too
(``error_to_data``) and the service raises the same class again
(``error_from_data``): exceptions are never pickled through Celery.

Networking (``console.networking``) is wired around the runtime's calls:
set up while PID 1 is created and before it runs, ports released when it ends, everything torn
down at remove; the embedded DNS hears of each change (``dns_sync``).

Every task may run twice (acks_late redelivers a task whose worker died, and
a caller may retry) without harm: create passes the row's id, so the runtime
returns the container it made already; start and restart do nothing when a
start happened after the request; stop, pause, kill and remove of what is
stopped, paused, exited or gone change nothing.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal as signals
import stat
from datetime import datetime
from pathlib import Path

from celery import shared_task
from celery.signals import worker_init
from django.conf import settings
from django.db import OperationalError

import runtime.errors
from runtime.archive import open_dir_in_root
from runtime.errors import BerthError, ContainerPaused, NoSuchContainer, NotFound, StartFailed
from runtime.signals import parse_signal
from runtime.spec import STATUS_PAUSED

from . import links, volume_services
from . import dns_sync, networking, state, watcher  # noqa: F401  (watcher, dns_sync: start when the worker is ready)
from . import errors as console_errors
from .errors import NetworkingFailed
from .models import Container, Endpoint, Network
from .runtime_access import get_runtime, networking_api
from .specs import bind_sources_to_create, spec_from_container

KILL_WAIT = 10  # seconds a SIGKILL may take to be observed, as moby waits in kill


# --- errors as data ----------------------------------------------------------------


def error_to_data(error: BerthError) -> dict:
    attributes = {k: v for k, v in vars(error).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    return {"error": type(error).__name__, "message": str(error),
            "exit_code": getattr(error, "exit_code", None), "attributes": attributes}


def error_from_data(data: dict) -> BerthError:
    """The same class with the same message and attributes (``exit_code``, ``reference``...)."""
    name = data.get("error", "")
    cls = getattr(runtime.errors, name, None) or getattr(console_errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, BerthError)):
        cls = BerthError
    error = cls.__new__(cls)
    Exception.__init__(error, data.get("message", ""))
    error.__dict__.update(data.get("attributes") or {})
    if data.get("exit_code") is not None:
        error.exit_code = data["exit_code"]
    return error


def host_task(*, retry_db: bool = True):
    """A task on a host's queue: {"result": ...} or an error as data.

    ``retry_db``: a locked SQLite database is retried a few times, safe for
    every task here because each is idempotent.
    """

    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return {"result": function(*args, **kwargs)}
            except BerthError as error:
                return error_to_data(error)

        options = {"name": f"console.tasks.{function.__name__}", "acks_late": True}
        if retry_db:
            options.update(autoretry_for=(OperationalError,), max_retries=3, default_retry_delay=0.5)
        return shared_task(**options)(run)

    return decorate


def _row(container_id: str) -> Container:
    try:
        return Container.objects.get(pk=container_id)
    except Container.DoesNotExist:
        raise NoSuchContainer(container_id) from None


def _started_since(container, requested_at: str) -> bool:
    """Did PID 1 start after the caller asked? Then this is a duplicate of that request."""
    started_at = container.state.started_at
    return bool(started_at and requested_at) and datetime.fromisoformat(started_at) >= datetime.fromisoformat(requested_at)


@worker_init.connect
def load_networking(**kwargs) -> None:
    """Import the networking layer (pyroute2, ~0.3 s) before the pool forks (``worker_init`` comes after
    the task modules are imported and before the pool starts): else the first task of each pool process
    that touches a network pays for it."""
    try:
        networking_api()
    except BerthError:
        pass  # the tasks that need it say so


# --- containers ----------------------------------------------------------------------


@host_task()
def create_container(container_id: str) -> None:
    row = _row(container_id)
    for source in bind_sources_to_create(row.host_config):
        os.makedirs(source, exist_ok=True)  # Docker makes a missing -v source directory
    fresh = _make_volume_directories(row)
    network, dns = networking.planned_network(row)
    engine = get_runtime()
    created = engine.create(spec_from_container(row, network, dns), container_id=row.id)
    _copy_image_content(engine, row, fresh)
    if not row.config.get("Hostname"):
        # What the runtime chose (the short id, or the host's name on the host network), as inspect shows it.
        Container.objects.filter(pk=row.id).update(config={**row.config, "Hostname": created.spec.hostname})
    state.record(row.id)


def _start(engine, container_id: str) -> None:
    """Network and PID 1: bridges, namespace and host ports first, the veths and the port map while
    conmon and runc create PID 1 (``Wiring``), PID 1's command once both are done. A failure of
    either leaves the container as it was, with nothing of its network behind."""
    with networking.network_lock(container_id):
        if engine.get(container_id).running:
            return  # a duplicate of a start that won the lock
        row = _row(container_id)
        try:
            links.check_running(row, lambda target_id: _is_running(engine, target_id))
            network, dns, wiring = networking.set_up(row)
        except BerthError as error:
            engine.record_failed_start(container_id, StartFailed(str(error), NetworkingFailed.exit_code))
            raise
        try:
            engine.start(container_id, network=network, dns=dns, alongside=wiring)
        except BaseException:
            if networking.has_own_namespace(row):
                networking.undo(container_id, networking.endpoints_of(row))
            raise
        if wiring is not None:
            wiring.store()


def _is_running(engine, container_id: str) -> bool:
    try:
        return engine.get(container_id).running
    except NoSuchContainer:
        return False


@host_task()
def start_container(container_id: str, requested_at: str = "") -> dict:
    engine = get_runtime()
    current = engine.get(container_id)
    if current.state.status == STATUS_PAUSED:
        raise ContainerPaused(container_id)
    if current.running or _started_since(current, requested_at):
        state.record(container_id)
        return {"started": False}
    try:
        _start(engine, container_id)
    finally:
        state.record(container_id)  # running, or the failed start's exit code and error
        dns_sync.notify_for(container_id)
    return {"started": True}


@host_task()
def stop_container(container_id: str, timeout: int | None = None, signal: str | None = None) -> dict:
    engine = get_runtime()
    was_running = engine.get(container_id).running
    if was_running:
        engine.stop(container_id, timeout, signal=signal)
    state.record(container_id)
    _after_exit(container_id)
    return {"was_running": was_running}


def _after_exit(container_id: str) -> None:
    """PID 1 is gone: its ports are freed and its name leaves the embedded DNS."""
    networking.release_ports(container_id)
    dns_sync.notify_for(container_id)


@host_task()
def restart_container(container_id: str, timeout: int | None = None, requested_at: str = "") -> None:
    engine = get_runtime()
    if _started_since(engine.get(container_id), requested_at):
        return
    try:
        engine.stop(container_id, timeout)
        state.record(container_id)
        networking.release_ports(container_id)
        Container.objects.filter(pk=container_id).update(manually_stopped=False)  # started by hand, as Docker
        _start(engine, container_id)
    finally:
        state.record(container_id)
        dns_sync.notify_for(container_id)


@host_task()
def kill_container(container_id: str, signal: str = "SIGKILL") -> None:
    engine = get_runtime()
    engine.kill(container_id, signal)
    if parse_signal(signal) == signals.SIGKILL:
        try:
            engine.wait(container_id, timeout=KILL_WAIT)
        except TimeoutError:
            pass
    if state.record(container_id) is not None and not engine.get(container_id).running:
        _after_exit(container_id)


@host_task()
def pause_container(container_id: str) -> None:
    get_runtime().pause(container_id)
    state.record(container_id)


@host_task()
def unpause_container(container_id: str) -> None:
    get_runtime().unpause(container_id)
    state.record(container_id)


@host_task()
def remove_container(container_id: str, force: bool = False, volumes: bool = False) -> None:
    row = Container.objects.filter(pk=container_id).first()
    noted: dict = {}

    def note_rows() -> None:
        noted.update(watcher.rows_before_removal(container_id, volumes))

    if row is not None and force:
        watcher.remove_with_network(row, note_rows)  # all at once: rm -f waits for the slowest, not the sum
    else:
        note_rows()
        try:
            get_runtime().remove(container_id, force=force)
        except NoSuchContainer:
            pass  # removed already: a duplicate, or gone while nobody watched
        if row is not None:
            networking.tear_down(row)
    watcher.after_removal(container_id, noted)


# --- volumes -------------------------------------------------------------------------


def _make_volume_directories(row: Container) -> set[str]:
    """Each volume's ``_data`` directory; the destinations whose volume was made empty just now."""
    fresh = set()
    nocopy = volume_services.nocopy_destinations(row.host_config)
    for mount in row.mounts.select_related("volume").filter(type="volume"):
        data = Path(mount.volume.mountpoint)
        if not data.exists():
            data.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            data.mkdir(mode=0o755, exist_ok=True)
        if mount.destination not in nocopy and not any(data.iterdir()):
            fresh.add(mount.destination)
    return fresh


def _copy_image_content(engine, row: Container, fresh: set[str]) -> None:
    """What the image has at a fresh volume's path is copied in first, as Docker does. The path is
    resolved inside the rootfs (its symlinks never lead out of it); links inside are copied as links."""
    if not fresh:
        return
    rootfs = engine.state.container_dir(row.id) / "rootfs"
    for mount in row.mounts.select_related("volume").filter(type="volume", destination__in=fresh):
        try:
            inside = open_dir_in_root(rootfs, mount.destination)
        except OSError:
            continue  # nothing at that path in the image
        try:
            _copy_tree(f"/proc/self/fd/{inside}", mount.volume.mountpoint)
        finally:
            os.close(inside)


def _copy_tree(source: str, destination: str) -> None:
    """Files, modes and owners (a database image's data directory belongs to its user); links as links."""
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)
    top = os.stat(source)
    os.chmod(destination, stat.S_IMODE(top.st_mode))
    os.chown(destination, top.st_uid, top.st_gid)
    for directory, dirs, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        for name in dirs + files:
            found = os.lstat(os.path.join(directory, name))
            os.lchown(os.path.join(destination, relative, name), found.st_uid, found.st_gid)


def remove_volume_directory(mountpoint: str) -> None:
    """``BERTH_ROOT/volumes/<name>`` with its ``_data``; only ever below the volumes directory."""
    directory = Path(mountpoint).parent
    volumes = Path(settings.BERTH_ROOT) / "volumes"
    if directory.parent.resolve() != volumes.resolve():
        raise BerthError(f"refusing to remove {directory}: not a volume directory")
    shutil.rmtree(directory, ignore_errors=True)


@host_task()
def create_volume(mountpoint: str) -> None:
    Path(mountpoint).mkdir(mode=0o755, parents=True, exist_ok=True)


@host_task()
def remove_volume(mountpoint: str) -> None:
    remove_volume_directory(mountpoint)


@host_task()
def rename_container(container_id: str, new_name: str) -> None:
    get_runtime().rename(container_id, new_name)


@host_task(retry_db=False)
def ping() -> dict:
    """Which host and worker process took it: a host's queue is served (and the fixed cost of a task)."""
    return {"host": settings.BERTH_HOST, "pid": os.getpid()}


@host_task()
def refresh_container(container_id: str) -> dict:
    return {"found": state.record(container_id) is not None}


# --- images --------------------------------------------------------------------------


def _store_images() -> None:
    state.store_images(settings.BERTH_HOST, get_runtime().images.list())


@host_task()
def sync_images() -> None:
    _store_images()


@host_task()
def tag_image(reference: str, new_reference: str) -> None:
    get_runtime().images.tag(reference, new_reference)
    _store_images()


@host_task()
def remove_image(reference: str, force: bool = False) -> list[str]:
    lines = get_runtime().remove_image(reference, force=force)
    _store_images()
    return lines


@host_task()
def import_image(path: str, reference: str | None = None, changes: list[str] = ()) -> str:
    image = get_runtime().images.import_rootfs(path, reference, list(changes))
    _store_images()
    return image.id


@host_task()
def load_images(path: str) -> list[str]:
    images = get_runtime().images.load(path)
    _store_images()
    return [image.id for image in images]


# --- networks ------------------------------------------------------------------------


def _network(network_id: str) -> Network:
    try:
        return Network.objects.get(pk=network_id)
    except Network.DoesNotExist:
        raise NotFound(f"network {network_id} not found") from None


@host_task()
def pick_subnet(used: list[str]) -> str:
    return networking.pick_subnet(used)


@host_task()
def create_network(network_id: str) -> None:
    networking.ensure_bridge(_network(network_id))
    dns_sync.notify()


@host_task()
def remove_network(network_id: str, bridge_name: str) -> None:
    """After its row went: the bridge and its rules (the row is gone, so the name comes along)."""
    networking.remove_bridge(bridge_name)
    dns_sync.notify()


@host_task()
def connect_container(container_id: str, endpoint_id: str) -> None:
    """A running container gains its interface on the endpoint's network; a stopped one gets it at start."""
    row = _row(container_id)
    endpoint = Endpoint.objects.select_related("network").get(endpoint_id=endpoint_id)
    if get_runtime().get(container_id).running:
        networking.connect(row, endpoint)
    dns_sync.notify()


@host_task()
def disconnect_container(container_id: str, endpoint_id: str) -> None:
    row = _row(container_id)
    endpoint = Endpoint.objects.select_related("network").filter(endpoint_id=endpoint_id).first()
    if endpoint is not None:
        networking.disconnect(row, endpoint)
        endpoint.delete()
    dns_sync.notify()


@host_task()
def reconcile_network() -> list[str]:
    removed = networking.reconcile(settings.BERTH_HOST)
    dns_sync.notify()
    return removed


# --- topology: the kernel's facts, for drift ---------------------------------------------


@host_task()
def inspect_network_state() -> dict:
    """What the kernel has of this host's networking (``runtime.network.inspect``), as data: our
    bridges, veths and port map elements, and the interfaces inside each bridge-mode container's namespace."""
    import importlib

    try:
        inspect = importlib.import_module(f"{settings.BERTH_NETWORKING}.inspect")
    except ImportError as error:
        raise BerthError(f"the networking layer {settings.BERTH_NETWORKING} cannot be inspected: {error}") from None
    # Only running containers are expected to be wired; a stopped one's namespace may be gone, rightly.
    running = Container.objects.filter(host=settings.BERTH_HOST, state__in=(
        Container.STATE_RUNNING, Container.STATE_PAUSED, Container.STATE_RESTARTING)).exclude(sandbox_key="")
    paths = sorted({row.sandbox_key for row in running if networking.has_own_namespace(row)})
    return inspect.kernel_facts(networking.get_networking(), paths)
