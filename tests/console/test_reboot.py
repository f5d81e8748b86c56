"""A simulated host reboot (issue 9, item 2): everything the kernel held goes, the disk stays.

    before: [web always, :P1] [db unless-stopped, :P2] [job no] [cron always, stopped by hand]
            [batch unless-stopped, stopped by hand]     bridges, veths, netns, nft table
    reboot: SIGKILL the worker, Redis, every conmon and PID 1; the overlays unmounted; every
            bridge, veth and namespace of the stack deleted; its nft table deleted
    boot:   Redis, then the worker --> reconcile: networks and rules made again, the containers
            marked exited, those whose policy says so started again

Only the state root (the "disk") survives, as it would on a real host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from console import services
from console.models import Container, Network
from runtime.network import links
from runtime.network.nft import FAMILY
from tests.conftest import unique
from tests.live import _tail
from tests.helpers.agreement import wait_for_agreement

BOOT_WAIT = 20.0  # seconds the restarted worker may take to bring back what its policies ask for
# A tiny web server, so a published port is checked end to end after the boot.
HTTPD = ["sh", "-c", "echo up > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]


def _run(name: str, restart: str, network: str = "bridge") -> Container:
    body = {"Image": "busybox", "Cmd": HTTPD, "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": ""}]}, "NetworkMode": network,
                           "RestartPolicy": {"Name": restart}}}
    container = services.create_container(body, name=name)
    services.start_container(container.id)
    return Container.objects.get(pk=container.id)


def _reboot(stack) -> None:
    """What a reboot takes away: every process, mount and network object; the state root stays."""
    engine = stack.runtime()
    stack.kill_worker()
    stack.kill_redis()
    pids = [pid for container in engine.list() for pid in (container.state.pid, container.monitor_pid) if pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Gone, not zombies waiting for the machine's init to reap them: after a reboot nothing is left.
    _wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), 10, lambda: f"PIDs {pids} linger")
    _unmount_under(stack.root)
    seen = stack.networking().observe()
    for name in [*seen["veths"], *seen["bridges"]]:
        links.delete_link(name)
    for name in seen["netns"]:
        links.remove_netns(f"/run/netns/{name}")
    subprocess.run(["nft", "delete", "table", FAMILY, stack.nft_table], check=True, capture_output=True)


def _unmount_under(root) -> None:
    """The containers' overlays (and anything else mounted under the state root), deepest first."""
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _boot(stack) -> None:
    stack.start_redis()
    stack.start_worker()


def _states(names) -> dict[str, str]:
    return dict(Container.objects.filter(name__in=names).values_list("name", "state"))


def _wait_for(condition, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what()}")
        time.sleep(0.1)


def _fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
        return response.read().decode().strip()


def _host_port(container_id: str) -> int | None:
    row = Container.objects.get(pk=container_id)
    return row.ports.get().host_port


@pytest.mark.live
def test_after_a_reboot_berth_remakes_networks_and_rules_and_restarts_what_its_policies_ask(live):
    network = services.create_network({"Name": unique("rbt-net-")})
    web = _run(unique("rbt-web-"), "always", network.name)
    db = _run(unique("rbt-db-"), "unless-stopped")
    job = _run(unique("rbt-job-"), "no", network.name)
    cron = _run(unique("rbt-cron-"), "always")
    batch = _run(unique("rbt-batch-"), "unless-stopped")
    for stopped in (cron, batch):
        services.stop_container(stopped.id, timeout=0)
    pids = {row.id: Container.objects.get(pk=row.id).pid for row in (web, db, job)}
    assert _fetch(_host_port(web.id)) == "up"

    try:
        _reboot(live)
        left = live.networking().observe()
    finally:
        began = time.monotonic()
        _boot(live)  # also when the reboot failed half-way: later tests need the stack
    assert not (left["bridges"] or left["veths"] or left["netns"]), f"the reboot left {left}"

    expected = {row.name: state for row, state in ((web, "running"), (db, "running"), (cron, "running"),
                                                    (job, "exited"), (batch, "exited"))}
    _wait_for(lambda: _states(expected) == expected, BOOT_WAIT,
              lambda: f"states {_states(expected)}, not {expected}; the worker's log ends:\n{_tail(live.logs / 'worker.log')}")
    agreed = wait_for_agreement(live, BOOT_WAIT)
    print(f"\nreboot: running again and in agreement {time.monotonic() - began:.2f} s after the worker was "
          f"started (agreement polled {agreed:.2f} s)")
    for restarted in (web, db):
        row = Container.objects.get(pk=restarted.id)
        assert row.pid != pids[row.id]
        assert _fetch(_host_port(row.id)) == "up", f"{row.name}'s published port does not answer"
    seen = live.networking().observe()
    for net in Network.objects.exclude(bridge_name="").exclude(subnet=""):
        assert net.bridge_name in seen["bridges"], f"bridge {net.bridge_name} of {net.name} was not made again"
        assert f"{net.gateway}/{net.subnet.split('/')[1]}" in seen["bridges"][net.bridge_name]["addresses"]
    assert Container.objects.get(pk=job.id).pid == 0
