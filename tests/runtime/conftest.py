"""A real runtime (runc, conmon, overlayfs) over a state root of the suite's own."""

import subprocess
from pathlib import Path

import pytest

from runtime import ContainerSpec, Runtime, StateRoot
from runtime.baseimage import build_busybox
from tests.conftest import remove_cgroup_parent, remove_state_root, unique


@pytest.fixture(scope="session")
def engine():
    # Short paths: conmon's attach socket lives under the state root.
    state = StateRoot(Path("/tmp") / unique(), unique("cg-"))
    runtime = Runtime(state)
    build_busybox(runtime.images)
    try:
        yield runtime
    finally:
        for container in runtime.list():
            runtime.remove(container.id, force=True)
        runtime.gc()
        remove_state_root(state.root)
        remove_cgroup_parent(state.cgroup_parent)


@pytest.fixture
def run(engine):
    """Create and start a busybox container; every one made is removed after the test."""
    made = []

    def _run(*cmd, start=True, **options):
        spec = ContainerSpec(image=options.pop("image", "busybox"), cmd=list(cmd) or None, **options)
        container = engine.create(spec)
        made.append(container.id)
        if start:
            engine.start(container.id)
        return engine.get(container.id)

    yield _run
    for container_id in made:
        try:
            engine.remove(container_id, force=True)
        except Exception:
            pass


@pytest.fixture
def netns():
    """An empty network namespace of the test's own (what the networking layer gives a container); its path."""
    name = unique("ns-")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
