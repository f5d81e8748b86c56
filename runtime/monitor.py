"""PID 1's monitor: Debian's conmon, one small C process per container.

conmon runs ``runc create``, holds PID 1's stdout/stderr (or its pty), writes
them to the log file, serves attach over a unix socket, and writes PID 1's exit
code to ``<exits>/<id>`` when it dies. It double-forks and leaves its starter,
so containers outlive every Berth process; about 1-2 MB resident.

::

    berth ──spawn──> conmon ──runc create──> PID 1 (waits on exec fifo)
      │  <── sync pipe {"data": pid} ──┘
      └──reads runc's exec fifo (runc start)──> PID 1 execs the command; conmon logs it, writes exits/<id>
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import StartFailed
from .runc import message as runc_message

CONMON = "/usr/bin/conmon"
# conmon names its attach socket <socket dir>/<uuid>/attach; sun_path holds 107 bytes.
UUID_LENGTH = 16


@dataclass
class MonitorPaths:
    bundle: Path
    log: Path
    pidfile: Path
    monitor_pidfile: Path
    exit_dir: Path
    socket_dir: Path
    monitor_errors: Path


def start_monitor(container_id: str, name: str, paths: MonitorPaths, runc_path: str, runc_root: Path,
                  tty: bool, open_stdin: bool, stdin_once: bool = False, log_size_max: int = 0) -> int:
    """Start conmon, let it create PID 1 through runc, and return PID 1's host PID."""
    read_end, write_end = os.pipe()
    # conmon's daemon keeps stderr open for its whole life: a file, not a pipe we would wait on.
    with open(paths.monitor_errors, "ab") as errors:
        try:
            conmon = subprocess.Popen(
                _arguments(container_id, name, paths, runc_path, runc_root, tty, open_stdin, stdin_once, log_size_max),
                pass_fds=(write_end,),
                env={"_OCI_SYNCPIPE": str(write_end), "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                start_new_session=True,
            )
        finally:
            os.close(write_end)
    # The pipe stays open until PID 1 exits: read the one line that matters, not to EOF.
    with os.fdopen(read_end, "rb") as sync:
        reply = sync.readline()
    conmon.wait()
    return _pid_from(reply, paths.monitor_errors)


def _arguments(container_id, name, paths: MonitorPaths, runc_path, runc_root, tty, open_stdin, stdin_once,
               log_size_max):
    args = [
        CONMON, "--api-version", "1",
        "--cid", container_id, "--cuuid", container_id[:UUID_LENGTH], "--name", name or container_id,
        "--runtime", runc_path, "--runtime-arg", f"--root={runc_root}",
        "--bundle", str(paths.bundle),
        "--container-pidfile", str(paths.pidfile), "--conmon-pidfile", str(paths.monitor_pidfile),
        "--log-path", f"k8s-file:{paths.log}",
        "--exit-dir", str(paths.exit_dir), "--socket-dir-path", str(paths.socket_dir),
        "--log-level", "error",
    ]
    if tty:
        args.append("--terminal")
    if open_stdin:
        args += ["--stdin"] + ([] if stdin_once else ["--leave-stdin-open"])
    if log_size_max:
        args += ["--log-size-max", str(log_size_max)]
    return args


def _pid_from(reply: bytes, errors: Path) -> int:
    """conmon answers {"data": pid} or {"data": -1, "message": why} on the sync pipe."""
    try:
        message = json.loads(reply)
    except ValueError:
        message = {}
    if message.get("data", -1) > 0:
        return message["data"]
    why = message.get("message", "") or _last_lines(errors) or "the monitor exited before PID 1 was created"
    raise start_failure(why)


def _last_lines(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[-2000:]
    except FileNotFoundError:
        return ""


def start_failure(message: str) -> StartFailed:
    """Docker's exit codes for a command that cannot run: 127 not found, 126 not executable."""
    text = runc_message(message.strip().encode()) or message.strip()
    lowered = text.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return StartFailed(text, exit_code=127)
    if "permission denied" in lowered or "exec format error" in lowered:
        return StartFailed(text, exit_code=126)
    return StartFailed(text, exit_code=128)


def control(bundle: Path, kind: int, height: int = 0, width: int = 0) -> None:
    """Write to conmon's control fifo: 1 = resize the pty, 2 = reopen the log file."""
    fd = os.open(bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, f"{kind} {height} {width}\n".encode())
    finally:
        os.close(fd)


def resize(bundle: Path, height: int, width: int) -> None:
    control(bundle, 1, height, width)


def reopen_log(bundle: Path) -> None:
    control(bundle, 2)


def attach_socket_path(socket_dir: Path, container_id: str) -> Path:
    return socket_dir / container_id[:UUID_LENGTH] / "attach"


def connect_attach(socket_dir: Path, container_id: str) -> socket.socket:
    """conmon's attach socket (SOCK_SEQPACKET): packets read are a stream byte (2 stdout, 3 stderr)
    + data; writes go to PID 1's stdin."""
    path = attach_socket_path(socket_dir, container_id)
    directory = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        # Through /proc/self/fd: a deep state root must not hit sun_path's 107 bytes.
        client.connect(f"/proc/self/fd/{directory}/{path.name}")
    except OSError:
        client.close()
        raise
    finally:
        os.close(directory)
    return client
