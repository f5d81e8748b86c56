"""Kernel hygiene for the whole suite.

Everything a test makes in the kernel is named ``berth-test-<run>-<random>``
(state roots, cgroup parents, network namespaces, nft tables), so it never
collides with a Berth started by hand. Network devices have 15 characters at
most: theirs is ``bt<run><kind><6 hex>`` (``short_unique``), and every link
the networking layer makes carries the alias ``berth:<its nft table>``, so
leftover bridges and veths are found by alias as well as by name. A session
holds ``/tmp/berth-test-<run>.lock`` while it lives; at start, whatever
belongs to a run whose lock nobody holds any more (a run that was killed) is
removed, and a session running beside it is left alone.
"""

import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path


from runtime.mounts import mount_points, unmount

# The live stack (Redis, a Celery worker, real runc) for every test that asks for it.
pytest_plugins = ["tests.live"]

PREFIX = "berth-test-"
TEST_TMP = Path("/tmp")
CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_ID = secrets.token_hex(3)


def unique(kind: str = "") -> str:
    return f"{PREFIX}{RUN_ID}-{kind}{secrets.token_hex(4)}"


def short_unique(kind: str = "d") -> str:
    """A network device name (15 characters): bt, the run, one letter of kind, 6 random hex."""
    return f"bt{RUN_ID}{kind[:1]}{secrets.token_hex(3)}"


_SHORT_NAME = re.compile(r"^bt([0-9a-f]{6})[a-z][0-9a-f]{6}$")
_TEST_ALIAS = re.compile(r"^berth:" + re.escape(PREFIX) + r"([0-9a-f]{6})-")


def _run_of(name: str) -> str:
    return name[len(PREFIX):].split("-", 1)[0].removesuffix(".lock")


def _lock_path(run: str) -> Path:
    return TEST_TMP / f"{PREFIX}{run}.lock"


def _hold_run_lock():
    handle = open(_lock_path(RUN_ID), "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _run_is_alive(run: str) -> bool:
    try:
        handle = open(_lock_path(run), "r+")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def remove_state_root(root: Path) -> None:
    """Tear down one test state root: runc containers (their PIDs 1), mounts, files."""
    runc_root = root / "runc"
    if runc_root.is_dir():
        for entry in runc_root.iterdir():
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", entry.name],
                           capture_output=True)
    for point in sorted(mount_points(root), reverse=True):
        unmount(point)
    shutil.rmtree(root, ignore_errors=True)


def remove_cgroup_parent(name: str) -> None:
    for directory in CGROUP_ROOT.glob(f"*/{name}"):
        for child in sorted(directory.glob("**/"), reverse=True):
            try:
                child.rmdir()
            except OSError:
                pass


def remove_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _run_of_link(link: dict) -> str | None:
    """The test run a link belongs to, by its alias or its short name; None for the host's own."""
    for pattern, text in ((_TEST_ALIAS, link.get("ifalias", "")), (_SHORT_NAME, link.get("ifname", ""))):
        found = pattern.match(text or "")
        if found:
            return found.group(1)
    return None


def remove_test_links(runs_to_remove) -> None:
    """Delete bridges, veths and other links of the given test runs (a predicate on the run id)."""
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    for link in json.loads(out or "[]"):
        run = _run_of_link(link)
        if run is not None and runs_to_remove(run):
            subprocess.run(["ip", "link", "delete", link["ifname"]], capture_output=True)


def remove_test_nft_tables(runs_to_remove) -> None:
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True).stdout
    for item in json.loads(out or "{}").get("nftables", []):
        table = item.get("table")
        if table and table["name"].startswith(PREFIX) and runs_to_remove(_run_of(table["name"])):
            subprocess.run(["nft", "delete", "table", table["family"], table["name"]], capture_output=True)


def clean_earlier_runs() -> None:
    dead = lambda path: _run_of(path.name) != RUN_ID and not _run_is_alive(_run_of(path.name))
    for root in TEST_TMP.glob(f"{PREFIX}*"):
        if root.is_dir() and dead(root):
            remove_state_root(root)
    for parent in {p.name for p in CGROUP_ROOT.glob(f"*/{PREFIX}*") if dead(p)}:
        remove_cgroup_parent(parent)
    netns = Path("/run/netns")
    if netns.is_dir():
        for entry in netns.glob(f"{PREFIX}*"):
            if dead(entry):
                remove_netns(entry.name)
    dead_run = lambda run: run != RUN_ID and not _run_is_alive(run)
    remove_test_links(dead_run)
    remove_test_nft_tables(dead_run)
    for lock in TEST_TMP.glob(f"{PREFIX}*.lock"):
        if dead(lock):
            lock.unlink(missing_ok=True)


_session_lock = None


def pytest_sessionstart(session):
    global _session_lock
    if os.geteuid() == 0:
        _session_lock = _hold_run_lock()
        clean_earlier_runs()


def pytest_sessionfinish(session):
    if _session_lock is not None:
        _session_lock.close()
        _lock_path(RUN_ID).unlink(missing_ok=True)
