"""``docker cp`` both ways over a container root made by hand: contents, stat header, and staying inside."""

import base64
import io
import json
import os
import tarfile

import pytest

from console.dockerapi.handlers.archive import walk
from tests.helpers.tars import entry, image_archive, sparse_bomb, tar_of


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


# --- archives that are refused before anything is unpacked (console/dockerapi/tarcheck.py) ------------------

PETABYTE = 1 << 50
REFUSED_COPIES = (
    (tar_of(entry("../escape.txt", data=b"x")), 400, "climbs out"),
    (tar_of(entry("ok/../../escape.txt", data=b"x")), 400, "climbs out"),
    (tar_of(entry("/../../escape.txt", data=b"x")), 400, "climbs out"),
    (tar_of(entry("abs", tarfile.SYMTYPE, link="/etc")), 400, "absolute"),
    (tar_of(entry("rel", tarfile.SYMTYPE, link="../../../etc")), 400, "points out"),
    (tar_of(entry("deep/", tarfile.DIRTYPE), entry("deep/rel", tarfile.SYMTYPE, link="../../x")), 400, "points out"),
    (tar_of(entry("h", tarfile.LNKTYPE, link="../../etc/passwd")), 400, "points out"),
    (tar_of(entry("null", tarfile.CHRTYPE)), 400, "device node"),
    (tar_of(entry("sda", tarfile.BLKTYPE)), 400, "device node"),
    (tar_of(entry("fine.txt", data=b"first"), entry("../late.txt", data=b"x"), compression="gz"), 400, "climbs out"),
    (sparse_bomb(PETABYTE), 413, "unpacks to"),
    (sparse_bomb(PETABYTE, compression="gz"), 413, "unpacks to"),
    (b"this is not a tar archive at all" * 40, 400, "tar"),
)


def tree(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def uploads_left(api) -> list[str]:
    return sorted(os.listdir(api.tmp))


@pytest.mark.parametrize("archive, status, words", REFUSED_COPIES,
                         ids=[f"{n:02d}-{w}" for n, (_, _, w) in enumerate(REFUSED_COPIES)])
def test_put_refuses_an_archive_that_would_unpack_outside_or_too_much_and_writes_nothing(
        client, box, api, archive, status, words):
    before = tree(box.parent.parent)
    c = client()
    c.request("PUT", "/v1.45/containers/box/archive?path=/data", archive, {"Content-Type": "application/x-tar"})
    answer, headers, body = c.response()
    assert answer == status and "json" in headers["content-type"], body
    assert words in json.loads(body)["message"]
    assert tree(box.parent.parent) == before
    assert uploads_left(api) == []


def test_put_still_takes_relative_symlinks_inside_and_hard_links_to_its_own_files(client, box):
    archive = tar_of(entry("mine.txt", data=b"mine"), entry("same", tarfile.LNKTYPE, link="mine.txt"),
                     entry("near", tarfile.SYMTYPE, link="sub/b.txt"), entry("up/", tarfile.DIRTYPE),
                     entry("up/back", tarfile.SYMTYPE, link="../mine.txt"))
    c = client()
    c.request("PUT", "/v1.45/containers/box/archive?path=/data", archive, {"Content-Type": "application/x-tar"})
    assert c.response()[0] == 200
    assert (box / "data" / "same").read_bytes() == b"mine" and os.readlink(box / "data" / "up" / "back") == "../mine.txt"


REFUSED_LAYERS = (
    (tar_of(entry("../etc/cron.d/x", data=b"* * * * * root sh")), 400, "climbs out"),
    (tar_of(entry("bin/evil", tarfile.SYMTYPE, link="../../../../host")), 400, "points out"),
    (tar_of(entry("etc/shadow", tarfile.LNKTYPE, link="../../../etc/shadow")), 400, "points out"),
    (tar_of(entry("dev/mem", tarfile.CHRTYPE)), 400, "device node"),
    (sparse_bomb(PETABYTE, compression="gz"), 413, "unpacks to"),
)


def _post_archive(client, path: str, archive: bytes):
    c = client()
    c.request("POST", path, archive, {"Content-Type": "application/x-tar"})
    return c.response()


@pytest.mark.parametrize("layer, status, words", REFUSED_LAYERS, ids=[w for _, _, w in REFUSED_LAYERS])
def test_import_refuses_a_layer_that_would_unpack_outside_or_too_much(client, services, api, layer, status, words):
    answer, headers, body = _post_archive(client, "/v1.45/images/create?fromSrc=-&repo=refused", layer)
    assert answer == status and words in json.loads(body)["message"], body
    assert not [call for call in services.calls if call[0] in ("import", "load")]
    assert uploads_left(api) == []


@pytest.mark.parametrize("layer, status, words", REFUSED_LAYERS, ids=[w for _, _, w in REFUSED_LAYERS])
def test_load_reads_the_layers_inside_the_archive_and_refuses_a_bad_one(client, services, api, layer, status, words):
    answer, headers, body = _post_archive(client, "/v1.45/images/load", image_archive(layer))
    assert answer == status and words in json.loads(body)["message"], body
    assert not [call for call in services.calls if call[0] in ("import", "load")]
    assert uploads_left(api) == []


def test_a_root_file_system_keeps_its_absolute_symlinks(client, services):
    layer = tar_of(entry("bin/busybox", data=b"\x7fELF"), entry("bin/sh", tarfile.SYMTYPE, link="/bin/busybox"))
    answer, _, body = _post_archive(client, "/v1.45/images/create?fromSrc=-&repo=fine", layer)
    assert answer == 200, body
