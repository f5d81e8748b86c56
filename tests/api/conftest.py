"""The Docker API served in-process over fakes, and a raw HTTP client to talk to it."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from console.dockerapi.api import DockerAPI
from console.dockerapi.events import LocalEvents
from tests.conftest import unique
from tests.helpers.api_thread import ServerThread

from .fakes import FakeRuntime, FakeServices, FakeStore



@pytest.fixture
def root():
    path = Path("/tmp") / unique("api-")
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def events():
    return LocalEvents()


@pytest.fixture
def services(events):
    return FakeServices(events)


@pytest.fixture
def fake_runtime(root):
    return FakeRuntime(root / "state")


@pytest.fixture
def api(services, fake_runtime, events, root):
    store = FakeStore()
    services.store = store
    return DockerAPI(services=services, runtime=fake_runtime, events=events, root=root / "state",
                     store=store, stats_interval=0.1, poll_interval=0.2)


@pytest.fixture
def server(api, root):
    running = ServerThread(api, str(root / "docker.sock")).start()
    yield running
    running.stop()


# --- a small HTTP client over the raw socket ------------------------------------------------------


class RawClient:
    def __init__(self, path: str, timeout: float = 10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        head = [f"{method} {path} HTTP/1.1", "Host: docker"]
        headers = dict(headers or {})
        if body is not None and "Transfer-Encoding" not in headers:
            headers.setdefault("Content-Length", str(len(body)))
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def readline(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("closed before a full line")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("closed before the whole body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def response(self, head_only: bool = False):
        """(status, headers lowercased, body) of the next response; the body is read per its framing."""
        status_line = self.readline().decode()
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = self.readline()
            if not line:
                break
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_only or status in (101, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self.readline().split(b";")[0], 16)
                if size == 0:
                    self.readline()
                    break
                body += self.read_exactly(size)
                self.readline()
            return status, headers, body
        return status, headers, self.read_exactly(int(headers.get("content-length", "0")))

    def json(self, method: str, path: str, payload=None):
        body = None if payload is None else json.dumps(payload).encode()
        self.request(method, path, body, {"Content-Type": "application/json"} if body is not None else None)
        status, headers, data = self.response(head_only=method == "HEAD")
        is_json = data.strip() and "json" in headers.get("content-type", "")
        return status, headers, (json.loads(data) if is_json else data)


@pytest.fixture
def client(server):
    made = []

    def connect(timeout: float = 10) -> RawClient:
        connection = RawClient(server.path, timeout)
        made.append(connection)
        return connection

    yield connect
    for connection in made:
        connection.close()


# --- the real thing: the API as its own process over the live stack (tests/live.py) ------------------

@pytest.fixture(scope="session")
def docker_api(live_stack):
    """``manage.py dockerapi`` on a socket inside the live stack's state root; ended by its PID."""
    from tests.browser.web import serving_docker_api

    with serving_docker_api(live_stack, live_stack.root / "docker.sock") as path:
        yield path


@pytest.fixture
def docker(live, docker_api, tmp_path):
    """Run the real docker CLI against Berth: ``docker("ps", "-a")`` -> CompletedProcess (text)."""
    from tests.browser.web import DOCKER, docker_cli

    if not DOCKER.exists():
        pytest.skip(f"the docker CLI is not installed at {DOCKER}")
    return docker_cli(docker_api, tmp_path)


@pytest.fixture
def docker_client(live, docker_api):
    """A docker-py client on Berth's socket; closed after the test."""
    import docker as docker_py

    client = docker_py.DockerClient(base_url=f"unix://{docker_api}", timeout=60)
    yield client
    client.close()
