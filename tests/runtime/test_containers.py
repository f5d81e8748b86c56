"""Containers for real: runc, conmon, overlayfs and cgroups on this host (root)."""

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime import (
    Tmpfs,
    BerthError,
    BindMount,
    ContainerNotRunning,
    ContainerRunning,
    ContainerSpec,
    InvalidValue,
    NameInUse,
    NETWORK_HOST,
    NetworkSpec,
    NoSuchContainer,
    NoSuchImage,
    Resources,
    StartFailed,
)
from runtime.mounts import mount_points
from tests.conftest import CGROUP_ROOT, unique


def output(engine, container_id):
    return b"".join(record.data for record in engine.logs(container_id)).decode()


def finished(engine, container):
    engine.wait(container.id, timeout=30)
    return engine.get(container.id)


def test_the_command_runs_as_pid_1(engine, run):
    container = finished(engine, run("sh", "-c", "echo $$"))
    assert output(engine, container.id) == "1\n"
    assert container.state.exit_code == 0


def test_the_exit_code_is_pid_1s(engine, run):
    container = finished(engine, run("sh", "-c", "exit 3"))
    assert container.state.status == "exited"
    assert container.state.exit_code == 3
    assert container.state.finished_at >= container.state.started_at


def test_stop_sends_sigkill_after_the_grace_period(engine, run):
    # sleep as PID 1 has no SIGTERM handler, so only the SIGKILL after the grace ends it.
    container = run("sleep", "1000")
    began = time.monotonic()
    engine.stop(container.id, timeout=1)
    took = time.monotonic() - began
    state = engine.get(container.id).state
    # PID 1's own output says why, should it have ended before the stop (a runtime error is printed there).
    assert (state.status, state.exit_code, output(engine, container.id)) == ("exited", 137, "")
    assert 0.9 <= took < 10


def test_start_returns_once_pid_1_runs_the_command(engine, run):
    # Before, PID 1 is still runc init: a SIGTERM then meets runc's Go runtime, which, unable to
    # die of it as a PID 1, exits 2 (a stop right after start ended with code 2, not 137).
    for _ in range(10):
        container = run("sleep", "1000", start=False)
        engine.start(container.id)
        pid = engine.get(container.id).state.pid
        assert Path(f"/proc/{pid}/comm").read_text() == "sleep\n"
        engine.remove(container.id, force=True)


def wait_for_line(engine, container_id, line: bytes, timeout=10):
    """Until PID 1 printed ``line``: its trap is in place then."""
    deadline = time.monotonic() + timeout
    while line not in b"".join(r.data for r in engine.logs(container_id)):
        assert time.monotonic() < deadline, f"{line!r} never printed"
        time.sleep(0.02)


def test_stop_ends_a_container_that_handles_sigterm_at_once(engine, run):
    container = run("sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done")
    wait_for_line(engine, container.id, b"ready")
    began = time.monotonic()
    engine.stop(container.id, timeout=10)
    assert time.monotonic() - began < 5
    assert engine.get(container.id).state.exit_code == 0


def test_kill_gives_128_plus_the_signal(engine, run):
    container = run("sleep", "1000")
    engine.kill(container.id, "SIGKILL")
    assert engine.wait(container.id, timeout=10) == 137


def test_writes_never_reach_the_image_nor_another_container(engine, run):
    writer = finished(engine, run("sh", "-c", "echo mine > /etc/marker && cat /etc/marker"))
    assert output(engine, writer.id) == "mine\n"
    reader = finished(engine, run("sh", "-c", "cat /etc/marker || echo absent"))
    assert "absent" in output(engine, reader.id)
    for layer in engine.images.layer_dirs(engine.images.get("busybox")):
        assert not (layer / "etc" / "marker").exists()


def test_stdout_and_stderr_arrive_in_order_with_their_stream(engine, run):
    container = finished(engine, run("sh", "-c", "echo one; echo two >&2; sleep 0.05; echo three"))
    records = [(r.stream, r.data) for r in engine.logs(container.id)]
    assert records == [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n")]


def test_follow_sees_a_line_printed_after_it_started(engine, run):
    container = run("sh", "-c", "echo early; sleep 1; echo late")
    seen = []
    for record in engine.logs(container.id, follow=True):
        seen.append(record.data)
    assert seen == [b"early\n", b"late\n"]


def test_the_monitor_outlives_the_process_that_started_the_container(engine, run):
    container = run("sh", "-c", "sleep 1; exit 7", start=False)
    starter = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from pathlib import Path
        from runtime import Runtime, StateRoot
        Runtime(StateRoot(Path({str(engine.state.root)!r}), {engine.state.cgroup_parent!r})).start({container.id!r})
        os.kill(os.getpid(), 9)
    """)
    died = subprocess.run([sys.executable, "-c", starter])
    assert died.returncode == -signal.SIGKILL
    assert engine.get(container.id).state.status == "running"
    assert engine.wait(container.id, timeout=10) == 7


def test_exec_runs_in_the_containers_namespaces_and_returns_its_code(engine, run):
    container = run("sleep", "1000")
    kinds = ["pid", "mnt", "uts", "ipc", "net"]
    result = engine.exec(container.id, ["sh", "-c", "for k in " + " ".join(kinds) + "; do readlink /proc/self/ns/$k; done; exit 5"])
    assert result.exit_code == 5
    inside = result.output.decode().split()
    outside = [os.readlink(f"/proc/{container.state.pid}/ns/{kind}") for kind in kinds]
    assert inside == outside
    assert inside != [os.readlink(f"/proc/self/ns/{kind}") for kind in kinds]


def test_exec_with_a_tty_gets_a_terminal_and_its_exit_code(engine, run):
    container = run("sleep", "1000")
    result = engine.exec(container.id, ["sh", "-c", "tty; exit 2"], tty=True)
    assert result.exit_code == 2
    assert result.output.startswith(b"/dev/pts/")


def test_exec_with_a_tty_has_its_size_before_the_command_runs(engine, run):
    """A command that asks at once sees the size. runc's --tty sizes the console from our pty beside
    the command's start: on a busy host, half such looks found 0x0 ("stty: standard input")."""
    container = run("sleep", "1000")
    for _ in range(10):
        result = engine.exec(container.id, ["stty", "size"], tty=True, size=(40, 120))
        assert (result.exit_code, result.output.split()) == (0, [b"40", b"120"]), result


def test_exec_feeds_stdin_to_the_command(engine, run):
    container = run("sleep", "1000")
    assert engine.exec(container.id, ["cat"], stdin=b"piped\n").output == b"piped\n"


def test_exec_of_a_missing_command_gives_127(engine, run):
    container = run("sleep", "1000")
    assert engine.exec(container.id, ["nosuchcmd"]).exit_code == 127


def test_exec_in_a_stopped_container_is_refused(engine, run):
    container = finished(engine, run("true"))
    with pytest.raises(ContainerNotRunning):
        engine.exec(container.id, ["true"])


def test_a_missing_command_fails_start_with_127_and_leaves_nothing_running(engine, run):
    container = run("nosuchcmd", start=False)
    with pytest.raises(StartFailed) as failure:
        engine.start(container.id)
    assert failure.value.exit_code == 127
    assert "executable file not found" in str(failure.value)
    state = engine.get(container.id).state
    assert (state.status, state.exit_code) == ("created", 127)
    assert not engine.runc.exists(container.id)
    assert not list(CGROUP_ROOT.glob(f"*/{engine.state.cgroup_parent}/{container.id}"))


class WiringFailed(BerthError):
    exit_code = 128


def test_work_alongside_the_start_runs_before_pid_1s_command(engine, run, tmp_path):
    container = run("cat", "/wiring/done", start=False, mounts=[BindMount(str(tmp_path), "/wiring", readonly=True)])

    engine.start(container.id, alongside=lambda: (time.sleep(0.2), (tmp_path / "done").write_text("wired")))

    assert engine.wait(container.id, timeout=10) == 0  # PID 1 found what was done alongside


def test_a_failure_alongside_the_start_keeps_pid_1_from_running_and_leaves_nothing(engine, run):
    container = run("sleep", "1000", start=False)

    def fail():
        raise WiringFailed("port is already allocated")

    with pytest.raises(WiringFailed, match="already allocated"):
        engine.start(container.id, alongside=fail)
    state = engine.get(container.id).state
    assert (state.status, state.exit_code) == ("created", 128)
    assert not engine.runc.exists(container.id)
    assert not (engine.state.exits / container.id).exists()
    assert not list(CGROUP_ROOT.glob(f"*/{engine.state.cgroup_parent}/{container.id}"))


def test_remove_leaves_no_mount_cgroup_runc_state_or_directory(engine, run):
    container = run("sleep", "1000")
    directory = engine.state.container_dir(container.id)
    assert mount_points(directory)
    assert list(CGROUP_ROOT.glob(f"*/{engine.state.cgroup_parent}/{container.id}"))
    engine.remove(container.id, force=True)
    assert not mount_points(directory)
    assert not directory.exists()
    assert not engine.runc.exists(container.id)
    assert not list(CGROUP_ROOT.glob(f"*/{engine.state.cgroup_parent}/{container.id}"))
    assert not (engine.state.exits / container.id).exists()
    with pytest.raises(NoSuchContainer):
        engine.get(container.id)


def test_remove_of_a_running_container_is_refused_without_force(engine, run):
    container = run("sleep", "1000")
    with pytest.raises(ContainerRunning):
        engine.remove(container.id)
    assert engine.get(container.id).state.status == "running"


def test_a_name_in_use_is_refused(engine, run):
    name = unique("name-")
    first = run("true", name=name, start=False)
    with pytest.raises(NameInUse) as refused:
        run("true", name=name, start=False)
    assert first.id in str(refused.value)
    assert engine.get(name).id == first.id


def test_a_container_is_found_by_name_and_short_id(engine, run):
    container = run("true", name=unique("find-"), start=False)
    assert engine.get(container.name).id == container.id
    assert engine.get(container.id[:12]).id == container.id


def test_an_unknown_image_is_refused_and_leaves_nothing(engine):
    before = set(os.listdir(engine.state.containers))
    with pytest.raises(NoSuchImage):
        engine.create(ContainerSpec(image="nosuchimage:1.0", cmd=["true"]))
    assert set(os.listdir(engine.state.containers)) == before


@pytest.mark.parametrize("bad, field", [
    (dict(name="-bad"), "name"),
    (dict(env=["=nokey"]), "env"),
    (dict(working_dir="relative"), "working dir"),
    (dict(network=NetworkSpec(mode="bridge-ish")), "network mode"),
    (dict(resources=Resources(memory=1024)), "memory"),
    (dict(mounts=[BindMount("/nonexistent-berth-path", "/data")]), "mount"),
    (dict(stop_signal="SIGNOPE"), "signal"),
    (dict(user="nosuchuser"), "user"),
])
def test_invalid_values_say_which_field_and_leave_nothing(engine, bad, field):
    before = set(os.listdir(engine.state.containers))
    names_before = set(os.listdir(engine.names_dir))
    with pytest.raises(InvalidValue) as refused:
        engine.create(ContainerSpec(image="busybox", cmd=["true"], **bad))
    assert refused.value.field == field
    assert set(os.listdir(engine.state.containers)) == before
    assert set(os.listdir(engine.names_dir)) == names_before
    assert not mount_points(engine.state.containers)  or all(
        p.parent.name in before for p in mount_points(engine.state.containers))


def test_restart_runs_pid_1_again_and_appends_to_the_log(engine, run):
    container = finished(engine, run("echo", "again"))
    engine.start(container.id)
    engine.wait(container.id, timeout=10)
    assert output(engine, container.id) == "again\nagain\n"


def test_pause_freezes_and_unpause_thaws(engine, run):
    container = run("sleep", "1000")
    freezer = next(CGROUP_ROOT.glob(f"freezer/{engine.state.cgroup_parent}/{container.id}"))
    engine.pause(container.id)
    assert engine.get(container.id).state.status == "paused"
    assert (freezer / "freezer.state").read_text().strip() == "FROZEN"
    engine.unpause(container.id)
    assert engine.get(container.id).state.status == "running"
    assert (freezer / "freezer.state").read_text().strip() == "THAWED"


def test_a_paused_container_can_be_stopped(engine, run):
    container = run("sleep", "1000")
    engine.pause(container.id)
    engine.stop(container.id, timeout=1)
    assert engine.get(container.id).state.exit_code == 137


def test_limits_reach_the_cgroup(engine, run):
    container = run("sleep", "1000", resources=Resources(memory=64 * 1024 * 1024, pids_limit=50, nano_cpus=500_000_000))
    parent, cid = engine.state.cgroup_parent, container.id
    memory = int((CGROUP_ROOT / "memory" / parent / cid / "memory.limit_in_bytes").read_text())
    pids = (CGROUP_ROOT / "pids" / parent / cid / "pids.max").read_text().strip()
    quota = int((CGROUP_ROOT / "cpu" / parent / cid / "cpu.cfs_quota_us").read_text())
    assert (memory, pids, quota) == (64 * 1024 * 1024, "50", 50_000)


def test_the_process_gets_env_cwd_user_and_hostname(engine, run):
    container = finished(engine, run(
        "sh", "-c", "echo $GREETING; pwd; id -u; id -g; hostname; cat /etc/hostname",
        env=["GREETING=hello"], working_dir="/tmp", user="nobody", hostname="berthbox"))
    assert output(engine, container.id).split() == ["hello", "/tmp", "65534", "65534", "berthbox", "berthbox"]


def test_the_hostname_defaults_to_the_short_id(engine, run):
    container = finished(engine, run("hostname"))
    assert output(engine, container.id).strip() == container.id[:12]


def test_default_isolation_follows_docker(engine, run):
    container = finished(engine, run("sh", "-c",
        "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; ulimit -n; "
        "wc -c < /proc/timer_list; grep -E ' /(proc/sys|proc/bus|sys) ' /proc/self/mounts"))
    lines = output(engine, container.id).splitlines()
    assert int(lines[0].split()[1], 16) == 0xa80425fb  # Docker's 14 default capabilities
    assert lines[1].split() == ["NoNewPrivs:", "1"]
    assert lines[2] == str(min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    assert len(Path("/proc/timer_list").read_bytes()) > 0
    assert lines[3] == "0"  # masked: /proc/timer_list shows nothing inside
    read_only = {line.split()[1]: line.split()[3].split(",")[0] for line in lines[4:]}
    assert read_only == {"/sys": "ro", "/proc/sys": "ro", "/proc/bus": "ro"}


def test_network_none_has_only_loopback(engine, run):
    container = finished(engine, run("sh", "-c", "ls /sys/class/net"))
    assert output(engine, container.id).split() == ["lo"]


def test_network_host_shares_the_hosts_namespace(engine, run):
    container = run("sleep", "1000", network=NetworkSpec(mode=NETWORK_HOST))
    assert os.readlink(f"/proc/{container.state.pid}/ns/net") == os.readlink("/proc/self/ns/net")


@pytest.fixture
def netns_with_servers():
    """A namespace of the test's own with a DNS and a web server on its 127.0.0.1."""
    name = unique("ns-")
    subprocess.run(["ip", "netns", "add", name], check=True)
    server = None
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-m", "tests.helpers.nameserver", "berth-dns.test"],
            stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
        assert server.stdout.readline().strip() == b"ready"
        yield f"/run/netns/{name}"
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_a_prepared_namespace_is_joined_and_names_resolve_through_hosts_and_dns(engine, run, netns_with_servers):
    network = NetworkSpec(mode="netns", netns_path=netns_with_servers)
    container = finished(engine, run(
        "sh", "-c",
        "timeout 5 wget -qO- http://berth-hosts.test:8080/; echo; timeout 5 wget -qO- http://berth-dns.test:8080/",
        network=network, extra_hosts=["berth-hosts.test:127.0.0.1"], dns=["127.0.0.1"]))
    assert output(engine, container.id).split("\n")[:2] == ["hello from berth", "hello from berth"]


def test_tty_mode_gives_pid_1_a_terminal(engine, run):
    container = finished(engine, run("sh", "-c", "tty; test -t 1 && echo is-a-tty", tty=True))
    text = output(engine, container.id)
    assert "/dev/pts/0" in text and "is-a-tty" in text


def test_tty_mode_gives_pid_1_its_console_size_before_it_runs(engine, run):
    container = finished(engine, run("stty", "size", tty=True, console_size=[40, 120]))
    assert output(engine, container.id).split() == ["40", "120"]


def test_a_console_size_out_of_a_terminals_range_is_left_to_a_resize(engine, run):
    container = finished(engine, run("stty", "size", tty=True, console_size=[40, 70000]))
    assert (container.state.exit_code, container.state.error) == (0, "")  # the start went on
    assert output(engine, container.id).strip() == "stty: standard input"  # 0x0, not 40x4464 wrapped


def test_attach_feeds_stdin_and_reads_output(engine, run):
    container = run("sh", "-c", "read line; echo got:$line", open_stdin=True)
    with engine.attach(container.id) as attached:
        attached.sendall(b"hello\n")
        attached.settimeout(10)
        packet = attached.recv(65536)
    assert packet == b"\x02got:hello\n"  # conmon's stream byte: 2 stdout, 3 stderr
    assert engine.wait(container.id, timeout=10) == 0


def test_bind_mounts_are_seen_inside_and_read_only_is_enforced(engine, run, tmp_path):
    (tmp_path / "in.txt").write_text("from host")
    container = finished(engine, run(
        "sh", "-c", "cat /data/in.txt; echo; touch /data/new 2>/dev/null && echo writable || echo read-only",
        mounts=[BindMount(str(tmp_path), "/data", readonly=True)]))
    assert output(engine, container.id).split("\n")[:2] == ["from host", "read-only"]


def test_a_tmpfs_is_mounted_with_its_options_and_below_a_bind_of_its_parent(engine, run, tmp_path):
    container = finished(engine, run(
        "sh", "-c", "grep ' /data/t ' /proc/mounts; ls /data",
        mounts=[BindMount(str(tmp_path), "/data")], tmpfs=[Tmpfs("/data/t", ["size=1m"])]))
    lines = output(engine, container.id).splitlines()
    assert lines[0].startswith("tmpfs /data/t tmpfs") and "size=1024k" in lines[0] and "noexec" in lines[0]
    assert (tmp_path / "t").is_dir()


def test_recover_records_an_exit_no_berth_process_watched(engine, run):
    container = run("sh", "-c", "sleep 0.3; exit 9")
    time.sleep(1)
    assert {c.id: c for c in engine.recover()}[container.id].state.exit_code == 9


def test_a_monitor_killed_with_pid_1_marks_the_exit_code_lost(engine, run):
    container = run("sleep", "1000")
    os.kill(container.monitor_pid, signal.SIGKILL)
    os.kill(container.state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while engine.get(container.id).running and time.monotonic() < deadline:
        time.sleep(0.05)
    state = engine.get(container.id).state
    assert (state.status, state.exit_code) == ("exited", 255)
    assert "monitor" in state.error


def test_gc_removes_what_no_record_owns(engine, run):
    container = run("sleep", "1000")
    directory = engine.state.container_dir(container.id)
    (directory / "container.json").unlink()
    removed = engine.gc()
    assert any(container.id in line for line in removed)
    assert not directory.exists() and not mount_points(directory)
    assert not engine.runc.exists(container.id)
    assert not list(CGROUP_ROOT.glob(f"*/{engine.state.cgroup_parent}/{container.id}"))


def test_logs_rotate_by_size_and_conmon_keeps_writing(engine, run):
    container = run("sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; sleep 0.5; echo after",
                    log_max_size=4096, log_max_files=3)
    time.sleep(0.3)
    assert container.id in engine.rotate_logs()
    engine.wait(container.id, timeout=10)
    path = engine.log_path(container.id)
    assert path.with_name("ctr.log.1").exists()
    assert b"after" in path.read_bytes()
    assert [r.data for r in engine.logs(container.id, tail=1)] == [b"after\n"]


def test_removing_an_image_in_use_is_refused(engine, run):
    from runtime import ImageInUse
    image = engine.images.get("busybox")
    engine.images.tag("busybox", "berth-test-inuse:1")
    container = run("true", image="berth-test-inuse:1", start=False)
    with pytest.raises(ImageInUse):
        engine.remove_image(image.id)
    engine.remove(container.id)
    engine.images.untag("berth-test-inuse:1")


def test_create_with_a_chosen_id_is_idempotent(engine, run):
    chosen = "ab" * 32
    first = engine.create(ContainerSpec(image="busybox", cmd=["true"]), container_id=chosen)
    try:
        again = engine.create(ContainerSpec(image="busybox", cmd=["true"]), container_id=chosen)
        assert first.id == again.id == chosen
        assert len([c for c in engine.list() if c.id == chosen]) == 1
    finally:
        engine.remove(chosen)


def test_rename_moves_the_name_and_frees_the_old_one(engine, run):
    name, new_name = unique("old-"), unique("new-")
    container = run("true", name=name, start=False)
    renamed = engine.rename(name, new_name)
    assert renamed.name == engine.get(new_name).name == new_name
    assert engine.get(new_name).id == container.id
    with pytest.raises(NoSuchContainer):
        engine.get(name)
    assert engine.rename(container.id, new_name).name == new_name  # again: nothing changes
    other = run("true", name=name, start=False)  # the old name is free
    assert other.id != container.id


def test_rename_to_a_name_in_use_is_refused(engine, run):
    taken = run("true", name=unique("taken-"), start=False)
    container = run("true", name=unique("mine-"), start=False)
    with pytest.raises(NameInUse):
        engine.rename(container.id, taken.name)
    assert engine.get(container.id).name == container.name


def test_stop_with_a_signal_overrides_the_stop_signal(engine, run):
    # sh as PID 1 ignores SIGTERM without a trap; SIGUSR1 with a trap ends it in time.
    container = run("sh", "-c", "trap 'exit 7' USR1; echo ready; while true; do sleep 0.05; done")
    wait_for_line(engine, container.id, b"ready")
    engine.stop(container.id, timeout=10, signal="SIGUSR1")
    assert engine.get(container.id).state.exit_code == 7


def test_a_quick_exit_never_finishes_before_it_started(engine, run):
    for _ in range(5):
        container = run("true")
        engine.wait(container.id, timeout=10)
        state = engine.get(container.id).state
        assert state.finished_at >= state.started_at


def test_records_written_at_once_by_many_writers_stay_whole(engine, run):
    # The watcher and a task may record one exit at the same moment, from two processes.
    container = run("true", start=False)
    path = engine.state.container_dir(container.id) / "container.json"
    writers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from pathlib import Path
        from runtime import Runtime, StateRoot
        engine = Runtime(StateRoot(Path({str(engine.state.root)!r}), {engine.state.cgroup_parent!r}))
        for _ in range(200):
            engine._save(engine.get({container.id!r}))
    """)]) for _ in range(4)]
    try:
        for _ in range(400):
            assert engine.get(container.id).id == container.id
    finally:
        assert [w.wait() for w in writers] == [0, 0, 0, 0]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
