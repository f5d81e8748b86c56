"""Services against the real runtime, tasks run inline (the live tests go through a worker)."""

import io
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from console import services
from console.models import Container, Image, Operation
from runtime.errors import (
    Conflict,
    ContainerRunning,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    NotFound,
    StartFailed,
)
from tests.helpers.tars import rootfs_tar


def create(body=None, name=None, **fields):
    return services.create_container({"Image": "busybox", **(body or {}), **fields}, name=name)


def wait_exit(host, container):
    host.wait(container.id, timeout=10)
    return services.refresh_container(container.id)


# --- create -------------------------------------------------------------------------------


def test_create_stores_the_container_with_the_images_defaults(busybox, host):
    container = create(Env=["A=1"], Labels={"team": "red"})
    assert container.state == "created"
    assert container.image == busybox
    assert container.config["Cmd"] == ["sh"]
    assert container.config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1"]
    assert container.config["Hostname"] == container.id[:12]
    assert container.path == "sh" and container.args == []
    assert host.get(container.id).name == container.name


def test_create_normalises_the_host_config_like_moby(busybox, host):
    container = create(HostConfig={"NetworkMode": "default", "RestartPolicy": {"Name": ""},
                                   "LogConfig": {"Type": "", "Config": {}}, "ConsoleSize": [0, 0]})
    assert container.host_config["NetworkMode"] == "bridge"
    assert container.host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert container.host_config["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert container.host_config["ConsoleSize"] == [0, 0]
    assert container.networking_config == {"EndpointsConfig": {}}


def test_a_user_entrypoint_drops_the_images_cmd(busybox, host):
    container = create(Entrypoint="echo", Cmd=None)
    assert container.config["Entrypoint"] == ["echo"] and container.config["Cmd"] is None
    assert container.path == "echo" and container.args == []


def test_an_unknown_image_is_no_such_image_with_the_familiar_reference(busybox, host):
    with pytest.raises(NoSuchImage, match=r"^No such image: nosuch:latest$"):
        create(Image="nosuch")
    with pytest.raises(NoSuchImage, match=r"^No such image: nosuch:1$"):
        create(Image="docker.io/library/nosuch:1")
    assert not Container.objects.exists()


def test_a_bad_image_reference_is_invalid(busybox, host):
    with pytest.raises(InvalidValue, match=r"^invalid reference format: repository name \(Busybox\) must be lowercase$"):
        create(Image="Busybox")


@pytest.mark.parametrize("body, message", [
    ({"Cmd": 5}, "json: cannot unmarshal number into Go struct field CreateRequest.Cmd of type []string"),
    ({"Tty": "yes"}, "json: cannot unmarshal string into Go struct field CreateRequest.Tty of type bool"),
    ({"HostConfig": {"Memory": "1g"}},
     "json: cannot unmarshal string into Go struct field CreateRequest.HostConfig.Memory of type int64"),
    ({"Env": ["A=1", 2]}, "json: cannot unmarshal number into Go struct field CreateRequest.Env of type string"),
    ({"Labels": {"a": 1}}, "json: cannot unmarshal number into Go struct field CreateRequest.Labels of type string"),
    ({"HostConfig": {"Memory": 1024}}, "Minimum memory limit allowed is 6MB"),
    ({"HostConfig": {"MemorySwap": 1 << 30}},
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}},
     "can't create 'AutoRemove' container with restart policy"),
    ({"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}},
     "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
    ({"WorkingDir": "relative"}, "the working directory 'relative' is invalid, it needs to be an absolute path"),
    ({"StopSignal": "SIGNOPE"}, "Invalid signal: SIGNOPE"),
    ({"HostConfig": {"CapAdd": ["NOPE"]}}, 'invalid CapAdd: unknown capability: "NOPE"'),
    ({"HostConfig": {"Binds": ["./relative:/data"]}},
     'create ./relative: "./relative" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'),
    ({"HostConfig": {"ExtraHosts": ["db:not-an-ip"]}}, 'invalid IP address in add-host: "not-an-ip"'),
    ({"HostConfig": {"LogConfig": {"Type": "syslog"}}},
     "failed to create task for container: logger: no log driver named 'syslog' is registered"),
    ({"NetworkingConfig": {"EndpointsConfig": {"default": {"IPAMConfig": {"IPv4Address": "172.17.0.50"}}}}},
     "invalid config for network default: invalid endpoint settings:\n"
     "user specified IP address is supported on user defined networks only"),
    ({"Entrypoint": [], "Cmd": []}, None),  # the image's Cmd applies: fine
])
def test_bad_values_are_refused_with_dockers_message_and_leave_no_row(busybox, host, body, message):
    if message is None:
        create(body)
        return
    with pytest.raises(InvalidValue) as raised:
        create(body)
    assert str(raised.value) == message
    assert not Container.objects.exists()


def test_an_unknown_network_or_container_to_join_is_not_found(busybox, host):
    with pytest.raises(NotFound, match=r"^network mynet not found$"):
        create(HostConfig={"NetworkMode": "mynet"})
    with pytest.raises(NoSuchContainer, match=r"^No such container: web$"):
        create(HostConfig={"NetworkMode": "container:web"})
    assert not Container.objects.exists()


def test_an_invalid_name_is_refused_with_dockers_message(busybox, host):
    with pytest.raises(InvalidValue, match=r"^Invalid container name \(-x\), only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed$"):
        create(name="-x")


def test_a_name_in_use_is_a_conflict_with_dockers_message(busybox, host):
    first = create(name="/web")
    with pytest.raises(NameInUse) as raised:
        create(name="web")
    assert str(raised.value) == (
        f'Conflict. The container name "/web" is already in use by container "{first.id}". '
        "You have to remove (or rename) that container to be able to reuse that name.")
    assert Container.objects.count() == 1


def test_containers_nobody_named_get_a_generated_name(busybox, host):
    names = {create().name for _ in range(3)}
    assert len(names) == 3 and all("_" in name for name in names)


def test_a_failed_create_on_the_host_removes_the_row(busybox, host):
    with pytest.raises(InvalidValue, match="mount"):
        create(HostConfig={"Mounts": [{"Type": "bind", "Source": "/nonexistent-berth-test", "Target": "/x"}]})
    assert not Container.objects.exists()
    operation = Operation.objects.get(action="container.create")
    assert operation.state == "failed" and "mount" in operation.error


# --- lifecycle -------------------------------------------------------------------------------


def test_start_runs_pid_1_and_a_second_start_is_not_modified(busybox, host):
    container = create(Cmd=["sleep", "100"])
    container, started = services.start_container(container.name)
    assert started and container.state == "running" and container.pid > 0
    assert container.started_at is not None
    container, started = services.start_container(container.id)
    assert not started


def test_stop_waits_the_grace_period_then_kills(busybox, host):
    container = create(Cmd=["sleep", "100"])
    services.start_container(container.id)
    began = time.monotonic()
    container, was_running = services.stop_container(container.id, timeout=1)
    assert was_running and 0.9 <= time.monotonic() - began < 10
    assert container.state == "exited" and container.exit_code == 137
    assert services.stop_container(container.id)[1] is False


def test_an_exit_code_is_stored_with_its_times(busybox, host):
    container = create(Cmd=["sh", "-c", "exit 3"])
    services.start_container(container.id)
    container = wait_exit(host, container)
    assert container.state == "exited" and container.exit_code == 3
    assert container.finished_at >= container.started_at
    assert services.describe_status(container).startswith("Exited (3) ")


def test_kill_of_a_stopped_container_is_a_conflict_with_dockers_message(busybox, host):
    container = create(name="idle")
    with pytest.raises(Conflict) as raised:
        services.kill_container("idle")
    assert str(raised.value) == f"cannot kill container: idle: container {container.id} is not running"


def test_kill_waits_for_a_sigkill_to_take_effect(busybox, host):
    container = create(Cmd=["sleep", "100"])
    services.start_container(container.id)
    container = services.kill_container(container.id)
    assert container.state == "exited" and container.exit_code == 137


def test_kill_refuses_an_unknown_signal(busybox, host):
    container = create(Cmd=["sleep", "100"])
    with pytest.raises(InvalidValue, match=r"^Invalid signal: SIGNOPE$"):
        services.kill_container(container.id, "SIGNOPE")


def test_a_failed_start_keeps_the_container_with_its_exit_code(busybox, host):
    container = create(Cmd=["nosuchcmd"])
    with pytest.raises(StartFailed) as raised:
        services.start_container(container.id)
    assert raised.value.exit_code == 127
    container.refresh_from_db()
    assert container.state == "created" and container.exit_code == 127 and container.error
    assert services.describe_status(container) == "Created"


def test_a_failed_start_removes_an_autoremove_container(busybox, host):
    container = create(Cmd=["nosuchcmd"], HostConfig={"AutoRemove": True})
    with pytest.raises(StartFailed):
        services.start_container(container.id)
    assert not Container.objects.filter(pk=container.id).exists()
    with pytest.raises(NoSuchContainer):
        host.get(container.id)


def test_pause_unpause_and_a_paused_container_cannot_be_started(busybox, host):
    container = create(Cmd=["sleep", "100"])
    services.start_container(container.id)
    assert services.pause_container(container.id).state == "paused"
    with pytest.raises(Conflict, match=r"^cannot start a paused container, try unpause instead$"):
        services.start_container(container.id)
    with pytest.raises(Conflict, match="is already paused"):
        services.pause_container(container.id)
    assert services.unpause_container(container.id).state == "running"
    with pytest.raises(Conflict, match=f"^Container {container.id} is not paused$"):
        services.unpause_container(container.id)


def test_restart_starts_pid_1_again(busybox, host):
    container = create(Cmd=["sleep", "100"])
    container, _ = services.start_container(container.id)
    first_pid = container.pid
    container = services.restart_container(container.id, timeout=0)
    assert container.state == "running" and container.pid != first_pid


def test_remove_refuses_a_running_container_unless_forced(busybox, host):
    container = create(Cmd=["sleep", "100"], name="busy")
    services.start_container("busy")
    with pytest.raises(ContainerRunning) as raised:
        services.remove_container("busy")
    assert str(raised.value) == ('cannot remove container "busy": container is running: '
                                 "stop the container before removing or force remove")
    assert Container.objects.get(pk=container.id).state == "running"
    services.remove_container("busy", force=True)
    assert not Container.objects.filter(pk=container.id).exists()
    with pytest.raises(NoSuchContainer):
        host.get(container.id)


def test_rename_changes_the_name_on_the_host_too(busybox, host):
    container = create(name="before")
    create(name="taken")
    with pytest.raises(NameInUse):
        services.rename_container("before", "taken")
    assert services.rename_container("before", "/after").name == "after"
    assert host.get("after").id == container.id
    with pytest.raises(NoSuchContainer):
        services.get_container("before")


def test_every_action_writes_an_operation_row(busybox, host, admin):
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "100"]}, name="audited",
                                           user=admin, source="web")
    services.start_container("audited", user=admin, source="web")
    with pytest.raises(ContainerRunning):
        services.remove_container("audited", user=admin, source="web")
    services.remove_container("audited", force=True)
    rows = list(Operation.objects.order_by("created", "pk").values_list("action", "state", "user__username", "source"))
    assert rows == [
        ("container.create", "done", "alice", "web"),
        ("container.start", "done", "alice", "web"),
        ("container.remove", "failed", "alice", "web"),
        ("container.remove", "done", None, "api"),
    ]
    assert set(Operation.objects.values_list("target_id", flat=True)) == {container.id}
    assert Operation.objects.filter(state="failed").get().error.startswith('cannot remove container "audited"')


# --- reading ------------------------------------------------------------------------------------


def row(name, state="running", labels=None, minutes_ago=0, **fields):
    return Container.objects.create(
        id=fields.pop("id", None) or (name.encode().hex() * 64)[:64], name=name, host="test-host",
        image_ref="busybox", state=state, config={"Labels": labels or {}},
        created=timezone.now() - timedelta(minutes=minutes_ago), **fields)


def test_get_container_finds_by_id_name_and_unique_prefix(db):
    web = row("web", id="ab" * 32)
    row("db", id="ac" * 32)
    for reference in (web.id, "web", "/web", "ab"):
        assert services.get_container(reference) == web
    with pytest.raises(InvalidValue, match="^multiple IDs found with provided prefix: a$"):
        services.get_container("a")
    with pytest.raises(NoSuchContainer, match="^No such container: nope$"):
        services.get_container("nope")


def test_list_shows_running_ones_newest_first_unless_all_or_limit(db):
    old = row("old", minutes_ago=5)
    new = row("new", minutes_ago=1)
    done = row("done", state="exited", minutes_ago=3)
    paused = row("paused", state="paused", minutes_ago=4)
    assert services.list_containers() == [new, paused, old]
    assert services.list_containers(all=True) == [new, done, paused, old]
    assert services.list_containers(limit=2) == [new, done]


def test_list_filters_like_docker(db):
    web = row("web", labels={"tier": "front"})
    api = row("api", state="exited", labels={"tier": "back"})
    assert services.list_containers(all=True, filters={"name": ["we"]}) == [web]
    assert services.list_containers(all=True, filters={"name": ["^/api$"]}) == [api]
    assert services.list_containers(filters={"status": ["exited"]}) == [api]
    assert services.list_containers(all=True, filters={"label": ["tier=back"]}) == [api]
    assert set(services.list_containers(all=True, filters={"label": ["tier"]})) == {web, api}
    assert services.list_containers(all=True, filters={"id": [web.id[:6]]}) == [web]
    assert services.list_containers(all=True, filters={"name": {"web": True}}) == [web]


@pytest.mark.parametrize("filters, message", [
    ({"status": ["sleeping"]}, "invalid filter 'status=sleeping'"),
    ({"colour": ["red"]}, "invalid filter 'colour'"),
])
def test_invalid_filters_are_refused(db, filters, message):
    with pytest.raises(InvalidValue) as raised:
        services.list_containers(filters=filters)
    assert str(raised.value) == message


def test_status_reads_like_docker_ps(db):
    now = timezone.now()
    running = row("up", started_at=now - timedelta(minutes=5))
    assert services.describe_status(running, now) == "Up 5 minutes"
    running.state = "paused"
    assert services.describe_status(running, now) == "Up 5 minutes (Paused)"
    exited = row("down", state="exited", exit_code=3, started_at=now - timedelta(minutes=9),
                 finished_at=now - timedelta(seconds=2))
    assert services.describe_status(exited, now) == "Exited (3) 2 seconds ago"
    assert services.describe_status(row("new", state="created"), now) == "Created"


# --- images -----------------------------------------------------------------------------------------


def test_the_base_image_is_on_record_after_a_sync(busybox):
    assert busybox.id.startswith("sha256:")
    assert [tag.name for tag in busybox.tags.all()] == ["busybox:latest"]
    for reference in ("busybox", "busybox:latest", busybox.id, busybox.id[7:19]):
        assert services.get_image(reference) == busybox
    assert services.list_images() == [busybox]


def test_get_image_of_an_unknown_tag_is_no_such_image(busybox):
    with pytest.raises(NoSuchImage, match="^No such image: busybox:2$"):
        services.get_image("busybox:2")


def test_tag_then_remove_a_tag_untags_only(busybox):
    tagged = services.tag_image("busybox", "berth-test/copy", "1.0")
    assert tagged == busybox
    assert services.remove_image("berth-test/copy:1.0") == [{"Untagged": "berth-test/copy:1.0"}]
    assert services.get_image("busybox") == busybox


def test_import_brings_a_rootfs_in_and_rmi_deletes_it(busybox, host):
    data = rootfs_tar({"hello.txt": b"hi\n"})
    image = services.import_image(io.BytesIO(data), "berth-test/imported:1", changes=['CMD ["/hello.txt"]'])
    assert image.config["config"]["Cmd"] == ["/hello.txt"]
    assert services.get_image("berth-test/imported:1") == image
    assert not list((host.state.tmp).glob("upload-*"))  # the upload is gone
    removed = services.remove_image("berth-test/imported:1")
    assert removed[0] == {"Untagged": "berth-test/imported:1"}
    assert {"Deleted": image.id} in removed
    assert not Image.objects.filter(pk=image.id).exists()


def test_removing_an_image_in_use_is_a_conflict(busybox, host):
    image = services.import_image(io.BytesIO(rootfs_tar({"true": b""})), "berth-test/used", changes=["CMD /true"])
    container = create(Image="berth-test/used")
    with pytest.raises(Conflict) as raised:
        services.remove_image("berth-test/used")
    assert str(raised.value) == (f'conflict: unable to remove repository reference "berth-test/used" (must force) - '
                                 f"container {container.id[:12]} is using its referenced image {image.id[7:19]}")
    with pytest.raises(Conflict, match=f"image is being used by stopped container {container.id[:12]}$"):
        services.remove_image(image.id)
    services.remove_container(container.id)
    services.remove_image("berth-test/used")
    assert not Image.objects.filter(pk=image.id).exists()
