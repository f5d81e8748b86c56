"""A full state root (issue 9, item 5): imports fail clearly and change nothing; PID 1 and its log live on.

Each test mounts a small tmpfs of its own as the state root and fills it for
real: a filler file takes every free block (or all but some), empty files take
every inode. Removing them is "space returns". Every mount is undone after the
test, also when it fails.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from runtime import ContainerSpec, Runtime, StateRoot
from runtime.archive import extract_layer
from runtime.baseimage import build_busybox
from runtime.errors import DiskFull
from runtime.images import ImageStore
from runtime.logs import read_logs
from tests.conftest import remove_cgroup_parent, remove_state_root, unique
from tests.runtime.test_images import docker_save_tar, image_config, make_tar

KIB = 1 << 10
MIB = 1 << 20
BLOB = os.urandom(2 * MIB)  # more than any slack a full filesystem has left in its last pages
LAYER = make_tar({"data/": None, "data/blob": BLOB, "data/motd": b"hello"})
F_GETPIPE_SZ = 1032


# --- a filesystem of the test's own, and filling it ------------------------------------------------


@contextmanager
def small_tmpfs(size: str = "16m", inodes: int | None = None):
    path = Path("/tmp") / unique("full-")
    path.mkdir()
    options = f"size={size},mode=0700" + (f",nr_inodes={inodes}" if inodes else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "berth-test-full", str(path)], check=True)
    try:
        yield path
    finally:
        remove_state_root(path)  # runc containers, overlays and the tmpfs itself, files
        if os.path.ismount(path):
            subprocess.run(["umount", "--lazy", str(path)], capture_output=True)
        if path.exists():
            path.rmdir()


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Filler:
    """Takes the free space of a filesystem, and gives it back."""

    def __init__(self, root: Path):
        self.file = root / "filler"
        self.folder = root / "filler-inodes"

    def fill(self, leave: int = 0) -> None:
        """Every free block but ``leave`` bytes."""
        with open(self.file, "ab", buffering=0) as out:
            while (want := free_bytes(self.file.parent) - leave) > 0:
                try:
                    out.write(bytes(min(want, MIB)))
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break

    def fill_inodes(self, leave: int = 0) -> None:
        """Every free inode but ``leave``."""
        self.folder.mkdir()
        for n in range(1 << 20):
            try:
                (self.folder / str(n)).touch()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        for k in range(1, leave + 1):
            (self.folder / str(n - k)).unlink()

    def free(self) -> None:
        self.file.unlink(missing_ok=True)
        if self.folder.exists():
            for entry in self.folder.iterdir():
                entry.unlink()
            self.folder.rmdir()


def snapshot(state: StateRoot) -> dict[str, str]:
    """Every entry of the image store with what it holds, and every entry of the scratch folder."""
    seen = {}
    for top in (state.images, state.tmp):
        for path in sorted(top.rglob("*")):
            if path.is_symlink():
                seen[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = "dir"
    return seen


@pytest.fixture
def full_store():
    """An image store on a 16 MiB tmpfs holding busybox, and the filler of that tmpfs."""
    with small_tmpfs("16m") as root:
        store = ImageStore(StateRoot(root))
        build_busybox(store)
        yield store, Filler(root)


# --- imports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("leave", [0, 512 * KIB], ids=["nothing-left", "half-a-layer-left"])
def test_an_import_on_a_full_disk_fails_clearly_and_changes_nothing(full_store, leave):
    store, filler = full_store
    before = snapshot(store.state)
    filler.fill(leave)
    with pytest.raises(DiskFull, match=r"^cannot import the image: no space left on device \(the filesystem of "):
        store.import_rootfs(io.BytesIO(LAYER), "full/import:1")
    assert snapshot(store.state) == before  # no layer, no config, no tag, no temp dir
    filler.free()
    image = store.import_rootfs(io.BytesIO(LAYER), "full/import:1")
    assert store.get("full/import:1").id == image.id
    assert (store.layer_dirs(image)[0] / "data" / "blob").read_bytes() == BLOB


@pytest.mark.parametrize("leave", [0, 3 * MIB], ids=["nothing-left", "room-for-the-archive-not-its-layers"])
def test_a_load_on_a_full_disk_fails_clearly_and_changes_nothing(full_store, leave, tmp_path):
    store, filler = full_store
    archive = tmp_path / "saved.tar"
    archive.write_bytes(docker_save_tar(image_config([LAYER]), [LAYER], ["full/load:1"]))
    before = snapshot(store.state)
    filler.fill(leave)
    with pytest.raises(DiskFull, match=r"^cannot load the images: no space left on device"):
        store.load(str(archive))
    assert snapshot(store.state) == before
    filler.free()
    [image] = store.load(str(archive))
    assert image.repo_tags == ["full/load:1"]
    assert (store.layer_dirs(image)[0] / "data" / "motd").read_bytes() == b"hello"


def test_tagging_on_a_full_disk_fails_clearly_and_keeps_the_tags(full_store):
    store, filler = full_store
    before = snapshot(store.state)
    filler.fill()
    with pytest.raises(DiskFull, match="^cannot tag the image: no space left on device"):
        store.tag("busybox", "full/tagged:1")
    assert snapshot(store.state) == before
    filler.free()
    store.tag("busybox", "full/tagged:1")
    assert store.get("full/tagged:1").id == store.get("busybox").id


@pytest.mark.parametrize("leave", [0, 6], ids=["no-inode-left", "a-few-inodes-left"])
def test_an_import_out_of_inodes_fails_clearly_and_changes_nothing(leave):
    # With a few left, the layer's temp dir is made and filled in part; removing it needs no new inode.
    with small_tmpfs("16m", inodes=2000) as root:
        store = ImageStore(StateRoot(root))
        store.import_rootfs(io.BytesIO(make_tar({"etc/": None, "etc/motd": b"base"})), "full/base:1")
        filler = Filler(root)
        before = snapshot(store.state)
        filler.fill_inodes(leave)
        with pytest.raises(DiskFull, match="^cannot import the image: no space left on device"):
            store.import_rootfs(io.BytesIO(make_tar({f"d{n}/f": b"x" for n in range(50)})), "full/many:1")
        assert snapshot(store.state) == before
        filler.free()
        image = store.import_rootfs(io.BytesIO(make_tar({f"d{n}/f": b"x" for n in range(50)})), "full/many:1")
        assert (store.layer_dirs(image)[0] / "d49" / "f").read_bytes() == b"x"


def test_a_layer_that_does_not_fit_is_an_error_never_a_layer_with_entries_missing():
    # Parent directories the tar does not list are made on the way, where other failures only
    # skip the entry with a warning: a full disk there must not pass for a complete layer.
    with small_tmpfs("16m", inodes=200) as root:
        dest = root / "layer"
        dest.mkdir()
        Filler(root).fill_inodes()
        with pytest.raises(DiskFull, match="^cannot extract the archive: no space left on device"):
            extract_layer(io.BytesIO(make_tar({"a/b/file": b"x", "c/d/file": b"y"})), dest)


# --- a running container's log -----------------------------------------------------------------------

LINE_PAD = 2000
PRINTER = (
    f'pad=$(head -c {LINE_PAD} /dev/zero | tr "\\0" x); i=0; '
    'while true; do echo "line $i $pad"; echo $i > /dev/shm/count; i=$((i+1)); sleep 0.05; done'
)
PRINTED = re.compile(rb"line (\d+) x{%d}\n" % LINE_PAD)


@contextmanager
def engine_on_tmpfs(size: str, inodes: int | None = None):
    """A runtime whose state root is a small tmpfs with busybox, and the filler of that tmpfs."""
    with small_tmpfs(size, inodes) as root:
        state = StateRoot(root, unique("cg-"))
        engine = Runtime(state)
        filler = Filler(root)
        try:
            build_busybox(engine.images)
            yield engine, filler
        finally:
            filler.free()
            for container in engine.list():
                engine.remove(container.id, force=True)
            engine.gc()
            remove_cgroup_parent(state.cgroup_parent)


@pytest.fixture
def full_engine():
    with engine_on_tmpfs("32m") as made:
        yield made


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_until_still(path: Path, quiet: float = 1.0, timeout: float = 20) -> int:
    """The size of a file once it has not grown for ``quiet`` seconds."""
    size, since = path.stat().st_size, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = path.stat().st_size
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return size
    raise AssertionError(f"{path} kept growing on a full filesystem")


def numbers_logged(engine, container_id: str) -> list[int]:
    return [int(m.group(1)) for r in engine.logs(container_id) if (m := PRINTED.fullmatch(r.data))]


def test_a_container_outlives_a_full_disk_and_its_log_resumes(full_engine):
    engine, filler = full_engine
    container = engine.create(ContainerSpec(image="busybox", cmd=["sh", "-c", PRINTER]))
    engine.start(container.id)
    pid = engine.get(container.id).state.pid
    counter = Path(f"/proc/{pid}/root/dev/shm/count")
    printed = lambda: int(counter.read_text() or -1)
    log = engine.log_path(container.id)
    wait_for(lambda: len(numbers_logged(engine, container.id)) >= 5, 10, "the first lines in the log")

    filler.fill()
    full_size = wait_until_still(log)
    # PID 1 goes on printing far more than its stdout pipe holds: conmon keeps reading the pipe
    # and drops what it cannot write, so PID 1 never blocks on a full pipe.
    pipe = os.open(f"/proc/{pid}/fd/1", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        pipe_lines = fcntl.fcntl(pipe, F_GETPIPE_SZ) // (LINE_PAD + 12)
    finally:
        os.close(pipe)
    at_full = printed()
    wait_for(lambda: printed() > at_full + 2 * pipe_lines, 60, "PID 1 to print past its pipe's capacity")
    assert engine.get(container.id).running
    assert log.stat().st_size == full_size

    at_free = printed()
    filler.free()
    wait_for(lambda: any(n > at_free for n in numbers_logged(engine, container.id)), 10,
             "lines printed after space returned in `docker logs`")
    assert engine.get(container.id).running
    numbers = numbers_logged(engine, container.id)
    assert numbers == sorted(numbers)
    after = [n for n in numbers if n > at_free]
    assert after == list(range(after[0], after[0] + len(after)))  # nothing lost once space is back


def torn_log(path: Path, cut: int) -> None:
    """What conmon leaves when a record is cut short by ENOSPC and the next one comes once space returns."""
    records = [f"2026-11-30T06:18:2{n}.766586187+00:00 stdout F line {n} {'x' * 50}\n".encode() for n in range(4)]
    torn = records[2][:cut]  # writev wrote what fitted; conmon drops the rest
    path.write_bytes(records[0] + records[1] + torn + records[3])


@pytest.mark.parametrize("cut", [15, 44, 70], ids=["in-the-time", "in-the-tag", "in-the-text"])
def test_a_record_cut_short_by_a_full_disk_does_not_swallow_the_next(tmp_path, cut):
    log = tmp_path / "ctr.log"
    torn_log(log, cut)
    lines = [r.data for r in read_logs(log)]
    assert lines[:2] == [b"line 0 " + b"x" * 50 + b"\n", b"line 1 " + b"x" * 50 + b"\n"]
    assert lines[-1] == b"line 3 " + b"x" * 50 + b"\n"
    assert [r.data for r in read_logs(log, tail=1)] == [lines[-1]]


# --- a container made on a full disk ---------------------------------------------------------------


def test_creating_a_container_on_a_full_disk_fails_clearly_and_leaves_nothing(full_engine):
    engine, filler = full_engine
    before = sorted(os.listdir(engine.state.containers))
    filler.fill()
    with pytest.raises(DiskFull, match="^cannot create the container: no space left on device"):
        engine.create(ContainerSpec(image="busybox", cmd=["true"], name="on-a-full-disk"))
    assert engine.list() == [] and sorted(os.listdir(engine.state.containers)) == before
    filler.free()
    assert engine.create(ContainerSpec(image="busybox", cmd=["true"], name="on-a-full-disk")).name == "on-a-full-disk"


def test_a_container_that_exits_while_the_disk_is_full_is_seen_to_have_exited(full_engine):
    engine, filler = full_engine
    container = engine.create(ContainerSpec(image="busybox", cmd=["sh", "-c", "sleep 1; exit 7"]))
    engine.start(container.id)
    filler.fill()
    wait_for(lambda: not engine.get(container.id).running, 15, "ps to show the container exited")
    assert [c.id for c in engine.list() if c.running] == []
    filler.free()
    # conmon could not write the exit code on the full disk: it is lost, the exit is not.
    assert engine.get(container.id).state.status == "exited"


def test_a_log_is_not_rotated_while_no_inode_is_left_and_is_once_there_are():
    # conmon, asked to reopen its log where no file can be made, exits: PID 1's output would go nowhere.
    with engine_on_tmpfs("16m", inodes=2000) as (engine, filler):
        container = engine.create(ContainerSpec(image="busybox", log_max_size=1024, log_max_files=2,
                                                cmd=["sh", "-c", "while true; do echo a line of the log; sleep 0.05; done"]))
        engine.start(container.id)
        log = engine.log_path(container.id)
        wait_for(lambda: log.stat().st_size > 1024, 15, "the log to pass its size limit")
        filler.fill_inodes()
        assert engine.rotate_logs() == []
        time.sleep(0.3)
        assert engine.get(container.id).running and not log.with_name(f"{log.name}.1").exists()
        filler.free()
        assert engine.rotate_logs() == [container.id]
        wait_for(lambda: log.exists() and log.stat().st_size > 0, 15, "lines in the new log after the rotation")
        assert engine.get(container.id).running
