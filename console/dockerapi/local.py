"""What the API reads straight from the local state root, without writing to it.

The worker is the one that changes the runtime's records. ``Runtime.get``
may rewrite a record when it notices an exit, so the streams here read the
facts themselves instead (the layout is the runtime's, see README):

    <root>/containers/<id>/container.json   the record: status, started_at, error
    <root>/exits/<id>                       written by conmon when PID 1 exits
    <root>/containers/<id>/ctr.log          conmon's log (k8s-file records)
    <root>/sock/<id[:16]>/attach            conmon's attach socket (stdin in, output out)
    <root>/containers/<id>/ctl              conmon's control fifo (resize)
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from runtime import monitor
from runtime.paths import tree_size

RUNNING = ("running", "paused")


@dataclass(frozen=True)
class RunState:
    status: str  # the record's status, "exited" once the exit file exists
    started_at: str
    error: str
    exit_code: int

    @property
    def running(self) -> bool:
        return self.status in RUNNING


def container_dir(runtime, container_id: str) -> Path:
    return runtime.state.container_dir(container_id)


def log_path(runtime, container_id: str) -> Path:
    return runtime.log_path(container_id)


def exit_file(runtime, container_id: str) -> Path:
    return runtime.state.exits / container_id


def run_state(runtime, container_id: str) -> RunState | None:
    """The record as conmon and the worker left it; None when the container is not (or no longer) there."""
    try:
        record = json.loads((container_dir(runtime, container_id) / "container.json").read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    state = record.get("state") or {}
    status = state.get("status", "created")
    if status in RUNNING and exit_file(runtime, container_id).exists():
        status = "exited"
    return RunState(status, state.get("started_at", ""), state.get("error", ""), state.get("exit_code", 0))


def is_running(runtime, container_id: str) -> bool:
    """Cheap liveness for followers: a record that says running and no exit file yet."""
    current = run_state(runtime, container_id)
    return current is not None and current.running


def connect_attach(runtime, container_id: str) -> socket.socket:
    """conmon's attach socket, whatever the record says yet (the CLI attaches before start)."""
    return monitor.connect_attach(runtime.sockets_dir, container_id)


def resize(runtime, container_id: str, height: int, width: int) -> None:
    """Ask conmon to resize the container's pty; OSError when no conmon listens (not running)."""
    monitor.resize(container_dir(runtime, container_id), height, width)


def cgroup_dir(runtime, container_id: str, controller: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / runtime.state.cgroup_parent / container_id


def cgroup_pids(runtime, container_id: str) -> list[int]:
    """Every process in the container's cgroup (PID 1, its children, execs)."""
    for controller in ("pids", "memory", "cpu,cpuacct", "cpuacct", "freezer", "unified"):
        path = cgroup_dir(runtime, container_id, controller) / "cgroup.procs"
        try:
            return sorted(int(line) for line in path.read_text().split())
        except (FileNotFoundError, ValueError, OSError):
            continue
    return []


def rootfs(runtime, container_id: str) -> Path:
    return container_dir(runtime, container_id) / "rootfs"


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def open_root(runtime, container_id: str) -> int:
    """A directory fd of the container's ``/``, as its processes see it; the caller closes it.

    While PID 1 runs that is ``/proc/<pid>/root``: its mount namespace, with
    the bind mounts (/etc/hosts, hostname, resolv.conf, volumes) over the
    overlay. The PID is checked against its start time before and after the
    open, so a recycled PID can never hand out a host process's root.
    Otherwise it is the overlay itself.
    """
    try:
        record = json.loads((container_dir(runtime, container_id) / "container.json").read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        record = {}
    state = record.get("state") or {}
    pid, started = state.get("pid") or 0, record.get("pid_start_time") or 0
    if state.get("status") in RUNNING and pid > 0 and started and _start_time(pid) == started:
        try:
            fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            if _start_time(pid) == started:
                return fd
            os.close(fd)
    return os.open(rootfs(runtime, container_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def upper_size(runtime, container_id: str) -> int:
    """Bytes in the container's own layer (SizeRw)."""
    return tree_size(container_dir(runtime, container_id) / "upper")
