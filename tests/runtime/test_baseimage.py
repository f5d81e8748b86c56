"""busybox:latest name resolution, run for real in a chroot (root; mounts an overlay).

Every test talks only to 127.0.0.1 inside a network namespace of its own
(``unshare -n``), where lo is the only interface there is.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.baseimage import build_busybox
from runtime.images import ImageStore
from runtime.paths import StateRoot

# Runs inside the new network namespace: a web server and a DNS server on
# 127.0.0.1 (tests/helpers/nameserver.py), then busybox in a chroot of the image asks for a name.
NETNS_SCRIPT = textwrap.dedent('''
    import subprocess, sys
    sys.path.insert(0, sys.argv[1])
    from tests.helpers import nameserver

    project, root, dns_name, *command = sys.argv[1:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    nameserver.start(dns_name)
    done = subprocess.run(["timeout", "10", "chroot", root] + command, capture_output=True)
    sys.stdout.buffer.write(done.stdout)
    sys.stderr.buffer.write(done.stderr)
    sys.exit(done.returncode)
''')


@pytest.fixture
def rootfs(tmp_path):
    """The busybox image mounted as a container would see it, with a writable layer on top."""
    store = ImageStore(StateRoot(tmp_path / "root"))
    [lower] = store.layer_dirs(build_busybox(store))
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        path.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        (merged / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 viahosts.test\n")
        (merged / "etc" / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def run_in_netns(tmp_path, rootfs, *command):
    script = tmp_path / "netns.py"
    script.write_text(NETNS_SCRIPT)
    project = str(Path(__file__).parents[2])
    argv = ["unshare", "-n", sys.executable, str(script), project, str(rootfs), "viadns.test", *command]
    return subprocess.run(argv, capture_output=True, timeout=60)


def test_busybox_has_no_shared_libraries_to_lean_on(rootfs):
    assert not [p for p in rootfs.rglob("*.so*")]


def test_busybox_resolves_names_from_etc_hosts(tmp_path, rootfs):
    done = run_in_netns(tmp_path, rootfs, "/bin/busybox", "wget", "-q", "-O", "-", "http://viahosts.test:8080/")
    assert (done.returncode, done.stdout) == (0, b"hello from berth"), done.stderr


def test_busybox_resolves_names_through_dns(tmp_path, rootfs):
    done = run_in_netns(tmp_path, rootfs, "/bin/busybox", "wget", "-q", "-O", "-", "http://viadns.test:8080/")
    assert (done.returncode, done.stdout) == (0, b"hello from berth"), done.stderr


def test_busybox_nslookup_asks_the_configured_nameserver(tmp_path, rootfs):
    done = run_in_netns(tmp_path, rootfs, "/bin/sh", "-c", "nslookup viadns.test")
    assert done.returncode == 0, done.stderr
    assert b"Address: 127.0.0.1" in done.stdout


def test_busybox_fails_cleanly_for_unknown_names(tmp_path, rootfs):
    done = run_in_netns(tmp_path, rootfs, "/bin/busybox", "wget", "-q", "-O", "-", "http://unknown.test:8080/")
    assert done.returncode != 0
    assert b"bad address" in done.stderr
