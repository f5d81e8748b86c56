"""The exit watcher and the reconcile at worker start: inline against the runtime, then in the live worker."""

import secrets
import time

import pytest
from django.utils import timezone

from console import services
from console.models import Container, Operation
from console.watcher import ExitWatcher, reconcile
from runtime import ContainerSpec
from runtime.errors import NoSuchContainer
from tests.console.conftest import HOST


def started(cmd, **host_config):
    container = services.create_container({"Image": "busybox", "Cmd": list(cmd), "HostConfig": host_config})
    return services.start_container(container.id)[0]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def state_of(container_id):
    return Container.objects.filter(pk=container_id).values_list("state", "exit_code").first()


# --- the watcher, inline ----------------------------------------------------------------------


def test_an_exit_nobody_waited_for_is_stored(busybox, host):
    container = started(["sh", "-c", "sleep 0.2; exit 5"])
    host.wait(container.id, timeout=10)
    assert state_of(container.id) == ("running", 0)  # nobody told the database yet
    ExitWatcher(HOST).scan()
    assert state_of(container.id) == ("exited", 5)


def test_an_autoremove_container_is_removed_once_it_exited(busybox, host):
    container = started(["true"], AutoRemove=True)
    host.wait(container.id, timeout=10)
    ExitWatcher(HOST).scan()
    assert not Container.objects.filter(pk=container.id).exists()
    with pytest.raises(NoSuchContainer):
        host.get(container.id)
    operation = Operation.objects.get(action="container.remove")
    assert (operation.source, operation.state, operation.target_id) == ("system", "done", container.id)


def test_an_autoremove_container_stopped_by_a_task_is_removed_too(busybox, host):
    container = started(["sleep", "100"], AutoRemove=True)
    services.stop_container(container.id, timeout=0)  # the task stored "exited" before the watcher looked
    ExitWatcher(HOST).scan()
    assert not Container.objects.filter(pk=container.id).exists()


def test_an_exit_already_stored_costs_no_second_look(busybox, host, django_assert_num_queries):
    container = started(["true"])
    host.wait(container.id, timeout=10)
    watcher = ExitWatcher(HOST)
    watcher.scan()
    with django_assert_num_queries(0):
        watcher.scan()


# --- reconcile, inline ---------------------------------------------------------------------------


def test_reconcile_stores_exits_that_happened_while_no_worker_ran(busybox, host):
    exiting = started(["sh", "-c", "exit 2"])
    running = started(["sleep", "100"])
    host.wait(exiting.id, timeout=10)
    reconcile(HOST)
    assert state_of(exiting.id) == ("exited", 2)
    assert state_of(running.id) == ("running", 0)


def test_reconcile_marks_rows_whose_container_is_gone_dead_and_drops_autoremove_ones(busybox, host):
    def row(**host_config):
        return Container.objects.create(id=secrets.token_hex(32), name=f"gone-{secrets.token_hex(3)}", host=HOST,
                                        image_ref="busybox", state="running", host_config=host_config,
                                        created=timezone.now())

    lost, removed = row(), row(AutoRemove=True)
    reconcile(HOST)
    lost.refresh_from_db()
    assert lost.state == "dead" and "gone from the host" in lost.error
    assert not Container.objects.filter(pk=removed.id).exists()


def test_reconcile_finishes_an_interrupted_removal(busybox, host):
    container = started(["sleep", "100"])
    Container.objects.filter(pk=container.id).update(state="removing")
    reconcile(HOST)
    assert not Container.objects.filter(pk=container.id).exists()
    with pytest.raises(NoSuchContainer):
        host.get(container.id)


def test_a_stop_whose_caller_died_before_its_task_fails_and_leaves_the_policy_in_force(busybox, host):
    from console import interrupted
    from console.operations import PROCESS, this_process

    container = started(["sleep", "100"], RestartPolicy={"Name": "always"})
    # What a web process killed between marking the stop manual and sending its task leaves behind.
    Container.objects.filter(pk=container.id).update(manually_stopped=True)
    gone = {**this_process(), "pid": 2 ** 22 + 1}  # above pid_max: no process has it
    stop = Operation.objects.create(action="container.stop", source="web", target_id=container.id,
                                    target_name=container.name, detail={PROCESS: gone})
    interrupted.sweep()
    stop.refresh_from_db()
    assert stop.state == Operation.STATE_FAILED and "interrupted" in stop.error
    assert Container.objects.get(pk=container.id).manually_stopped is False
    assert host.get(container.id).running


def test_reconcile_collects_stopped_containers_no_row_owns_and_never_kills_one(busybox, host):
    orphan = host.create(ContainerSpec(image="busybox", cmd=["true"]))
    alive = host.create(ContainerSpec(image="busybox", cmd=["sleep", "100"]))
    host.start(alive.id)
    reconcile(HOST)
    with pytest.raises(NoSuchContainer):
        host.get(orphan.id)
    assert host.get(alive.id).state.status == "running"


# --- in the live worker ------------------------------------------------------------------------


@pytest.mark.live
def test_the_worker_notices_an_exit_at_once(live):
    container = started(["sh", "-c", "sleep 0.2; exit 5"])
    wait_for(lambda: state_of(container.id) == ("exited", 5), timeout=5)


@pytest.mark.live
def test_the_worker_removes_an_autoremove_container_after_its_exit(live):
    container = started(["sh", "-c", "sleep 0.1"], AutoRemove=True)
    wait_for(lambda: not Container.objects.filter(pk=container.id).exists(), timeout=5)
    with pytest.raises(NoSuchContainer):
        live.runtime().get(container.id)


@pytest.mark.live
def test_containers_outlive_a_worker_restart_and_their_exits_are_stored_after_it(live, tmp_path):
    running = started(["sleep", "100"])
    # Exits once told to, through a bind mount: only after the worker is gone.
    exiting = started(["sh", "-c", "while [ ! -e /signal/go ]; do sleep 0.02; done; exit 2"],
                      Binds=[f"{tmp_path}:/signal"])
    live.stop_worker()
    try:
        (tmp_path / "go").touch()
        wait_for(lambda: not live.runtime().get(exiting.id).running)
        assert state_of(exiting.id) == ("running", 0)
    finally:
        live.start_worker()
    wait_for(lambda: state_of(exiting.id) == ("exited", 2), timeout=10)
    assert state_of(running.id) == ("running", 0)
    assert live.runtime().get(running.id).state.pid == Container.objects.get(pk=running.id).pid
