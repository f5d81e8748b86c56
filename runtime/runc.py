"""The few runc commands Berth needs, each one process, but for two on the hot path: ``start``
reads runc's exec fifo itself, and ``delete`` of a container whose init is gone removes its
cgroups and state directly (runc's Go start-up costs ~5 ms a process).

runc keeps its state under its own ``--root`` inside the state root, so
Berth's containers never mix with another runc user's on the same host.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from .errors import BerthError

RUNC = "/usr/sbin/runc"
START_TIMEOUT = 30.0  # seconds ``runc init`` may take to reach its exec fifo


class RuncError(BerthError):
    pass


class Runc:
    def __init__(self, root: Path, binary: str = RUNC):
        self.root = Path(root)
        self.binary = binary

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*args), capture_output=True, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise RuncError(message(done.stderr) or f"runc {args[0]} failed with {done.returncode}")
        return done

    def exists(self, container_id: str) -> bool:
        return (self.root / container_id / "state.json").exists()

    def start(self, container_id: str, pid: int = 0) -> None:
        """Let a created container's PID 1 run its command, as ``runc start`` does, without its process.

        ``runc init`` waits to write one byte into ``exec.fifo``; reading it, then removing the fifo
        (runc's sign that the container left "created"), is all ``runc start`` does. Its Go start-up
        costs more than the rest of a quick container's start.
        """
        fifo = self.root / container_id / "exec.fifo"
        try:
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RuncError("cannot start a container that has stopped" if pid and not _running(pid)
                            else "cannot start an already running container") from None
        try:
            data = _read_fifo(fd, pid)
        finally:
            os.close(fd)
        if not data:
            raise RuncError("cannot start an already running container" if pid and _running(pid)
                            else "container process is already dead")
        fifo.unlink(missing_ok=True)
        if pid:
            _wait_for_exec(pid)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        self.run("kill", *(["--all"] if all_processes else []), container_id, str(signal))

    def pause(self, container_id: str) -> None:
        self.run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self.run("resume", container_id)

    def delete(self, container_id: str) -> None:
        """Forget a container (killing what is left of it); gone already is fine."""
        if self.exists(container_id) and not self._delete_stopped(container_id):
            done = self.run("delete", "--force", container_id, check=False)
            if done.returncode != 0 and self.exists(container_id):
                raise RuncError(message(done.stderr))

    def _delete_stopped(self, container_id: str) -> bool:
        """What ``runc delete`` does for a container whose init process is gone (its cgroups, its
        state), without starting runc; False, leaving it to runc, when anything may still run there."""
        directory = self.root / container_id
        try:
            state = json.loads((directory / "state.json").read_bytes())
        except (OSError, ValueError):
            return False
        pid, start = state.get("init_process_pid") or 0, state.get("init_process_start")
        if not pid or _running(pid, start):
            return False
        for path in sorted(set((state.get("cgroup_paths") or {}).values()), key=len, reverse=True):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                return False  # a process is left in it (an exec's, say): runc kills it
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def state(self, container_id: str) -> dict | None:
        done = self.run("state", container_id, check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").exists())


def _read_fifo(fd: int, pid: int) -> bytes:
    """What ``runc init`` writes before it closes its end; empty if it died first."""
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not poller.poll(100):
            if pid and not _running(pid):
                break  # the writer is gone without ever opening its end
            continue
        chunk = os.read(fd, 64)
        if not chunk:
            break  # runc init closed its end: it execs the command now
        data += chunk
    return data


INIT_COMM = b"runc:[2:INIT]\n"


def _wait_for_exec(pid: int, timeout: float = 1.0) -> None:
    """Until ``runc init`` has exec'd the command after closing its fifo end.

    In that gap a signal meets runc's Go runtime, which, as a PID 1 that cannot die of it, exits 2:
    a ``docker stop`` right after start would end in exit code 2 instead of the stop signal's.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                if comm.read() != INIT_COMM:
                    return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.0002)


def _running(pid: int, start_time=None) -> bool:
    """Is ``pid`` alive, not a zombie, and (when given) the process that started at ``start_time``
    (clock ticks since boot, /proc/<pid>/stat's 22nd field)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if fields[0] == b"Z":
        return False
    return start_time is None or str(start_time) == fields[19].decode()


def message(stderr: bytes) -> str:
    """runc logs JSON or logfmt lines; keep the human part of the last one."""
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    try:
        return json.loads(last).get("msg", last)
    except ValueError:
        marker = 'msg="'
        if marker in last:
            return last.split(marker, 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
        return last
