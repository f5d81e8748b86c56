"""Berth's Redis as scripts/start runs it (scripts/redis): a unix socket that root and the web's user may
open and no other local user may, since whoever can queue a Celery task commands the root worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from kombu import Connection

from console.settings import celery_redis_url
from tests.conftest import unique

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def berth_redis():
    """scripts/redis with a run folder, log folder and state root of the test's own; the socket's path."""
    base = Path("/tmp") / unique("redis-")
    env = dict(os.environ, BERTH_ROOT=str(base / "root"), BERTH_RUN_DIR=str(base / "run"),
               BERTH_LOG_DIR=str(base / "log"), BERTH_UPLOAD_DIR=str(base / "root" / "uploads"))
    env.pop("REDIS_URL", None)
    env.pop("BERTH_REDIS_SOCKET", None)
    try:
        subprocess.run([ROOT / "scripts" / "web-user"], env=env, check=True, capture_output=True)
        subprocess.run([ROOT / "scripts" / "redis"], env=env, check=True, capture_output=True, timeout=60)
        yield base / "run" / "redis" / "redis.sock"
    finally:
        pid_file = base / "run" / "redis.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def ping_as(user: str, group: str, socket_path: Path) -> subprocess.CompletedProcess:
    as_user = [] if user == "root" else ["setpriv", "--reuid", user, "--regid", group, "--init-groups"]
    return subprocess.run([*as_user, "redis-cli", "-s", str(socket_path), "ping"], capture_output=True, text=True,
                          timeout=10)


def test_root_and_the_web_user_reach_berths_redis_and_no_one_else_does(berth_redis):
    assert ping_as("root", "root", berth_redis).stdout.strip() == "PONG"
    assert ping_as("berth-web", "berth", berth_redis).stdout.strip() == "PONG"
    stranger = ping_as("nobody", "nogroup", berth_redis)
    assert "PONG" not in stranger.stdout
    assert "Permission denied" in stranger.stdout + stranger.stderr


def test_berths_redis_listens_on_no_tcp_port(berth_redis):
    pid = (berth_redis.parent.parent / "redis.pid").read_text().strip()
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    assert f"pid={pid}," not in listening


def test_celery_reaches_a_redis_on_a_unix_socket_through_the_settings_url(berth_redis):
    url = celery_redis_url(f"unix://{berth_redis}?db=3")
    assert url == f"redis+socket://{berth_redis}?virtual_host=3"
    with Connection(url) as connection:
        queue = connection.SimpleQueue(unique("q-"))
        queue.put({"task": "ping"})
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.payload == {"task": "ping"}


def test_a_tcp_redis_url_is_celerys_as_it_is():
    assert celery_redis_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
