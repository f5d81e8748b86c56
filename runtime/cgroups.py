"""Reading what the kernel counts for a container: its cgroup, and the host's totals.

A container's cgroup is ``/sys/fs/cgroup/<controller>/<parent>/<id>`` (cgroup v1,
as on Berth's hosts; ``cpuacct`` is also the name of the joint ``cpu,cpuacct``
hierarchy's symlink). The readers are cheap on purpose: one collector reads a
few files of every running container every two seconds, so they use
``os.open``/``os.read`` on bytes, never a subprocess, and a file that vanished
(the container just stopped) reads as empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ROOT = "/sys/fs/cgroup"
UNLIMITED = (1 << 64) - 1
NS_PER_SECOND = 1_000_000_000
_TICKS = os.sysconf("SC_CLK_TCK")
# The kernel's "no limit" for memory.limit_in_bytes is the largest page-aligned signed 64-bit number.
_NO_MEMORY_LIMIT = 1 << 62


def directory(parent: str, container_id: str, controller: str) -> str:
    return f"{ROOT}/{controller}/{parent}/{container_id}"


def read(path: str) -> bytes:
    """The whole file, or b"" when it is not there (any more)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def number(path: str) -> int:
    """A one-number file; "max" (cgroup v2's no limit) is UNLIMITED, anything unreadable 0."""
    text = read(path).strip()
    if text == b"max":
        return UNLIMITED
    try:
        return int(text)
    except ValueError:
        return 0


def pairs(path: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat, cpuacct.stat)."""
    result = {}
    for line in read(path).decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            result[parts[0]] = int(parts[1])
    return result


def blkio(path: str) -> list[dict]:
    """blkio.throttle.* lines ("8:0 Read 4096") as Docker's entries."""
    entries = []
    for line in read(path).decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, _, minor = parts[0].partition(":")
            entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return entries


@dataclass(frozen=True)
class HostCPU:
    """The host's CPU time so far (all CPUs, in ns, the sum Docker uses) and how many CPUs are online."""
    total_ns: int
    online: int


def host_cpu() -> HostCPU:
    """From /proc/stat: user+nice+system+idle+iowait+irq+softirq of the "cpu" line; one "cpuN" line per CPU."""
    total, online = 0, 0
    for line in read("/proc/stat").splitlines():
        if line.startswith(b"cpu "):
            total = sum(int(v) for v in line.split()[1:8]) * NS_PER_SECOND // _TICKS
        elif line.startswith(b"cpu"):
            online += 1
        elif online:
            break
    return HostCPU(total, online or os.cpu_count() or 1)


def host_memory() -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    for line in read("/proc/meminfo").splitlines():
        if line.startswith(b"MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Usage:
    """One reading of a container: CPU time used so far (ns), memory in use and its limit (bytes)."""
    cpu_ns: int
    memory: int
    memory_limit: int


class UsageReader:
    """Reads the usage of many containers again and again, their files kept open in between.

    A ``pread`` of an open cgroup file costs a tenth of open+read+close (the
    path lookup is most of it), which is what makes a tick over thousands of
    containers cheap. Open files do not keep a cgroup alive: once it is
    removed they fail with ENODEV, also when a restart made it again under the
    same name; the files are opened afresh then. ``keep_only`` closes the
    files of containers that are no longer read.
    """

    FILES = (("cpuacct", "cpuacct.usage"), ("memory", "memory.usage_in_bytes"), ("memory", "memory.stat"),
             ("memory", "memory.limit_in_bytes"))
    _BUFFER = 16384  # memory.stat is about 1.5 KB; anything as long as this is read whole instead

    def __init__(self, parent: str):
        self.parent = parent
        self.files: dict[str, list[int]] = {}

    def usage(self, container_id: str, host_memory_bytes: int) -> Usage | None:
        """The container's CPU time and memory now; None when its cgroup is gone."""
        for _ in range(2):  # the second time with files opened afresh
            descriptors = self.files.get(container_id) or self._open(container_id)
            if descriptors is None:
                return self._read_once(container_id, host_memory_bytes)  # gone, or no descriptor left
            try:
                contents = [os.pread(fd, self._BUFFER, 0) for fd in descriptors]
            except OSError:
                self._close(container_id)
                continue
            if any(len(content) == self._BUFFER for content in contents):
                return self._read_once(container_id, host_memory_bytes)
            return _usage(*contents, host_memory_bytes)
        return None

    def keep_only(self, container_ids) -> None:
        for container_id in set(self.files) - set(container_ids):
            self._close(container_id)

    def close(self) -> None:
        self.keep_only(())

    def _paths(self, container_id: str) -> list[str]:
        return [f"{directory(self.parent, container_id, controller)}/{name}" for controller, name in self.FILES]

    def _open(self, container_id: str) -> list[int] | None:
        descriptors = []
        try:
            for path in self._paths(container_id):
                descriptors.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            for fd in descriptors:
                os.close(fd)
            return None
        self.files[container_id] = descriptors
        return descriptors

    def _read_once(self, container_id: str, host_memory_bytes: int) -> Usage | None:
        contents = [read(path) for path in self._paths(container_id)]
        return _usage(*contents, host_memory_bytes) if contents[0] else None

    def _close(self, container_id: str) -> None:
        for fd in self.files.pop(container_id, ()):
            os.close(fd)


def _usage(cpu: bytes, memory: bytes, memory_stat: bytes, limit: bytes, host_memory_bytes: int) -> Usage:
    """Memory as ``docker stats`` shows it: usage less the inactive page cache (``total_inactive_file``),
    which the kernel reclaims first. The limit is the host's memory when the container has none."""
    in_use = _integer(memory)
    in_use -= min(in_use, _stat(memory_stat, b"total_inactive_file"))
    limit_bytes = _integer(limit)
    unlimited = not limit_bytes or limit_bytes >= _NO_MEMORY_LIMIT
    if unlimited or (host_memory_bytes and limit_bytes > host_memory_bytes):
        limit_bytes = host_memory_bytes
    return Usage(_integer(cpu), in_use, limit_bytes)


def _integer(content: bytes) -> int:
    try:
        return int(content)
    except ValueError:
        return 0


def _stat(content: bytes, key: bytes) -> int:
    """One value of a memory.stat-like file, found without parsing every line."""
    start = content.find(b"\n" + key + b" ")
    if start < 0:
        if not content.startswith(key + b" "):
            return 0
        start = -1
    start += len(key) + 2
    end = content.find(b"\n", start)
    try:
        return int(content[start:end if end >= 0 else None])
    except ValueError:
        return 0


def cpu_percent(previous: Usage, current: Usage, host_before: HostCPU, host_now: HostCPU) -> float:
    """Docker's formula: the container's share of the host's CPU time between two readings, times
    the online CPUs (so a container using two whole CPUs shows 200 %)."""
    container = current.cpu_ns - previous.cpu_ns
    system = host_now.total_ns - host_before.total_ns
    if container <= 0 or system <= 0:
        return 0.0
    return container / system * host_now.online * 100.0
