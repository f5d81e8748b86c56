"""``top`` and ``stats``: what the kernel says about a container's processes.

Both read the container's cgroup, ``/sys/fs/cgroup/<controller>/<parent>/<id>``
(cgroup v1, as on Berth's hosts, through ``runtime.cgroups``): ``cgroup.procs``
lists its processes, ``cpuacct.*``, ``memory.*``, ``pids.*`` and ``blkio.*`` its usage. ``top``
runs the host's ``ps`` with the client's arguments and keeps the rows of
those PIDs, as moby does; network counters come from ``/proc/<pid 1>/net/dev``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import time
from datetime import datetime, timezone

from runtime import cgroups

from .. import local
from ..errors import HTTPError, bad_request, conflict
from ..formats import ZERO_TIME, rfc3339
from ..params import boolean
from ..server import json_response
from ..shapes import RUNNING_STATES

_TICKS = os.sysconf("SC_CLK_TCK")
_NS = cgroups.NS_PER_SECOND


# --- top ------------------------------------------------------------------------------------


def _ps_rows(output: str, pids: set[int]) -> dict:
    lines = output.splitlines()
    if not lines:
        raise bad_request("ps printed nothing with these ps_args")
    titles = lines[0].split()
    if "PID" not in titles:
        raise bad_request("Couldn't find PID field in ps output: ps_args must keep the PID column")
    index = titles.index("PID")
    processes, previous_matched = [], False
    for line in lines[1:]:
        fields = line.split()
        if not fields or len(fields) <= index:
            continue
        if fields[index] == "-":  # a thread line (ps -m): belongs to the process above
            if previous_matched:
                processes.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
            continue
        try:
            pid = int(fields[index])
        except ValueError:
            raise bad_request(f"Unexpected pid '{fields[index]}' in ps output") from None
        previous_matched = pid in pids
        if previous_matched:
            processes.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": processes}


def _top(api, reference: str, ps_args: str) -> dict:
    row = api.services.get_container(reference)
    if row.state not in RUNNING_STATES:
        raise conflict(f"container {row.id} is not running")
    pids = set(local.cgroup_pids(api.runtime, row.id)) or ({row.pid} if row.pid else set())
    try:
        args = shlex.split(ps_args)
    except ValueError as error:
        raise bad_request(f"invalid ps_args: {error}") from None
    try:
        done = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise HTTPError(500, "ps is not installed on this host") from None
    if done.returncode != 0:  # ps refused the client's ps_args (moby says 500; they are the client's to fix)
        raise bad_request(f"Error running ps: {done.stderr.strip()}")
    return _ps_rows(done.stdout, pids)


async def top(api, request):
    ps_args = request.arg("ps_args") or "-ef"
    return json_response(await api.sync(_top, api, request.params["id"], ps_args))


# --- stats ------------------------------------------------------------------------------------


def _networks(pid: int) -> dict | None:
    if not pid:
        return None
    result = {}
    for line in cgroups.read(f"/proc/{pid}/net/dev").decode(errors="replace").splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        values = counters.split()
        if name == "lo" or len(values) < 16:
            continue
        numbers = [int(v) for v in values]
        result[name] = {
            "rx_bytes": numbers[0], "rx_packets": numbers[1], "rx_errors": numbers[2], "rx_dropped": numbers[3],
            "tx_bytes": numbers[8], "tx_packets": numbers[9], "tx_errors": numbers[10], "tx_dropped": numbers[11],
        }
    return result


def _zero_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def sample(runtime, container_id: str, name: str, pid: int, running: bool) -> dict:
    """One reading in Docker's stats shape (``cpu_stats`` etc.); zeros for a container that is not running."""
    base = {"name": "/" + name, "id": container_id, "read": ZERO_TIME, "preread": ZERO_TIME,
            "pids_stats": {}, "blkio_stats": {key: None for key in (
                "io_service_bytes_recursive", "io_serviced_recursive", "io_queue_service_recursive",
                "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                "io_time_recursive", "sectors_recursive")},
            "num_procs": 0, "storage_stats": {}, "cpu_stats": _zero_cpu(), "precpu_stats": _zero_cpu(),
            "memory_stats": {}}
    if not running:
        return base
    cg = lambda controller: cgroups.directory(runtime.state.cgroup_parent, container_id, controller)  # noqa: E731
    cpuacct = cg("cpuacct")
    ticks = cgroups.pairs(cpuacct + "/cpuacct.stat")
    percpu = [int(v) for v in cgroups.read(cpuacct + "/cpuacct.usage_percpu").split()]
    throttle = cgroups.pairs(cg("cpu") + "/cpu.stat")
    memory = cg("memory")
    limit = cgroups.number(memory + "/memory.limit_in_bytes")
    total = cgroups.host_memory()
    pids_limit = cgroups.number(cg("pids") + "/pids.max")
    base.update({
        "read": rfc3339(datetime.now(timezone.utc)),
        "pids_stats": {"current": cgroups.number(cg("pids") + "/pids.current"),
                       **({"limit": pids_limit} if pids_limit else {})},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cgroups.number(cpuacct + "/cpuacct.usage"),
                "percpu_usage": percpu or None,
                "usage_in_kernelmode": ticks.get("system", 0) * _NS // _TICKS,
                "usage_in_usermode": ticks.get("user", 0) * _NS // _TICKS,
            },
            "system_cpu_usage": cgroups.host_cpu().total_ns,
            "online_cpus": len(percpu) or os.cpu_count() or 1,
            "throttling_data": {"periods": throttle.get("nr_periods", 0),
                                "throttled_periods": throttle.get("nr_throttled", 0),
                                "throttled_time": throttle.get("throttled_time", 0)},
        },
        "memory_stats": {
            "usage": cgroups.number(memory + "/memory.usage_in_bytes"),
            "max_usage": cgroups.number(memory + "/memory.max_usage_in_bytes"),
            "stats": cgroups.pairs(memory + "/memory.stat"),
            "failcnt": cgroups.number(memory + "/memory.failcnt"),
            "limit": min(limit, total) if total else limit,
        },
    })
    base["blkio_stats"]["io_service_bytes_recursive"] = cgroups.blkio(cg("blkio") + "/blkio.throttle.io_service_bytes")
    base["blkio_stats"]["io_serviced_recursive"] = cgroups.blkio(cg("blkio") + "/blkio.throttle.io_serviced")
    networks = _networks(pid)
    if networks is not None:
        base["networks"] = networks
    return base


def _reading(api, reference: str) -> dict | None:
    from runtime.errors import NotFound

    try:
        row = api.services.get_container(reference)
    except NotFound:
        return None
    running = row.state in RUNNING_STATES
    return sample(api.runtime, row.id, row.name, row.pid if running else 0, running)


async def stats(api, request):
    reference = request.params["id"]
    streaming = boolean(request.arg("stream"), default=True)
    one_shot = boolean(request.arg("one-shot"))
    first = await api.sync(_reading, api, reference)
    if first is None:
        from runtime.errors import NoSuchContainer

        raise NoSuchContainer(reference)
    if not streaming:
        if not one_shot and first["read"] != ZERO_TIME:
            # Two readings a moment apart, so the client can compute a CPU percentage.
            await asyncio.sleep(api.stats_interval)
            second = await api.sync(_reading, api, reference) or first
            if second["read"] != ZERO_TIME:
                second["precpu_stats"], second["preread"] = first["cpu_stats"], first["read"]
                first = second
        return json_response(first)
    stream = await request.stream("application/json")
    gone = request.watch_disconnect()
    previous = None
    current = first
    while current is not None:
        if previous is not None and current["read"] != ZERO_TIME and previous["read"] != ZERO_TIME:
            current["precpu_stats"], current["preread"] = previous["cpu_stats"], previous["read"]
        await stream.write(json.dumps(current).encode() + b"\n")
        previous = current
        deadline = time.monotonic() + api.stats_interval
        while time.monotonic() < deadline and not gone.is_set():
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if gone.is_set():
            request.conn.must_close = True
            return None
        current = await api.sync(_reading, api, reference)
    await stream.end()
    return None


ROUTES = [
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/stats", stats),
]
