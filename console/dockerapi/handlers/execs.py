"""``exec``: create, start (hijacked or detached), resize, inspect.

Exec instances live in this process's memory, as moby keeps them in its
own. ``start`` runs ``runc exec`` through ``Runtime.open_exec``::

    client ──stdin──> pipe / pty master ──runc exec──> the command in the container
    client <─frames── stdout + stderr pipes   (tty: the pty master, raw)

A client that goes away from a started exec with a terminal and stdin (the
connection closed both ways, not merely its write side) hangs up the
command's session, as closing a terminal does: SIGHUP, SIGKILL after a
grace, runc reaped (``console.hangup``). Docker leaves such a shell running;
the console's web shell relies on this to leave none.

runc reports a command it cannot start on its own stderr (``exec failed: ...``)
and exits 255; that line is kept from the client and replaced by moby's
``OCI runtime exec failed: ...`` on stdout, and the exit code becomes 126 or
127 as Docker gives it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from dataclasses import dataclass, field

from runtime.containers import exec_exit_code, set_window_size
from runtime.errors import ContainerNotRunning
from runtime.spec import TERMINAL_SIDE_MAX

from ... import hangup
from .. import stdcopy
from ..errors import bad_request, conflict, not_found
from ..fdio import read_fd, wait_pid, write_fd
from ..params import detach_keys, integer
from ..server import Response, empty, json_response
from .streams import RAW, content_type

DRAIN_AFTER_EXIT = 2.0  # seconds to let the pipes empty once the command is gone
KEEP_FINISHED = 1000
# runc logs its own failure: `time="..." level=error msg="exec failed: ..."`, or on a tty `ERRO[0000] exec failed: ...`
_RUNC_ERROR = re.compile(rb'(?:level=error msg="(?P<quoted>(?:[^"\\]|\\.)*)"|ERRO\S*\s+(?P<plain>.*?)\s*$)')
_RUNC_PREFIXES = (b'time="', b"\x1b[31mERRO", b"ERRO")


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    env: list[str]
    user: str
    workdir: str
    privileged: bool
    detach_keys: str
    console_size: tuple[int, int] | None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    master: int | None = None
    pending_size: tuple[int, int] | None = None
    done: asyncio.Event | None = field(default=None, repr=False)

    def inspect(self) -> dict:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "",
                              "arguments": self.cmd[1:], "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


class ExecRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._instances: dict[str, ExecInstance] = {}

    def add(self, instance: ExecInstance) -> None:
        with self._lock:
            self._instances[instance.id] = instance
            finished = [i for i in self._instances.values() if i.exit_code is not None]
            for old in finished[:-KEEP_FINISHED]:
                del self._instances[old.id]

    def get(self, exec_id: str) -> ExecInstance:
        with self._lock:
            instance = self._instances.get(exec_id)
            if instance is None and len(exec_id) >= 1:
                matches = [i for key, i in self._instances.items() if key.startswith(exec_id)]
                instance = matches[0] if len(matches) == 1 else None
        if instance is None:
            raise not_found(f"No such exec instance: {exec_id}")
        return instance

    def ids_for(self, container_id: str) -> list[str]:
        with self._lock:
            return [i.id for i in self._instances.values() if i.container_id == container_id and i.running]


# --- create, inspect, resize -----------------------------------------------------------------

def _strings(value, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                          f"ExecOptions.{name} of type []string")
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                          f"ExecOptions.{name} of type bool")
    return bool(value)


def _console_size(value) -> tuple[int, int] | None:
    if not value:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= TERMINAL_SIDE_MAX
                       for v in value)):
        raise bad_request(f"json: cannot unmarshal ConsoleSize: expected [height, width], each 0 to "
                          f"{TERMINAL_SIDE_MAX}")
    return (value[0], value[1]) if value[0] and value[1] else None


def _running_container(services, reference: str):
    row = services.get_container(reference)
    if row.state == "paused":
        raise conflict(f"Container {row.id} is paused, unpause the container before exec")
    if row.state not in ("running", "restarting"):
        raise conflict(f"container {row.id} is not running")
    return row


async def create(api, request) -> Response:
    body = await request.json()
    if not isinstance(body, dict):
        raise bad_request("exec config cannot be empty")
    cmd = _strings(body.get("Cmd"), "Cmd")
    if not cmd:
        raise bad_request("No exec command specified")
    keys = body.get("DetachKeys") or body.get("detachKeys") or ""
    if not isinstance(keys, str):
        raise bad_request("json: cannot unmarshal into Go struct field ExecOptions.DetachKeys of type string")
    detach_keys(keys, "escape keys")
    row = await api.sync(_running_container, api.services, request.params["id"])
    for name in ("User", "WorkingDir", "DetachKeys"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise bad_request(f"json: cannot unmarshal into Go struct field ExecOptions.{name} of type string")
    instance = ExecInstance(
        id=secrets.token_hex(32), container_id=row.id, cmd=cmd, tty=_flag(body, "Tty"),
        attach_stdin=_flag(body, "AttachStdin"), attach_stdout=_flag(body, "AttachStdout"),
        attach_stderr=_flag(body, "AttachStderr"), env=_strings(body.get("Env"), "Env"),
        user=body.get("User") or "", workdir=body.get("WorkingDir") or "", privileged=_flag(body, "Privileged"),
        detach_keys=keys,
        console_size=_console_size(body.get("ConsoleSize")),
    )
    api.execs.add(instance)
    return json_response({"Id": instance.id}, 201)


async def inspect(api, request) -> Response:
    return json_response(api.execs.get(request.params["id"]).inspect())


async def resize(api, request) -> Response:
    instance = api.execs.get(request.params["id"])
    height = integer("h", request.arg("h"), 0, minimum=0, maximum=TERMINAL_SIDE_MAX)
    width = integer("w", request.arg("w"), 0, minimum=0, maximum=TERMINAL_SIDE_MAX)
    if instance.master is not None and instance.running:
        try:
            set_window_size(instance.master, height, width)
        except OSError:
            pass
    else:
        instance.pending_size = (height, width)
    return Response(200, b"", "text/plain; charset=utf-8")


# --- start -------------------------------------------------------------------------------------


class _RuncErrorFilter:
    """Holds back the first line of an output while it may still be runc's own failure message."""

    def __init__(self):
        self.held = b""
        self.deciding = True
        self.failure: str | None = None

    def feed(self, data: bytes) -> bytes:
        if not self.deciding:
            return data
        self.held += data
        if not any(p.startswith(self.held[:len(p)]) for p in _RUNC_PREFIXES):
            return self._release()
        if b"\n" not in self.held:
            return b""
        line, _, rest = self.held.partition(b"\n")
        match = _RUNC_ERROR.search(line)
        if match and b"exec failed" in line:
            text = match.group("quoted") if match.group("quoted") is not None else match.group("plain")
            self.failure = text.replace(b'\\"', b'"').replace(b"\\\\", b"\\").decode(errors="replace").strip()
            self.deciding = False
            self.held = b""
            return rest
        return self._release()

    def _release(self) -> bytes:
        self.deciding = False
        data, self.held = self.held, b""
        return data

    def flush(self) -> bytes:
        return self._release() if self.deciding else b""


def _open_exec(api, instance: ExecInstance, size: tuple[int, int] | None):
    """Start the command, audited as ``container.exec`` as the console's shell is; with a tty, its
    terminal ``size`` (rows, cols) from the start."""
    container = api.services.get_container(instance.container_id)
    detail = {"Cmd": instance.cmd, "Tty": instance.tty, "ExecID": instance.id}
    if instance.user:
        detail["User"] = instance.user
    with api.operation("container.exec", container, detail):
        return api.runtime.open_exec(instance.container_id, instance.cmd, tty=instance.tty, env=instance.env,
                                     user=instance.user, workdir=instance.workdir, stdin=instance.attach_stdin,
                                     size=size)


async def _pump_output(fd: int, out: "asyncio.Queue[tuple[int, bytes] | None]", stream: int,
                       gate: _RuncErrorFilter | None) -> None:
    try:
        while True:
            data = await read_fd(fd)
            if not data:
                break
            if gate is not None:
                data = gate.feed(data)
            if data:
                await out.put((stream, data))
    finally:
        if gate is not None:
            rest = gate.flush()
            if rest:
                await out.put((stream, rest))


async def _pump_input(conn, fd: int, close_at_eof: bool) -> None:
    try:
        while True:
            data = await conn.read()
            if not data:
                break
            await write_fd(fd, data)
    except OSError:
        pass  # the command is gone or closed its stdin
    finally:
        if close_at_eof:
            try:
                os.close(fd)
            except OSError:
                pass


class _Execution:
    """One running exec: pumps between the client (or nowhere, detached) and the command."""

    def __init__(self, instance: ExecInstance, session):
        self.instance = instance
        self.session = session
        self.process = session.process
        self.gate = _RuncErrorFilter()
        self.output: asyncio.Queue = asyncio.Queue(maxsize=64)

    def _output_fds(self) -> list[tuple[int, int, _RuncErrorFilter | None]]:
        if self.session.master is not None:
            os.set_blocking(self.session.master, False)
            return [(self.session.master, stdcopy.STDOUT, self.gate)]
        fds = []
        for pipe, stream, gate in ((self.process.stdout, stdcopy.STDOUT, None),
                                   (self.process.stderr, stdcopy.STDERR, self.gate)):
            os.set_blocking(pipe.fileno(), False)
            fds.append((pipe.fileno(), stream, gate))
        return fds

    async def run(self, conn=None) -> None:
        """Until the command exits and its output is drained; writes to ``conn`` unless detached."""
        instance = self.instance
        readers = [asyncio.ensure_future(_pump_output(fd, self.output, stream, gate))
                   for fd, stream, gate in self._output_fds()]
        exited = wait_pid(self.process.pid)
        writer = asyncio.ensure_future(self._forward(conn))
        feeder = hanging_up = None
        if conn is not None and instance.tty and instance.attach_stdin:
            hanging_up = asyncio.ensure_future(self._hang_up_when_gone(conn))
        if conn is not None and instance.attach_stdin:
            if self.session.master is not None:
                feeder = asyncio.ensure_future(_pump_input(conn, self.session.master, close_at_eof=False))
            elif self.process.stdin is not None:
                os.set_blocking(self.process.stdin.fileno(), False)
                feeder = asyncio.ensure_future(_pump_input(conn, self.process.stdin.fileno(), close_at_eof=True))
        try:
            await exited
            await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT)
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await self.output.put(None)
            await writer
        finally:
            exited.cancel()
            for task in (feeder, writer, hanging_up, *readers):
                if task is not None:
                    task.cancel()
            self._finish(self.process.poll())

    async def _hang_up_when_gone(self, conn) -> None:
        await conn.until_hung_up()
        await hangup.end_exec(self.process)

    async def _forward(self, conn) -> None:
        tty = self.instance.tty
        alive = conn is not None
        while True:
            item = await self.output.get()
            if item is None:
                break
            stream, data = item
            if not alive:
                continue  # detached or the client left: keep reading so the command never blocks
            try:
                await conn.write(data if tty else stdcopy.frame(stream, data))
            except (ConnectionError, BrokenPipeError):
                alive = False
        if alive and self.gate.failure is not None:
            message = f"OCI runtime exec failed: {self.gate.failure}: unknown\r\n".encode()
            try:
                await conn.write(message if tty else stdcopy.frame(stdcopy.STDOUT, message))
            except (ConnectionError, BrokenPipeError):
                pass

    def _finish(self, code: int | None) -> None:
        """Record the exit code (None only if we were cancelled before the command ended)."""
        instance = self.instance
        failure = (self.gate.failure or "").encode()
        if failure and b"exec failed" not in failure:
            failure = b"exec failed: " + failure
        instance.exit_code = exec_exit_code(code, failure) if code is not None else None
        instance.running = False
        if self.session.master is not None:
            try:
                os.close(self.session.master)
            except OSError:
                pass
        instance.master = None
        for pipe in (self.process.stdout, self.process.stderr, self.process.stdin):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if instance.done is not None:
            instance.done.set()


async def start(api, request):
    instance = api.execs.get(request.params["id"])
    body = await request.json() or {}
    if not isinstance(body, dict):
        raise bad_request("json: cannot unmarshal into Go value of type container.ExecStartOptions")
    if instance.started:
        raise conflict(f"Error: Exec command {instance.id} is already running" if instance.running
                       else f"Error: Exec command {instance.id} has already run")
    detach = bool(body.get("Detach"))
    size = _console_size(body.get("ConsoleSize")) or instance.pending_size or instance.console_size
    instance.started = True
    try:
        session = await api.sync(_open_exec, api, instance, size)
    except ContainerNotRunning as error:
        instance.started = False
        raise conflict(str(error)) from None
    except BaseException:
        instance.started = False
        raise
    instance.running = True
    instance.pid = session.process.pid
    instance.master = session.master
    instance.done = asyncio.Event()
    execution = _Execution(instance, session)
    if detach:
        api.spawn(execution.run(None))
        return empty(200)
    try:
        conn = await request.hijack(RAW if instance.tty else content_type(request, False))
    except BaseException:
        api.spawn(execution.run(None))  # the client is gone: drain the command that already runs
        raise
    await execution.run(conn)
    return None


ROUTES = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
