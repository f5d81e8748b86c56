"""The OCI bundle runc runs: ``config.json`` beside the container's rootfs.

Defaults follow Docker's so images behave as they do there: the same
capability set, masked and read-only /proc paths, device rules and /dev
mounts. Names derive from the container id: cgroup ``/<parent>/<id>``.
"""

from __future__ import annotations

import resource
from pathlib import Path

from .spec import NETWORK_HOST, NETWORK_NETNS, TERMINAL_SIDE_MAX, Container

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000
WANTED_NOFILE = 1_048_576

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# Docker's default device cgroup: deny all, then mknod anything, then use the usual few.
DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))
    ),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def bundle_config(container: Container, uid: int, gid: int, extra_gids: list[int],
                  state_dir: Path, cgroup_parent: str) -> dict:
    spec = container.spec
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(container, uid, gid, extra_gids),
        "root": {"path": "rootfs", "readonly": spec.read_only},
        "hostname": spec.hostname,
        "mounts": _mounts(container, state_dir),
        "linux": {
            "namespaces": _namespaces(container),
            "cgroupsPath": f"/{cgroup_parent}/{container.id}",
            "resources": _resources(container),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }


def process_env(image_env: list[str], spec_env: list[str], hostname: str, tty: bool) -> list[str]:
    """Image env, then the caller's over it; PATH and HOSTNAME always present, as in Docker."""
    merged: dict[str, str] = {}
    for entry in [DEFAULT_PATH, f"HOSTNAME={hostname}", *image_env, *spec_env]:
        key, _, value = entry.partition("=")
        merged[key] = value
    if tty:
        merged.setdefault("TERM", "xterm")
    return [f"{k}={v}" for k, v in merged.items()]


def capabilities(cap_add: list[str], cap_drop: list[str]) -> list[str]:
    names = lambda caps: {c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper() for c in caps}
    added, dropped = names(cap_add), names(cap_drop)
    base = set() if "CAP_ALL" in dropped else set(DEFAULT_CAPABILITIES)
    return sorted((base | (added - {"CAP_ALL"})) - dropped)


def _process(container: Container, uid: int, gid: int, extra_gids: list[int]) -> dict:
    spec = container.spec
    caps = capabilities(spec.cap_add, spec.cap_drop)
    nofile = _bounded_nofile()
    process = {
        "terminal": spec.tty,
        "user": {"uid": uid, "gid": gid, **({"additionalGids": extra_gids} if extra_gids else {})},
        "args": [container.path, *container.args],
        "env": container.env,
        "cwd": spec.working_dir or "/",
        "capabilities": {key: caps for key in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": True,
    }
    if spec.tty and len(spec.console_size) == 2 and all(0 < n <= TERMINAL_SIDE_MAX for n in spec.console_size):
        # runc init sizes the console before PID 1 runs; a resize after its start could come after
        # PID 1's first look at its terminal.
        process["consoleSize"] = {"height": spec.console_size[0], "width": spec.console_size[1]}
    return process


def _bounded_nofile() -> int:
    # runc fails with EPERM when asked for more than the host's hard limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return WANTED_NOFILE if hard == resource.RLIM_INFINITY else min(WANTED_NOFILE, hard)


def _namespaces(container: Container) -> list[dict]:
    namespaces = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")]
    network = container.spec.network
    if network.mode == NETWORK_NETNS:
        namespaces.append({"type": "network", "path": network.netns_path})
    elif network.mode != NETWORK_HOST:
        namespaces.append({"type": "network"})
    return namespaces


def _mounts(container: Container, state_dir: Path) -> list[dict]:
    sys_options = ["nosuid", "noexec", "nodev", "ro"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]
    if container.spec.network.mode == NETWORK_HOST:
        # A sysfs mount needs a network namespace of its own; share the host's read-only instead.
        mounts[3] = {"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", *sys_options]}
    spec = container.spec
    # A parent path is mounted before what lies below it, whatever kind each is; the /etc files
    # last, so a volume at /etc does not hide them (unless the caller mounted one of them).
    own = [_bind(m.source, m.destination, m.readonly) for m in spec.mounts]
    own += [_tmpfs(t.destination, t.options) for t in spec.tmpfs]
    mounts += sorted(own, key=lambda m: m["destination"].rstrip("/").count("/"))
    taken = {m["destination"].rstrip("/") for m in own}
    for name in ("resolv.conf", "hostname", "hosts"):
        if f"/etc/{name}" not in taken:
            mounts.append(_bind(str(state_dir / name), f"/etc/{name}", readonly=False))
    return mounts


def _tmpfs(destination: str, options: list[str]) -> dict:
    defaults = [o for o in ("nosuid", "nodev", "noexec") if o.removeprefix("no") not in options]
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": defaults + list(options)}


def _bind(source: str, destination: str, readonly: bool) -> dict:
    options = ["rbind", "rprivate"] + (["ro"] if readonly else [])
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def _resources(container: Container) -> dict:
    limits = container.spec.resources
    resources: dict = {"devices": DEVICE_RULES}
    if limits.memory:
        memory = {"limit": limits.memory}
        if limits.memory_swap and _swap_accounting():
            memory["swap"] = limits.memory_swap
        elif _swap_accounting():
            memory["swap"] = 2 * limits.memory
        resources["memory"] = memory
    cpu = {}
    if limits.nano_cpus:
        cpu = {"quota": limits.nano_cpus * CPU_PERIOD // 1_000_000_000, "period": CPU_PERIOD}
    if limits.cpu_shares:
        cpu["shares"] = limits.cpu_shares
    if cpu:
        resources["cpu"] = cpu
    if limits.pids_limit:
        resources["pids"] = {"limit": limits.pids_limit}
    return resources


def _swap_accounting() -> bool:
    return Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
