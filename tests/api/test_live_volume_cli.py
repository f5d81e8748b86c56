"""Issue 5 with the real docker CLI against a real Berth: binds, volumes, data-volume containers, tmpfs, links.

Host directories for binds live under pytest's ``tmp_path``; names come from
``unique()``. Every test's containers and volumes are removed afterwards,
failed or not (containers first: a volume in use cannot go).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import unique

pytestmark = pytest.mark.live


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stderr}"
    return done.stdout


def inspect(docker, name: str) -> dict:
    return json.loads(ok(docker("inspect", name)))[0]


def volume_names(docker) -> set[str]:
    return set(ok(docker("volume", "ls", "-q")).split())


@pytest.fixture
def clean(docker):
    """Removes the test's containers, then its volumes, even when the test failed."""
    containers = set(ok(docker("ps", "-aq", "--no-trunc")).split())
    volumes = volume_names(docker)
    yield
    made = set(ok(docker("ps", "-aq", "--no-trunc")).split()) - containers
    if made:
        docker("rm", "-f", "-v", *made)
    left = volume_names(docker) - volumes
    if left:
        docker("volume", "rm", "-f", *left)


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_a_bind_mount_shows_writes_both_ways_at_once(docker, clean, tmp_path):
    name = unique("bind")
    (tmp_path / "from-host").write_text("hello from the host\n")
    ok(docker("run", "-d", "--name", name, "-v", f"{tmp_path}:/data", "busybox", "sleep", "100"))
    assert ok(docker("exec", name, "cat", "/data/from-host")) == "hello from the host\n"
    ok(docker("exec", name, "sh", "-c", "echo from the container > /data/from-ctr"))
    assert (tmp_path / "from-ctr").read_text() == "from the container\n"
    (tmp_path / "from-host").write_text("changed\n")
    assert ok(docker("exec", name, "cat", "/data/from-host")) == "changed\n"
    mount = inspect(docker, name)["Mounts"][0]
    assert mount == {"Type": "bind", "Source": str(tmp_path), "Destination": "/data", "Mode": "", "RW": True,
                     "Propagation": "rprivate"}


def test_read_only_is_enforced_for_binds_and_volumes(docker, clean, tmp_path):
    volume = unique("ro")
    done = docker("run", "--rm", "-v", f"{tmp_path}:/b:ro", "busybox", "touch", "/b/x")
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    done = docker("run", "--rm", "--mount", f"type=volume,source={volume},target=/v,readonly",
                  "busybox", "touch", "/v/x")
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    assert not (tmp_path / "x").exists()


def test_mount_type_bind_refuses_a_missing_source_that_v_would_create(docker, clean, tmp_path):
    done = docker("run", "--rm", "--mount", f"type=bind,source={tmp_path}/missing,target=/x", "busybox", "true")
    assert done.returncode == 125 and "bind source path does not exist" in done.stderr
    assert not (tmp_path / "missing").exists()
    ok(docker("run", "--rm", "-v", f"{tmp_path}/made:/x", "busybox", "true"))
    assert (tmp_path / "made").is_dir()


def test_two_containers_share_a_named_volume_in_real_time(docker, clean):
    volume, writer = unique("shared"), unique("w")
    ok(docker("volume", "create", volume))
    ok(docker("run", "-d", "--name", writer, "-v", f"{volume}:/shared", "busybox", "sleep", "100"))
    ok(docker("exec", writer, "sh", "-c", "echo live > /shared/note"))
    assert ok(docker("run", "--rm", "-v", f"{volume}:/shared", "busybox", "cat", "/shared/note")) == "live\n"
    mount = inspect(docker, writer)["Mounts"][0]
    assert (mount["Type"], mount["Name"], mount["Driver"], mount["Destination"], mount["RW"]) == \
        ("volume", volume, "local", "/shared", True)
    done = docker("volume", "rm", volume)
    assert done.returncode == 1 and f"remove {volume}: volume is in use - [" in done.stderr
    described = json.loads(ok(docker("volume", "inspect", volume)))[0]
    assert described["Mountpoint"].endswith(f"/volumes/{volume}/_data") and described["Driver"] == "local"


def test_image_content_appears_in_a_fresh_named_volume(docker, clean):
    volume = unique("etc")
    assert "root:x:0:0" in ok(docker("run", "--rm", "-v", f"{volume}:/etc", "busybox", "cat", "/etc/passwd"))
    assert "root:x:0:0" in ok(docker("run", "--rm", "-v", f"{volume}:/mnt", "busybox", "cat", "/mnt/passwd"))


def test_rm_removes_anonymous_volumes_but_keeps_named_ones(docker, clean):
    named = unique("keep")
    before = volume_names(docker)
    ok(docker("run", "--rm", "-v", "/anon", "-v", f"{named}:/named", "busybox", "touch", "/anon/x"))
    assert wait_for(lambda: volume_names(docker) - before == {named})
    name = unique("rmv")
    ok(docker("create", "--name", name, "-v", "/anon", "busybox", "true"))
    anonymous = inspect(docker, name)["Mounts"][0]["Name"]
    assert len(anonymous) == 64 and anonymous in volume_names(docker)
    ok(docker("rm", "-v", name))
    assert anonymous not in volume_names(docker) and named in volume_names(docker)


def test_volumes_from_a_data_container_shares_its_volumes(docker, clean):
    source = unique("c1")
    ok(docker("run", "-d", "--name", source, "-v", "/data1", "-v", "/data2", "busybox", "sleep", "100"))
    ok(docker("run", "--rm", "--volumes-from", source, "busybox", "sh", "-c", "echo hi > /data1/x"))
    assert ok(docker("run", "--rm", "--volumes-from", source, "busybox", "cat", "/data1/x")) == "hi\n"
    done = docker("run", "--rm", "--volumes-from", f"{source}:ro", "busybox", "touch", "/data2/y")
    assert done.returncode != 0 and "Read-only file system" in done.stderr


def test_tmpfs_mounts_are_tmpfs_of_the_asked_size(docker, clean):
    out = ok(docker("run", "--rm", "--tmpfs", "/scratch:size=1m", "--mount", "type=tmpfs,target=/t",
                    "busybox", "sh", "-c", "grep -E ' /(scratch|t) ' /proc/mounts; df -k /scratch"))
    assert "tmpfs /scratch tmpfs" in out and "tmpfs /t tmpfs" in out
    assert " 1024 " in out


def test_a_link_resolves_the_alias_and_sets_the_link_variables(docker, clean):
    target, app = unique("c1"), unique("app")
    ok(docker("run", "-d", "--name", target, "-e", "FOO=1", "--expose", "80", "busybox", "sleep", "100"))
    address = inspect(docker, target)["NetworkSettings"]["IPAddress"]
    ok(docker("run", "-d", "--name", app, "--link", f"{target}:web", "busybox", "sleep", "100"))
    hosts = ok(docker("exec", app, "cat", "/etc/hosts"))
    assert any(line.split()[0] == address and "web" in line.split() for line in hosts.splitlines() if line.strip())
    env = ok(docker("exec", app, "env")).splitlines()
    assert f"WEB_NAME=/{app}/web" in env and "WEB_ENV_FOO=1" in env and f"WEB_PORT_80_TCP_ADDR={address}" in env
    ok(docker("exec", app, "ping", "-c1", "-W2", "web"))
    assert inspect(docker, app)["HostConfig"]["Links"] == [f"/{target}:/{app}/web"]


@pytest.mark.parametrize("args, message", [
    (["-v", "/proc:/p"], "is refused"),
    (["--volumes-from", "x:rx"], "invalid mode: rx"),  # (the CLI makes "./rel" sources absolute itself)
    (["-v", "vol:relative"], "mount path must be absolute"),
    (["--volumes-from", "no-such-berth-container"], "No such container: no-such-berth-container"),
    (["--link", "no-such-berth-container:db"], "No such container: no-such-berth-container"),
    (["--network", "host", "--link", "x:db"], "conflicting options: host type networking can't be used with links"),
])
def test_every_refused_spec_leaves_nothing_behind(docker, clean, args, message):
    name = unique("bad")
    volumes = volume_names(docker)
    done = docker("run", "--name", name, *args, "busybox", "true")
    assert done.returncode == 125 and message in done.stderr
    assert docker("inspect", "--type", "container", name).returncode == 1
    assert volume_names(docker) == volumes


def test_docker_py_creates_mounts_and_removes_volumes(docker_client, docker, clean, tmp_path):
    volume = docker_client.volumes.create(unique("py"), labels={"team": "red"})
    assert docker_client.volumes.get(volume.name).attrs["Labels"] == {"team": "red"}
    (tmp_path / "h").write_text("host\n")
    out = docker_client.containers.run("busybox", ["sh", "-c", "echo py > /v/f; cat /b/h"], remove=True,
                                       volumes={volume.name: {"bind": "/v", "mode": "rw"},
                                                str(tmp_path): {"bind": "/b", "mode": "ro"}})
    assert out == b"host\n"
    assert (docker_client.containers.run("busybox", ["cat", "/v/f"], remove=True,
                                         volumes=[f"{volume.name}:/v:ro"]) == b"py\n")
    volume.remove()
    assert volume.name not in {v.name for v in docker_client.volumes.list()}
