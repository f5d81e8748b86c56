"""Restart policies: the pure rules, then real containers restarted by the exit watcher (tasks inline).

The watcher's timer is swapped for a recorder: each scheduled restart is kept as
(delay, fire) and fired by the test, so the back-off is asserted from the
schedule, never from wall-clock timing.
"""

from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from console import groups, services
from console.dockerapi.shapes import container_inspect
from console.models import Container
from console.restart import next_delay, should_restart, starts_with_worker
from console.watcher import ExitWatcher, reconcile
from runtime.errors import Conflict
from tests.console.conftest import HOST

# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, exit_code, count, manual, expected", [
    (("no", 0), 1, 0, False, False),
    (("always", 0), 0, 0, False, True),
    (("always", 0), 1, 99, False, True),
    (("always", 0), 1, 0, True, False),
    (("unless-stopped", 0), 0, 5, False, True),
    (("unless-stopped", 0), 0, 0, True, False),
    (("on-failure", 0), 0, 0, False, False),
    (("on-failure", 0), 3, 1000, False, True),   # no maximum
    (("on-failure", 2), 3, 1, False, True),
    (("on-failure", 2), 3, 2, False, False),
    (("on-failure", 2), 3, 0, True, False),
])
def test_should_restart(policy, exit_code, count, manual, expected):
    assert should_restart(policy, exit_code, count, manual) is expected


def test_the_back_off_doubles_from_100_ms_to_a_minute():
    delays, delay = [], None
    for _ in range(12):
        delay = next_delay(delay, uptime=0.5)
        delays.append(delay)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0


def test_the_back_off_starts_again_after_ten_seconds_up():
    assert next_delay(6.4, uptime=10.0) == 0.1
    assert next_delay(6.4, uptime=9.9) == 12.8


def test_which_policies_start_with_the_worker():
    assert starts_with_worker(("always", 0), manually_stopped=True)
    assert starts_with_worker(("unless-stopped", 0), manually_stopped=False)
    assert not starts_with_worker(("unless-stopped", 0), manually_stopped=True)
    assert not starts_with_worker(("on-failure", 3), manually_stopped=False)
    assert not starts_with_worker(("no", 0), manually_stopped=False)


# --- real containers ----------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.pending = []
        self.delays = []

    def __call__(self, delay, fire):
        self.pending.append(fire)
        self.delays.append(delay)


@pytest.fixture
def schedule():
    return Recorder()


@pytest.fixture
def watcher(schedule):
    return ExitWatcher(HOST, schedule=schedule)


def started(cmd, restart=None, **host_config):
    if restart:
        name, _, retries = restart.partition(":")
        host_config["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(retries or 0)}
    container = services.create_container({"Image": "busybox", "Cmd": list(cmd), "HostConfig": host_config})
    return services.start_container(container.id)[0]


def row(container_id):
    return Container.objects.get(pk=container_id)


def state_of(container_id):
    return Container.objects.filter(pk=container_id).values_list("state", "exit_code").first()


def exited(host, watcher, container_id):
    """PID 1 ended; the watcher has looked at it."""
    host.wait(container_id, timeout=10)
    watcher.scan(full=True)


def restart_until_the_policy_gives_up(host, watcher, schedule, container_id, limit=10):
    for _ in range(limit):
        if not schedule.pending:
            return
        assert state_of(container_id)[0] == "restarting"
        schedule.pending.pop(0)()
        watcher.scan(full=True)  # a look while it runs (its exit file gone) keeps the back-off
        exited(host, watcher, container_id)
    raise AssertionError("still restarting")


def test_on_failure_2_restarts_exactly_twice_then_stays_exited(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "exit 3"], restart="on-failure:2")
    exited(host, watcher, container.id)
    restart_until_the_policy_gives_up(host, watcher, schedule, container.id)
    assert schedule.delays == [0.1, 0.2]
    assert state_of(container.id) == ("exited", 3)
    assert container_inspect(row(container.id), Path(settings.BERTH_ROOT))["RestartCount"] == 2
    watcher.scan(full=True)
    assert not schedule.pending  # the same exit is never asked about twice


def test_the_back_off_grows_100_200_400_ms(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "sleep 0.3; exit 1"], restart="on-failure:3")
    exited(host, watcher, container.id)
    restart_until_the_policy_gives_up(host, watcher, schedule, container.id)
    assert schedule.delays == [0.1, 0.2, 0.4]
    assert row(container.id).restart_count == 3


def test_always_restarts_after_exit_0(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "exit 0"], restart="always")
    first_start = row(container.id).started_at
    exited(host, watcher, container.id)
    assert schedule.delays == [0.1] and state_of(container.id) == ("restarting", 0)
    schedule.pending.pop()()
    again = row(container.id)
    assert again.restart_count == 1 and again.started_at > first_start
    assert host.get(container.id).state.started_at  # the runtime ran PID 1 again


def test_pages_hear_restarting_then_running(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "sleep 0.5; exit 1"], restart="always")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(groups.container_group(container.id), channel)
    exited(host, watcher, container.id)
    schedule.pending.pop()()
    heard = []
    while "running" not in heard:
        heard.append(async_to_sync(layer.receive)(channel)["state"])
    assert heard[-2:] == ["restarting", "running"]


def test_on_failure_does_not_restart_after_exit_0(busybox, host, watcher, schedule):
    container = started(["true"], restart="on-failure")
    exited(host, watcher, container.id)
    assert not schedule.pending and state_of(container.id) == ("exited", 0)


def test_no_policy_never_restarts(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "exit 1"])
    exited(host, watcher, container.id)
    assert not schedule.pending
    assert state_of(container.id) == ("exited", 1) and row(container.id).restart_count == 0


def test_a_manual_stop_of_an_always_container_is_not_undone(busybox, host, watcher, schedule):
    container = started(["sleep", "100"], restart="always")
    services.stop_container(container.id, timeout=0)
    watcher.scan(full=True)
    assert not schedule.pending
    assert state_of(container.id)[0] == "exited" and not host.get(container.id).running


def test_a_kill_of_an_unless_stopped_container_is_not_undone(busybox, host, watcher, schedule):
    container = started(["sleep", "100"], restart="unless-stopped")
    services.kill_container(container.id)
    watcher.scan(full=True)
    assert not schedule.pending and state_of(container.id)[0] == "exited"


def test_a_stop_during_the_back_off_wins(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "exit 1"], restart="always")
    exited(host, watcher, container.id)
    assert state_of(container.id)[0] == "restarting"
    services.stop_container(container.id, timeout=0)
    schedule.pending.pop()()
    assert state_of(container.id) == ("exited", 1) and row(container.id).restart_count == 0
    assert not host.get(container.id).running


def test_rm_f_of_a_restarting_container_works(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "exit 1"], restart="always")
    exited(host, watcher, container.id)
    assert state_of(container.id)[0] == "restarting"
    with pytest.raises(Conflict, match="container is restarting: stop the container before removing or force remove"):
        services.remove_container(container.id)
    services.remove_container(container.id, force=True)
    schedule.pending.pop()()  # the timer finds nothing to start
    assert not Container.objects.filter(pk=container.id).exists()
    assert container.id not in {c.id for c in host.list()}


def test_a_start_by_hand_resets_the_restart_count_and_the_manual_stop(busybox, host, watcher, schedule):
    container = started(["sh", "-c", "exit 3"], restart="on-failure:1")
    exited(host, watcher, container.id)
    restart_until_the_policy_gives_up(host, watcher, schedule, container.id)
    assert row(container.id).restart_count == 1
    services.stop_container(container.id)
    services.start_container(container.id)
    after = row(container.id)
    assert after.restart_count == 0 and not after.manually_stopped
    exited(host, watcher, container.id)
    assert schedule.delays[-1] == 0.1 and len(schedule.pending) == 1  # the policy applies again


def test_docker_restart_is_no_policy_restart(busybox, host, watcher, schedule):
    container = started(["sleep", "100"], restart="always")
    services.restart_container(container.id, timeout=0)
    watcher.scan(full=True)
    assert not schedule.pending
    after = row(container.id)
    assert (after.state, after.restart_count, after.manually_stopped) == ("running", 0, False)


def test_worker_start_starts_always_and_unless_stopped_but_not_a_manually_stopped_unless_stopped(busybox, host):
    always = started(["sleep", "100"], restart="always")
    stopped = started(["sleep", "100"], restart="unless-stopped")
    # Exits once on its own (nobody watching), then stays up when started again: its rootfs keeps /ran.
    crashed = started(["sh", "-c", "[ -e /ran ] && exec sleep 100; touch /ran"], restart="unless-stopped")
    plain = started(["sh", "-c", "exit 1"])
    services.stop_container(always.id, timeout=0)
    services.stop_container(stopped.id, timeout=0)
    host.wait(crashed.id, timeout=10)
    host.wait(plain.id, timeout=10)
    reconcile(HOST)
    assert state_of(always.id)[0] == "running" and host.get(always.id).running
    assert not row(always.id).manually_stopped  # a later exit is restarted again, as after a daemon restart
    assert state_of(crashed.id)[0] == "running" and host.get(crashed.id).running
    assert state_of(stopped.id)[0] == "exited" and not host.get(stopped.id).running
    assert state_of(plain.id) == ("exited", 1)


# --- in the live worker: the real timer ----------------------------------------------------------


@pytest.mark.live
def test_the_worker_restarts_on_failure_twice_with_its_timer(live):
    import time

    container = started(["sh", "-c", "exit 3"], restart="on-failure:2")
    deadline = time.monotonic() + 10
    while not (state_of(container.id) == ("exited", 3) and row(container.id).restart_count == 2):
        assert time.monotonic() < deadline, (state_of(container.id), row(container.id).restart_count)
        time.sleep(0.05)
    time.sleep(1.5)  # a full scan later: nothing more
    assert row(container.id).restart_count == 2 and state_of(container.id) == ("exited", 3)
