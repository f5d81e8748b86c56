"""The two engines the suite compares, each started by the benchmark and stopped after it.

``Berth``: a live stack of its own (tests/live.py: Redis, a Celery worker, a SQLite file, a state
root, its own nft table and default bridge), daphne, and ``manage.py dockerapi`` on a socket of its
own. Its networking is real: bridges, veths, nft DNAT.

``Dockerd``: Debian's dockerd (the yardstick, never a dependency) on its own socket, data root,
exec root and cgroup parent, with a Linux bridge of its own (``bbd-<tag>``, 10.199.x.1/24) and
``--iptables=true``. What it adds to the host's iptables(-nft) tables is undone after it stops from
a snapshot taken before it started (kept in its folder, so the next run undoes a killed one's).

Everything is named ``berth-bench-...`` (folders, cgroup parents, nft tables) or ``bbd-``/``bbb``
(links), so ``leftovers.remove_all()`` finds what a killed run left.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from runtime.baseimage import busybox_layer
from runtime.mounts import mount_points, unmount

from . import hostnet
from .common import exclusive

DOCKER_CLI = "/usr/local/bin/docker" if Path("/usr/local/bin/docker").exists() else (shutil.which("docker") or "docker")
BENCH_PREFIX = "berth-bench-"
TMP = Path("/tmp")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Engine:
    """What a benchmark needs of either engine: a name, a socket for the docker CLI, its processes."""

    name = ""
    socket = ""

    def docker(self, *args: str, check: bool = True, capture: bool = True,
               stdout=None, timeout: float = 600) -> subprocess.CompletedProcess:
        """The docker CLI against this engine's socket."""
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        return subprocess.run([DOCKER_CLI, *args], env=env, check=check, stdin=subprocess.DEVNULL,
                              stdout=stdout if stdout is not None else (subprocess.PIPE if capture else None),
                              stderr=subprocess.PIPE if capture else None, text=stdout is None,
                              timeout=timeout)

    def timed(self, *args: str) -> float:
        """Seconds the whole CLI process took, its output thrown away (what a user waits for)."""
        began = time.perf_counter()
        self.docker(*args, stdout=subprocess.DEVNULL)
        return time.perf_counter() - began

    def timed_requests(self, *paths: str) -> float:
        """Seconds for GETs of ``paths`` on one connection, each body read to its end: the engine's
        share of a CLI command, without the CLI's own start-up."""
        connection = _UnixHTTPConnection(self.socket)
        try:
            began = time.perf_counter()
            for path in paths:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{self.name}: GET {path} answered {response.status}")
            return time.perf_counter() - began
        finally:
            connection.close()

    def process_ids(self) -> set[int]:
        raise NotImplementedError


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


# --- Berth ------------------------------------------------------------------------------------------


class Berth(Engine):
    name = "Berth"

    def __init__(self):
        self.stack = None
        self.web = None
        self.api = None
        self._run_lock = None

    def start(self) -> "Berth":
        from tests.browser.web import start_docker_api, start_web_server
        from tests.conftest import _hold_run_lock
        from tests.live import LiveStack

        # The stack is named like a test run's: hold that run's lock as a pytest session does, or a
        # test session starting meanwhile takes it for a killed run's and removes it.
        self._run_lock = _hold_run_lock()
        self.stack = LiveStack()
        self.stack.start()
        self.web, self.url = start_web_server(self.stack)
        self.socket = str(self.stack.root / "docker.sock")
        self.api = start_docker_api(self.stack, Path(self.socket))
        return self

    def process_ids(self) -> set[int]:
        """Worker (and its pool), web, API, Redis, and every conmon: not the containers' own processes."""
        servers = [self.stack.worker_pid, self.web.pid, self.api.pid, self.stack._redis.pid]
        found = hostnet.descendants(servers) | hostnet.processes_mentioning(str(self.stack.root))
        return {pid for pid in found if self.stack.cgroup_parent not in hostnet.cgroups_of(pid)}

    def stop(self) -> None:
        from tests.browser.web import stop_server
        from tests.conftest import RUN_ID, _lock_path

        try:
            for server in (self.api, self.web):
                if server is not None:
                    stop_server(server)
            if self.stack is not None:
                self.stack.stop()
        finally:
            if self._run_lock is not None:
                self._run_lock.close()
                _lock_path(RUN_ID).unlink(missing_ok=True)


# --- Docker -----------------------------------------------------------------------------------------


class Dockerd(Engine):
    """A throwaway Docker daemon with a bridge and iptables of its own, undone after."""

    name = "Docker"

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.root = TMP / f"{BENCH_PREFIX}dockerd-{self.tag}"
        self.socket = str(self.root / "docker.sock")
        self.bridge = f"bbd-{self.tag}"
        self.cgroup_parent = f"{BENCH_PREFIX}dockerd-{self.tag}"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("dockerd") is not None

    def start(self) -> "Dockerd":
        self.root.mkdir(mode=0o700)
        hostnet.save_snapshot(self.root)
        subnet = hostnet.free_subnet([f"10.199.{n}.0/24" for n in range(1, 255)])
        hostnet.add_bridge(self.bridge, f"{subnet.network_address + 1}/{subnet.prefixlen}")
        log = open(self.root / "dockerd.log", "wb")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "-H", f"unix://{self.socket}",
             "--bridge", self.bridge, "--iptables=true", "--ip-masq=true", "--ip6tables=false",
             "--cgroup-parent", self.cgroup_parent, "--storage-driver", "overlay2"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while self.docker("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"dockerd did not start; see {self.root / 'dockerd.log'}")
            time.sleep(0.2)
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        subprocess.run([DOCKER_CLI, "import", "--change", 'CMD ["sh"]', "-", "busybox:latest"],
                       input=busybox_layer(), env=env, check=True, stdout=subprocess.DEVNULL)
        return self

    def process_ids(self) -> set[int]:
        """dockerd, its containerd, docker-proxies and the containerd-shims: not the containers' processes."""
        found = hostnet.descendants([self.process.pid]) | hostnet.processes_mentioning(str(self.root))
        return {pid for pid in found if self.cgroup_parent not in hostnet.cgroups_of(pid)}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        remove_dockerd_leftovers(self.root)


def remove_dockerd_leftovers(root: Path) -> None:
    """After its dockerd ended (or was killed): processes, containers, mounts, bridge, iptables, folder."""
    tag = root.name.rsplit("-", 1)[1]
    hostnet.kill_processes_mentioning(str(root))
    hostnet.remove_cgroup_parent(f"{BENCH_PREFIX}dockerd-{tag}")
    for point in sorted(mount_points(root), reverse=True):
        unmount(point)
    hostnet.remove_bridge_and_ports(f"bbd-{tag}")
    hostnet.restore_snapshot(root)
    shutil.rmtree(root, ignore_errors=True)


def start_engines(with_docker: bool) -> tuple[Berth, Dockerd | None]:
    """Berth, then Docker when wanted and installed; on a failure, what started is stopped."""
    berth = Berth()
    docker = Dockerd() if with_docker and Dockerd.available() else None
    try:
        berth.start()
        if docker is not None:
            docker.start()
    except BaseException:
        stop_engines(berth, docker)
        raise
    return berth, docker


def measured_on_both(measure, *args):
    """``measure(engines, *args)`` under the bench lock, with Berth and (when installed) Docker started
    for it and stopped after: what each benchmark run on its own does."""
    with exclusive():
        berth, docker = start_engines(with_docker=True)
        try:
            return measure([engine for engine in (berth, docker) if engine], *args)
        finally:
            stop_engines(berth, docker)


def stop_engines(berth: Berth | None, docker: Dockerd | None) -> None:
    try:
        if docker is not None:
            docker.stop()
    finally:
        if berth is not None:
            berth.stop()


def ruleset_json() -> str:
    return json.dumps(hostnet.comparable_ruleset(), indent=1, sort_keys=True)
