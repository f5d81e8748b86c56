"""What a container may not do, checked from inside one: runc and busybox for real.

Each test runs a shell script in a busybox container and reads what it printed,
so it asserts what a user of the container would see. Docker's defaults are the
yardstick; the expected values are written out here, not taken from runtime.oci,
so a change there that weakens isolation makes a test fail.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from runtime import NETWORK_HOST, NetworkSpec

# Capability numbers from linux/capability.h; Docker's default set.
DOCKER_DEFAULT_CAPABILITIES = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18,
    "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31,
}
DOCKER_DEFAULT_MASK = sum(1 << bit for bit in DOCKER_DEFAULT_CAPABILITIES.values())
CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_ADMIN = 12, 16, 21

MASKED = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
          "/proc/timer_stats", "/proc/acpi", "/proc/scsi", "/proc/asound"]
READ_ONLY = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"]

# What runc puts in Docker's /dev without a tty: the default nodes, their symlinks and mounts.
DOCKER_DEV_ENTRIES = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                      "mqueue", "fd", "stdin", "stdout", "stderr", "core"}


def in_container(engine, run, script, **options) -> str:
    container = run("sh", "-c", script, **options)
    engine.wait(container.id, timeout=30)
    return b"".join(record.data for record in engine.logs(container.id)).decode()


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_pid_1_has_exactly_dockers_default_capabilities_and_no_new_privileges(engine, run):
    fields = status_fields(in_container(engine, run, "cat /proc/self/status"))
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert int(fields[name], 16) == DOCKER_DEFAULT_MASK, f"{name}={fields[name]}"
    # Nothing survives an exec beyond the bounding set: no inherited or ambient capabilities.
    assert int(fields["CapInh"], 16) == 0
    assert int(fields.get("CapAmb", "0"), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"


def test_a_non_root_user_in_the_container_has_no_effective_capabilities(engine, run):
    fields = status_fields(in_container(engine, run, "cat /proc/self/status", user="1000:1000"))
    assert int(fields["CapEff"], 16) == 0
    assert int(fields["CapBnd"], 16) == DOCKER_DEFAULT_MASK
    assert fields["NoNewPrivs"].strip() == "1"


def test_sensitive_proc_paths_are_masked(engine, run):
    script = "; ".join(
        f"if [ -d {p} ]; then echo {p} dir $(ls -A {p} | wc -l); "
        f"elif [ -e {p} ]; then echo {p} file $(cat {p} | wc -c); else echo {p} absent; fi"
        for p in MASKED)
    seen = {line.split()[0]: line.split()[1:] for line in in_container(engine, run, script).splitlines()}
    for path in MASKED:
        kind = seen[path]
        assert kind == ["absent"] or kind[1] == "0", f"{path} shows {kind}"
    # Not vacuous: the host shows content in at least one of them.
    assert any(Path(p).is_file() and Path(p).read_bytes() for p in MASKED)


def mount_options(mountinfo: str) -> dict[str, set[str]]:
    options = {}
    for line in mountinfo.splitlines():
        parts = line.split()
        if " - " not in line or len(parts) < 6:
            continue
        options[parts[4]] = set(parts[5].split(","))
    return options


def test_proc_sys_and_other_kernel_knobs_are_read_only(engine, run):
    text = in_container(engine, run,
                        "cat /proc/self/mountinfo; echo berth > /proc/sys/kernel/domainname; echo rc=$?")
    options = mount_options(text)
    for path in READ_ONLY:
        if os.path.exists(path):
            assert "ro" in options.get(path, set()), f"{path} is not mounted read-only"
    # domainname belongs to the container's UTS namespace, so the write would be harmless; it fails anyway.
    assert "Read-only file system" in text
    assert "rc=1" in text


def test_modules_disabled_cannot_be_written(engine, run):
    if not os.path.exists("/proc/sys/kernel/modules_disabled"):
        pytest.skip("this kernel has no loadable modules")
    # Opening for write fails on the read-only mount before any value could be written.
    text = in_container(engine, run, ": > /proc/sys/kernel/modules_disabled; echo rc=$?")
    assert "Read-only file system" in text and "rc=1" in text


def test_loading_a_module_is_refused(engine, run):
    # A junk file: with CAP_SYS_MODULE the kernel would reject the image, not the caller.
    text = in_container(engine, run, "echo junk > /tmp/x.ko; insmod /tmp/x.ko; echo rc=$?")
    fields = status_fields(in_container(engine, run, "cat /proc/self/status"))
    assert not int(fields["CapBnd"], 16) & (1 << CAP_SYS_MODULE)
    assert re.search(r"rc=[1-9]", text)
    if os.path.exists("/proc/modules"):
        assert "Operation not permitted" in text


def test_dev_holds_only_dockers_default_nodes(engine, run):
    text = in_container(engine, run, "ls -A /dev; echo --; find /dev -type b")
    listing, _, block_devices = text.partition("--\n")
    assert set(listing.split()) <= DOCKER_DEV_ENTRIES
    assert {"null", "zero", "full", "random", "urandom", "tty"} <= set(listing.split())
    assert block_devices.strip() == ""


def a_host_block_device() -> str:
    """major:minor of a block device the host has, so only the cgroup can stop its use."""
    devices = sorted(os.listdir("/sys/dev/block"))
    if not devices:
        pytest.skip("the host has no block device")
    return devices[0]


def test_a_host_device_made_with_mknod_cannot_be_opened(engine, run):
    major, minor = a_host_block_device().split(":")
    # /dev/mem (1:1) is the host's physical memory: made, it must still be unusable.
    text = in_container(engine, run,
                        f"mknod /dev/disk b {major} {minor} && echo made-disk; "
                        "dd if=/dev/disk of=/dev/null bs=512 count=1; echo disk-rc=$?; "
                        "mknod /dev/mem c 1 1 && echo made-mem; "
                        "dd if=/dev/mem of=/dev/null bs=1 count=1; echo mem-rc=$?")
    # Docker allows mknod (CAP_MKNOD, cgroup "m"), but never reading or writing such a node.
    assert "made-disk" in text and "made-mem" in text
    assert "disk-rc=1" in text and "mem-rc=1" in text
    assert text.count("Operation not permitted") == 2


def test_the_container_sees_only_its_own_processes(engine, run):
    # The trailing command keeps sh from exec-ing ps, so PID 1 is still there to be seen.
    text = in_container(engine, run, "ps -o pid,comm; true")
    rows = [line.split() for line in text.strip().splitlines()[1:]]
    assert {comm for _, comm in rows} == {"sh", "ps"}
    assert ["1", "sh"] in rows
    host_pids = [p for p in os.listdir("/proc") if p.isdigit()]
    assert len(host_pids) > len(rows)


def test_mounting_a_filesystem_is_refused(engine, run):
    text = in_container(engine, run, "mkdir -p /mnt/x; mount -t tmpfs tmpfs /mnt/x; echo rc=$?; "
                                     "echo mounted=$(grep -c ' /mnt/x ' /proc/self/mountinfo)")
    assert re.search(r"rc=[1-9]", text)
    # stdout and stderr are separate pipes, so the lines are found by marker, not by place.
    assert "mounted=0" in text


NETWORK_CHANGES = ("ip link add berth-sec0 type dummy; echo link-rc=$?; "
                   "ip addr add 192.0.2.77/32 dev lo; echo addr-rc=$?; ip -o link")


def assert_network_changes_refused(text: str):
    assert "link-rc=2" in text and "addr-rc=2" in text
    assert text.count("Operation not permitted") >= 2


def test_the_container_cannot_change_its_own_network_namespace(engine, run):
    text = in_container(engine, run, NETWORK_CHANGES)
    assert_network_changes_refused(text)
    links = re.findall(r"^\d+: ([^:@]+)", text, re.M)
    assert links == ["lo"]


def host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_a_prepared_namespace_shows_none_of_the_hosts_links(engine, run, netns):
    # The networking layer hands bridge containers a namespace like this one (veth added later).
    text = in_container(engine, run, NETWORK_CHANGES, network=NetworkSpec(mode="netns", netns_path=netns))
    assert_network_changes_refused(text)
    assert re.findall(r"^\d+: ([^:@]+)", text, re.M) == ["lo"]
    assert host_links() - {"lo"}, "the host should have links to hide"


def test_even_on_the_host_network_the_container_cannot_change_it(engine, run):
    before = host_links()
    try:
        text = in_container(engine, run, NETWORK_CHANGES, network=NetworkSpec(mode=NETWORK_HOST))
        assert_network_changes_refused(text)
        assert host_links() == before
        lo = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
        assert "192.0.2.77" not in lo
    finally:
        # Should the refusal ever fail, leave the host as it was.
        subprocess.run(["ip", "link", "del", "berth-sec0"], capture_output=True)
        subprocess.run(["ip", "addr", "del", "192.0.2.77/32", "dev", "lo"], capture_output=True)
