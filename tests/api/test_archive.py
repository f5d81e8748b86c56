"""``docker cp`` both ways over a container root made by hand: contents, stat header, and staying inside."""

import base64
import io
import json
import os
import tarfile

import pytest

from console.dockerapi.handlers.archive import walk


@pytest.fixture
def box(services, fake_runtime):
    row = services.create_container({"Image": "busybox"}, name="box")
    fake_runtime.write_record(row.id, "created")
    rootfs = fake_runtime.state.container_dir(row.id) / "rootfs"
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "hostname").write_text("box\n")
    (rootfs / "data" / "sub").mkdir(parents=True)
    (rootfs / "data" / "a.txt").write_text("alpha")
    (rootfs / "data" / "sub" / "b.txt").write_text("beta")
    os.symlink("/etc/hostname", rootfs / "data" / "link")
    os.symlink("/", rootfs / "escape")
    return rootfs


def _get(client, path, method="GET"):
    c = client()
    c.request(method, f"/v1.45/containers/box/archive?path={path}")
    return c.response(head_only=method == "HEAD")


def _stat(headers):
    return json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))


def test_get_of_a_file_is_a_tar_with_its_stat(client, box):
    status, headers, body = _get(client, "/data/a.txt")
    assert status == 200 and headers["content-type"] == "application/x-tar"
    described = _stat(headers)
    assert described["name"] == "a.txt" and described["size"] == 5 and described["linkTarget"] == ""
    assert described["mode"] & 0o777 == 0o644 and described["mtime"].endswith("Z")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["a.txt"]
        assert tar.extractfile("a.txt").read() == b"alpha"


def test_get_of_a_directory_walks_it_and_marks_it_a_directory(client, box):
    status, headers, body = _get(client, "/data")
    assert _stat(headers)["mode"] & (1 << 31)  # Go's os.ModeDir: the CLI decides from it
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
        assert names == ["data", "data/a.txt", "data/link", "data/sub", "data/sub/b.txt"]
        assert tar.getmember("data/link").issym() and tar.getmember("data/link").linkname == "/etc/hostname"


def test_a_symlink_is_reported_with_its_target_inside_the_container(client, box):
    status, headers, _ = _get(client, "/data/link", "HEAD")
    assert status == 200 and _stat(headers)["linkTarget"] == "/etc/hostname"


def test_a_symlink_on_the_way_is_followed_inside_the_root_never_on_the_host(client, box):
    status, headers, body = _get(client, "/escape/etc/hostname")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("hostname").read() == b"box\n"  # the container's, not the host's


def test_a_missing_path_is_404_in_dockers_words(client, box):
    status, headers, body = _get(client, "/nope")
    assert status == 404 and json.loads(body) == {"message": "Could not find the file /nope in container box"}
    assert _get(client, "/nope", "HEAD")[0] == 404


def test_put_extracts_into_a_directory(client, box):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (("new.txt", b"fresh"), ("deep/er.txt", b"deeper")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    c = client()
    c.request("PUT", "/v1.45/containers/box/archive?path=/data&noOverwriteDirNonDir=true", archive.getvalue(),
              {"Content-Type": "application/x-tar"})
    assert c.response()[0] == 200
    assert (box / "data" / "new.txt").read_bytes() == b"fresh"
    assert (box / "data" / "deep" / "er.txt").read_bytes() == b"deeper"


def test_put_through_a_symlink_lands_inside_the_root(client, box, root):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("planted")
        tar.addfile(info, io.BytesIO(b""))
    c = client()
    c.request("PUT", "/containers/box/archive?path=/escape/tmp", archive.getvalue())
    assert c.response()[0] == 404  # the container has no /tmp: nothing is written to the host's
    assert not os.path.exists("/tmp/planted")


def test_put_to_a_file_is_400_and_to_nowhere_404(client, box):
    c = client()
    c.request("PUT", "/containers/box/archive?path=/data/a.txt", b"")
    status, _, body = c.response()
    assert (status, json.loads(body)) == (400, {"message": "extraction point is not a directory"})
    c = client()
    c.request("PUT", "/containers/box/archive?path=/none", b"")
    assert c.response()[0] == 404


def test_a_recycled_pid_never_opens_a_host_processs_root(client, box, fake_runtime, services):
    row = services.get_container("box")
    record = fake_runtime.state.container_dir(row.id) / "container.json"
    data = json.loads(record.read_text())
    data["state"].update(status="running", pid=os.getpid())
    data["pid_start_time"] = 1  # not this process's start time: the PID was reused
    record.write_text(json.dumps(data))
    status, _, body = _get(client, "/etc/hostname")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("hostname").read() == b"box\n"  # the container's overlay, not our /


def test_walk_clamps_dot_dot_at_the_root(box):
    fd = os.open(box, os.O_RDONLY | os.O_DIRECTORY)
    try:
        parent, name = walk(fd, "/../../data/../etc/hostname", follow_last=False)
        assert name == "hostname"
        assert os.stat(name, dir_fd=parent).st_size == 4
        os.close(parent)
    finally:
        os.close(fd)
