"""The resource collector against a real container's cgroup, a real Redis (``stats_redis``) and the channel layer."""

import asyncio
import os
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from console import collector, groups, services
from console.collector import Collector, Sample
from runtime import cgroups
from tests.conftest import unique
from tests.console.conftest import HOST
from tests.live import _free_port

BUSY = {"Image": "busybox", "Cmd": ["sh", "-c", "while :; do :; done"]}


def run_busy_container(name=None):
    row = services.create_container(BUSY, name=name or unique("busy-"))
    services.start_container(row.id)
    return row


def two_ticks(engine) -> tuple[Collector, dict[str, Sample]]:
    """A collector of the test host ticked twice, a moment apart (CPU % needs two readings)."""
    host_collector = Collector(HOST, engine.state.cgroup_parent)
    host_collector.tick()
    time.sleep(0.3)
    return host_collector, host_collector.tick()


def test_it_reads_cpu_and_memory_of_a_running_container_from_its_cgroup(host, busybox, stats_redis):
    row = run_busy_container()
    host_collector = Collector(HOST, host.state.cgroup_parent)
    first = host_collector.tick()[row.id]
    assert first.cpu is None and first.memory > 0  # no CPU % from a single reading
    time.sleep(0.3)
    second = host_collector.tick()[row.id]
    assert second.cpu > 1  # a shell spinning (on a shared machine: some of a CPU)
    assert 0 < second.memory < second.limit <= cgroups.host_memory()


def test_it_keeps_the_recent_samples_in_redis(host, busybox, stats_redis):
    row = run_busy_container()
    _, samples = two_ticks(host)
    kept = collector.history(row.id)
    assert len(kept) == 2 and kept[-1] == samples[row.id]
    assert collector.latest([row.id, "ab" * 32]) == {row.id: samples[row.id]}


def test_the_history_is_capped(host, busybox, stats_redis):
    row = run_busy_container()
    host_collector = Collector(HOST, host.state.cgroup_parent)
    for _ in range(collector.HISTORY + 5):
        host_collector.tick()
    assert len(collector.history(row.id)) == collector.HISTORY


def test_a_stopped_container_leaves_the_figures(host, busybox, stats_redis):
    running, stopping = run_busy_container(), run_busy_container()
    host_collector, samples = two_ticks(host)
    assert {running.id, stopping.id} <= set(samples)
    services.kill_container(stopping.id)
    after = host_collector.tick()
    assert running.id in after and stopping.id not in after
    assert set(host_collector.reader.files) == {running.id}  # the stopped one's files are closed
    assert collector.history(stopping.id) == [] and collector.latest([stopping.id]) == {}


def test_a_limited_container_shows_its_memory_limit(host, busybox, stats_redis):
    row = services.create_container({**BUSY, "HostConfig": {"Memory": 64 * 1024 * 1024}}, name=unique("small-"))
    services.start_container(row.id)
    _, samples = two_ticks(host)
    assert samples[row.id].limit == 64 * 1024 * 1024


def test_each_tick_is_one_message_with_every_containers_figures(host, busybox, stats_redis):
    first, second = run_busy_container(), run_busy_container()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(groups.STATS, channel)
    try:
        _, samples = two_ticks(host)
        messages = [async_to_sync(layer.receive)(channel) for _ in range(2)]
        assert async_to_sync(_nothing_more)(layer, channel)
    finally:
        async_to_sync(layer.group_discard)(groups.STATS, channel)
    tick = messages[-1]
    assert (tick["type"], tick["host"]) == ("stats.tick", HOST)
    assert set(tick["figures"]) == {first.id, second.id}
    assert tick["figures"][first.id] == samples[first.id].figures()


async def _nothing_more(layer, channel) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), timeout=0.2)
    except asyncio.TimeoutError:
        return True
    return False


def test_cpu_percent_is_dockers_formula():
    before, now = cgroups.Usage(1_000, 0, 0), cgroups.Usage(1_000 + 500_000_000, 0, 0)
    host_before, host_now = cgroups.HostCPU(10_000_000_000, 2), cgroups.HostCPU(12_000_000_000, 2)
    # half a second of CPU while the host's two CPUs ran two seconds (one each): 50 % of one CPU
    assert cgroups.cpu_percent(before, now, host_before, host_now) == pytest.approx(50.0)
    assert cgroups.cpu_percent(now, now, host_before, host_now) == 0.0


def test_a_container_without_a_cgroup_reads_as_none(host):
    assert cgroups.UsageReader(host.state.cgroup_parent).usage("cd" * 32, cgroups.host_memory()) is None


def test_a_restarted_container_is_read_from_its_new_cgroup(host, busybox, stats_redis):
    row = run_busy_container()
    host_collector, _ = two_ticks(host)
    files = lambda: [os.fstat(fd).st_ino for fd in host_collector.reader.files[row.id]]  # noqa: E731
    kept_open = files()
    services.restart_container(row.id, timeout=0)  # runc removes the cgroup and makes it again
    sample = host_collector.tick()[row.id]
    assert sample.memory > 0 and not set(files()) & set(kept_open)


def test_without_redis_the_pages_get_no_figures(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_free_port()}/0"
    assert collector.history("ab" * 32) == [] and collector.latest(["ab" * 32]) == {}


def test_the_apis_stats_read_the_same_cgroup(host, busybox):
    from console.dockerapi.handlers.stats import sample

    row = run_busy_container()
    row.refresh_from_db()
    reading = sample(host, row.id, row.name, row.pid, True)
    assert reading["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and reading["cpu_stats"]["system_cpu_usage"] > 0
    assert reading["memory_stats"]["usage"] > 0 and reading["memory_stats"]["stats"]["total_inactive_file"] >= 0
    assert reading["pids_stats"]["current"] == 1  # the shell, PID 1 (its loop is a builtin)
