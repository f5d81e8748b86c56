"""``attach`` and ``logs``: a container's output, from conmon's log file.

Output comes from the log file, not from conmon's attach socket. The CLI
attaches *before* it starts the container, and the start runs in the worker:
by the time this process could connect to the socket (it exists only once
conmon runs), a short-lived command such as ``echo hi`` may have printed and
exited, and the socket does not replay. conmon writes every byte to the log
as it reads it, so::

    attach ──> note where the log ends now (create it empty if conmon has not yet)
           ──> 101 UPGRADED
           ──> send each record appended from there: P (no newline) at once, F + "\\n"
               (woken by inotify on the container's directory and the exits directory)
           ──> conmon writes exits/<id> only after draining PID 1's pipes into the log,
               so once the run has ended one last read has everything; then close.

Stdin is the one thing the socket is needed for: client bytes are buffered
until the run has started, then written to the socket in order (its
output is read and dropped so conmon never blocks on us). Resizes asked for before the
start are applied when the run starts.

On a terminal, the detach sequence (``detachKeys``, ctrl-p,ctrl-q by default, as
moby's) typed on stdin ends the attach and leaves the container running; it never
reaches the container. A sequence that is not one is a 400 before the 101.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime import logs as runtime_logs
from runtime.errors import NotFound

from .. import local, stdcopy
from ..errors import bad_request
from ..fdio import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    Notifier,
    iterate_in_thread,
)
from ..params import boolean, detach_keys

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
STDIN_PACKET = 8192  # conmon reads its attach socket in 32 KiB packets; stay well below
QUIET_WAKE = 0.25
BLOCK_BYTES = 256 << 10  # logs without follow: rendered output is sent in blocks of about this size
BLOCK_BACKLOG = 8  # blocks read ahead of the client
INLINE_TAIL = 1000  # a tail of at most this many lines, without follow, is read and sent in one go
DB_CHECK = 1.0
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p,ctrl-q
_STREAMS = {"stdout": stdcopy.STDOUT, "stderr": stdcopy.STDERR}


def content_type(request, tty: bool) -> str:
    return RAW if tty or request.api_version < (1, 42) else MULTIPLEXED


def render(stream: str, data: bytes, tty: bool) -> bytes:
    return data if tty else stdcopy.frame(_STREAMS.get(stream, stdcopy.STDOUT), data)


# --- logs -----------------------------------------------------------------------------------


def timestamp_ns(name: str, value: str | None) -> int | None:
    """A unix time as the CLI sends it ("1700000000" or "1700000000.123456789"); None for 0 or nothing."""
    if value is None or value.strip() in ("", "0"):
        return None
    seconds, _, fraction = value.strip().partition(".")
    if not seconds.lstrip("-").isdigit() or (fraction and not fraction.isdigit()):
        raise bad_request(f'invalid value for {name}: "{value}" is not a unix timestamp')
    return int(seconds) * 1_000_000_000 + int((fraction or "0")[:9].ljust(9, "0"))


def tail_count(value: str | None) -> int | None:
    """``tail``: a number of lines, or "all" (also anything that is not a number, as moby reads it)."""
    try:
        number = int((value or "all").strip())
    except ValueError:
        return None
    return number if number >= 0 else None


@dataclass
class _Target:
    id: str
    tty: bool
    open_stdin: bool
    console_size: tuple[int, int] | None


def _target(services, reference: str) -> _Target:
    row = services.get_container(reference)
    config = row.config or {}
    size = (row.host_config or {}).get("ConsoleSize") or []
    console = (int(size[0]), int(size[1])) if len(size) == 2 and size[0] and size[1] else None
    return _Target(row.id, bool(config.get("Tty")), bool(config.get("OpenStdin")), console)


async def _until_gone(batches, gone: asyncio.Event):
    """The batches of an async iterator until the client hangs up."""
    iterator = batches.__aiter__()
    gone_wait = asyncio.ensure_future(gone.wait())
    try:
        while True:
            following = asyncio.ensure_future(iterator.__anext__())
            await asyncio.wait({following, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                try:
                    await following
                except (asyncio.CancelledError, StopAsyncIteration):
                    pass
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        gone_wait.cancel()
        await iterator.aclose()


async def logs(api, request):
    reference = request.params["id"]
    stdout = boolean(request.arg("stdout"))
    stderr = boolean(request.arg("stderr"))
    if not (stdout or stderr):
        raise bad_request("Bad parameters: you must choose at least one stream")
    since = timestamp_ns("since", request.arg("since"))
    until = timestamp_ns("until", request.arg("until"))
    tail = tail_count(request.arg("tail"))
    timestamps = boolean(request.arg("timestamps"))
    options = dict(tail=tail, since_ns=since, until_ns=until, stdout=stdout, stderr=stderr)
    runtime = api.runtime
    plan = await api.sync(_plan_logs, api.services, runtime, reference, boolean(request.arg("follow")),
                          options, timestamps)
    target, path, output = plan.target, plan.path, plan.output
    kind = content_type(request, target.tty)
    if plan.tail is not None:
        stream = await request.stream(kind, defer=True)
        await stream.end(plan.tail)
        return None
    if plan.follow:
        def records(stop):
            return runtime_logs.follow_logs(path, is_alive=lambda: local.is_running(runtime, target.id),
                                            poll_interval=0.05, stop=stop, **options)

        return await _follow(request, await request.stream(kind), iterate_in_thread(records), output)
    def rendered(stop):
        return runtime_logs.in_blocks(map(output, runtime_logs.read_logs(path, **options)), BLOCK_BYTES)

    blocks = iterate_in_thread(rendered, backlog=BLOCK_BACKLOG)
    return await _send_blocks(request, await request.stream(kind, defer=True), blocks)


@dataclass
class _LogsPlan:
    target: _Target
    path: Path
    follow: bool
    output: Callable[[object], bytes]  # a record as the client gets it
    tail: bytes | None  # all of the answer, for a short tail without follow


def _plan_logs(services, runtime, reference: str, follow: bool, options: dict, timestamps: bool) -> _LogsPlan:
    """The container, and whether its logs are followed; a short tail without follow is read here.

    A tail's records are in memory anyway (runtime.logs gathers them backwards): reading a short
    one in the worker thread that looked the container up spares ``docker logs --tail 100`` a
    thread of its own, a hand-over per record and a write per chunk.
    """
    target = _target(services, reference)
    path = local.log_path(runtime, target.id)
    follow = follow and local.is_running(runtime, target.id)

    def output(record) -> bytes:
        data = (record.rfc3339().encode() + b" " + record.data) if timestamps else record.data
        return render(record.stream, data, target.tty)

    tail = None
    if not follow and options["tail"] is not None and options["tail"] <= INLINE_TAIL:
        tail = b"".join(output(record) for record in runtime_logs.read_logs(path, **options))
    return _LogsPlan(target, path, follow, output, tail)


async def _follow(request, stream, batches, output) -> None:
    """Records as they come, until the container is gone or the client is."""
    gone = request.watch_disconnect()
    async for batch in _until_gone(batches, gone):
        await stream.write(b"".join(output(record) for record in batch))
    if gone.is_set():
        request.conn.must_close = True
        return None
    await stream.end()
    return None


async def _send_blocks(request, stream, blocks) -> None:
    """What the log holds now, block by block. The deferred headers go out with the first block;
    each block is held back until the next is read, so the last goes out with the end of the body."""
    gone = request.watch_disconnect()
    held = b""
    async for batch in _until_gone(blocks, gone):
        for block in batch:
            await stream.write(held)
            held = block
    if gone.is_set():
        request.conn.must_close = True
        return None
    await stream.end(held)
    return None


# --- attach ----------------------------------------------------------------------------------


class LogTail:
    """conmon's log from a position on, each record as soon as it is there (no waiting for line ends)."""

    def __init__(self, path: Path, from_start: bool, create: bool):
        self.path = path
        self.create = create
        self.fd: int | None = None
        self.pos = 0
        self.carry = b""
        self._open(at_end=not from_start)

    def _open(self, at_end: bool = False) -> bool:
        if self.fd is not None:
            return True
        if self.create:
            # conmon opens its log O_APPEND|O_CREAT: creating it first changes nothing for conmon
            # and means we hold the file even if the container is removed right after it ran.
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640))
            except (FileNotFoundError, NotADirectoryError):
                pass
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self.pos = os.fstat(self.fd).st_size if at_end else 0
        return True

    def read(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        if not self._open():
            return out
        while True:
            data = os.pread(self.fd, 1 << 20, self.pos)
            if data:
                self.pos += len(data)
                self._parse(data, out)
                continue
            if not self._replaced():
                return out
            # Rotated: the renamed file is complete; go on with the new one from its start.
            os.close(self.fd)
            self.fd, self.carry = None, b""
            if not self._open():
                return out

    def _parse(self, data: bytes, out: list) -> None:
        lines = (self.carry + data).split(b"\n")
        self.carry = lines.pop()
        for line in lines:
            try:
                _, stream, partial, text = runtime_logs.parse_line(line)
            except ValueError:
                continue
            out.append((stream, text if partial else text + b"\n"))

    def _replaced(self) -> bool:
        try:
            now = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        mine = os.fstat(self.fd)
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class EscapeSequence:
    """The detach sequence in what a client types (moby's escape proxy): bytes that may begin it are
    held back, the whole of it detaches, a beginning that goes wrong is passed on as typed."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what goes on to the container, whether the client detached)."""
        passed = bytearray()
        for value in data:
            self.held += bytes((value,))
            if self.keys.startswith(self.held):
                if self.held == self.keys:
                    return bytes(passed), True
                continue
            passed += self.held
            self.held = b""
        return bytes(passed), False


class AttachSession:
    """One attached client: output from the log until the run ends, stdin into conmon's socket."""

    def __init__(self, api, target: _Target, stdin: bool, stdout: bool, stderr: bool, history: bool,
                 keys: bytes = DEFAULT_DETACH_KEYS):
        self.api = api
        self.runtime = api.runtime
        self.target = target
        self.want_stdin = stdin and target.open_stdin
        # moby looks for the sequence on a terminal only: a pipe's bytes are data, whatever they are.
        self.escape = EscapeSequence(keys) if target.tty and self.want_stdin else None
        self.detached = False
        self.want = {"stdout": stdout, "stderr": stderr}
        self.history = history
        self.directory = local.container_dir(self.runtime, target.id)
        self.started = False
        self.seen_record = False
        self.base_started_at = None
        self.base_error = None
        self.last_db_check = 0.0
        self.stdin_socket: socket.socket | None = None
        # Client bytes in order, None at the client's EOF; one sender drains it once the run started.
        self.stdin_queue: asyncio.Queue = asyncio.Queue()
        self.sender: asyncio.Future | None = None
        self.notifier = Notifier()

    def prepare(self, follow: bool) -> None:
        """Before the 101: where the log ends and what the run looks like now."""
        baseline = local.run_state(self.runtime, self.target.id)
        if baseline is not None:
            self.seen_record = True
            self.base_started_at = baseline.started_at
            self.base_error = baseline.error
            self.started = baseline.running
        self.tail = LogTail(local.log_path(self.runtime, self.target.id), from_start=self.history, create=follow)
        self._watch()

    def _watch(self) -> None:
        self.notifier.watch(self.runtime.state.exits, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)
        if not self.notifier.watch(self.directory, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
                                   | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF):
            self.notifier.watch(self.runtime.state.containers, IN_CREATE | IN_DELETE)

    async def run(self, conn) -> None:
        self.conn = conn
        pumping = asyncio.ensure_future(self._pump_stdin()) if self.want_stdin else None
        hangup = asyncio.ensure_future(conn.until_hung_up())
        try:
            if self.started:
                await self._on_start(fresh=False)
            while True:
                ended = await self._ended()
                await self._emit(self.tail.read())
                if ended or hangup.done() or self.detached:
                    return
                await self.notifier.wait(QUIET_WAKE)
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            for task in (pumping, hangup, self.sender):
                if task is not None:
                    task.cancel()
            self.close()

    async def history_only(self, conn) -> None:
        try:
            await self._emit_to(conn, self.tail.read())
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.tail.close()
        self.notifier.close()
        if self.stdin_socket is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.stdin_socket.fileno())
            except (ValueError, OSError):
                pass
            self.stdin_socket.close()
            self.stdin_socket = None

    async def _ended(self) -> bool:
        """Whether the run this client waits for is over (or never coming)."""
        state = local.run_state(self.runtime, self.target.id)
        if state is None:
            if self.seen_record:
                return True  # removed (AutoRemove, rm -f)
            return await self._gone_from_database()
        if not self.seen_record:
            self.seen_record = True
            self._watch()
        if not self.started:
            if state.running or state.started_at != self.base_started_at:
                self.started = True
                await self._on_start(fresh=True)
            elif state.error and state.error != self.base_error:
                return True  # the start failed
        return self.started and not state.running

    async def _gone_from_database(self) -> bool:
        """No record in the runtime yet: the create may still be on its way, or the row was dropped."""
        now = time.monotonic()
        if now - self.last_db_check < DB_CHECK:
            return False
        self.last_db_check = now
        try:
            await self.api.sync(self.api.services.get_container, self.target.id)
        except NotFound:
            return True
        return False

    async def _on_start(self, fresh: bool) -> None:
        size = self.api.pending_resize.pop(self.target.id, None)
        if size is None and fresh and self.target.tty:
            size = self.target.console_size
        if size is not None and self.target.tty:
            try:
                await self.api.sync(local.resize, self.runtime, self.target.id, *size)
            except OSError:
                self.api.pending_resize.setdefault(self.target.id, size)
        if self.want_stdin and self.sender is None:
            self.sender = asyncio.ensure_future(self._send_stdin())

    async def _send_stdin(self) -> None:
        """Connect to conmon's socket, then write the client's bytes in order; at the client's EOF shut
        our write side (conmon runs with --leave-stdin-open, so the container's stdin stays open)."""
        try:
            sock = await self.api.sync(local.connect_attach, self.runtime, self.target.id)
        except OSError:
            return  # the run is already over: nothing reads stdin any more
        sock.setblocking(False)
        self.stdin_socket = sock
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._discard_socket_output)
        while True:
            data = await self.stdin_queue.get()
            if data is None:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                for start in range(0, len(data), STDIN_PACKET):
                    await loop.sock_sendall(sock, data[start:start + STDIN_PACKET])
            except OSError:
                return  # conmon is gone; the output side notices the end

    def _discard_socket_output(self) -> None:
        """conmon copies the output to every attach socket too: read it so conmon never waits on us."""
        sock = self.stdin_socket
        if sock is None:
            return
        try:
            while sock.recv(65536):
                pass
            asyncio.get_running_loop().remove_reader(sock.fileno())  # EOF: conmon closed it
        except BlockingIOError:
            pass
        except OSError:
            asyncio.get_running_loop().remove_reader(sock.fileno())

    async def _pump_stdin(self) -> None:
        while not self.detached:
            data = await self.conn.read()
            if not data:
                break
            if self.escape is not None:
                data, self.detached = self.escape.feed(data)
            if data:
                self.stdin_queue.put_nowait(data)
        self.stdin_queue.put_nowait(None)  # detached too: the run loop sees it within QUIET_WAKE

    async def _emit(self, chunks) -> None:
        await self._emit_to(self.conn, chunks)

    async def _emit_to(self, conn, chunks) -> None:
        data = b"".join(render(stream, text, self.target.tty) for stream, text in chunks if self.want.get(stream))
        await conn.write(data)


async def attach(api, request):
    keys = detach_keys(request.arg("detachKeys")) or DEFAULT_DETACH_KEYS  # checked first, as moby does
    target = await api.sync(_target, api.services, request.params["id"])
    follow = boolean(request.arg("stream"))
    history = boolean(request.arg("logs"))
    session = AttachSession(api, target, boolean(request.arg("stdin")), boolean(request.arg("stdout")),
                            boolean(request.arg("stderr")), history, keys)
    session.prepare(follow)
    try:
        conn = await request.hijack(content_type(request, target.tty))
    except BaseException:
        session.close()
        raise
    if follow:
        await session.run(conn)
    else:
        await session.history_only(conn)
    return None


ROUTES = [
    ("POST", "/containers/{id}/attach", attach),
    ("GET", "/containers/{id}/logs", logs),
]
