"""Console tests without the live stack: an in-memory channel layer, and a host whose tasks run inline.

``host`` points the settings at a state root of the suite's own (real runc,
conmon, overlayfs) and makes Celery run tasks in the calling thread, so
services and tasks are tested against the real runtime without a worker;
the live tests (tests/live.py) do the same through a real worker.
"""

import importlib
import os
import shutil
import time
from pathlib import Path

import pytest
import redis
from django.contrib.auth import get_user_model

from console.celery import app as celery_app
from console.dockerapi.api import DockerAPI
from runtime import Runtime, StateRoot
from runtime.baseimage import build_busybox
from runtime.errors import NoSuchContainer
from tests.conftest import remove_cgroup_parent, remove_state_root, unique
from tests.helpers.api_thread import ServerThread
from tests.helpers.fake_networking import Networking as FakeNetworking
from tests.live import _end, _free_port, _spawn

HOST = "test-host"


@pytest.fixture(autouse=True)
def in_memory_channels(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(scope="session")
def host_state():
    state = StateRoot(Path("/tmp") / unique(), unique("cg-"))
    engine = Runtime(state)
    build_busybox(engine.images)
    try:
        yield state
    finally:
        for container in engine.list():
            engine.remove(container.id, force=True)
        engine.gc()
        remove_state_root(state.root)
        remove_cgroup_parent(state.cgroup_parent)


@pytest.fixture(scope="session")
def fake_network_names():
    """The stand-in networking layer's table and namespace prefix for the session; its namespaces go at the end."""
    names = {"table": unique("nft-"), "netns_prefix": unique("ns-") + "-"}
    try:
        yield names
    finally:
        FakeNetworking(**names).teardown()


@pytest.fixture
def networking(settings, fake_network_names):
    """The networking layer the tasks call: the stand-in (real empty namespaces, the rest recorded)."""
    settings.BERTH_NETWORKING = "tests.helpers.fake_networking"
    settings.BERTH_NFT_TABLE = fake_network_names["table"]
    settings.BERTH_NETNS_PREFIX = fake_network_names["netns_prefix"]
    settings.BERTH_DEFAULT_BRIDGE = "bt-default0"
    from console.runtime_access import get_networking

    net = get_networking()
    yield net
    net.teardown()


@pytest.fixture
def host(settings, host_state, db, networking):
    """The runtime of this test's host; tasks run inline. Containers the test made are removed after it."""
    settings.BERTH_ROOT = host_state.root
    settings.BERTH_CGROUP_PARENT = host_state.cgroup_parent
    settings.BERTH_HOST = HOST
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = celery_app.conf.task_eager_propagates = True
    engine = Runtime(host_state)
    before = {c.id for c in engine.list()}
    try:
        yield engine
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved
        for container in engine.list():
            if container.id not in before:
                try:
                    engine.remove(container.id, force=True)
                except NoSuchContainer:
                    pass


@pytest.fixture
def busybox(host):
    """busybox:latest on record, as the set-up's syncimages leaves it."""
    from console import services

    tags_before = _tags(host)
    services.sync_images()
    yield services.get_image("busybox")
    for tag in _tags(host) - tags_before:  # the store outlives the test: its tags must not
        host.images.untag(tag)


def _tags(engine: Runtime) -> set[str]:
    return {tag for image in engine.images.list() for tag in image.repo_tags}


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user("alice", password="s3cret-pass", is_staff=True, is_superuser=True)


@pytest.fixture
def viewer(db):
    """A user in no group: read-only."""
    return get_user_model().objects.create_user("vic", password="pw")


@pytest.fixture
def signed_in(client, admin):
    """The test client, signed in as the admin."""
    client.force_login(admin)
    return client


@pytest.fixture
def predefined_networks(transactional_db):
    """bridge, host and none, as the migration makes them: a transactional test's flush removed them."""
    from django.apps import apps

    importlib.import_module("console.migrations.0002_predefined_networks").create_networks(apps, None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A Redis of the session's own, for what keeps state in Redis outside the live stack (the collector)."""
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    server = _spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", str(folder)], dict(os.environ), folder / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and server.poll() is None, (folder / "redis.log").read_text()
            time.sleep(0.02)
    try:
        yield url
    finally:
        client.close()
        _end(server, timeout=5)


@pytest.fixture
def stats_redis(settings, redis_server):
    """``settings.REDIS_URL`` pointed at ``redis_server``, emptied for the test."""
    settings.REDIS_URL = redis_server
    redis.Redis.from_url(redis_server).flushdb()
    return redis_server


@pytest.fixture
def docker_api(host, settings):
    """The Docker API (real services and runtime) in a thread, on a socket the console's settings name: the
    browser shell runs its exec through it."""
    folder = Path("/tmp") / unique("shell-api-")
    folder.mkdir()
    settings.BERTH_DOCKER_SOCKET = str(folder / "docker.sock")
    try:
        with ServerThread(DockerAPI(), str(folder / "docker.sock")) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)
