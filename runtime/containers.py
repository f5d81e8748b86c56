"""Containers: create, start, stop, kill, pause, wait, exec, remove, recover, gc.

The recipe of ``create`` + ``start``, top to bottom::

    image layers ──overlay──> <id>/rootfs   (upper: <id>/upper, a fresh container layer)
    <id>/hosts, hostname, resolv.conf        (bind-mounted over /etc/...)
    <id>/config.json                         (the OCI bundle)
    conmon ──runc create──> PID 1 ──exec fifo read (runc start)──> exec of the command
    exits/<id>                               (PID 1's exit code, written by conmon)

Every object is named from the container id, so ``remove`` and ``gc`` find
all of it by name. The record ``<id>/container.json`` is what survives
restarts of every Berth process; the kernel (exit files, /proc) tells what
happened while nobody watched.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import select
import shutil
import signal as signals
import socket
import struct
import subprocess
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from tty import setraw  # by name: open_exec's tty= argument would shadow the module
from typing import Callable, Iterator

from . import logs, monitor
from .errors import (
    BerthError,
    ContainerNotRunning,
    ContainerPaused,
    ContainerRunning,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    StartFailed,
    disk_full_as_error,
    is_disk_full,
)
from .images import Image, ImageStore
from .mounts import mount_overlay, mount_points, unmount
from .names import random_name
from .oci import bundle_config, process_env
from .paths import StateRoot
from .runc import RUNC, Runc, RuncError
from .signals import parse_signal
from .spec import (
    NETWORK_HOST,
    NETWORK_MODES,
    NETWORK_NETNS,
    STATUS_EXITED,
    STATUS_PAUSED,
    STATUS_RUNNING,
    Container,
    ContainerSpec,
    NetworkSpec,
)
from .users import resolve_user

DEFAULT_STOP_TIMEOUT = 10
# Docker refuses less; the kernel needs room for the container's own page tables and runc init.
MIN_MEMORY = 6 * 1024 * 1024
KILL_WAIT = 30.0
LOST_EXIT_CODE = 255
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
_ENV_KEY = re.compile(r"^[^=\s]+$")
HOSTS_HEADER = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


@dataclass
class ExecResult:
    exit_code: int
    output: bytes
    errors: bytes = b""


@dataclass
class ExecSession:
    process: subprocess.Popen
    master: int | None = None    # the pty master, for tty execs: output and input in one


class Runtime:
    """The engine on one host, over one state root."""

    def __init__(self, state: StateRoot | None = None, runc_binary: str = RUNC):
        self.state = state or StateRoot.from_env()
        self.state.ensure()
        for path in (self.names_dir, self.sockets_dir):
            path.mkdir(exist_ok=True, mode=0o700)
        self.images = ImageStore(self.state)
        self.runc = Runc(self.state.runc_root, runc_binary)

    @property
    def names_dir(self) -> Path:
        """One symlink per name -> id: claiming a name is one atomic symlink(2)."""
        return self.state.root / "names"

    @property
    def sockets_dir(self) -> Path:
        return self.state.root / "sock"

    # --- create -----------------------------------------------------------

    def create(self, spec: ContainerSpec, container_id: str | None = None) -> Container:
        """Prepare a container (rootfs, bundle, record); nothing runs yet.

        ``container_id`` lets the console choose the id it already stored;
        creating an id that exists returns that container (a retried task).
        """
        if container_id is not None:
            if not re.fullmatch(r"[0-9a-f]{64}", container_id):
                raise InvalidValue("id", "a container id is 64 lowercase hex digits")
            try:
                return self.get(container_id)
            except NoSuchContainer:
                pass
        _validate(spec)
        image = self.images.get(spec.image)
        path, args = _command(image, spec)
        container_id = container_id or secrets.token_hex(32)
        if self.state.container_dir(container_id).exists():
            self._discard(container_id, None)  # an earlier try of this create (a task sent again), killed half-way
        with self._no_space("cannot create the container"):
            name = self._claim_name(spec.name.lstrip("/") or None, container_id)
        directory = self.state.container_dir(container_id)
        try:
            with self._no_space("cannot create the container"):
                directory.mkdir(mode=0o700)
                logs.prepare_log(self.log_path(container_id))  # attach before start holds the file conmon appends to
                container = _new_container(container_id, name, image, spec, path, args)
                self._prepare_rootfs(container, image)
                self._write_bundle(container, image)
                self._save(container)
        except BaseException:
            self._discard(container_id, name)
            raise
        return container

    def _no_space(self, action: str):
        return disk_full_as_error(action, self.state.root)

    def _claim_name(self, wanted: str | None, container_id: str) -> str:
        for _ in range(100):
            name = wanted or random_name()
            try:
                os.symlink(container_id, self.names_dir / name)
                return name
            except FileExistsError:
                if wanted and _readlink(self.names_dir / name) == container_id:
                    return name  # claimed by an earlier try of this create, killed half-way
                if wanted:
                    raise NameInUse(name, os.readlink(self.names_dir / name)) from None
        raise BerthError("could not find a free container name")

    def _prepare_rootfs(self, container: Container, image: Image) -> None:
        directory = self.state.container_dir(container.id)
        for part in ("upper", "work", "rootfs"):
            (directory / part).mkdir(exist_ok=True)
        self._mount_rootfs(container.id, image)
        _write_etc_files(directory, container.spec, container.spec.hostname)

    def _mount_rootfs(self, container_id: str, image: Image) -> None:
        directory = self.state.container_dir(container_id)
        target = directory / "rootfs"
        if target not in mount_points(directory):
            mount_overlay(self.images.layer_dirs(image), directory / "upper", directory / "work", target)

    def _write_bundle(self, container: Container, image: Image) -> None:
        directory = self.state.container_dir(container.id)
        user = container.spec.user or image.config.user
        uid, gid, extra_gids = resolve_user(directory / "rootfs", user)
        config = bundle_config(container, uid, gid, extra_gids, directory, self.state.cgroup_parent)
        _write_json(directory / "config.json", config)

    # --- start ------------------------------------------------------------

    def start(self, reference: str, network: NetworkSpec | None = None, dns: list[str] | None = None,
              alongside: Callable[[], None] | None = None) -> Container:
        """Run PID 1. ``network`` and ``dns``, when given, replace the spec's before it runs.

        The networking layer prepares a container's namespace at each start
        (its addresses may have changed since create: networks connected or
        disconnected meanwhile), so /etc/hosts, /etc/resolv.conf and the
        bundle are written again from the new values.

        ``alongside`` (wiring the namespace's veths and ports, say) runs in a thread while conmon and
        ``runc create`` make PID 1, and has finished before PID 1 runs its command; when it fails, PID 1
        never runs, the start is recorded as failed (its error's ``exit_code``, 128 by default) and its
        error is raised. Either way it has ended when ``start`` returns or raises.
        """
        container = self.get(reference)
        with self._locked(container.id):
            container = self._observe(self._load(container.id))
            if container.state.status == STATUS_PAUSED:
                raise ContainerPaused(container.id)
            if container.state.status == STATUS_RUNNING:
                if alongside is not None:
                    alongside()  # what it wires belongs to the PID 1 that runs already
                return container
            image = self.images.get(container.image_id)
            self._mount_rootfs(container.id, image)  # once: the bundle's user is looked up in it
            if network is not None or dns is not None:
                self._set_network(container, image, network, dns)
            self._launch(container, alongside)
            return container

    def _set_network(self, container: Container, image: Image, network: NetworkSpec | None,
                     dns: list[str] | None) -> None:
        spec = container.spec
        if network is not None:
            _validate_network(network)
            if (network.mode == NETWORK_HOST) != (spec.network.mode == NETWORK_HOST):
                raise InvalidValue("network mode", "a container cannot move into or out of the host's network")
            spec.network = network
        if dns is not None:
            spec.dns = list(dns)
        _write_etc_files(self.state.container_dir(container.id), spec, spec.hostname)
        self._write_bundle(container, image)
        self._save(container)

    def record_failed_start(self, reference: str, failure: StartFailed) -> Container:
        """A start that failed before PID 1 was asked to run (its network could not be set up, say):
        the container stays as it was, with Docker's exit code and the reason."""
        container = self.get(reference)
        with self._locked(container.id):
            container = self._observe(self._load(container.id))
            if not container.running:
                self._record_failed_start(container, failure)
        return container

    def _launch(self, container: Container, alongside: Callable[[], None] | None = None) -> None:
        directory = self.state.container_dir(container.id)
        network = container.spec.network
        if network.mode == NETWORK_NETNS and not os.path.exists(network.netns_path):
            failure = StartFailed(f"network namespace {network.netns_path} does not exist")
            self._record_failed_start(container, failure)
            raise failure
        self.runc.delete(container.id)
        _remove(self._exit_file(container.id))
        try:
            pid = self._create_pid1(container, alongside)
            # Before runc start lets PID 1 run: a quick exit must not finish before it started.
            started_at = _now()
            self.runc.start(container.id, pid)
        except (StartFailed, RuncError) as failure:
            self._record_failed_start(container, failure)
            raise
        container.state.status = STATUS_RUNNING
        container.state.pid = pid
        container.state.exit_code = 0
        container.state.error = ""
        container.state.started_at = started_at
        container.pid_start_time = _start_time(pid)
        container.monitor_pid = _read_int(directory / "monitor.pid")
        container.monitor_start_time = _start_time(container.monitor_pid)
        self._save(container)

    def _create_pid1(self, container: Container, alongside: Callable[[], None] | None) -> int:
        """conmon + ``runc create`` (two Go start-ups, ~30 ms), ``alongside`` in a thread beside them; PID 1's pid.

        ``alongside``'s failure wins over create's (run one after the other, it came first): the
        created PID 1 goes before its command ever ran, the start is recorded as failed, its error raised.
        """
        def create() -> int:
            logs.prepare_log(self.log_path(container.id))
            return monitor.start_monitor(container.id, container.name, self._monitor_paths(container.id),
                                         self.runc.binary, self.runc.root, container.spec.tty,
                                         container.spec.open_stdin, container.spec.stdin_once)

        if alongside is None:
            return create()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-alongside") as pool:
            beside = pool.submit(alongside)
            try:
                pid = create()
            except BaseException:
                if beside.exception() is None:
                    raise
                pid = 0
            error = beside.exception()  # waits: nothing of it may run on after start answers
        if error is not None:
            self._discard_created(container.id, pid)
            self._record_failed_start(container, _start_failure_of(error))
            raise error
        return pid

    def _discard_created(self, container_id: str, pid: int) -> None:
        """A created PID 1 that must not run: killed before its command, and no exit file left for a
        watcher to take for an exit (conmon writes it once PID 1 is reaped, so wait for conmon)."""
        if not pid:
            return
        self.runc.delete(container_id)
        monitor_pid = _read_int(self.state.container_dir(container_id) / "monitor.pid")
        try:
            with _pidfd(monitor_pid, _start_time(monitor_pid)) as fd:
                select.select([fd], [], [], KILL_WAIT)
        except (ProcessLookupError, OSError):
            pass  # gone already
        _remove(self._exit_file(container_id))

    def _record_failed_start(self, container: Container, failure: Exception) -> None:
        """Leave the container as it was, with Docker's exit code and the reason; nothing running."""
        self.runc.delete(container.id)
        _remove(self._exit_file(container.id))
        if not isinstance(failure, StartFailed):
            failure = monitor.start_failure(str(failure))
        container.state.exit_code = failure.exit_code
        container.state.error = str(failure)
        self._save(container)

    def _monitor_paths(self, container_id: str) -> monitor.MonitorPaths:
        directory = self.state.container_dir(container_id)
        return monitor.MonitorPaths(
            bundle=directory, log=self.log_path(container_id), pidfile=directory / "pid",
            monitor_pidfile=directory / "monitor.pid", exit_dir=self.state.exits,
            socket_dir=self.sockets_dir, monitor_errors=directory / "monitor.log",
        )

    # --- signals, stop, wait ----------------------------------------------

    def kill(self, reference: str, signal: str | int = "SIGKILL") -> Container:
        number = parse_signal(signal)
        container = self.get(reference)
        if not container.running:
            raise ContainerNotRunning(container.id)
        self._signal(container, number)
        return container

    def stop(self, reference: str, timeout: int | None = None, signal: str | int | None = None) -> Container:
        """The stop signal (``signal`` overrides it), ``timeout`` seconds of grace, then SIGKILL.

        Stopped already is fine.
        """
        container = self.get(reference)
        if not container.running:
            return container
        if timeout is None:
            timeout = container.spec.stop_timeout
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        image_signal = self.images.get(container.image_id).config.stop_signal if timeout and not signal else None
        stop_signal = parse_signal(signal or container.spec.stop_signal or image_signal or "SIGTERM")
        if container.state.status == STATUS_PAUSED:
            self.unpause(container.id)
        if timeout > 0:
            self._signal(container, stop_signal)
            if self._wait_exit(container, timeout):
                return self.get(container.id)
        self._signal(container, signals.SIGKILL)
        self._wait_exit(container, KILL_WAIT)
        return self.get(container.id)

    def restart(self, reference: str, timeout: int | None = None) -> Container:
        self.stop(reference, timeout)
        return self.start(reference)

    def wait(self, reference: str, timeout: float | None = None) -> int:
        """Block until PID 1 exits; its exit code. TimeoutError if it outlives ``timeout``."""
        container = self.get(reference)
        if container.running and not self._wait_exit(container, timeout):
            raise TimeoutError(f"container {container.id} still running after {timeout} s")
        return self.get(container.id).state.exit_code

    def _signal(self, container: Container, number: int) -> None:
        try:
            with _pidfd(container.state.pid, container.pid_start_time) as fd:
                signals.pidfd_send_signal(fd, number)
        except ProcessLookupError:
            pass  # exited meanwhile: what the caller wanted, or about to be observed

    def _wait_exit(self, container: Container, timeout: float | None) -> bool:
        """Wait for the monitor to finish (it writes the exit file first); True once PID 1 is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for pid, start in ((container.monitor_pid, container.monitor_start_time),
                           (container.state.pid, container.pid_start_time)):
            try:
                with _pidfd(pid, start) as fd:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    readable, _, _ = select.select([fd], [], [], remaining)
                    if not readable:
                        return False
            except ProcessLookupError:
                continue
        return not self.get(container.id).running

    # --- rename -----------------------------------------------------------

    def rename(self, reference: str, new_name: str) -> Container:
        """Give a container another name; the old one is free at once. Renaming again to it is a no-op."""
        new_name = new_name.lstrip("/")
        if not _NAME.match(new_name):
            raise InvalidValue("name", f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        container = self.get(reference)
        with self._locked(container.id):
            container = self._load(container.id)
            if _readlink(self.names_dir / new_name) != container.id:
                self._claim_name(new_name, container.id)
            old_name, container.name, container.spec.name = container.name, new_name, new_name
            self._save(container)
            if old_name != new_name and _readlink(self.names_dir / old_name) == container.id:
                _remove(self.names_dir / old_name)
        return container

    # --- pause ------------------------------------------------------------

    def pause(self, reference: str) -> Container:
        container = self.get(reference)
        if container.state.status != STATUS_RUNNING:
            raise ContainerNotRunning(container.id)
        with self._locked(container.id):
            self.runc.pause(container.id)
            container.state.status = STATUS_PAUSED
            self._save(container)
        return container

    def unpause(self, reference: str) -> Container:
        container = self.get(reference)
        if container.state.status != STATUS_PAUSED:
            raise BerthError(f"Container {container.id} is not paused")
        with self._locked(container.id):
            self.runc.resume(container.id)
            container.state.status = STATUS_RUNNING
            self._save(container)
        return container

    # --- exec, attach, logs -----------------------------------------------

    def exec_command(self, reference: str, cmd: list[str], tty: bool = False, env: list[str] = (),
                     user: str = "", workdir: str = "", console_socket: str = "") -> list[str]:
        """The runc command line that runs ``cmd`` inside a running container."""
        container = self._exec_target(reference, cmd, env)
        flags = ["--tty"] if tty else []
        if console_socket:
            flags += ["--console-socket", console_socket]
        for entry in env:
            flags += ["--env", entry]
        if user:
            uid, gid, _ = resolve_user(self.state.container_dir(container.id) / "rootfs", user)
            flags += ["--user", f"{uid}:{gid}"]
        if workdir:
            flags += ["--cwd", workdir]
        return self.runc.command("exec", *flags, container.id, *cmd)

    def _sized_exec_command(self, reference: str, cmd: list[str], env: list[str], user: str, workdir: str,
                            size: tuple[int, int]) -> tuple[list[str], int]:
        """``runc exec`` of a whole process spec that holds the terminal's size: runc init sizes the
        container's console before the command runs. (With ``--tty`` runc sizes it from our pty
        beside the command's start, which may look first and find 0x0.) The spec is the
        container's, changed as ``exec_command``'s flags change it; runc reads it from a memfd,
        returned to be passed to runc and closed after."""
        container = self._exec_target(reference, cmd, env)
        directory = self.state.container_dir(container.id)
        process = json.loads((directory / "config.json").read_bytes())["process"]
        process.update(args=list(cmd), terminal=True, consoleSize={"height": size[0], "width": size[1]},
                       env=list(process.get("env") or []) + list(env))
        if user:
            uid, gid, _ = resolve_user(directory / "rootfs", user)
            process["user"] = {**process.get("user", {}), "uid": uid, "gid": gid}
        if workdir:
            process["cwd"] = workdir
        fd = os.memfd_create("berth-exec-process")
        os.write(fd, json.dumps(process).encode())
        return self.runc.command("exec", "--process", f"/proc/self/fd/{fd}", container.id), fd

    def _exec_target(self, reference: str, cmd: list[str], env: list[str]) -> Container:
        container = self.get(reference)
        if container.state.status != STATUS_RUNNING:
            raise ContainerNotRunning(container.id)
        if not cmd:
            raise InvalidValue("cmd", "no command specified")
        for entry in env:
            _check_env(entry)
        return container

    def open_exec(self, reference: str, cmd: list[str], tty: bool = False, env: list[str] = (),
                  user: str = "", workdir: str = "", stdin: bool = False,
                  size: tuple[int, int] | None = None) -> ExecSession:
        """Start ``cmd`` in the container's namespaces; the caller streams its pipes or pty.

        runc stays in the foreground and exits with the command's code, so
        ``session.process.wait()`` is the exit code (see ``exec_exit_code``).
        ``size`` (rows, cols), with a tty, is the terminal's before the command runs.
        """
        if not tty:
            command = self.exec_command(reference, cmd, False, env, user, workdir)
            process = subprocess.Popen(command, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return ExecSession(process)
        # runc exec -t in the foreground proxies its own stdio to the container's pty and
        # exits with the command's code; its stdio must be a terminal it controls.
        master, slave = os.openpty()
        spec_fd = None
        try:
            if size is not None:
                set_window_size(slave, *size)  # runc follows our pty's size from then on
            # runc makes our side raw only once the command is starting: keys typed before would be
            # echoed twice and a \r made \n.
            setraw(slave)
            if size is None:
                command = self.exec_command(reference, cmd, True, env, user, workdir)
            else:
                command, spec_fd = self._sized_exec_command(reference, cmd, env, user, workdir, size)
            process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                       preexec_fn=_take_controlling_terminal,
                                       pass_fds=() if spec_fd is None else (spec_fd,))
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
            if spec_fd is not None:
                os.close(spec_fd)
        return ExecSession(process, master=master)

    def exec(self, reference: str, cmd: list[str], tty: bool = False, env: list[str] = (),
             user: str = "", workdir: str = "", stdin: bytes | None = None,
             size: tuple[int, int] | None = None) -> ExecResult:
        """Run ``cmd`` in the container's namespaces; its output and exit code (with a tty, one
        stream of a terminal ``size`` rows by cols)."""
        session = self.open_exec(reference, cmd, tty, env, user, workdir, stdin=stdin is not None, size=size)
        if session.master is None:
            output, errors = session.process.communicate(stdin)
        else:
            output, errors = _drain_terminal(session, stdin), b""
        session.process.wait()
        return ExecResult(exec_exit_code(session.process.returncode, errors), output, errors)

    def attach(self, reference: str) -> socket.socket:
        """conmon's attach socket: packets read are a stream byte (2 stdout, 3 stderr) + data; writes go to stdin."""
        container = self.get(reference)
        if not container.running:
            raise ContainerNotRunning(container.id)
        return monitor.connect_attach(self.sockets_dir, container.id)

    def resize(self, reference: str, height: int, width: int) -> None:
        container = self.get(reference)
        if not container.running:
            raise ContainerNotRunning(container.id)
        monitor.resize(self.state.container_dir(container.id), height, width)

    def log_path(self, container_id: str) -> Path:
        return logs.container_log_path(self.state.root, container_id)

    def logs(self, reference: str, follow: bool = False, **options) -> Iterator[logs.LogRecord]:
        """PID 1's output: ``tail``, ``since_ns``, ``until_ns``, ``stdout``, ``stderr`` as in logs.read_logs."""
        container = self.get(reference)
        path = self.log_path(container.id)
        if not follow:
            return logs.read_logs(path, **options)
        return logs.follow_logs(path, is_alive=lambda: self.get(container.id).running, **options)

    def rotate_logs(self) -> list[str]:
        """Rotate every log past its size limit; the ids rotated. Run it periodically."""
        rotated = []
        for container in self.list():
            spec = container.spec
            path = self.log_path(container.id)
            if not spec.log_max_size or not container.running or not logs.needs_rotation(path, spec.log_max_size):
                continue
            bundle = self.state.container_dir(container.id)
            if logs.rotate(path, spec.log_max_files, lambda: monitor.reopen_log(bundle)):
                rotated.append(container.id)
        return rotated

    # --- remove -------------------------------------------------------------

    def remove(self, reference: str, force: bool = False) -> None:
        container = self.get(reference)
        if container.running:
            if not force:
                raise ContainerRunning(reference)
            self._signal(container, signals.SIGKILL)
            if container.state.status == STATUS_PAUSED:
                self.runc.resume(container.id)
            self._wait_exit(container, KILL_WAIT)
        with self._locked(container.id):
            self._discard(container.id, container.name)

    def _discard(self, container_id: str, name: str | None) -> None:
        """Remove every object named from ``container_id``; each step tolerates what is gone."""
        directory = self.state.container_dir(container_id)
        self.runc.delete(container_id)
        for point in sorted(mount_points(directory), reverse=True):
            unmount(point)
        _remove_cgroups(self.state.cgroup_parent, container_id)
        _remove(self._exit_file(container_id))
        _remove(self.sockets_dir / container_id[: monitor.UUID_LENGTH])
        if name and _readlink(self.names_dir / name) == container_id:
            _remove(self.names_dir / name)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(logs.logs_root(self.state.root) / container_id, ignore_errors=True)

    # --- images in use --------------------------------------------------------

    def remove_image(self, reference: str, force: bool = False) -> list[str]:
        image = self.images.get(reference)
        users = [c.id for c in self.list() if c.image_id == image.id]
        return self.images.remove(reference, in_use_by=users, force=force)

    # --- reading state ----------------------------------------------------------

    def get(self, reference: str) -> Container:
        container_id = self._resolve(reference)
        return self._observe(self._load(container_id))

    def list(self) -> list[Container]:
        found = []
        for directory in self.state.containers.iterdir():
            try:
                found.append(self._observe(self._load(directory.name)))
            except NoSuchContainer:
                continue
        return sorted(found, key=lambda c: c.created, reverse=True)

    def _resolve(self, reference: str) -> str:
        reference = (reference or "").lstrip("/")
        if not reference:
            raise NoSuchContainer(reference)
        if len(reference) == 64 and (self.state.container_dir(reference) / "container.json").exists():
            return reference
        target = _readlink(self.names_dir / reference) if "/" not in reference else None
        if target:
            return target
        if re.fullmatch(r"[0-9a-f]+", reference):
            matches = [p.name for p in self.state.containers.iterdir() if p.name.startswith(reference)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidValue("container", f"multiple containers found with provided prefix: {reference}")
        raise NoSuchContainer(reference)

    def _load(self, container_id: str) -> Container:
        try:
            with open(self.state.container_dir(container_id) / "container.json", "rb") as record:
                return Container.from_dict(json.load(record))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NoSuchContainer(container_id) from None

    def _save(self, container: Container) -> None:
        _write_json(self.state.container_dir(container.id) / "container.json", container.to_dict())

    def _exit_file(self, container_id: str) -> Path:
        return self.state.exits / container_id

    def _observe(self, container: Container) -> Container:
        """Bring a record up to date with the kernel: did PID 1 exit while nobody watched?"""
        if not container.running:
            return container
        exit_file = self._exit_file(container.id)
        if exit_file.exists():
            self._record_exit(container, exit_file)
        elif not _alive(container.monitor_pid, container.monitor_start_time):
            if exit_file.exists():  # the monitor wrote it and left between our two looks
                self._record_exit(container, exit_file)
            elif not _alive(container.state.pid, container.pid_start_time):
                self._record_lost(container)
        return container

    def _record_exit(self, container: Container, exit_file: Path) -> None:
        try:
            code = int(exit_file.read_text().strip() or LOST_EXIT_CODE)
            finished = exit_file.stat().st_mtime
        except (FileNotFoundError, ValueError):
            return
        if container.state.started_at:
            # File times come from the kernel's coarse clock (up to a tick behind): a PID 1 that exits
            # within a millisecond of its start must not seem to finish before it started.
            finished = max(finished, datetime.fromisoformat(container.state.started_at).timestamp())
        self._finish(container, code, _rfc3339(finished), "")

    def _record_lost(self, container: Container) -> None:
        self._finish(container, LOST_EXIT_CODE, _now(), "exit code lost: the monitor of PID 1 died (host reboot?)")

    def _finish(self, container: Container, code: int, finished_at: str, error: str) -> None:
        container.state.status = STATUS_EXITED
        container.state.exit_code = code
        container.state.finished_at = finished_at
        container.state.pid = 0
        container.state.error = error
        try:
            self._save(container)
        except FileNotFoundError:
            pass  # removed meanwhile by another process
        except OSError as error:
            if not is_disk_full(error):
                raise
            # A full disk must not make ps and inspect fail: what was observed is shown now, and
            # observed (and stored) again on the next look, once there is room.

    @contextmanager
    def _locked(self, container_id: str):
        """Serialise changes to one container across threads and processes."""
        path = self.state.container_dir(container_id) / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise NoSuchContainer(container_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- recovery and garbage collection ------------------------------------------

    def recover(self) -> list[Container]:
        """At start-up: record exits that happened while no Berth process ran; the containers seen."""
        return self.list()

    def gc(self) -> list[str]:
        """Remove what no container record owns: mounts, runc state, cgroups, exit files, names, dirs."""
        owned = {c.id for c in self.list()}
        removed = []
        for directory in self.state.containers.iterdir():
            if directory.name not in owned:
                self._discard(directory.name, None)
                removed.append(f"container dir {directory.name}")
        for directory in _children_of(logs.logs_root(self.state.root)):
            if directory.name not in owned:
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(f"log dir {directory.name}")
        for container_id in self.runc.list_ids():
            if container_id not in owned:
                self.runc.delete(container_id)
                removed.append(f"runc container {container_id}")
        for container_id in _cgroup_children(self.state.cgroup_parent) - owned:
            _remove_cgroups(self.state.cgroup_parent, container_id)
            removed.append(f"cgroup {container_id}")
        removed += _remove_unowned(self.state.exits.iterdir(), owned, "exit file")
        removed += _remove_unowned(self.sockets_dir.iterdir(), {i[: monitor.UUID_LENGTH] for i in owned}, "socket link")
        for link in self.names_dir.iterdir():
            if _readlink(link) not in owned:
                _remove(link)
                removed.append(f"name {link.name}")
        return removed


# --- helpers: the spec --------------------------------------------------------------


def _children_of(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def _validate(spec: ContainerSpec) -> None:
    if spec.name and not _NAME.match(spec.name):
        raise InvalidValue("name", f"Invalid container name ({spec.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    if spec.hostname and not _HOSTNAME.match(spec.hostname):
        raise InvalidValue("hostname", f"{spec.hostname!r} is not a valid RFC 1123 hostname")
    _validate_network(spec.network)
    for entry in spec.env:
        _check_env(entry)
    if spec.working_dir and not spec.working_dir.startswith("/"):
        raise InvalidValue("working dir", f"the working directory '{spec.working_dir}' is invalid, it needs to be an absolute path")
    for mount in spec.mounts:
        if not mount.destination.startswith("/"):
            raise InvalidValue("mount", f"{mount.destination!r}: the destination must be an absolute path")
        if not os.path.isabs(mount.source) or not os.path.exists(mount.source):
            raise InvalidValue("mount", f"{mount.source!r}: the source must be an existing absolute path")
    for tmpfs in spec.tmpfs:
        if not tmpfs.destination.startswith("/"):
            raise InvalidValue("tmpfs", f"{tmpfs.destination!r}: the destination must be an absolute path")
    for entry in spec.extra_hosts:
        host, sep, address = entry.partition(":")
        if not sep or not host or not address:
            raise InvalidValue("extra host", f"{entry!r} is not name:address")
    _validate_resources(spec)
    if spec.stop_signal:
        parse_signal(spec.stop_signal)
    if spec.log_max_files < 1 or spec.log_max_size < 0:
        raise InvalidValue("log options", "max-file must be at least 1 and max-size not negative")


def _validate_network(network: NetworkSpec) -> None:
    """The mode, and for ``netns`` an absolute path: the namespace itself need only exist at start
    (the networking layer makes it then, and removes it when a start fails)."""
    if network.mode not in NETWORK_MODES:
        raise InvalidValue("network mode", f"{network.mode!r} is not one of {', '.join(NETWORK_MODES)}")
    if network.mode == NETWORK_NETNS and not os.path.isabs(network.netns_path):
        raise InvalidValue("network namespace", f"{network.netns_path!r} is not an absolute path")


def _validate_resources(spec: ContainerSpec) -> None:
    limits = spec.resources
    for field_name in ("memory", "nano_cpus", "cpu_shares", "pids_limit"):
        if getattr(limits, field_name) < 0:
            raise InvalidValue(field_name, "must not be negative")
    if limits.memory and limits.memory < MIN_MEMORY:
        raise InvalidValue("memory", "Minimum memory limit allowed is 6MB")
    if limits.memory_swap > 0 and limits.memory and limits.memory_swap < limits.memory:
        raise InvalidValue("memory swap", "Minimum memoryswap limit should be larger than memory limit")
    if limits.nano_cpus and limits.nano_cpus > os.cpu_count() * 1_000_000_000:
        raise InvalidValue("cpus", f"range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only {os.cpu_count()} CPUs available")


def _check_env(entry: str) -> None:
    key = entry.partition("=")[0]
    if not _ENV_KEY.match(key):
        raise InvalidValue("env", f"invalid environment variable: {entry!r}")


def _command(image: Image, spec: ContainerSpec) -> tuple[str, list[str]]:
    """Docker's rule: a new entrypoint drops the image's cmd; argv = entrypoint + cmd."""
    entrypoint = spec.entrypoint if spec.entrypoint is not None else (image.config.entrypoint or [])
    if spec.cmd is not None:
        cmd = spec.cmd
    elif spec.entrypoint is not None:
        cmd = []
    else:
        cmd = image.config.cmd or []
    argv = [*entrypoint, *cmd]
    if not argv:
        raise InvalidValue("cmd", "no command specified")
    return argv[0], argv[1:]


def _new_container(container_id: str, name: str, image: Image, spec: ContainerSpec, path: str, args: list[str]) -> Container:
    spec.name = name
    if not spec.hostname:
        spec.hostname = socket.gethostname() if spec.network.mode == NETWORK_HOST else container_id[:12]
    spec.working_dir = spec.working_dir or image.config.working_dir
    env = process_env(image.config.env, spec.env, spec.hostname, spec.tty)
    return Container(id=container_id, name=name, created=_now(), image_id=image.id, spec=spec,
                     path=path, args=args, env=env)


def _write_etc_files(directory: Path, spec: ContainerSpec, hostname: str) -> None:
    (directory / "hostname").write_text(hostname + "\n")
    (directory / "hosts").write_text(_hosts(spec, hostname))
    (directory / "resolv.conf").write_text(_resolv_conf(spec))


def _hosts(spec: ContainerSpec, hostname: str) -> str:
    if spec.network.mode == NETWORK_HOST:
        base = Path("/etc/hosts").read_text()
    else:
        names = hostname if not spec.domainname else f"{hostname}.{spec.domainname} {hostname}"
        base = HOSTS_HEADER + "".join(f"{address}\t{names}\n" for address in spec.network.addresses)
    extra = "".join(f"{address}\t{host}\n" for host, _, address in (e.partition(":") for e in spec.extra_hosts))
    return base + extra


def _resolv_conf(spec: ContainerSpec) -> str:
    """The host's resolver unless the caller names one; loopback servers only where they are reachable."""
    try:
        host_lines = Path("/etc/resolv.conf").read_text().splitlines()
    except FileNotFoundError:
        host_lines = []
    keep_loopback = spec.network.mode == NETWORK_HOST
    servers = spec.dns or [
        line.split()[1] for line in host_lines
        if line.startswith("nameserver") and len(line.split()) > 1
        and (keep_loopback or not line.split()[1].startswith(("127.", "::1")))
    ]
    search = spec.dns_search or [w for line in host_lines if line.startswith("search") for w in line.split()[1:]]
    options = spec.dns_options or [w for line in host_lines if line.startswith("options") for w in line.split()[1:]]
    text = "".join(f"nameserver {server}\n" for server in servers)
    if search:
        text += "search " + " ".join(search) + "\n"
    if options:
        text += "options " + " ".join(options) + "\n"
    return text


# --- helpers: processes --------------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes]:
    """/proc/<pid>/stat's fields after the command's name (the state first); empty if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return []


def _start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: with the PID, names one process for the life of the host."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else 0


def _alive(pid: int, start_time: int) -> bool:
    """Still running: a zombie (killed and not yet reaped, a conmon whose parent died waits for init) is dead."""
    if pid <= 0 or start_time <= 0:
        return False
    fields = _stat_fields(pid)
    return len(fields) > 19 and fields[0] not in (b"Z", b"X") and int(fields[19]) == start_time


@contextmanager
def _pidfd(pid: int, start_time: int):
    """A pidfd for ``pid`` if it is still the process we started (not a recycled PID)."""
    if pid <= 0:
        raise ProcessLookupError(pid)
    fd = os.pidfd_open(pid)
    try:
        if _start_time(pid) != start_time:
            raise ProcessLookupError(pid)
        yield fd
    finally:
        os.close(fd)


def _take_controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """A pty's size, set on either of its ends; its foreground process group hears SIGWINCH."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _drain_terminal(session: ExecSession, stdin: bytes | None) -> bytes:
    """All the pty gives until the command's side closes (read then fails with EIO)."""
    chunks = []
    try:
        if stdin:
            os.write(session.master, stdin)
        while True:
            try:
                chunk = os.read(session.master, 65536)
            except OSError as error:
                if error.errno == errno.EIO:
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(session.master)
    return b"".join(chunks)


def exec_exit_code(code: int, stderr: bytes) -> int:
    """runc exec exits 255 when it cannot start the command; give Docker's 126/127 then."""
    if code == 255 and b"exec failed" in stderr:
        return monitor.start_failure(stderr.decode(errors="replace")).exit_code
    return code


# --- helpers: files and kernel objects ------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


def _write_json(path: Path, data) -> None:
    """Replace ``path`` atomically. The temporary name is the writer's own: two processes observing
    one exit at once (the watcher and a task) must never write into the same temporary file."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "w") as out:
            out.write(json.dumps(data))  # one write; json.dump writes chunk by chunk
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def _start_failure_of(error: BaseException) -> StartFailed:
    """What a failed start records: the error's own exit code when it has one (Docker's 128 else)."""
    if isinstance(error, StartFailed):
        return error
    return StartFailed(str(error), getattr(error, "exit_code", None) or 128)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)


def _remove_unowned(paths, owned: set[str], what: str) -> list[str]:
    removed = []
    for path in paths:
        if path.name not in owned:
            _remove(path)
            removed.append(f"{what} {path.name}")
    return removed


CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dirs(parent: str, container_id: str = "*") -> list[Path]:
    """The container's cgroup in every hierarchy (v1 controllers and the v2 mount)."""
    return [p for p in CGROUP_ROOT.glob(f"*/{parent}/{container_id}") if p.is_dir()]


def _cgroup_children(parent: str) -> set[str]:
    return {p.name for p in _cgroup_dirs(parent) if re.fullmatch(r"[0-9a-f]{64}", p.name)}


def _remove_cgroups(parent: str, container_id: str) -> None:
    for directory in _cgroup_dirs(parent, container_id):
        try:
            directory.rmdir()
        except OSError as error:
            if error.errno not in (errno.ENOENT,):
                raise BerthError(f"cgroup {directory} still in use: {error.strerror}") from None
