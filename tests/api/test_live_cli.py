"""Issue 3 §5 with the real docker CLI against a real Berth (Redis, worker, runc) through the API process."""

import errno
import fcntl
import io
import json
import os
import select
import struct
import subprocess
import tarfile
import termios
import time
from hashlib import sha256

import pytest

from tests.browser.web import DOCKER

pytestmark = pytest.mark.live


def test_run_rm_echo_prints_hi_and_leaves_nothing(docker):
    for _ in range(3):  # reliably, not once by luck
        done = docker("run", "--rm", "busybox", "echo", "hi")
        assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert docker("ps", "-a", "-q").stdout == ""


def test_run_gives_the_containers_exit_code(docker):
    done = docker("run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.returncode == 3
    assert (done.stdout, done.stderr) == ("out\n", "err\n")


def test_the_web_container_flow(docker):
    started = docker("run", "-d", "--name", "web", "busybox", "sleep", "1000")
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    assert len(cid) == 64

    listing = docker("ps")
    assert listing.returncode == 0
    header, *rows = listing.stdout.splitlines()
    assert header.split()[:2] == ["CONTAINER", "ID"]
    assert any(row.startswith(cid[:12]) and row.endswith("web") and "Up " in row for row in rows)
    assert docker("ps", "-a", "-q").stdout.split() == [cid[:12]]

    pid = docker("inspect", "-f", "{{.State.Pid}}", "web").stdout.strip()
    assert int(pid) > 0 and os.path.exists(f"/proc/{pid}")

    ps = docker("exec", "web", "ps")
    assert ps.returncode == 0 and "sleep 1000" in ps.stdout

    refused = docker("rm", "web")
    assert refused.returncode == 1
    assert "container is running: stop the container before removing or force remove" in refused.stderr

    assert docker("stop", "-t", "1", "web").returncode == 0
    assert docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "web").stdout.split() == ["137", "exited"]
    assert docker("stop", "web").returncode == 0  # already stopped: 304, fine for the CLI

    assert docker("start", "web").returncode == 0
    assert docker("inspect", "-f", "{{.State.Running}}", "web").stdout.strip() == "true"

    docker("run", "-d", "busybox", "sleep", "1000")
    every = docker("ps", "-aq").stdout.split()
    assert len(every) == 2
    removed = docker("rm", "-f", *every)
    assert removed.returncode == 0, removed.stderr
    assert docker("ps", "-aq").stdout == ""


def test_logs_follow_a_container_that_prints_then_exits(docker):
    script = "echo one; sleep 1; echo two >&2; sleep 0.5; echo three"
    cid = docker("run", "-d", "busybox", "sh", "-c", script).stdout.strip()
    followed = docker("logs", "-f", cid, timeout=30)
    assert followed.returncode == 0
    assert followed.stdout == "one\nthree\n" and followed.stderr == "two\n"
    assert docker("logs", "--tail", "1", cid).stdout == "three\n"
    stamped = docker("logs", "-t", cid).stdout.splitlines()[0]
    assert stamped.endswith(" one") and "T" in stamped.split()[0]


def test_a_missing_command_exits_127_and_leaves_nothing(docker):
    done = docker("run", "--rm", "busybox", "nosuchcmd")
    assert done.returncode == 127
    assert "executable file not found" in done.stderr
    assert docker("ps", "-aq").stdout == ""


def test_exec_reports_the_commands_exit_code_and_a_missing_command(docker):
    docker("run", "-d", "--name", "srv", "busybox", "sleep", "1000")
    done = docker("exec", "srv", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (done.returncode, done.stdout, done.stderr) == (4, "out\n", "err\n")
    missing = docker("exec", "srv", "nosuchcmd")
    assert missing.returncode == 127 and "OCI runtime exec failed" in missing.stdout


def test_a_pull_of_a_local_tag_is_up_to_date_and_of_anything_else_denied(docker):
    pulled = docker("pull", "busybox")
    assert pulled.returncode == 0 and "Image is up to date for busybox:latest" in pulled.stdout
    denied = docker("run", "--rm", "nothing-here-berth")
    assert denied.returncode == 125
    assert "Unable to find image 'nothing-here-berth:latest' locally" in denied.stderr
    assert "pull access denied for nothing-here-berth, repository does not exist" in denied.stderr


def test_cp_both_ways(docker, tmp_path):
    docker("run", "-d", "--name", "box", "busybox", "sleep", "1000")
    source = tmp_path / "note.txt"
    source.write_text("from the host\n")
    assert docker("cp", str(source), "box:/tmp/").returncode == 0
    assert docker("exec", "box", "cat", "/tmp/note.txt").stdout == "from the host\n"
    back = tmp_path / "back"
    assert docker("cp", "box:/etc/hostname", str(back)).returncode == 0
    cid = docker("inspect", "-f", "{{.Id}}", "box").stdout.strip()
    assert back.read_text().strip() == cid[:12]


def test_top_and_stats_read_the_cgroup(docker):
    docker("run", "-d", "--name", "busy", "busybox", "sleep", "1000")
    top = docker("top", "busy")
    assert top.returncode == 0 and "sleep 1000" in top.stdout
    stats = docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "busy")
    assert stats.returncode == 0, stats.stderr
    name, pids, usage = stats.stdout.split(maxsplit=2)
    assert (name, pids) == ("busy", "1") and "/" in usage


# --- images: import and load ----------------------------------------------------------------------


def _tar(files: dict[str, bytes | str]) -> bytes:
    """Entries: bytes are files, a str is a symlink target."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _busybox_rootfs() -> bytes:
    with open("/bin/busybox", "rb") as binary:
        return _tar({"bin/busybox": binary.read(), "bin/sh": "busybox"})


def _docker_save(layer: bytes, tag: str) -> bytes:
    diff_id = "sha256:" + sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer0/layer.tar"]}]).encode()
    return _tar({config_name: config, "layer0/layer.tar": layer, "manifest.json": manifest})


def test_import_and_load_bring_images_in_and_images_lists_them(docker, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_busybox_rootfs())
    saved = tmp_path / "saved.tar"
    saved.write_bytes(_docker_save(_busybox_rootfs(), "berth-loaded:1.0"))
    try:
        imported = docker("import", "-c", 'CMD ["/bin/sh"]', str(rootfs), "berth-imported:1.0")
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip().startswith("sha256:")
        loaded = docker("load", "-i", str(saved))
        assert loaded.returncode == 0, loaded.stderr
        assert "Loaded image: berth-loaded:1.0" in loaded.stdout
        with open(saved, "rb") as stdin_tar:  # docker load < file: the same, body streamed chunked
            again = subprocess.run([str(DOCKER), "load"], stdin=stdin_tar, env=docker.env, capture_output=True,
                                   text=True, timeout=60)
        assert again.returncode == 0 and "berth-loaded:1.0" in again.stdout
        images = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert {"busybox:latest", "berth-imported:1.0", "berth-loaded:1.0"} <= set(images)
        ran = docker("run", "--rm", "berth-imported:1.0", "/bin/busybox", "echo", "imported runs")
        assert ran.stdout == "imported runs\n", ran.stderr
        broken = docker("load", input="not a tar")
        assert broken.returncode == 1 and broken.stderr.strip()
    finally:
        docker("rmi", "-f", "berth-imported:1.0", "berth-loaded:1.0")


# --- an interactive shell through a pty ------------------------------------------------------------


def _read_until(fd: int, wanted: bytes, deadline: float, seen: bytearray) -> bool:
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError as error:
            if error.errno == errno.EIO:
                return wanted in seen
            raise
        if not chunk:
            return wanted in seen
        seen += chunk
    return True


def _in_a_terminal(docker, *args: str, size: tuple[int, int] = (24, 80)) -> tuple[subprocess.Popen, int]:
    """The docker CLI with a pty of ``size`` (rows, cols) as its terminal (CheckTty wants one);
    (process, the pty's master)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen([str(DOCKER), *args], env=docker.env, stdin=slave, stdout=slave, stderr=slave,
                               preexec_fn=controlling_terminal)
    os.close(slave)
    return process, master


def _type_and_check(process: subprocess.Popen, master: int) -> None:
    seen = bytearray()
    try:
        assert _read_until(master, b"# ", time.monotonic() + 30, seen), bytes(seen)
        os.write(master, b"echo $((6*7))\r")
        assert _read_until(master, b"42", time.monotonic() + 15, seen), bytes(seen)
        os.write(master, b"exit\r")
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)


def test_run_it_gives_a_working_interactive_shell(docker):
    _type_and_check(*_in_a_terminal(docker, "run", "-it", "--rm", "busybox", "sh"))
    assert docker("ps", "-aq").stdout == ""


def test_exec_it_gives_a_working_interactive_shell(docker):
    docker("run", "-d", "--name", "host-of-exec", "busybox", "sleep", "1000")
    _type_and_check(*_in_a_terminal(docker, "exec", "-it", "host-of-exec", "sh"))
    assert docker("inspect", "-f", "{{.State.Running}}", "host-of-exec").stdout.strip() == "true"


def _all_in_a_terminal(docker, *args: str, size: tuple[int, int]) -> bytes:
    """What the docker CLI prints in a pty of ``size`` (rows, cols), to its exit (which must be 0)."""
    process, master = _in_a_terminal(docker, *args, size=size)
    seen = bytearray()
    try:
        _read_until(master, b"never", time.monotonic() + 30, seen)  # all of it, to the end
        assert process.wait(30) == 0, bytes(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)
    return bytes(seen)


def test_exec_t_runs_the_command_in_a_terminal_of_the_users_size(docker):
    """The CLI sends its terminal's size with the start: a command that asks at once sees it, not the
    0x0 of a terminal that gets its size only after the command began."""
    docker("run", "-d", "--name", "sized", "busybox", "sleep", "1000")
    for _ in range(5):  # from the start, not by luck
        output = _all_in_a_terminal(docker, "exec", "-t", "sized", "stty", "size", size=(40, 120))
        assert output.split() == [b"40", b"120"], output


def test_run_t_starts_pid_1_in_a_terminal_of_the_users_size(docker):
    """`docker run -t` sends its terminal's size with the create: PID 1 has it from its first
    instruction (a resize after the start came too late for a PID 1 that looks at once)."""
    for _ in range(3):
        output = _all_in_a_terminal(docker, "run", "--rm", "-t", "busybox", "stty", "size", size=(40, 120))
        assert output.split() == [b"40", b"120"], output


def test_docker_version_and_info_talk_to_berth(docker):
    version = docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Version}}")
    assert version.stdout.split() == ["1.45", "berth-0.1"]
    info = docker("info", "--format", "{{.Driver}} {{.Images}}")
    assert info.returncode == 0 and info.stdout.split()[0] == "overlay"
