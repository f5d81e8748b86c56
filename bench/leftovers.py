"""What a killed benchmark run left on the host, removed before the next one starts.

Called with the benchmarks' lock held (common.exclusive), so nothing named like a benchmark's
belongs to a run that is still alive.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from . import hostnet
from .engines import BENCH_PREFIX, TMP, remove_dockerd_leftovers

# bench_ports' bridge (bbb<tag>) and namespaces (bb<tag>-...), the suite's Docker bridge (bbd-<tag>).
BENCH_LINK = re.compile(r"^bb(b|d-)[0-9a-f]{6}$")
BENCH_NETNS = re.compile(r"^bb[0-9a-f]{6}-")


def remove_all() -> None:
    from tests.conftest import clean_earlier_runs, remove_state_root

    clean_earlier_runs()  # a killed suite's Berth is a live stack, named like a killed test run's
    for root in sorted(TMP.glob(f"{BENCH_PREFIX}dockerd-*")):
        if root.is_dir():
            remove_dockerd_leftovers(root)
    for root in sorted(TMP.glob(f"{BENCH_PREFIX}*")):
        if root.is_dir():
            hostnet.kill_processes_mentioning(str(root))  # redis, daphne of a benchmark's own stack
            remove_state_root(root)  # its containers (runc), mounts and files
    for parent in {p.name for p in hostnet.CGROUP_ROOT.glob(f"*/{BENCH_PREFIX}*")}:
        hostnet.remove_cgroup_parent(parent)
    netns = Path("/run/netns")
    if netns.is_dir():
        for entry in netns.iterdir():
            if BENCH_NETNS.match(entry.name):
                _remove_netns(entry)
    hostnet.delete_links(lambda name, alias: bool(BENCH_LINK.match(name)) or alias.startswith(f"berth:{BENCH_PREFIX}"))
    hostnet.delete_tables(lambda name: name.startswith(BENCH_PREFIX))


def _remove_netns(entry: Path) -> None:
    subprocess.run(["ip", "netns", "delete", entry.name], capture_output=True)
