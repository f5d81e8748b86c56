"""What a live stack (tests/live.py) owns, counted: kernel objects, state-root entries, rows, and its processes.

A leak shows as a count that differs between two quiet moments of the stack, so ``objects`` counts
what is named after the stack (its nft table, its links' alias, its netns prefix, its cgroup parent,
its state root), never the host's other objects::

    objects(stack)  -> {"veths": 0, "bridges": 3, "netns": 0, "nft elements": 9, ..., "rows console.Container": 0}
    processes(roots) -> {pid: "worker children"}; rss_kb(pids), threads(pids), open_files(pids, redis_port)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MONITOR = b"conmon"
REDIS_CONNECTION = "redis connection"
# Folders of the state root a container or a volume adds an entry to (runtime/paths.py, volume_services).
STATE_FOLDERS = ("containers", "exits", "runc", "volumes", "tmp")


def objects(stack) -> dict[str, int]:
    """Every kind of object a container cycle makes and must take away again, counted."""
    networking = stack.networking()
    seen = networking.observe()
    counts = {
        "veths": len(seen["veths"]),
        "bridges": len(seen["bridges"]),
        "netns": len(seen["netns"]),
        "nft elements": nft_elements(stack.nft_table),
        "ports registry owners": _entries(networking.ports.owners_dir),
        "ports registry claims": _entries(networking.ports.claims_dir),
        **mounts_under(stack.root),
        "cgroups": cgroups_under(stack.cgroup_parent),
        "runc containers": runc_containers(stack.root / "runc"),
        "monitor processes": len(monitors_of(stack.root)),
    }
    for folder in STATE_FOLDERS:
        counts[f"state root {folder}/"] = _entries(stack.root / folder)
    counts.update(rows())
    return counts


def nft_elements(table: str) -> int:
    """Elements of every set and map of the table (published ports, bridges, subnets...)."""
    listing = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True)
    if listing.returncode != 0:
        return 0  # no table: nothing of ours is published
    total = 0
    for item in json.loads(listing.stdout)["nftables"]:
        for kind in ("set", "map"):
            if kind in item:
                total += len(item[kind].get("elem", []))
    return total


def mounts_under(root: Path) -> dict[str, int]:
    """Overlay mounts (container root filesystems) and every other mount (volumes, binds) below ``root``."""
    prefix = str(root).rstrip("/") + "/"
    kinds = Counter()
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            filesystem = fields[fields.index("-") + 1]
            if point.startswith(prefix):
                kinds["overlay" if filesystem == "overlay" else "other"] += 1
    return {"overlay mounts": kinds["overlay"], "other mounts": kinds["other"]}


def cgroups_under(parent: str) -> int:
    """Cgroup folders below the parent, in every hierarchy (v1 and hybrid: one per controller; v2: one)."""
    tops = [*CGROUP_ROOT.glob(f"*/{parent}"), CGROUP_ROOT / parent]
    return sum(1 for top in tops for path in top.rglob("*") if path.is_dir())


def runc_containers(runc_root: Path) -> int:
    listing = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True)
    return len(listing.stdout.split()) if listing.returncode == 0 else 0


def monitors_of(root: Path) -> set[int]:
    """conmon processes whose command line names this state root."""
    needle = str(root).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_bytes().strip() == MONITOR and needle in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue  # it ended while we looked
    return found


def rows() -> dict[str, int]:
    """Rows of every model table, through this thread's ``default`` connection (the live stack's file)."""
    from django.apps import apps

    return {f"rows {model._meta.label}": model.objects.count() for model in apps.get_models()}


def _entries(folder: Path) -> int:
    try:
        return sum(1 for _ in folder.iterdir())
    except FileNotFoundError:
        return 0


# --- processes ------------------------------------------------------------------------------------


def processes(roots: dict[str, int]) -> dict[int, str]:
    """These processes and their descendants, by role, leaving out monitors and containers (not Berth's own).

    ``roots`` is {"worker": pid, "redis": pid, ...}; the worker's pool processes are "worker children".
    """
    children = _children()
    found: dict[int, str] = {}
    for role, pid in roots.items():
        found[pid] = role
        todo = list(children.get(pid, []))
        while todo:
            current = todo.pop()
            if current in found or _is_monitor_or_container(current):
                continue
            found[current] = f"{role} children"
            todo.extend(children.get(current, []))
    return found


def rss_kb(pids) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def open_files(pids: dict[int, str], redis_port: int) -> Counter:
    """Open files by role and by what they are: ``("worker", "redis connection")``, ``("api", "unix socket")``,
    ``("api", "/tmp/.../berth.sqlite3")``, ``("web", "pipe")``."""
    sockets = _tcp_sockets(redis_port)
    found = Counter()
    for pid, role in pids.items():
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                found[role, _kind_of_file(os.readlink(descriptor), sockets)] += 1
            except OSError:
                continue  # closed while we looked
    return found


def _kind_of_file(target: str, sockets: dict[str, str]) -> str:
    # "socket:[123]", "pipe:[456]", "anon_inode:[eventpoll]": the number differs, the kind is what counts.
    kind, _, rest = target.partition(":[")
    if kind == "socket":
        return sockets.get(rest.rstrip("]"), "unix or other socket")
    return kind if rest and not kind.startswith("anon_inode") else target


def _tcp_sockets(redis_port: int) -> dict[str, str]:
    """inode -> "redis connection" (either end), "redis listener" or "tcp socket", from the kernel's table."""
    port = f"{redis_port:04X}"
    kinds = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if local.endswith(f":{port}") and state == "0A":  # LISTEN
                    kinds[inode] = "redis listener"
                elif local.endswith(f":{port}") or remote.endswith(f":{port}"):
                    kinds[inode] = REDIS_CONNECTION
                else:
                    kinds[inode] = "tcp socket"
    return kinds


def threads(pids) -> int:
    total = 0
    for pid in pids:
        try:
            total += sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
    return total


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _is_monitor_or_container(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        return True
    # runc and conmon are per-container programs; a container's own processes run under conmon.
    return comm in (MONITOR, b"runc", b"runc:[2:INIT]")
