"""The shell in the browser: ``/bin/sh`` with a tty in a running container, over a websocket, through the Docker API.

::

    xterm.js ──binary: keys, paste──────────> ShellConsumer ──hijacked exec stream──> API ──runc exec -t──> /bin/sh
    xterm.js <─binary: output──────────────── ShellConsumer <───────────────────────  API     (in the container)
             ──text: {"resize": [cols, rows]}─> POST /exec/<id>/resize?h=&w=
             <─text: {"status": "ended", "exit_code": N} once the shell exits (GET /exec/<id>/json), then the close
             <─text: {"error": "..."} and a 44xx close when the shell cannot be opened

The web process may run as a user of its own, with no privileges: the exec
runs in the Docker API process (root), whose socket the web's user may open
(``console.apiclient``; that access is root-equivalent, as the Docker
socket's is). Opening the shell is an operation (``container.exec``) of the
signed-in user, so a viewer is refused and every shell is in the audit log
(the API adds its own row, with the web process's uid and pid as origin).
When the page goes away the stream to the API is closed: the API hangs up
the shell's session, kills what stays and reaps runc (``console.hangup``);
the consumer waits until the API says the exec no longer runs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import path

from runtime.errors import BerthError, Conflict, NotFound

from .. import apiclient, groups, operations, roles, services
from ..consumers import _AuthorisedConsumer
from ..hangup import HANGUP_GRACE
from ..models import Container

SHELL = ["/bin/sh"]
SHELL_ENV = ["TERM=xterm-256color"]
DEFAULT_SIZE = (80, 24)        # cols, rows, until the page says its own
MAX_SIZE = 1000                # cols or rows; more is a mistake, not a screen
MAX_PENDING_INPUT = 1 << 20    # bytes of input held while the shell does not read
# How long the page's leaving waits for the API to end the exec: its hang-up, then its kill.
END_WAIT = 2 * HANGUP_GRACE + 3.0

CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_CONFLICT = 4403, 4404, 4409


# --- opening the shell (in a database thread) -----------------------------------------------

@dataclass
class Shell:
    exec_id: str
    stream: socket.socket      # the hijacked connection: the terminal's bytes both ways
    early: bytes = b""         # output that came with the API's answer


def _check_can_exec_here(container: Container) -> None:
    if container.state == Container.STATE_PAUSED:
        raise Conflict(f"container {container.name} is paused: unpause it to open a shell")
    if container.state not in (Container.STATE_RUNNING, Container.STATE_RESTARTING):
        raise Conflict(f"container {container.name} is not running: start it to open a shell")
    if container.host != settings.BERTH_HOST:
        raise Conflict(f"container {container.name} runs on host {container.host}: "
                       f"open its shell from that host's console")


def open_shell(user, container_id: str, size: tuple[int, int]) -> Shell:
    """Start the shell through the API, audited as ``container.exec``; its terminal sized ``size`` (cols, rows)."""
    container = services.get_container(container_id)
    cols, rows = size
    with operations.operation("container.exec", user, "web", target=container,
                              detail={"Cmd": SHELL, "Tty": True}):
        _check_can_exec_here(container)
        _, created = apiclient.request("POST", f"/containers/{container.id}/exec", {
            "Cmd": SHELL, "Env": SHELL_ENV, "Tty": True, "AttachStdin": True, "AttachStdout": True,
            "AttachStderr": True, "ConsoleSize": [rows, cols]})
        exec_id = created["Id"]
        stream, early = apiclient.hijack(f"/exec/{exec_id}/start",
                                         {"Detach": False, "Tty": True, "ConsoleSize": [rows, cols]})
    return Shell(exec_id, stream, early)


def exec_state(exec_id: str) -> dict:
    """The API's inspect of the exec: Running, ExitCode, Pid."""
    return apiclient.request("GET", f"/exec/{exec_id}/json")[1]


def resize_exec(exec_id: str, cols: int, rows: int) -> None:
    apiclient.request("POST", f"/exec/{exec_id}/resize?h={rows}&w={cols}")


def wait_exec_ended(exec_id: str, timeout: float = END_WAIT) -> bool:
    """Until the API says the exec no longer runs (it hangs up a shell whose stream closed); whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not exec_state(exec_id)["Running"]:
                return True
        except BerthError:
            return False  # the API is gone (and its execs with it) or forgot the exec
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


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


# --- the websocket ----------------------------------------------------------------------------

class ShellConsumer(_AuthorisedConsumer):
    """One shell per connection: it starts with the websocket and is gone when either side leaves."""

    shell: Shell | None = None

    def group_name(self) -> str:
        return groups.container_group(self.scope["url_route"]["kwargs"]["container_id"])

    async def connect(self):
        await super().connect()
        if not getattr(self, "group", None):
            return  # anonymous: closed by the base
        container_id = self.scope["url_route"]["kwargs"]["container_id"]
        try:
            shell = await database_sync_to_async(open_shell)(
                self.scope["user"], container_id, window_size(self.scope.get("query_string", b"")))
        except BerthError as error:
            await self.refuse(error)
            return
        shell.stream.setblocking(False)
        self.reader, self.writer = await asyncio.open_unix_connection(sock=shell.stream)
        self.shell = shell
        self.output = asyncio.ensure_future(self.pump_output(shell))

    async def refuse(self, error: BerthError) -> None:
        code = (CLOSE_FORBIDDEN if isinstance(error, roles.PermissionDenied)
                else CLOSE_NOT_FOUND if isinstance(error, NotFound) else CLOSE_CONFLICT)
        await self.send(text_data=json.dumps({"error": str(error)}))
        await self.close(code)

    async def pump_output(self, shell: Shell) -> None:
        """The terminal's output to the page as it comes; at its end (the shell exited), the exit code and the close."""
        if shell.early:
            await self.send(bytes_data=shell.early)
        while data := await self.reader.read(65536):
            await self.send(bytes_data=data)
        try:
            code = (await asyncio.to_thread(exec_state, shell.exec_id)).get("ExitCode")
        except BerthError:
            code = None
        await self.send(text_data=json.dumps({"status": "ended", "exit_code": code}))
        await self.close()

    async def receive(self, text_data=None, bytes_data=None):
        if self.shell is None:
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
                cols, rows = _valid_size(message["resize"])
                await asyncio.to_thread(resize_exec, self.shell.exec_id, cols, rows)
            if isinstance(message.get("input"), str):
                self.write_input(message["input"].encode())
        except (ValueError, TypeError, AttributeError) as error:
            await self.send(text_data=json.dumps({"error": f"bad control message: {error}"}))
        except BerthError:
            pass  # the exec is over: the end is on its way

    def write_input(self, data: bytes) -> None:
        """Hand the bytes to the stream; they wait in its buffer while the shell does not read (a paste can be large)."""
        if self.writer.is_closing() or self.writer.transport.get_write_buffer_size() + len(data) > MAX_PENDING_INPUT:
            return  # the shell has stopped reading: a terminal drops keys then too
        self.writer.write(data)

    async def container_changed(self, event):
        """Nothing to do: when PID 1 exits, runc exec ends with it and so does the shell."""

    async def disconnect(self, code):
        try:
            await self.end_shell()
        finally:
            await super().disconnect(code)

    async def end_shell(self) -> None:
        """Close the stream (the API hangs the shell up) and wait until the API says the exec is over."""
        shell, self.shell = self.shell, None
        if shell is None:
            return
        self.output.cancel()
        await asyncio.gather(self.output, return_exceptions=True)
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
        await asyncio.to_thread(wait_exec_ended, shell.exec_id)


urlpatterns = []
websocket_urlpatterns = [
    path("ws/containers/<str:container_id>/shell/", ShellConsumer.as_asgi()),
]
