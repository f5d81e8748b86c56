"""Ending a terminal exec whose other end went away: hang up its session, then kill what stays, reap runc.

A closed terminal hangs up its session (SIGHUP), as closing an ssh
connection does; what ignores the hang-up is killed after a grace. This
needs the privileges of the process that started ``runc exec``: the Docker
API's (root), never the web's.

::

    runc exec -t (ours, in the foreground) ──> /bin/sh (session leader on the container's tty) ──> its jobs
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from .dockerapi.fdio import wait_pid

HANGUP_GRACE = 2.0  # seconds the shell gets to leave after SIGHUP, before SIGKILL


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def _children(pid: int) -> set[int]:
    found = set()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.update(int(child) for child in children.read_text().split())
        except OSError:
            pass
    return found


def shell_processes(runc_pid: int) -> set[int]:
    """The command runc started (its child, with CLONE_PARENT) and every process of its session.

    runc makes the command a session leader on the container's tty, so its
    jobs share its session id, as host pids in /proc.
    """
    leaders = _children(runc_pid)
    if not leaders:
        return set()
    found = set(leaders)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[3]) in leaders:
                found.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile
    return found


def _signal_all(pids, number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


async def _exited(pid: int, timeout: float) -> bool:
    exited = wait_pid(pid)
    try:
        await asyncio.wait_for(exited, timeout)
        return True
    except asyncio.TimeoutError:
        return False


async def end_exec(process: subprocess.Popen, grace: float = HANGUP_GRACE) -> int:
    """Hang up the session of ``runc exec``'s command, kill what stays after the grace, reap runc; its status."""
    if process.poll() is None:
        shell = shell_processes(process.pid)
        try:
            _signal_all([process.pid, *shell], signal.SIGHUP)  # runc forwards it to the command too
            if not await _exited(process.pid, grace):
                # The command first, so runc (its parent) reaps it; then runc, if it is still there.
                _signal_all(shell | shell_processes(process.pid), signal.SIGKILL)
                if not await _exited(process.pid, grace):
                    _signal_all([process.pid], signal.SIGKILL)
        except BaseException:
            kill_exec(process)
            raise
    return process.wait()


def kill_exec(process: subprocess.Popen) -> None:
    """No grace: for when the caller itself is being cancelled."""
    if process.poll() is None:
        _signal_all(shell_processes(process.pid), signal.SIGKILL)
        _signal_all([process.pid], signal.SIGKILL)
    process.wait()
