"""Logs stay readable by the logs folder's group (the web's user) from creation through rotation, and nothing more."""

import os
import stat
from pathlib import Path

import pytest

from runtime import logs

GROUP = 4242  # stands for the web's group; root may give a file any gid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder another group needs root")


@pytest.fixture
def root(tmp_path) -> Path:
    """A state root with its logs folder as scripts/web-user leaves it: that group, set-gid, 2710."""
    folder = logs.logs_root(tmp_path)
    folder.mkdir()
    os.chown(folder, 0, GROUP)
    os.chmod(folder, 0o2710)
    return tmp_path


def mode_and_group(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return stat.S_IMODE(found.st_mode), found.st_gid


def test_a_log_is_made_in_a_folder_of_its_own_readable_by_the_group(root):
    path = logs.container_log_path(root, "a" * 64)
    logs.prepare_log(path)
    assert path == root / "container-logs" / ("a" * 64) / "ctr.log"
    assert mode_and_group(path.parent) == (0o2750, GROUP)
    assert mode_and_group(path) == (0o640, GROUP)


def test_preparing_again_keeps_what_was_written(root):
    path = logs.container_log_path(root, "b" * 64)
    logs.prepare_log(path)
    path.write_bytes(b"2026-11-30T01:05:49.234139072Z stdout F kept\n")
    logs.prepare_log(path)
    assert [r.data for r in logs.read_logs(path)] == [b"kept\n"]


def test_the_file_a_rotation_leaves_for_the_monitor_is_the_groups_too(root):
    path = logs.container_log_path(root, "c" * 64)
    logs.prepare_log(path)
    path.write_bytes(b"2026-11-30T01:05:49.234139072Z stdout F old\n")
    reopened = []
    assert logs.rotate(path, max_files=2, reopen=lambda: reopened.append(mode_and_group(path)))
    assert reopened == [(0o640, GROUP)], "made before the monitor reopens it"
    assert mode_and_group(path.with_name("ctr.log.1")) == (0o640, GROUP)


def test_a_container_from_before_keeps_its_log_in_its_own_folder(root):
    legacy = root / "containers" / ("d" * 64) / "ctr.log"
    legacy.parent.mkdir(parents=True)
    legacy.touch()
    assert logs.container_log_path(root, "d" * 64) == legacy
