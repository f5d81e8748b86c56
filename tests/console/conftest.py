"""Console tests without the live stack: an in-memory channel layer, and a host whose tasks run inline.

``host`` points the settings at a state root of the suite's own (real runc,
conmon, overlayfs) and makes Celery run tasks in the calling thread, so
services and tasks are tested against the real runtime without a worker;
the live tests (tests/live.py) do the same through a real worker.
"""

import importlib
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from console.celery import app as celery_app
from runtime import Runtime, StateRoot
from runtime.baseimage import build_busybox
from runtime.errors import NoSuchContainer
from tests.conftest import remove_cgroup_parent, remove_state_root, unique
from tests.helpers.fake_networking import Networking as FakeNetworking

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
def predefined_networks(transactional_db):
    """bridge, host and none, as the migration makes them: a transactional test's flush removed them."""
    from django.apps import apps

    importlib.import_module("console.migrations.0002_predefined_networks").create_networks(apps, None)
