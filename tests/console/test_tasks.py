"""Tasks called directly (no Celery in between), against the real runtime."""

import secrets
from datetime import datetime, timedelta, timezone

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone as dj_timezone

from console import groups, specs, tasks
from console.models import Container, Image
from runtime import NETWORK_HOST, NETWORK_NONE
from runtime.errors import (
    BerthError,
    ContainerNotRunning,
    ImageInUse,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    StartFailed,
)


def make_row(busybox, name=None, cmd=("sleep", "100"), host_config=None):
    return Container.objects.create(
        id=secrets.token_hex(32), name=name or f"task-{secrets.token_hex(3)}", host="test-host", image=busybox,
        image_ref="busybox", config={"Image": "busybox", "Cmd": list(cmd), "Env": []},
        host_config={"NetworkMode": "bridge", **(host_config or {})}, created=dj_timezone.now())


def listen(container_id):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(groups.container_group(container_id), channel)
    return lambda: async_to_sync(layer.receive)(channel)


def test_the_create_task_is_idempotent(busybox, host):
    row = make_row(busybox)
    assert tasks.create_container(row.id) == {"result": None}
    assert tasks.create_container(row.id) == {"result": None}
    assert [c.id for c in host.list() if c.id == row.id] == [row.id]
    row.refresh_from_db()
    assert row.state == "created" and row.path == "sleep" and row.config["Hostname"] == row.id[:12]


def test_the_start_task_stores_what_the_kernel_shows_and_publishes_it(busybox, host):
    row = make_row(busybox)
    tasks.create_container(row.id)
    receive = listen(row.id)
    assert tasks.start_container(row.id, datetime.now(timezone.utc).isoformat()) == {"result": {"started": True}}
    row.refresh_from_db()
    observed = host.get(row.id)
    assert row.state == "running" and row.pid == observed.state.pid > 0
    assert receive() == {"type": "container.changed", "id": row.id, "state": "running", "exit_code": 0,
                         "removed": False}


def test_a_start_asked_for_before_the_last_start_is_a_duplicate(busybox, host):
    row = make_row(busybox, cmd=("true",))
    tasks.create_container(row.id)
    asked = datetime.now(timezone.utc).isoformat()
    tasks.start_container(row.id, asked)
    host.wait(row.id, timeout=10)
    assert tasks.start_container(row.id, asked) == {"result": {"started": False}}  # redelivered: not again
    later = (datetime.now(timezone.utc) + timedelta(milliseconds=1)).isoformat()
    assert tasks.start_container(row.id, later) == {"result": {"started": True}}


def test_a_runtime_error_comes_back_as_data(busybox, host):
    outcome = tasks.kill_container("0" * 64)
    assert outcome["error"] == "NoSuchContainer" and outcome["message"] == f"No such container: {'0' * 64}"
    row = make_row(busybox, cmd=("nosuchcmd",))
    tasks.create_container(row.id)
    outcome = tasks.start_container(row.id, "")
    assert outcome["error"] == "StartFailed" and outcome["exit_code"] == 127
    row.refresh_from_db()
    assert row.state == "created" and row.exit_code == 127 and row.error == outcome["message"]


@pytest.mark.parametrize("error", [
    NoSuchContainer("web"), NoSuchImage("busybox:2"), NameInUse("web", "ab" * 32), ContainerNotRunning("cd" * 32),
    InvalidValue("memory", "too small"), StartFailed("exec: nope", exit_code=127), ImageInUse("busybox", ["ef" * 32]),
    BerthError("something else"),
])
def test_errors_cross_the_task_boundary_as_the_same_class(error):
    again = tasks.error_from_data(tasks.error_to_data(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert vars(again) == vars(error)


def test_an_unknown_error_class_comes_back_as_a_berth_error():
    again = tasks.error_from_data({"error": "SystemExit", "message": "no"})
    assert type(again) is BerthError and str(again) == "no"


def test_the_remove_task_deletes_the_row_and_says_removed_once_or_twice(busybox, host):
    row = make_row(busybox, cmd=("sh", "-c", "exit 4"))
    tasks.create_container(row.id)
    tasks.start_container(row.id, "")
    host.wait(row.id, timeout=10)
    tasks.refresh_container(row.id)
    receive = listen(row.id)
    assert tasks.remove_container(row.id) == {"result": None}
    assert not Container.objects.filter(pk=row.id).exists()
    assert receive() == {"type": "container.changed", "id": row.id, "state": "exited", "exit_code": 4, "removed": True}
    assert tasks.remove_container(row.id) == {"result": None}


def test_the_remove_task_refuses_a_running_container_without_force(busybox, host):
    row = make_row(busybox)
    tasks.create_container(row.id)
    tasks.start_container(row.id, "")
    assert tasks.remove_container(row.id)["error"] == "ContainerRunning"
    assert Container.objects.filter(pk=row.id).exists()


def test_the_sync_task_writes_the_host_store_as_rows(host):
    assert tasks.sync_images() == {"result": None}
    image = Image.objects.get(tags__name="busybox:latest")
    assert image.host == "test-host" and image.id == host.images.get("busybox").id
    assert image.config["config"]["Cmd"] == ["sh"]


def test_the_spec_maps_the_host_config_onto_the_runtime(busybox, tmp_path):
    row = make_row(busybox, host_config={
        "Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": -1, "ReadonlyRootfs": True,
        "Binds": [f"{tmp_path}:/data:ro"], "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m",
                                                                                         "max-file": "3"}},
    })
    spec = specs.spec_from_container(row)
    assert spec.image == busybox.id and spec.name == row.name and spec.cmd == ["sleep", "100"]
    assert spec.network.mode == NETWORK_NONE  # bridge networking is a later issue
    assert spec.resources.memory == 64 << 20 and spec.resources.nano_cpus == 500_000_000
    assert spec.resources.pids_limit == 0 and spec.read_only
    assert [(m.source, m.destination, m.readonly) for m in spec.mounts] == [(str(tmp_path), "/data", True)]
    assert (spec.log_max_size, spec.log_max_files) == (1 << 20, 3)
    row.host_config["NetworkMode"] = "host"
    assert specs.spec_from_container(row).network.mode == NETWORK_HOST
