"""Services through the real worker: Redis, Celery, the exit watcher, runc. What the API and pages get."""

import hashlib
import io
import json
import time

import pytest

from console import services
from console.models import Container, Image, Operation
from runtime.errors import ContainerRunning, InvalidValue, NameInUse, NoSuchContainer, NoSuchImage, StartFailed
from tests.console.test_services import rootfs_tar

pytestmark = pytest.mark.live


def create(name=None, **body):
    return services.create_container({"Image": "busybox", **body}, name=name)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_container_lives_its_whole_life_through_the_worker(live):
    container = create("web", Cmd=["sleep", "1000"])
    assert container.state == "created" and live.runtime().get("web").id == container.id
    container, started = services.start_container("web")
    assert started and container.state == "running"
    assert live.runtime().get("web").state.pid == container.pid
    assert [c.name for c in services.list_containers()] == ["web"]
    with pytest.raises(ContainerRunning):
        services.remove_container("web")
    container, was_running = services.stop_container("web", timeout=1)
    # PID 1's own output says why, should it have ended before the stop (a runtime error is printed there).
    said = b"".join(record.data for record in live.runtime().logs(container.id)).decode(errors="replace")
    assert (was_running, container.state, container.exit_code, said) == (True, "exited", 137, "")
    container, started = services.start_container("web")
    assert started and container.state == "running"
    services.remove_container("web", force=True)
    assert not Container.objects.filter(name="web").exists()
    with pytest.raises(NoSuchContainer):
        live.runtime().get(container.id)
    actions = list(Operation.objects.filter(target_id=container.id).order_by("created", "pk")
                   .values_list("action", "state"))
    assert actions == [("container.create", "done"), ("container.start", "done"), ("container.remove", "failed"),
                       ("container.stop", "done"), ("container.start", "done"), ("container.remove", "done")]


def test_run_rm_leaves_nothing_once_pid_1_exits(live):
    container = create(Cmd=["echo", "hi"], HostConfig={"AutoRemove": True})
    services.start_container(container.id)
    wait_for(lambda: not Container.objects.filter(pk=container.id).exists())
    with pytest.raises(NoSuchContainer):
        live.runtime().get(container.id)


def test_an_exit_code_reaches_the_row(live):
    container = create(Cmd=["sh", "-c", "exit 3"])
    services.start_container(container.id)
    wait_for(lambda: Container.objects.get(pk=container.id).state == "exited")
    assert Container.objects.get(pk=container.id).exit_code == 3


def test_kill_sends_the_signal_and_the_exit_is_stored(live):
    container = create(Cmd=["sleep", "1000"])
    services.start_container(container.id)
    container = services.kill_container(container.id)
    assert container.state == "exited" and container.exit_code == 137


def test_a_missing_command_fails_the_start_and_run_rm_leaves_nothing(live):
    kept = create(Cmd=["nosuchcmd"])
    with pytest.raises(StartFailed) as raised:
        services.start_container(kept.id)
    assert raised.value.exit_code == 127
    kept.refresh_from_db()
    assert kept.state == "created" and kept.exit_code == 127
    removed = create(Cmd=["nosuchcmd"], HostConfig={"AutoRemove": True})
    with pytest.raises(StartFailed):
        services.start_container(removed.id)
    assert not Container.objects.filter(pk=removed.id).exists()
    with pytest.raises(NoSuchContainer):
        live.runtime().get(removed.id)


def test_a_name_in_use_and_bad_input_leave_no_row_and_no_container(live):
    create("taken")
    on_host = {c.id for c in live.runtime().list()}
    rows = Container.objects.count()
    with pytest.raises(NameInUse):
        create("taken")
    with pytest.raises(InvalidValue):
        create(HostConfig={"NetworkMode": "container:"})
    with pytest.raises(NoSuchImage):
        create(Image="nosuch:1")
    assert Container.objects.count() == rows
    assert {c.id for c in live.runtime().list()} == on_host


def test_rename_and_pause_through_the_worker(live):
    container = create("first", Cmd=["sleep", "1000"])
    services.rename_container("first", "second")
    assert live.runtime().get("second").id == container.id
    services.start_container("second")
    assert services.pause_container("second").state == "paused"
    assert live.runtime().get("second").state.status == "paused"
    assert services.unpause_container("second").state == "running"


def docker_save(tag: str, layer: bytes) -> bytes:
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    files = {"config.json": config, "layer.tar": layer,
             "manifest.json": json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()}
    return rootfs_tar(files)


def test_images_come_and_go_through_the_worker(live):
    imported = services.import_image(io.BytesIO(rootfs_tar({"a": b"1"})), "berth-test/imported:1")
    (loaded,) = services.load_images(io.BytesIO(docker_save("berth-test/loaded:2", rootfs_tar({"b": b"2"}))))
    assert services.get_image("berth-test/loaded:2") == loaded
    assert {t.name for t in loaded.tags.all()} == {"berth-test/loaded:2"}
    services.tag_image("berth-test/loaded:2", "berth-test/again")
    assert live.runtime().images.get("berth-test/again:latest").id == loaded.id
    assert services.remove_image("berth-test/again") == [{"Untagged": "berth-test/again:latest"}]
    for reference, image in (("berth-test/imported:1", imported), ("berth-test/loaded:2", loaded)):
        services.remove_image(reference)
        assert not Image.objects.filter(pk=image.id).exists()
    assert [tag.name for image in services.list_images() for tag in image.tags.all()] == ["busybox:latest"]


def test_a_ping_is_answered_by_a_pool_process_of_the_hosts_worker(live):
    from console import tasks
    from console.operations import call
    from tests.live import _session_tree

    answer = call(tasks.ping, live.host)
    assert answer["host"] == live.host
    # Not the caller, not the worker's main process: the pool process a task runs in.
    assert answer["pid"] in set(_session_tree(live.worker_pid)) - {live.worker_pid}
