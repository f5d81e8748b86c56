"""Safe layer extraction (runtime/archive.py). Runs as root: it makes device nodes and mounts."""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from runtime.archive import OPAQUE_XATTR, extract_layer, open_in_root
from runtime.errors import InvalidValue


def entry(name, type_=tarfile.REGTYPE, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    info.mode = 0o644 if type_ == tarfile.REGTYPE else 0o755
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def make_tar(*entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def outside(tmp_path):
    """A directory beside dest that no entry may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "dest"


def test_it_returns_the_sha256_of_the_uncompressed_tar_as_diff_id(dest):
    data = make_tar(entry("a", data=b"hello"))
    info = extract_layer(io.BytesIO(data), dest)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert info.size == 5
    assert (dest / "a").read_bytes() == b"hello"


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_it_detects_compression_by_magic_bytes(dest, compress):
    data = make_tar(entry("a", data=b"hello"))
    info = extract_layer(io.BytesIO(compress(data)), dest)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (dest / "a").read_bytes() == b"hello"


def test_it_reads_from_a_path_and_from_a_pipe(tmp_path):
    data = gzip.compress(make_tar(entry("a", data=b"x")))
    (tmp_path / "layer.tgz").write_bytes(data)
    assert (extract_layer(tmp_path / "layer.tgz", tmp_path / "one") .size) == 1
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        assert extract_layer(pipe, tmp_path / "two").size == 1


def test_it_keeps_traversal_and_absolute_names_inside_dest(dest, outside):
    data = make_tar(
        entry("../x", data=b"dotdot"),
        entry("/abs", data=b"abs"),
        entry("a/../../../outside/y", data=b"deep"),
    )
    extract_layer(io.BytesIO(data), dest)
    assert (dest / "x").read_bytes() == b"dotdot"
    assert (dest / "abs").read_bytes() == b"abs"
    assert (dest / "outside" / "y").read_bytes() == b"deep"
    assert listing(outside) == set()
    assert not (dest.parent / "x").exists()


def test_it_resolves_planted_symlinks_as_if_dest_were_the_root(dest, outside):
    data = make_tar(
        entry("evil", tarfile.SYMTYPE, linkname=str(outside)),
        entry("evil2", tarfile.SYMTYPE, linkname="../../.."),
        entry("evil3", tarfile.SYMTYPE, linkname="evil2/" + str(outside)),
        entry("evil/pwned", data=b"1"),
        entry("evil2/pwned", data=b"2"),
        entry("evil3/pwned3", data=b"3"),
    )
    info = extract_layer(io.BytesIO(data), dest)
    assert listing(outside) == set()
    assert not (dest.parent / "pwned").exists()
    assert (dest / str(outside).lstrip("/") / "pwned").read_bytes() == b"1"
    assert (dest / "pwned").read_bytes() == b"2"
    assert (dest / str(outside).lstrip("/") / "pwned3").read_bytes() == b"3"
    assert os.readlink(dest / "evil") == str(outside)  # the link itself is kept verbatim
    assert info.warnings == []


def test_it_replaces_a_planted_symlink_instead_of_writing_through_it(dest, outside):
    victim = outside / "victim"
    victim.write_bytes(b"safe")
    data = make_tar(
        entry("link", tarfile.SYMTYPE, linkname=str(victim)),
        entry("link", data=b"overwritten"),
    )
    extract_layer(io.BytesIO(data), dest)
    assert victim.read_bytes() == b"safe"
    assert (dest / "link").read_bytes() == b"overwritten"
    assert not (dest / "link").is_symlink()


def test_it_gives_up_on_symlink_loops_with_a_warning(dest):
    data = make_tar(
        entry("a", tarfile.SYMTYPE, linkname="b"),
        entry("b", tarfile.SYMTYPE, linkname="a"),
        entry("a/file", data=b"x"),
    )
    info = extract_layer(io.BytesIO(data), dest)
    assert any("a/file" in w for w in info.warnings)


def test_it_makes_hard_links_inside_dest(dest):
    data = make_tar(
        entry("dir/file", data=b"shared"),
        entry("link", tarfile.LNKTYPE, linkname="dir/file"),
        entry("clamped", tarfile.LNKTYPE, linkname="../../dir/file"),
    )
    info = extract_layer(io.BytesIO(data), dest)
    assert os.stat(dest / "link").st_ino == os.stat(dest / "dir" / "file").st_ino
    assert os.stat(dest / "clamped").st_ino == os.stat(dest / "dir" / "file").st_ino
    assert info.warnings == []


def test_it_refuses_hard_links_to_missing_or_outside_targets(dest, outside):
    (outside / "secret").write_bytes(b"secret")
    data = make_tar(
        entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
        entry("missing", tarfile.LNKTYPE, linkname="nothing/here"),
        entry("absolute", tarfile.LNKTYPE, linkname=str(outside / "secret")),
        entry("via-symlink", tarfile.LNKTYPE, linkname="escape/secret"),
    )
    info = extract_layer(io.BytesIO(data), dest)
    assert not (dest / "missing").exists()
    assert not (dest / "absolute").exists()
    assert not (dest / "via-symlink").exists()
    assert len(info.warnings) == 3
    assert os.stat(outside / "secret").st_nlink == 1


def test_it_skips_device_nodes(dest):
    data = make_tar(
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        entry("dev/pipe", tarfile.FIFOTYPE, mode=0o600),
    )
    info = extract_layer(io.BytesIO(data), dest)
    assert not (dest / "dev" / "null").exists()
    assert not (dest / "dev" / "sda").exists()
    assert stat.S_ISFIFO(os.lstat(dest / "dev" / "pipe").st_mode)
    assert len(info.warnings) == 2


def test_it_keeps_owners_modes_mtimes_and_symlinks(dest):
    data = make_tar(
        entry("bin", tarfile.DIRTYPE, mode=0o750, uid=3, gid=4, mtime=1_000_000),
        entry("bin/su", data=b"#!", mode=0o4755, uid=1000, gid=1001, mtime=1_234_567),
        entry("bin/sh", tarfile.SYMTYPE, linkname="busybox", uid=5, gid=6, mtime=1_111_111),
    )
    extract_layer(io.BytesIO(data), dest)
    su = os.lstat(dest / "bin" / "su")
    assert (su.st_uid, su.st_gid, stat.S_IMODE(su.st_mode), su.st_mtime) == (1000, 1001, 0o4755, 1_234_567)
    sh = os.lstat(dest / "bin" / "sh")
    assert (os.readlink(dest / "bin" / "sh"), sh.st_uid, sh.st_gid, sh.st_mtime) == ("busybox", 5, 6, 1_111_111)
    bin_ = os.lstat(dest / "bin")
    assert (bin_.st_uid, bin_.st_gid, stat.S_IMODE(bin_.st_mode), bin_.st_mtime) == (3, 4, 0o750, 1_000_000)


def test_it_keeps_xattrs_but_not_overlay_ones(dest):
    data = make_tar(
        entry("f", data=b"x", pax_headers={"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
    )
    info = extract_layer(io.BytesIO(data), dest)
    assert os.getxattr(dest / "f", "user.note") == b"hi"
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "f")
    assert len(info.warnings) == 1


def test_it_turns_whiteouts_into_overlay_whiteouts(dest):
    data = make_tar(
        entry("etc", tarfile.DIRTYPE),
        entry("etc/.wh.motd"),
        entry("var/.wh..wh..opq"),
    )
    extract_layer(io.BytesIO(data), dest)
    st = os.lstat(dest / "etc" / "motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (dest / "etc" / ".wh.motd").exists()
    assert os.getxattr(dest / "var", OPAQUE_XATTR) == b"y"
    assert listing(dest / "var") == set()


def test_it_leaves_whiteout_names_alone_when_asked(dest):
    extract_layer(io.BytesIO(make_tar(entry("a/.wh.b", data=b"x"))), dest, whiteouts=False)
    assert (dest / "a" / ".wh.b").read_bytes() == b"x"


def test_its_layers_stack_on_overlayfs(tmp_path):
    lower, upper, mnt = tmp_path / "lower", tmp_path / "upper", tmp_path / "mnt"
    extract_layer(io.BytesIO(make_tar(
        entry("a/deleted", data=b"1"), entry("a/kept", data=b"2"),
        entry("d/old1", data=b"3"), entry("d/old2", data=b"4"),
    )), lower)
    extract_layer(io.BytesIO(make_tar(
        entry("a/.wh.deleted"), entry("d", tarfile.DIRTYPE), entry("d/.wh..wh..opq"), entry("d/new", data=b"5"),
    )), upper)
    mnt.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={upper}:{lower}", str(mnt)], check=True)
    try:
        assert sorted(os.listdir(mnt / "a")) == ["kept"]
        assert sorted(os.listdir(mnt / "d")) == ["new"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_it_reports_progress_with_increasing_numbers(tmp_path, dest):
    payload = os.urandom(3 * 1024 * 1024 + 17)  # random: stays ~3 MiB once compressed
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(gzip.compress(make_tar(entry("big", data=payload))))
    calls = []
    extract_layer(path, dest, progress=lambda done, total: calls.append((done, total)))
    size = path.stat().st_size
    assert len(calls) >= 4
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert all(total == size for _, total in calls)
    assert calls[-1][0] == size
    steps = [b - a for (a, _), (b, _) in zip(calls, calls[1:-1])]
    assert all(step >= 1024 * 1024 for step in steps)


def test_it_reports_an_unknown_total_for_streams(dest):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, make_tar(entry("a", data=b"x")))
    os.close(write_fd)
    calls = []
    with os.fdopen(read_fd, "rb") as pipe:
        extract_layer(pipe, dest, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (10240, None)


@pytest.mark.parametrize("data", [b"this is not a tar archive" * 40, gzip.compress(b"x" * 600)[:-8], b"\x28\xb5\x2f\xfd...."])
def test_it_rejects_what_is_not_a_layer(dest, data):
    with pytest.raises(InvalidValue):
        extract_layer(io.BytesIO(data), dest)


def test_open_in_root_follows_symlinks_only_inside_the_root(tmp_path, outside):
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    extract_layer(io.BytesIO(make_tar(
        entry("blobs/real", data=b"inside"),
        entry("dup/layer.tar", tarfile.SYMTYPE, linkname="../blobs/real"),
        entry("escape", tarfile.SYMTYPE, linkname=str(outside / "secret")),
    )), root)
    with open_in_root(root, "dup/layer.tar") as f:
        assert f.read() == b"inside"
    with pytest.raises(FileNotFoundError):
        open_in_root(root, "escape")
    with pytest.raises(FileNotFoundError):
        open_in_root(root, "../outside/secret")


def test_open_in_root_refuses_fifos_without_blocking(tmp_path):
    root = tmp_path / "root"
    extract_layer(io.BytesIO(make_tar(entry("manifest.json", tarfile.FIFOTYPE))), root)
    with pytest.raises(InvalidValue):
        open_in_root(root, "manifest.json")


def test_it_never_writes_outside_with_random_hostile_names(dest, outside):
    # One archive mixing every trick, checked as a whole.
    marker = f"berth-{uuid.uuid4().hex}"
    data = make_tar(
        entry("s1", tarfile.SYMTYPE, linkname="/"),
        entry("s2", tarfile.SYMTYPE, linkname=".."),
        entry("s3", tarfile.SYMTYPE, linkname="s2/s2/s2"),
        entry(f"s1/../{marker}", data=b"a"),
        entry(f"s2/{marker}", data=b"b"),
        entry(f"s3/{marker}-3", data=b"c"),
        entry(f"s2/.wh.{marker}"),
        entry("h", tarfile.LNKTYPE, linkname=f"s2/{marker}"),
    )
    extract_layer(io.BytesIO(data), dest)
    assert listing(outside) == set()
    assert not list(dest.parent.glob(f"{marker}*"))
    assert not list(Path("/").glob(f"{marker}*"))


def test_open_dir_in_root_keeps_symlinks_inside_the_root(tmp_path):
    from runtime.archive import open_dir_in_root

    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "marker").write_text("inside")
    (root / "escape").symlink_to("/")
    (root / "up").symlink_to("../../../../etc")
    for name in ("escape/etc", "up", "/../../etc"):
        fd = open_dir_in_root(root, name)
        try:
            assert os.listdir(f"/proc/self/fd/{fd}") == ["marker"]
        finally:
            os.close(fd)
