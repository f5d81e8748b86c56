"""HTTP/1.1 on a unix socket: as much of it as the docker CLI and docker-py use.

::

    client ──HEAD /_ping──────────────────────────> 200, Api-Version: 1.45
           ──POST /v1.45/containers/create {json}──> 201 {"Id": ...}      (Content-Length or chunked body)
           ──GET  /v1.45/containers/x/logs?follow=1> 200, chunked frames until the container ends
           ──POST /v1.45/containers/x/attach───────> 101 UPGRADED, then raw bytes both ways

One task per connection; requests on a connection are served one after the
other (keep-alive). A handler returns a ``Response``, or takes the
connection over: ``request.stream()`` (a chunked body of unknown length) or
``request.hijack()`` (the socket itself, after the 101).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
import socket
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs, unquote

from .. import audit
from .errors import HTTPError, bad_request, status_of

log = logging.getLogger("berth.dockerapi")
access_log = logging.getLogger("berth.dockerapi.access")

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
MAX_API_VERSION = "1.50"
SERVER_VERSION = "0.1"
SERVER = f"Berth/{SERVER_VERSION} (linux)"

MAX_HEAD = 1 << 20  # request line + headers (X-Registry-Auth can be a few KB)
BODY_LIMIT = 16 << 20  # a JSON body; uploads (load, import, cp) stream with their own limit
READ_SIZE = 1 << 16

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_REASONS = {
    100: "Continue", 101: "UPGRADED", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    413: "Request Entity Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable",
}


def _common_headers() -> list[tuple[str, str]]:
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux"), ("Server", SERVER)]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(data).encode() + b"\n", "application/json", headers or [])


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


def empty(status: int = 204) -> Response:
    return Response(status)


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


# --- reading from the client ----------------------------------------------------


class Input:
    """The client's bytes, with room to put back what a disconnect watcher read too early."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader
        self.pushback = b""

    async def readline(self) -> bytes:
        """One line up to b"\\n" (included); b"" at EOF."""
        head = b""
        if self.pushback:
            head, self.pushback = self.pushback, b""
            cut = head.find(b"\n")
            if cut >= 0:
                self.pushback = head[cut + 1:]
                return head[:cut + 1]
        try:
            return head + await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as partial:
            return head + partial.partial
        except asyncio.LimitOverrunError:
            raise bad_request("request header too large") from None

    async def read(self, size: int = READ_SIZE) -> bytes:
        if self.pushback:
            data, self.pushback = self.pushback[:size], self.pushback[size:]
            return data
        return await self.reader.read(size)

    async def readexactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = await self.read(size - len(data))
            if not more:
                raise ConnectionResetError("client closed the connection in the middle of a request")
            data += more
        return data


class Body:
    """A request body: Content-Length bytes, or ``Transfer-Encoding: chunked`` chunks."""

    def __init__(self, conn: "Connection", length: int | None, chunked: bool, expect_continue: bool):
        self.conn = conn
        self.length = length
        self.chunked = chunked
        self.remaining = length or 0
        self.chunk_left = 0
        self.done = not chunked and not length
        self.expect_continue = expect_continue and not self.done
        self.received = 0

    async def read(self) -> bytes:
        """The next piece of the body; b"" once it is all read."""
        if self.done:
            return b""
        if self.expect_continue:
            self.expect_continue = False
            self.conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.conn.writer.drain()
        data = await (self._read_chunked() if self.chunked else self._read_sized())
        self.received += len(data)
        return data

    async def _read_sized(self) -> bytes:
        data = await self.conn.input.read(min(self.remaining, READ_SIZE))
        if not data:
            raise ConnectionResetError("client closed the connection in the middle of a body")
        self.remaining -= len(data)
        if self.remaining == 0:
            self.done = True
        return data

    async def _read_chunked(self) -> bytes:
        if self.chunk_left == 0:
            line = await self.conn.input.readline()
            if not line.endswith(b"\n"):
                raise ConnectionResetError("client closed the connection in the middle of a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.conn.must_close = True
                raise bad_request("malformed chunked request body") from None
            if size < 0:
                self.conn.must_close = True
                raise bad_request("malformed chunked request body")
            if size == 0:
                while (await self.conn.input.readline()).strip():
                    pass  # trailers
                self.done = True
                return b""
            self.chunk_left = size
        data = await self.conn.input.read(min(self.chunk_left, READ_SIZE))
        if not data:
            raise ConnectionResetError("client closed the connection in the middle of a chunked body")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            await self.conn.input.readexactly(2)  # CRLF after the chunk
        return data

    async def drain(self, limit: int) -> bool:
        """Read and drop what is left, if at most ``limit`` bytes; whether the connection stays usable."""
        if self.done:
            return True
        if not self.chunked and self.remaining > limit:
            return False
        dropped = 0
        while not self.done:
            dropped += len(await self.read())
            if dropped > limit:
                return False
        return True


# --- one request ------------------------------------------------------------------


class Request:
    def __init__(self, conn: "Connection", method: str, target: str, http_version: str,
                 headers: dict[str, str]):
        self.conn = conn
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        raw_path, _, query = target.partition("?")
        self.raw_path = raw_path
        self.path = unquote(raw_path)
        self.query = parse_qs(query, keep_blank_values=True)
        self.api_version: tuple[int, int] = _version(API_VERSION)
        self.params: dict[str, str] = {}
        self.body: Body = self._body()
        self.started = False  # a status line went out
        self.hijacked = False
        self.stream_open = False
        self.pending_head = b""  # a deferred stream's status line and headers, not sent yet

    def _body(self) -> Body:
        encoding = self.headers.get("transfer-encoding", "").lower()
        chunked = "chunked" in encoding
        length = None
        if not chunked and "content-length" in self.headers:
            try:
                length = int(self.headers["content-length"])
                if length < 0:
                    raise ValueError
            except ValueError:
                self.conn.must_close = True
                raise bad_request("invalid Content-Length header") from None
        expect = self.headers.get("expect", "").lower() == "100-continue"
        return Body(self.conn, length, chunked, expect)

    # query parameters

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    # the body

    async def read_body(self, limit: int = BODY_LIMIT) -> bytes:
        body = self.body
        if body.length is not None and body.length > limit:
            self.conn.must_close = True
            raise HTTPError(413, f"request body too large: {body.length} bytes, the limit is {limit} bytes")
        parts = []
        while True:
            data = await body.read()
            if not data:
                return b"".join(parts)
            parts.append(data)
            if body.received > limit:
                self.conn.must_close = True
                raise HTTPError(413, f"request body too large: more than {limit} bytes, the limit is {limit} bytes")

    async def iter_body(self, limit: int | None = None) -> AsyncIterator[bytes]:
        body = self.body
        if limit is not None and body.length is not None and body.length > limit:
            self.conn.must_close = True
            raise HTTPError(413, f"request body too large: {body.length} bytes, the limit is {limit} bytes")
        while True:
            data = await body.read()
            if not data:
                return
            if limit is not None and body.received > limit:
                self.conn.must_close = True
                raise HTTPError(413, f"request body too large: more than {limit} bytes")
            yield data

    async def json(self, limit: int = BODY_LIMIT):
        """The body parsed as JSON; None when empty."""
        raw = await self.read_body(limit)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise bad_request(f"invalid JSON: {error}") from None

    # taking the connection over

    @property
    def wants_upgrade(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower() or "upgrade" in self.headers

    async def stream(self, content_type: str, status: int = 200,
                     headers: list[tuple[str, str]] = (), defer: bool = False) -> "ChunkedStream":
        """Send the status and headers now; the body follows in chunks of unknown total length.

        ``defer``: keep the headers until the first chunk (or the end) and send them in the same
        write. One write instead of two for a short answer, and an error before any byte still
        gets its own status. Not for streams a client waits on before the first chunk (follow).
        """
        extra = [("Content-Type", content_type), *headers, ("Transfer-Encoding", "chunked")]
        self.stream_open = True
        if defer:
            self.pending_head = self.conn.head(status, extra)
        else:
            await self.conn.write_head(status, extra)
            self.started = True
        return ChunkedStream(self)

    def take_head(self) -> bytes:
        """A deferred stream's headers, once: they go out in front of what is written now."""
        head, self.pending_head = self.pending_head, b""
        if head:
            self.started = True
        return head

    def drop_stream(self) -> None:
        """Forget a deferred stream whose headers never went out: an error response replaces it."""
        self.pending_head = b""
        self.stream_open = False

    async def hijack(self, content_type: str) -> "Hijacked":
        """Answer 101 UPGRADED (200 without an Upgrade header) and hand over the raw connection.

        The header block is written and drained on its own, before any payload:
        docker-py reads the socket under http.client and can lose bytes that
        arrive together with the headers.
        """
        if self.wants_upgrade:
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {content_type}\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
        self.conn.writer.write(head.encode())
        await self.conn.writer.drain()
        self.started = True
        self.hijacked = True
        return Hijacked(self.conn)

    def watch_disconnect(self) -> asyncio.Event:
        """An event set when the client hangs up while we answer (a streaming response).

        HTTP clients do not half-close, so EOF on read means the client is gone.
        Bytes that arrive meanwhile (a pipelined request) are put back.
        """
        gone = asyncio.Event()

        async def watch():
            try:
                data = await self.conn.input.read(1)
            except (ConnectionError, OSError):
                data = b""
            if data:
                self.conn.input.pushback = data + self.conn.input.pushback
            else:
                gone.set()

        self.conn.watcher = asyncio.ensure_future(watch())
        return gone


class ChunkedStream:
    def __init__(self, request: Request):
        self.request = request
        self.writer = request.conn.writer

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.writer.write(self.request.take_head() + b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def end(self, data: bytes = b"") -> None:
        """The last chunk, if any, and the end of the body, in one write."""
        if self.request.stream_open:
            self.request.stream_open = False
            last = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
            self.writer.write(self.request.take_head() + last + b"0\r\n\r\n")
            await self.writer.drain()


class Hijacked:
    """The raw connection after a hijack: read the client's bytes, write ours, know when it is gone."""

    def __init__(self, conn: "Connection"):
        self.conn = conn
        self.writer = conn.writer

    async def read(self, size: int = READ_SIZE) -> bytes:
        """Client bytes; b"" once the client closed its write side (or all of the connection)."""
        try:
            return await self.conn.input.read(size)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)
            await self.writer.drain()

    def hung_up(self) -> bool:
        """Whether the client closed both directions (POLLHUP), not merely its write side."""
        sock = self.writer.get_extra_info("socket")
        if sock is None or self.writer.is_closing():
            return True
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLHUP | select.POLLERR)
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))

    async def until_hung_up(self, interval: float = 0.2) -> None:
        while not self.hung_up():
            await asyncio.sleep(interval)


# --- the connection ----------------------------------------------------------------


Handler = Callable[[Request], Awaitable["Response | None"]]


class Router:
    """Method + path pattern -> handler; ``{id}`` is one path segment, ``{name*}`` may hold slashes."""

    def __init__(self):
        self.routes: list[tuple[str, re.Pattern, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.+)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.routes.append((method, re.compile(f"^{regex}$"), handler))

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for route_method, regex, handler in self.routes:
            if route_method != method:
                continue
            match = regex.match(path)
            if match:
                return handler, match.groupdict()
        return None


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, router: Router):
        self.input = Input(reader)
        self.writer = writer
        self.router = router
        self.must_close = False
        self.watcher: asyncio.Future | None = None

    async def serve(self) -> None:
        try:
            while not self.must_close:
                request = await self._read_request()
                if request is None:
                    break
                await self._handle(request)
                if request.started and (request.hijacked or request.stream_open):
                    break
                if request.http_version == "HTTP/1.0" or request.headers.get("connection", "").lower() == "close":
                    break
                if not await request.body.drain(BODY_LIMIT):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, BrokenPipeError):
            pass
        except HTTPError as error:  # a request we could not even parse
            await self._send_quietly(error_response(error.status, error.message), head_only=False)
        finally:
            await self._stop_watcher()
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _read_request(self) -> Request | None:
        line = await self.input.readline()
        while line in (b"\r\n", b"\n"):  # stray CRLF between requests is allowed
            line = await self.input.readline()
        if not line:
            return None
        parts = line.decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.must_close = True
            raise bad_request("malformed HTTP request line")
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            line = await self.input.readline()
            size += len(line)
            if size > MAX_HEAD:
                self.must_close = True
                raise bad_request("request header too large")
            if not line:
                raise ConnectionResetError("client closed the connection in the middle of the headers")
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                self.must_close = True
                raise bad_request("malformed HTTP header line")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        return Request(self, parts[0].upper(), parts[1], parts[2], headers)

    async def _handle(self, request: Request) -> None:
        started = time.monotonic()
        try:
            await self._answer(request)
        finally:
            if access_log.isEnabledFor(logging.DEBUG):
                access_log.debug("%s %s %s %.1f ms", request.method, request.target,
                                 "hijacked" if request.hijacked else "", (time.monotonic() - started) * 1000)

    async def _answer(self, request: Request) -> None:
        head_only = request.method == "HEAD"
        try:
            response = await self._dispatch(request)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, BrokenPipeError):
            self.must_close = True
            return
        except Exception as error:  # noqa: BLE001 - every error becomes a response, bugs a 500
            known = status_of(error)
            if known is None:
                log.exception("%s %s failed", request.method, request.target)
                known = (500, f"internal error: {error.__class__.__name__}: {error}")
            if request.started:
                # Too late for a status: the stream ends abruptly so the client sees it broke.
                log.warning("%s %s failed after the response began: %s", request.method, request.target, known[1])
                self.must_close = True
                return
            request.drop_stream()
            response = error_response(*known)
        finally:
            await self._stop_watcher()
        if response is not None and not request.started:
            await self.send(response, head_only)
        elif request.stream_open and not request.hijacked and not self.must_close:
            await ChunkedStream(request).end()

    async def _dispatch(self, request: Request) -> Response | None:
        match = _VERSIONED.match(request.path)
        if match:
            wanted = (int(match.group(1)), int(match.group(2)))
            label = f"{wanted[0]}.{wanted[1]}"
            if wanted < _version(MIN_API_VERSION):
                return error_response(400, f"client version {label} is too old. Minimum supported API version is "
                                           f"{MIN_API_VERSION}, please upgrade your client to a newer version")
            if wanted > _version(MAX_API_VERSION):
                return error_response(400, f"client version {label} is too new. "
                                           f"Maximum supported API version is {MAX_API_VERSION}")
            request.api_version = wanted
            request.path = match.group(3)
        found = self.router.find(request.method, request.path)
        if found is None:
            return error_response(404, "page not found")
        handler, request.params = found
        return await handler(request)

    async def _stop_watcher(self) -> None:
        """Cancel the disconnect watcher and let it finish: the reader has one waiter at a time."""
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    @staticmethod
    def head(status: int, headers: list[tuple[str, str]]) -> bytes:
        """The status line and headers of a response, with the blank line after them."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in (*_common_headers(), *headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def write_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.writer.write(self.head(status, headers))
        await self.writer.drain()

    async def send(self, response: Response, head_only: bool = False) -> None:
        """Headers and body in one write: the client reads one message, not two."""
        headers = list(response.headers)
        if response.content_type:
            headers.insert(0, ("Content-Type", response.content_type))
        if response.status not in (101, 204, 304):
            headers.append(("Content-Length", str(len(response.body))))
        head = self.head(response.status, headers)
        with_body = response.body and not head_only and response.status not in (204, 304)
        self.writer.write(head + response.body if with_body else head)
        await self.writer.drain()

    async def _send_quietly(self, response: Response, head_only: bool) -> None:
        try:
            await self.send(response, head_only)
        except (ConnectionError, OSError):
            pass


# --- the socket ------------------------------------------------------------------------


def bind_unix_socket(path: str | os.PathLike, mode: int = 0o660) -> socket.socket:
    """A listening unix socket at ``path``: parent created, a stale socket replaced, ``mode`` set.

    A socket file another server still answers on is not taken over.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise RuntimeError(f"{path} exists and is not a socket")
        if answers(path):
            raise RuntimeError(f"another server is listening on {path}")
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        directory = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
        try:
            # Through /proc/self/fd: a path longer than sun_path's 107 bytes still binds.
            address = str(path) if len(str(path)) < 100 else f"/proc/self/fd/{directory}/{path.name}"
            old_umask = os.umask(0o177)
            try:
                server.bind(address)
            finally:
                os.umask(old_umask)
        finally:
            os.close(directory)
        os.chmod(path, mode)
        server.listen(512)
        server.setblocking(False)
    except BaseException:
        server.close()
        raise
    return server


def answers(path: Path) -> bool:
    """Something accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int] | None:
    """(uid, pid) of the process at the other end of a unix socket connection (SO_PEERCRED), if known."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
    except OSError:
        return None
    return uid, pid


async def serve(router: Router, sock: socket.socket) -> asyncio.AbstractServer:
    """Start accepting on ``sock``; each connection is served by its own task.

    The socket carries no user: whoever can open it may do anything (as with
    Docker's). What it did is audited as the peer's uid and pid, read once per
    connection from the kernel, so a client cannot claim another's.
    """

    async def on_connection(reader, writer):
        peer = peer_credentials(writer)
        with audit.origin(audit.peer_origin(*peer) if peer else "docker API"):
            await Connection(reader, writer, router).serve()

    return await asyncio.start_unix_server(on_connection, sock=sock, limit=MAX_HEAD)
