"""The shell in the browser: ``/bin/sh`` with a tty in a running container, over a websocket.

::

    xterm.js ──binary: keys, paste──────────> ShellConsumer ──> pty master ──runc exec -t──> /bin/sh
    xterm.js <─binary: output──────────────── ShellConsumer <── pty master       (in the container)
             ──text: {"resize": [cols, rows]}─> TIOCSWINSZ on the master; runc passes it on (SIGWINCH)
             <─text: {"status": "ended", "exit_code": N} once the shell exits, then the close
             <─text: {"error": "..."} and a 44xx close when the shell cannot be opened

The exec runs in the process that serves the websocket, as the Docker API's
does in its own: a pty and a foreground ``runc exec`` cannot travel through a
Celery result. Opening it is an operation (``container.exec``), so a viewer is
refused and every shell is in the audit log. When the page goes away the
shell's session is hung up, then killed, and runc reaped: no exec is left.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import struct
import termios
from pathlib import Path
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import path

from runtime.containers import ExecSession, exec_exit_code
from runtime.errors import BerthError, Conflict, NotFound

from .. import groups, operations, roles, services
from ..consumers import _AuthorisedConsumer
from ..dockerapi.fdio import read_fd, wait_pid
from ..models import Container
from ..runtime_access import get_runtime

SHELL = ["/bin/sh"]
SHELL_ENV = ["TERM=xterm-256color"]
DEFAULT_SIZE = (80, 24)        # cols, rows, until the page says its own
MAX_SIZE = 1000                # cols or rows; more is a mistake, not a screen
HANGUP_GRACE = 2.0             # seconds the shell gets to leave after SIGHUP, before SIGKILL
DRAIN_AFTER_EXIT = 1.0         # seconds to let the pty empty once runc is gone
MAX_PENDING_INPUT = 1 << 20    # bytes of input held while the shell does not read

CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_CONFLICT = 4403, 4404, 4409


# --- opening the shell (in a database thread) -----------------------------------------------

def _check_can_exec_here(container: Container) -> None:
    if container.state == Container.STATE_PAUSED:
        raise Conflict(f"container {container.name} is paused: unpause it to open a shell")
    if container.state not in (Container.STATE_RUNNING, Container.STATE_RESTARTING):
        raise Conflict(f"container {container.name} is not running: start it to open a shell")
    if container.host != settings.BERTH_HOST:
        raise Conflict(f"container {container.name} runs on host {container.host}: "
                       f"open its shell from that host's console")


def open_shell(user, container_id: str, size: tuple[int, int]) -> ExecSession:
    """Start the shell, audited as ``container.exec``; the session's pty is sized ``size`` (cols, rows)."""
    container = services.get_container(container_id)
    with operations.operation("container.exec", user, "web", target=container,
                              detail={"Cmd": SHELL, "Tty": True}):
        _check_can_exec_here(container)
        session = get_runtime().open_exec(container.id, SHELL, tty=True, env=SHELL_ENV, stdin=True)
    # Before runc reads it, or later through its SIGWINCH handler: either way the shell sees it.
    set_window(session.master, *size)
    return session


def set_window(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def window_size(query_string: bytes) -> tuple[int, int]:
    """The terminal's size the page asked for (``?cols=&rows=``), else 80x24."""
    query = parse_qs(query_string.decode("latin-1"))
    try:
        return _valid_size([int(query["cols"][0]), int(query["rows"][0])])
    except (KeyError, ValueError):
        return DEFAULT_SIZE


def _valid_size(value) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_SIZE for n in value)):
        raise ValueError(f"a size is [cols, rows], each 1 to {MAX_SIZE}")
    return value[0], value[1]


# --- ending it: the shell's session, then runc ------------------------------------------------

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
    """The shell runc started (its child, with CLONE_PARENT) and every process of its session.

    runc makes the shell a session leader on the container's tty, so its jobs
    share its session id, as host pids in /proc.
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


async def end_exec(session: ExecSession) -> int:
    """Hang up the shell, kill what stays after the grace, reap runc; its exit code."""
    process = session.process
    if process.poll() is None:
        shell = shell_processes(process.pid)
        try:
            _signal_all([process.pid, *shell], signal.SIGHUP)  # runc forwards it to the shell too
            if not await _exited(process.pid, HANGUP_GRACE):
                # The shell first, so runc (its parent) reaps it; then runc, if it is still there.
                _signal_all(shell | shell_processes(process.pid), signal.SIGKILL)
                if not await _exited(process.pid, HANGUP_GRACE):
                    _signal_all([process.pid], signal.SIGKILL)
        except BaseException:
            kill_exec(session)
            raise
    return process.wait()


def kill_exec(session: ExecSession) -> None:
    """No grace: for when the consumer itself is being cancelled."""
    process = session.process
    if process.poll() is None:
        _signal_all(shell_processes(process.pid), signal.SIGKILL)
        _signal_all([process.pid], signal.SIGKILL)
    process.wait()


# --- the websocket ----------------------------------------------------------------------------

class ShellConsumer(_AuthorisedConsumer):
    """One shell per connection: it starts with the websocket and is gone when either side leaves."""

    session: ExecSession | None = None

    def group_name(self) -> str:
        return groups.container_group(self.scope["url_route"]["kwargs"]["container_id"])

    async def connect(self):
        await super().connect()
        if not getattr(self, "group", None):
            return  # anonymous: closed by the base
        container_id = self.scope["url_route"]["kwargs"]["container_id"]
        try:
            self.session = await database_sync_to_async(open_shell)(
                self.scope["user"], container_id, window_size(self.scope.get("query_string", b"")))
        except BerthError as error:
            await self.refuse(error)
            return
        self.master = self.session.master
        os.set_blocking(self.master, False)
        self.pending_input = bytearray()
        self.writing = False
        self.output = asyncio.ensure_future(self.pump_output())
        self.watcher = asyncio.ensure_future(self.watch_exit())

    async def refuse(self, error: BerthError) -> None:
        code = (CLOSE_FORBIDDEN if isinstance(error, roles.PermissionDenied)
                else CLOSE_NOT_FOUND if isinstance(error, NotFound) else CLOSE_CONFLICT)
        await self.send(text_data=json.dumps({"error": str(error)}))
        await self.close(code)

    async def pump_output(self) -> None:
        """The pty's output to the page as it comes; EOF (EIO) once runc, the slave's last holder, is gone."""
        while data := await read_fd(self.master):
            await self.send(bytes_data=data)

    async def watch_exit(self) -> None:
        await wait_pid(self.session.process.pid)
        await asyncio.wait([self.output], timeout=DRAIN_AFTER_EXIT)
        code = exec_exit_code(self.session.process.wait(), b"")
        await self.send(text_data=json.dumps({"status": "ended", "exit_code": code}))
        await self.close()

    async def receive(self, text_data=None, bytes_data=None):
        if self.session is None:
            return
        if bytes_data is not None:
            self.write_input(bytes_data)
        elif text_data:
            await self.control(text_data)

    async def control(self, text: str) -> None:
        """A JSON message: {"resize": [cols, rows]}, or {"input": "text"} for clients that send text."""
        try:
            message = json.loads(text)
            if "resize" in message:
                set_window(self.master, *_valid_size(message["resize"]))
            if isinstance(message.get("input"), str):
                self.write_input(message["input"].encode())
        except (ValueError, TypeError, AttributeError) as error:
            await self.send(text_data=json.dumps({"error": f"bad control message: {error}"}))
        except OSError:
            pass  # the pty is gone: the end is on its way

    def write_input(self, data: bytes) -> None:
        """Write what the pty takes now; the rest waits for it to take more (a paste can be large)."""
        if len(self.pending_input) + len(data) > MAX_PENDING_INPUT:
            return  # the shell has stopped reading: a terminal drops keys then too
        self.pending_input += data
        self.flush_input()

    def flush_input(self) -> None:
        try:
            written = os.write(self.master, self.pending_input) if self.pending_input else 0
        except BlockingIOError:
            written = 0
        except OSError:
            written = len(self.pending_input)  # the pty is gone: nobody will read it
        del self.pending_input[:written]
        loop = asyncio.get_running_loop()
        if self.pending_input and not self.writing:
            loop.add_writer(self.master, self.flush_input)
            self.writing = True
        elif not self.pending_input and self.writing:
            loop.remove_writer(self.master)
            self.writing = False

    async def container_changed(self, event):
        """Nothing to do: when PID 1 exits, runc exec ends with it and so does the shell."""

    async def disconnect(self, code):
        try:
            await self.end_shell()
        finally:
            await super().disconnect(code)

    async def end_shell(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        self.watcher.cancel()
        try:
            await end_exec(session)
        finally:
            kill_exec(session)  # a no-op once reaped; the hard way if end_exec was cancelled
            self.output.cancel()
            await asyncio.gather(self.output, self.watcher, return_exceptions=True)
            if self.writing:
                asyncio.get_running_loop().remove_writer(self.master)
            os.close(self.master)


urlpatterns = []
websocket_urlpatterns = [
    path("ws/containers/<str:container_id>/shell/", ShellConsumer.as_asgi()),
]
