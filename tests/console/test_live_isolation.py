"""Issue 9, network isolation on the kernel: what one bridge network may and may not reach.

Networks and containers are made through the services (the worker, runc and
the real networking layer of the live stack, with its own nftables table).
Each probe is a container whose pid 1 is busybox ``ping``: its exit code (0
answered, 1 no answer) lands in the row, so a missing program (127) can never
pass for "blocked".

The "outside" host is a network namespace this test makes, joined to the
root namespace by a veth pair on a /30 of 10.197.0.0/16 that no route of the
host covers. Traffic goes only to the test's own containers and namespace.
``live`` removes the containers and networks; the namespace and veth are
removed here, in ``finally``.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import time

import pytest

from console import network_services, services
from console.models import Container
from tests.conftest import short_unique

pytestmark = pytest.mark.live

OUTSIDE_POOL = ipaddress.ip_network("10.197.0.0/16")
BRIDGE_OPTION = "com.docker.network.bridge.name"
ANSWERED, NO_ANSWER = 0, 1


# --- helpers ----------------------------------------------------------------------------------


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


def make_network(name: str, internal: bool = False):
    """A user network with a bridge name of the test's own (so a leak is recognisable)."""
    return network_services.create_network({"Name": name, "Internal": internal,
                                            "Options": {BRIDGE_OPTION: short_unique("i")}})


def idle_container(network) -> Container:
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"],
                                           "HostConfig": {"NetworkMode": network.name}})
    services.start_container(container.id)
    return container


def address_on(container: Container, network) -> str:
    return container.endpoints.get(network=network).ip_address


def ping_from(network, target: str, route_via: str = "", timeout: float = 20.0) -> int:
    """The exit code of ``ping -c1 -W2 target`` run as pid 1 of a new container on ``network``.

    With ``route_via``, the probe (given NET_ADMIN) first adds a default route through that address, as
    a container with that capability could: then only the firewall stands between it and the target.
    Exit 2 (or 127) would mean the route could not be added, never a pass."""
    command, host_config = ["ping", "-c1", "-W2", target], {"NetworkMode": network.name}
    if route_via:
        command = ["sh", "-c", f"ip route add default via {route_via} || exit 2; exec ping -c1 -W2 {target}"]
        host_config["CapAdd"] = ["NET_ADMIN"]
    probe = services.create_container({"Image": "busybox", "Cmd": command, "HostConfig": host_config})
    services.start_container(probe.id)
    deadline = time.monotonic() + timeout
    while (row := Container.objects.get(pk=probe.id)).state != "exited":
        assert time.monotonic() < deadline, f"probe to {target} still {row.state}"
        time.sleep(0.05)
    services.remove_container(probe.id, force=True)
    return row.exit_code


def free_outside_subnet() -> ipaddress.IPv4Network:
    """A /30 of the test pool that no route of the host (any table) covers."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True,
                                       text=True).stdout or "[]")
    taken = [ipaddress.ip_network(r["dst"], strict=False) for r in routes if r.get("dst", "default") != "default"]
    for _ in range(50):
        start = OUTSIDE_POOL.network_address + 4 * secrets.randbelow(OUTSIDE_POOL.num_addresses // 4)
        candidate = ipaddress.ip_network(f"{start}/30")
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    pytest.skip("no free /30 left in 10.197.0.0/16")


@pytest.fixture
def outside_host():
    """A test host outside every Berth network: a namespace whose address the root namespace routes to
    (directly connected), with a default route back through the host, so only the firewall can stop a
    container's packets. Yields its address."""
    subnet = free_outside_subnet()
    gateway, address = (str(a) for a in subnet.hosts())
    namespace, host_end, far_end = short_unique("n"), short_unique("h"), short_unique("o")
    try:
        ip("netns", "add", namespace)
        ip("link", "add", host_end, "type", "veth", "peer", "name", far_end, "netns", namespace)
        ip("addr", "add", f"{gateway}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", namespace, "addr", "add", f"{address}/30", "dev", far_end)
        ip("-n", namespace, "link", "set", far_end, "up")
        ip("-n", namespace, "route", "add", "default", "via", gateway)
        route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True).stdout
        assert f"dev {host_end}" in route  # the host routes to it directly, not elsewhere
        yield address
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)  # takes its peer with it
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        assert subprocess.run(["ip", "link", "show", host_end], capture_output=True).returncode != 0
        assert namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


# --- tests ------------------------------------------------------------------------------------------


def test_two_containers_on_one_user_network_reach_each_other(live):
    network = make_network("together")
    peer = idle_container(network)
    assert ping_from(network, address_on(peer, network)) == ANSWERED


def test_a_container_cannot_reach_one_on_another_bridge_network_either_way(live):
    front, back = make_network("front"), make_network("back")
    on_front, on_back = idle_container(front), idle_container(back)
    # Same-network pings first: they show the targets answer, so a failure below is the firewall's.
    assert ping_from(front, address_on(on_front, front)) == ANSWERED
    assert ping_from(back, address_on(on_back, back)) == ANSWERED
    assert ping_from(front, address_on(on_back, back)) == NO_ANSWER
    assert ping_from(back, address_on(on_front, front)) == NO_ANSWER


def test_the_default_bridge_and_a_user_network_are_isolated_from_each_other(live):
    users = make_network("users")
    default = network_services.default_network()
    on_users, on_default = idle_container(users), idle_container(default)
    default.refresh_from_db()
    assert ping_from(default, address_on(on_default, default)) == ANSWERED
    assert ping_from(default, address_on(on_users, users)) == NO_ANSWER
    assert ping_from(users, address_on(on_default, default)) == NO_ANSWER


def test_a_normal_network_reaches_an_outside_host_and_an_internal_one_does_not(live, outside_host):
    normal, internal = make_network("normal"), make_network("sealed", internal=True)
    assert ping_from(normal, outside_host) == ANSWERED
    inside = idle_container(internal)
    assert ping_from(internal, address_on(inside, internal)) == ANSWERED  # the internal network itself works
    assert ping_from(internal, outside_host) == NO_ANSWER  # no default route on an internal network...
    assert ping_from(internal, outside_host, route_via=internal.gateway) == NO_ANSWER  # ...and the firewall drops


def test_an_internal_network_and_a_normal_one_cannot_reach_each_other(live):
    normal, internal = make_network("open"), make_network("closed", internal=True)
    on_normal, on_internal = idle_container(normal), idle_container(internal)
    assert ping_from(normal, address_on(on_internal, internal)) == NO_ANSWER
    assert ping_from(internal, address_on(on_normal, normal)) == NO_ANSWER
