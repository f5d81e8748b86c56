"""A live Berth for tests: its own Redis, SQLite file, state root, cgroup parent and Celery worker.

Fixtures (tests/conftest.py loads this module as a plugin, so every test can use them):

``live_stack`` (session)
    Starts everything once and yields a ``LiveStack``; ends it after the session.
``live`` (function)
    ``live_stack`` with this test process pointed at it for the test: Django
    settings (BERTH_ROOT, BERTH_HOST, ...), the ``default`` database connection,
    Celery's broker and result backend, the Channels layer; database access
    allowed. Containers and rows the test made are removed after it.

Mark tests that use them ``@pytest.mark.live`` (``-m live`` selects them,
``-m "not live"`` leaves them out).

The database is a SQLite file inside the state root, migrated by
``manage.py migrate`` in a subprocess, not pytest-django's test database: the
worker is another process and must see committed rows. ``live`` swaps the
test thread's ``default`` connection to that file; do not combine it with
``db`` or ``transactional_db`` (their rollbacks and flushes are for the other
database). Django's connections are per thread: only the test's own thread
sees the live database, so run servers (web, API) as subprocesses with
``env`` rather than in threads of the test process. Services called from a
test wait for the real worker, as the API and the pages do.

``LiveStack``:

    root, cgroup_parent, host     the state root, the cgroup parent, BERTH_HOST (queue host.<host>)
    redis_url, database, logs     Redis URL, the SQLite file, the folder of redis.log and worker.log
    env                           os.environ plus what a Berth process needs to join this stack
                                  (BERTH_ROOT, BERTH_HOST, BERTH_CGROUP_PARENT, REDIS_URL,
                                  DATABASE_URL, DJANGO_SETTINGS_MODULE, BERTH_TASK_TIMEOUT, and the
                                  networking names below)
    nft_table, netns_prefix       the stack's own nftables table and namespace prefix
    default_bridge, address_pools its default network's device, the pools subnets come from
    runtime()                     a runtime.Runtime over the stack's state root
    manage(*args)                 runs manage.py with ``env``; the CompletedProcess (check=True)
    start_worker(), stop_worker() the worker alone (restart tests); worker_pid, worker_alive,
                                  worker_answers() (a ping through the broker: consuming, not stuck)
    kill_worker()                 SIGKILL to the worker and its pool processes (its session's process tree;
                                  conmon runs in sessions of its own and is spared), as an OOM kill or
                                  ``systemctl kill -s KILL`` would end it
    kill_redis(), start_redis()   SIGKILL to Redis (no persistence: queues and results are lost), and a
                                  fresh one on the same port
    use_in_this_process()         the context manager ``live`` uses
    networking()                  a runtime.network.Networking over the stack's table and prefix
    stop()                        ends the worker and Redis (by PID), removes every container,
                                  every bridge, veth, namespace and nft element of the stack,
                                  the cgroup parent and the state root

After each test, ``live`` removes the containers and the networks the test
made and has the worker collect what no row owns (veths, namespaces,
published ports, bridges), also when the test failed.

Processes started here die with the test process (PR_SET_PDEATHSIG), and
are otherwise ended by their PID only.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kombu import pools as kombu_pools

from runtime import Runtime, StateRoot
from runtime.errors import NoSuchContainer
from tests.conftest import remove_cgroup_parent, remove_state_root, short_unique, unique

PROJECT = Path(__file__).resolve().parent.parent
TASK_TIMEOUT = 60
_PR_SET_PDEATHSIG = 1
# The stack's networks are picked from here (/24s no host route covers), apart from the
# runtime's own tests (172.30.0.0/16) and from a Berth started by hand (172.17.0.0/16...).
ADDRESS_POOLS = [f"10.198.{n}.0/24" for n in range(256)]


def pytest_configure(config):
    config.addinivalue_line("markers", "live: needs the live stack (Redis, a Celery worker, real runc)")


class LiveStack:
    def __init__(self):
        self.root = Path("/tmp") / unique("live-")
        self.cgroup_parent = unique("cg-")
        self.host = unique("host-")
        self.logs = self.root / "logs"
        self.database = self.root / "berth.sqlite3"
        self.nft_table = unique("nft-")
        self.netns_prefix = unique("ns-") + "-"
        self.default_bridge = short_unique("b")
        self.address_pools = list(ADDRESS_POOLS)
        self.redis_url = ""
        self.redis_port = 0
        self.env: dict[str, str] = {}
        self._redis: subprocess.Popen | None = None
        self._worker: subprocess.Popen | None = None

    # --- starting ------------------------------------------------------------------

    def start(self) -> "LiveStack":
        self.logs.mkdir(parents=True, mode=0o700)
        self.redis_port = port = _free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "BERTH_ROOT": str(self.root),
            "BERTH_HOST": self.host,
            "BERTH_CGROUP_PARENT": self.cgroup_parent,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": f"sqlite:///{self.database}",
            "BERTH_TASK_TIMEOUT": str(TASK_TIMEOUT),
            "BERTH_NFT_TABLE": self.nft_table,
            "BERTH_NETNS_PREFIX": self.netns_prefix,
            "BERTH_DEFAULT_BRIDGE": self.default_bridge,
            "BERTH_ADDRESS_POOLS": ",".join(self.address_pools),
            "BERTH_NETWORKING": "runtime.network",
            "PYTHONPATH": str(PROJECT),
        }
        self._start_redis(port)
        self.manage("migrate", "--noinput", "-v", "0")
        subprocess.run([sys.executable, "-m", "runtime.baseimage"], env=self.env, cwd=PROJECT, check=True,
                       capture_output=True)
        self.start_worker()
        return self

    def _start_redis(self, port: int) -> None:
        directory = self.root / "redis"
        directory.mkdir(mode=0o700, exist_ok=True)
        self._redis = _spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(directory), "--daemonize", "no",
                              "--logfile", str(self.logs / "redis.log")], self.env, self.logs / "redis.out")
        import redis

        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._redis.poll() is not None:
                    raise RuntimeError(f"redis-server did not start: {_tail(self.logs / 'redis.log')}")
                time.sleep(0.02)
            finally:
                client.close()

    def start_worker(self) -> None:
        """Start the worker and wait until it answers a task (syncimages goes through it).

        The prefork pool, as scripts/start runs it: netns work in a forked pool process is what broke once.
        """
        self._worker = _spawn(
            [sys.executable, "-m", "celery", "-A", "console", "worker", "-Q", f"host.{self.host}",
             "--pool=prefork", "--concurrency=4", "-l", "warning", "-n", f"{self.host}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            self.env, self.logs / "worker.log",
        )
        try:
            self.manage("syncimages")
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"the worker did not answer: {error.stderr}\n{_tail(self.logs / 'worker.log')}")

    @property
    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.poll() is None

    def worker_answers(self, timeout: float = 1.0) -> bool:
        """Does the worker answer a ping through the broker (alive and consuming, not stuck)?"""
        from console.celery import app

        if not self.worker_alive:
            return False
        try:
            replies = app.control.ping(timeout=timeout)
        except Exception:
            return False
        return any(name.startswith(f"{self.host}@") for reply in replies for name in reply)

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker else None

    def stop_worker(self) -> None:
        _end(self._worker, timeout=20)
        self._worker = None

    def kill_worker(self) -> None:
        if self._worker is None:
            return
        for pid in _session_tree(self._worker.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._worker.wait(10)
        self._worker = None

    def kill_redis(self) -> None:
        if self._redis is not None:
            self._redis.kill()
            self._redis.wait(10)
            self._redis = None

    def start_redis(self) -> None:
        """Redis again on the port the stack's processes know (they reconnect by themselves)."""
        self._start_redis(self.redis_port)

    # --- using it --------------------------------------------------------------------

    def runtime(self) -> Runtime:
        return Runtime(StateRoot(self.root, self.cgroup_parent))

    def networking(self):
        from runtime.network import Networking

        return Networking(table=self.nft_table, netns_prefix=self.netns_prefix,
                          state_dir=self.root / "network" / self.nft_table, pools=self.address_pools)

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(PROJECT / "manage.py"), *args], env=self.env, cwd=PROJECT,
                              check=True, capture_output=True, text=True, timeout=TASK_TIMEOUT + 30)

    @contextlib.contextmanager
    def use_in_this_process(self):
        from django.test import override_settings

        overrides = {
            "BERTH_ROOT": self.root, "BERTH_HOST": self.host, "BERTH_CGROUP_PARENT": self.cgroup_parent,
            "BERTH_TASK_TIMEOUT": TASK_TIMEOUT, "REDIS_URL": self.redis_url,
            "BERTH_NFT_TABLE": self.nft_table, "BERTH_NETNS_PREFIX": self.netns_prefix,
            "BERTH_DEFAULT_BRIDGE": self.default_bridge, "BERTH_ADDRESS_POOLS": self.address_pools,
            "BERTH_NETWORKING": "runtime.network",
            "CELERY_BROKER_URL": self.redis_url, "CELERY_RESULT_BACKEND": self.redis_url,
            "CHANNEL_LAYERS": {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [{"address": self.redis_url, "socket_timeout": None}],
                                                      "prefix": "berth"}}},
        }
        with override_settings(**overrides), _database(self.database), _celery(self.redis_url):
            yield self

    # --- ending ---------------------------------------------------------------------------

    def stop(self) -> None:
        try:
            self.stop_worker()
            if self.root.exists():
                engine = self.runtime()
                for container in engine.list():
                    with contextlib.suppress(NoSuchContainer):
                        engine.remove(container.id, force=True)
                engine.gc()
        finally:
            _end(self._redis, timeout=10)
            self._redis = None
            try:
                self._tear_down_networking()
            finally:
                remove_state_root(self.root)
                remove_cgroup_parent(self.cgroup_parent)

    def _tear_down_networking(self) -> None:
        """Every bridge, veth, namespace and port of the stack (found by its alias, prefix, table), then the table."""
        net = self.networking()
        try:
            net.gc(set(), set(), set(), set())
        finally:
            net.teardown()


@contextlib.contextmanager
def _database(path: Path):
    """The test thread's ``default`` connection, on the stack's SQLite file for a while."""
    from django.db import connections

    previous = connections["default"]
    settings_dict = copy.deepcopy(previous.settings_dict)
    settings_dict["NAME"] = str(path)
    connection = previous.__class__(settings_dict, alias="default")
    connections["default"] = connection
    try:
        yield
    finally:
        connection.close()
        connections["default"] = previous


@contextlib.contextmanager
def _celery(url: str):
    """Celery's broker and result backend on the stack's Redis for a while."""
    from console.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "result_backend", "task_always_eager")}
    app.conf.update(broker_url=url, result_backend=url, task_always_eager=False)
    _drop_celery_connections(app)
    try:
        yield
    finally:
        app.conf.update(saved)
        _drop_celery_connections(app)


def _drop_celery_connections(app) -> None:
    # Celery keeps the broker pool and the result backend from their first use (celery 5.7 attributes);
    # kombu keeps its pools per URL in a registry of its own.
    kombu_pools.reset()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None
    app._local = threading.local()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_stack():
    for program in ("redis-server", "runc", "conmon"):
        if not any((Path(d) / program).exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
            pytest.skip(f"{program} is not installed (scripts/setup --deps installs it)")
    stack = LiveStack()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def live(live_stack, django_db_blocker):
    engine = live_stack.runtime()
    with django_db_blocker.unblock(), live_stack.use_in_this_process():
        from console.models import Container, Network

        rows_before = set(Container.objects.values_list("pk", flat=True))
        networks_before = set(Network.objects.values_list("pk", flat=True))
        containers_before = {c.id for c in engine.list()}
        try:
            yield live_stack
        finally:
            for container in engine.list():
                if container.id not in containers_before:
                    with contextlib.suppress(NoSuchContainer):
                        engine.remove(container.id, force=True)
            Container.objects.exclude(pk__in=rows_before).delete()
            _remove_networks(Network.objects.exclude(pk__in=networks_before))


def _remove_networks(networks) -> None:
    """The test's networks through the worker (their bridges, the DNS's sockets), then whatever no row
    owns any more collected: veths, namespaces and ports of the containers removed above."""
    from console import services

    for network in networks:
        try:
            services.remove_network(network.id)
        except Exception:
            network.delete()
    services.reconcile_network()


# --- processes ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def _end(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM to that PID, SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _session_tree(root: int) -> list[int]:
    """``root`` and its descendants that share its session, parents first."""
    children: dict[int, list[int]] = {}
    sessions: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # The fields after the command's closing parenthesis: state, ppid, pgrp, session...
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        sessions[int(entry)] = int(fields[3])
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += [child for child in children.get(pid, []) if sessions.get(child) == sessions.get(root)]
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
