"""The web process's client of this host's Docker API socket (``BERTH_DOCKER_SOCKET``).

What the web cannot do with its own privileges it asks the API process for,
over HTTP/1.1 on the unix socket, one connection per request::

    request("POST", "/containers/<id>/exec", {...})   -> (201, {"Id": ...})
    hijack("/exec/<id>/start", {...})                 -> the raw stream, after "101 UPGRADED"

The socket is root-equivalent, as Docker's: whoever can open it may do
anything the API offers. Its answers' errors become the runtime's error
classes (404 NotFound, 409 Conflict, others BerthError), with the API's
message.
"""

from __future__ import annotations

import json
import socket

from django.conf import settings

from runtime.errors import BerthError, Conflict, NotFound

TIMEOUT = 30.0  # seconds for one answer; the exec itself, once hijacked, has none
HEAD_LIMIT = 64 * 1024


class APIUnavailable(BerthError):
    """No API answers on the socket (not started, or the web's user may not open it)."""


def _connect(timeout: float) -> socket.socket:
    path = settings.BERTH_DOCKER_SOCKET
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise APIUnavailable(f"the Docker API on {path} cannot be reached: {error.strerror or error}") from None
    return sock


def _send(sock: socket.socket, method: str, path: str, body: dict | None, extra: str = "") -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{extra}\r\n")
    sock.sendall(head.encode() + payload)


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers in lower case, the bytes read past the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more or len(data) > HEAD_LIMIT:
            raise BerthError("the Docker API closed the connection without an answer")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            more = sock.recv(65536)
            if not more:
                break
            rest += more
        return rest[:length]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return _dechunk(sock, rest)
    while more := sock.recv(65536):  # Connection: close
        rest += more
    return rest


def _dechunk(sock: socket.socket, data: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in data:
            data += sock.recv(65536) or b"0\r\n\r\n"
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        while len(data) < size + 2:
            more = sock.recv(65536)
            if not more:
                return body + data[:size]
            data += more
        body, data = body + data[:size], data[size + 2:]


def _error(status: int, body: bytes) -> BerthError:
    try:
        message = json.loads(body).get("message") or ""
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    message = message or f"the Docker API answered {status}"
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    return BerthError(message)


def request(method: str, path: str, body: dict | None = None, timeout: float = TIMEOUT) -> tuple[int, object]:
    """One request; (status, the JSON answer or None). An error status raises (see the module)."""
    sock = _connect(timeout)
    try:
        _send(sock, method, path, body, "Connection: close\r\n")
        status, headers, rest = _read_head(sock)
        data = _read_body(sock, headers, rest)
    except OSError as error:
        raise BerthError(f"the Docker API did not answer {method} {path}: {error}") from None
    finally:
        sock.close()
    if status >= 400:
        raise _error(status, data)
    return status, (json.loads(data) if data.strip() else None)


def hijack(path: str, body: dict) -> tuple[socket.socket, bytes]:
    """POST with "Upgrade: tcp" and take the connection over: (the blocking socket, bytes already read of the stream)."""
    sock = _connect(TIMEOUT)
    try:
        _send(sock, "POST", path, body, "Connection: Upgrade\r\nUpgrade: tcp\r\n")
        status, headers, rest = _read_head(sock)
        if status >= 400:
            raise _error(status, _read_body(sock, headers, rest))
        if status not in (101, 200):
            raise BerthError(f"the Docker API answered {status} to {path}")
    except OSError as error:
        sock.close()
        raise BerthError(f"the Docker API did not answer POST {path}: {error}") from None
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock, rest
