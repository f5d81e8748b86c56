"""Volumes, mounts and links through the services, against the real runtime with tasks run inline."""

import os
import shutil
from pathlib import Path

import pytest

from console import services, specs
from console.models import Container, Mount, Operation, Volume
from runtime.errors import Conflict, InvalidValue, NoSuchContainer, NotFound

VOLUME_NAME_RULE = ('includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" '
                    "are allowed. If you intended to pass a host directory, use absolute path")


def create(name=None, **host_config):
    body = {"Image": "busybox", "Cmd": ["sleep", "100"], "HostConfig": host_config}
    if "Volumes" in host_config:
        body["Volumes"] = host_config.pop("Volumes")
    return services.create_container(body, name=name)


def mounts_of(container):
    return {m.destination: m for m in Mount.objects.filter(container_id=container.id).select_related("volume")}


def volume_dirs(host) -> set[str]:
    root = Path(host.state.root) / "volumes"
    return {p.name for p in root.iterdir()} if root.exists() else set()


@pytest.fixture(autouse=True)
def no_volume_directories(host):
    """The host's state root outlives each test's database: its volume directories must not."""
    shutil.rmtree(Path(host.state.root) / "volumes", ignore_errors=True)
    yield
    shutil.rmtree(Path(host.state.root) / "volumes", ignore_errors=True)


# --- named and anonymous volumes -----------------------------------------------------------------


def test_a_named_volume_is_made_on_first_use_with_the_images_content(busybox, host):
    container = create(Binds=["stuff:/etc"])
    volume = Volume.objects.get(name="stuff")
    assert not volume.anonymous and volume.mountpoint == str(Path(host.state.root) / "volumes/stuff/_data")
    assert "root:" in (Path(volume.mountpoint) / "passwd").read_text()
    mount = mounts_of(container)["/etc"]
    assert (mount.type, mount.volume, mount.read_write, mount.mode) == ("volume", volume, True, "z")


def test_the_copied_content_keeps_its_owners_and_modes(busybox, host, tmp_path):
    from console.tasks import _copy_tree

    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "f").write_text("x")
    (tmp_path / "src" / "link").symlink_to("/etc/shadow")
    os.chown(tmp_path / "src" / "sub", 33, 33)
    os.chmod(tmp_path / "src" / "sub" / "f", 0o640)
    os.lchown(tmp_path / "src" / "link", 7, 7)
    _copy_tree(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert os.stat(tmp_path / "dst" / "sub").st_uid == 33
    assert oct(os.stat(tmp_path / "dst" / "sub" / "f").st_mode & 0o777) == "0o640"
    assert os.readlink(tmp_path / "dst" / "link") == "/etc/shadow"  # copied as a link, never followed
    assert os.lstat(tmp_path / "dst" / "link").st_uid == 7


def test_nocopy_leaves_a_fresh_volume_empty(busybox, host):
    create(Binds=["empty:/etc:nocopy"])
    assert list(Path(Volume.objects.get(name="empty").mountpoint).iterdir()) == []


def test_a_volume_that_has_data_is_not_overwritten_by_the_image(busybox, host):
    volume = services.create_volume({"Name": "kept"})
    (Path(volume.mountpoint) / "mine").write_text("x")
    create(Mounts=[{"Type": "volume", "Source": "kept", "Target": "/etc"}])
    assert [p.name for p in Path(volume.mountpoint).iterdir()] == ["mine"]


def test_anonymous_volumes_get_64_hex_names_and_go_with_rm_v(busybox, host):
    container = create(Volumes={"/data1": {}}, Binds=["named:/named"])
    anonymous = mounts_of(container)["/data1"].volume
    assert anonymous.anonymous and len(anonymous.name) == 64
    services.remove_container(container.id, volumes=True)
    assert not Volume.objects.filter(name=anonymous.name).exists()
    assert anonymous.name not in volume_dirs(host)
    assert Volume.objects.filter(name="named").exists() and "named" in volume_dirs(host)


def test_rm_without_v_keeps_anonymous_volumes(busybox, host):
    container = create(Volumes={"/data": {}})
    name = mounts_of(container)["/data"].volume.name
    services.remove_container(container.id)
    assert Volume.objects.filter(name=name).exists()


def test_removing_a_volume_in_use_is_a_conflict_with_dockers_message(busybox, host):
    container = create(Binds=["busy:/data"])
    with pytest.raises(Conflict, match=rf"^remove busy: volume is in use - \[{container.id}\]$"):
        services.remove_volume("busy")
    services.remove_container(container.id)
    services.remove_volume("busy")
    assert not Volume.objects.filter(name="busy").exists() and "busy" not in volume_dirs(host)


def test_volume_create_inspect_remove_and_prune(busybox, host):
    made = services.create_volume({"Name": "solo", "Labels": {"a": "b"}})
    assert services.create_volume({"Name": "solo"}) == made
    assert Path(made.mountpoint).is_dir() and made.labels == {"a": "b"}
    with pytest.raises(NotFound, match="^get nope: no such volume$"):
        services.remove_volume("nope")
    services.remove_volume("nope", force=True)
    anonymous = services.create_volume({})
    removed, _ = services.prune_volumes()
    assert removed == [anonymous.name] and Volume.objects.filter(name="solo").exists()
    assert services.prune_volumes(all=True)[0] == ["solo"]
    assert not Volume.objects.exists() and volume_dirs(host) == set()


# --- binds -------------------------------------------------------------------------------------------


def test_a_missing_v_source_is_made_but_a_missing_mount_source_is_an_error(busybox, host, tmp_path):
    create(Binds=[f"{tmp_path}/made:/data:ro"])
    assert (tmp_path / "made").is_dir()
    with pytest.raises(InvalidValue, match="bind source path does not exist"):
        create(Mounts=[{"Type": "bind", "Source": f"{tmp_path}/missing", "Target": "/x"}])
    assert not (tmp_path / "missing").exists()


def test_a_bind_appears_in_the_spec_read_only_when_asked(busybox, host, tmp_path):
    container = create(Mounts=[{"Type": "bind", "Source": str(tmp_path), "Target": "/data", "ReadOnly": True}])
    spec = specs.spec_from_container(container)
    assert [(m.source, m.destination, m.readonly) for m in spec.mounts] == [(str(tmp_path), "/data", True)]
    assert mounts_of(container)["/data"].propagation == "rprivate"


@pytest.mark.parametrize("host_config, message", [
    ({"Binds": ["/proc:/p"]}, "is refused"),
    ({"Binds": ["/sys/kernel:/p"]}, "is refused"),
    ({"Binds": ["/dev:/p"]}, "is refused"),
    ({"Mounts": [{"Type": "bind", "Source": "/proc", "Target": "/p"}]}, "is refused"),
    ({"Binds": ["./here:/p"]}, VOLUME_NAME_RULE),
    ({"Binds": ["data:relative"]}, "mount path must be absolute"),
    ({"Binds": ["/tmp:/"]}, "destination can't be '/'"),
    ({"Binds": ["/tmp::/x"]}, "invalid volume specification: '/tmp::/x'"),
    ({"Binds": ["/tmp:/x:rx"]}, "invalid mode: rx"),
    ({"Binds": ["v1:/x", "v2:/x"]}, "Duplicate mount point: /x"),
    ({"Mounts": [{"Type": "nfs", "Target": "/x"}]}, 'mount type unknown: "nfs"'),
    ({"Tmpfs": {"relative": ""}}, "mount path must be absolute"),
    ({"VolumesFrom": ["x:rx"]}, "invalid mode: rx"),
])
def test_a_refused_spec_leaves_nothing_behind(busybox, host, host_config, message):
    with pytest.raises(InvalidValue, match=message if message.startswith("invalid") else None) as raised:
        create(**host_config)
    assert message in str(raised.value)
    assert not Container.objects.exists() and not Volume.objects.exists() and not Mount.objects.exists()
    assert host.list() == [] and volume_dirs(host) == set()


def test_a_bind_of_the_state_root_or_above_it_is_refused(busybox, host):
    for source in (str(host.state.root), str(host.state.root / "images"), "/"):
        with pytest.raises(InvalidValue, match="is refused"):
            create(Binds=[f"{source}:/x"])
    assert not Container.objects.exists()


def test_a_create_that_fails_on_the_host_takes_its_new_volumes_along(busybox, host, monkeypatch):
    services.create_volume({"Name": "older"})

    def broken(*args, **kwargs):
        raise InvalidValue("image", "broken on purpose")

    monkeypatch.setattr(type(host), "create", broken)
    with pytest.raises(InvalidValue, match="broken on purpose"):
        create(Binds=["older:/o", "newer:/n"], Volumes={"/anon": {}})
    assert list(Volume.objects.values_list("name", flat=True)) == ["older"] and volume_dirs(host) == {"older"}
    assert not Container.objects.exists() and not Mount.objects.exists()


def test_volumes_from_an_unknown_container_is_a_404_and_leaves_nothing(busybox, host):
    with pytest.raises(NoSuchContainer, match="^No such container: ghost$"):
        create(VolumesFrom=["ghost"], Binds=["vv:/v"])
    assert not Volume.objects.exists() and not Container.objects.exists()


# --- volumes-from, tmpfs --------------------------------------------------------------------------------


def test_volumes_from_copies_binds_and_volumes_and_ro_downgrades(busybox, host, tmp_path):
    base = create("base", Volumes={"/data1": {}}, Binds=[f"{tmp_path}:/host:ro", "shared:/shared"],
                  Tmpfs={"/scratch": ""})
    reader = create(VolumesFrom=["base:ro"])
    writer = create(VolumesFrom=["base:rw"])
    original = mounts_of(base)
    for container, writable in ((reader, False), (writer, True)):
        found = mounts_of(container)
        assert set(found) == {"/data1", "/host", "/shared"}
        assert found["/data1"].volume == original["/data1"].volume
        assert found["/shared"].read_write is writable
        assert found["/host"].read_write is False  # :rw cannot upgrade a read-only source
    services.remove_container(base.id, volumes=True)
    assert Volume.objects.filter(name=original["/data1"].volume.name).exists()  # still mounted by the others


def test_tmpfs_mounts_reach_the_spec_with_their_options(busybox, host):
    container = create(Tmpfs={"/run/x": "size=1m"}, Mounts=[{"Type": "tmpfs", "Target": "/t",
                                                            "TmpfsOptions": {"SizeBytes": 65536}}])
    spec = specs.spec_from_container(container)
    assert {(t.destination, tuple(t.options)) for t in spec.tmpfs} == {("/run/x", ("size=1m",)),
                                                                       ("/t", ("size=65536",))}
    assert {m.type for m in mounts_of(container).values()} == {"tmpfs"}


# --- links -------------------------------------------------------------------------------------------------


def test_a_link_sets_env_and_hosts_and_inspect_shows_dockers_form(busybox, host):
    target = services.create_container({"Image": "busybox", "Cmd": ["sleep", "100"], "Env": ["FOO=1"],
                                        "ExposedPorts": {"80/tcp": {}}}, name="web1")
    address = target.endpoints.get().ip_address
    linked = create("app", Links=["web1:web"])
    assert linked.host_config["Links"] == ["/web1:/app/web"]
    spec = specs.spec_from_container(linked)
    assert "WEB_NAME=/app/web" in spec.env and "WEB_ENV_FOO=1" in spec.env
    assert f"WEB_PORT_80_TCP_ADDR={address}" in spec.env and "WEB_PORT_80_TCP_PROTO=tcp" in spec.env
    assert f"WEB_PORT=tcp://{address}:80" in spec.env
    assert f"web:{address}" in spec.extra_hosts and f"web1:{address}" in spec.extra_hosts


def test_a_link_to_an_unknown_container_or_from_the_host_network_is_refused(busybox, host):
    with pytest.raises(NoSuchContainer):
        create(Links=["ghost:db"])
    with pytest.raises(InvalidValue, match="host type networking can't be used with links"):
        create(Links=["ghost:db"], NetworkMode="host")
    assert not Container.objects.exists()
    assert Operation.objects.filter(action="container.create", state="failed").count() == 2


def test_a_link_to_a_stopped_container_fails_at_start_as_in_moby(busybox, host):
    from console.errors import NetworkingFailed

    services.create_container({"Image": "busybox", "Cmd": ["sleep", "100"]}, name="sleeper")
    linked = create("app2", Links=["sleeper:db"])
    with pytest.raises(NetworkingFailed, match="^Cannot link to a non running container: /sleeper AS /app2/db$"):
        services.start_container(linked.id)
    assert Container.objects.get(pk=linked.id).state == "created"
