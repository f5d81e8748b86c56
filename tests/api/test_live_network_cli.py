"""Issue 4 with the real docker CLI and docker-py against a real Berth: bridges, veths, ports, modes, DNS.

Everything runs on the kernel: the live stack (tests/live.py) has its own
nftables table, namespace prefix and default bridge, and picks subnets from
10.198.0.0/16; networks the tests create take /24s of 10.199.0.0/16 and
bridge names from ``short_unique``. Traffic goes only to 127.0.0.1 and to
containers the tests made. ``live`` removes containers and networks after
each test, failed or not, and the stack removes every kernel object of its
own at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from runtime.network import veth_name
from tests.conftest import short_unique

pytestmark = pytest.mark.live

USER_POOL = ipaddress.ip_network("10.199.0.0/16")
BRIDGE_OPTION = "com.docker.network.bridge.name"


# --- helpers ----------------------------------------------------------------------------------


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stderr}"
    return done.stdout


def inspect(docker, name: str) -> dict:
    return json.loads(ok(docker("inspect", name)))[0]


def address_of(docker, name: str, network: str = "bridge") -> str:
    return inspect(docker, name)["NetworkSettings"]["Networks"][network]["IPAddress"]


def free_subnet(docker) -> ipaddress.IPv4Network:
    """A /24 of the test pool that no host route and no Berth network covers."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True,
                                       text=True).stdout or "[]")
    taken = [ipaddress.ip_network(r["dst"]) for r in routes if "/" in r.get("dst", "")]
    taken += [ipaddress.ip_network(c["Subnet"]) for n in json.loads(ok(docker("network", "inspect", "bridge")))
              for c in n["IPAM"]["Config"]]
    from console.models import Network

    taken += [ipaddress.ip_network(s) for s in Network.objects.exclude(subnet="").values_list("subnet", flat=True)]
    for candidate in USER_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    pytest.skip("no free /24 left in the test pool")


def make_network(docker, name: str, **options) -> tuple[str, ipaddress.IPv4Network, str]:
    """``docker network create --subnet <free /24> --opt bridge.name=<test device> name``: (id, subnet, device)."""
    subnet, device = free_subnet(docker), short_unique("u")
    extra = [f"--{key.replace('_', '-')}" if value is True else f"--{key.replace('_', '-')}={value}"
             for key, value in options.items()]
    network_id = ok(docker("network", "create", "--subnet", str(subnet), "--opt", f"{BRIDGE_OPTION}={device}",
                           *extra, name)).strip()
    return network_id, subnet, device


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def fetch(url: str, timeout: float = 10.0) -> str:
    """GET ``url`` directly (no proxy from the environment), retrying until the server listens."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def assert_nothing_left(live, endpoint_ids=(), owners=(), devices=()):
    """No veth of those endpoints, no namespace of those containers, none of their ports, no such bridge.

    A removed container's veths go with its namespace, which the kernel tears down a moment after the
    removal answered: they get a few seconds.
    """
    deadline = time.monotonic() + 5
    while any(link_exists(veth_name(e)) for e in endpoint_ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = live.networking().observe()
    assert not {veth_name(e) for e in endpoint_ids} & set(seen["veths"])
    assert not [e for e in endpoint_ids if link_exists(veth_name(e))]
    assert not [o for o in owners if os.path.exists(f"/run/netns/{live.netns_prefix}{o[:12]}")]
    assert not [p for p in seen["ports"] if p["owner"] in owners]
    assert not [d for d in devices if link_exists(d)]
    assert not set(devices) & set(seen["bridges"])


HTTPD = ["sh", "-c", "echo hello from berth > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]


# --- the default bridge -----------------------------------------------------------------------------


def test_two_containers_on_the_default_bridge_reach_each_other_by_ip_and_route_via_the_gateway(docker, live):
    for name in ("alpha", "beta"):
        ok(docker("run", "-d", "--name", name, "busybox", "sleep", "1000"))
    a, b = inspect(docker, "alpha"), inspect(docker, "beta")
    network = a["NetworkSettings"]["Networks"]["bridge"]
    assert network["Gateway"] == a["NetworkSettings"]["Gateway"] and network["IPPrefixLen"] == 24
    assert network["MacAddress"] == "02:42:" + ":".join(f"{int(x):02x}" for x in network["IPAddress"].split("."))
    assert a["NetworkSettings"]["SandboxKey"] == f"/run/netns/{live.netns_prefix}{a['Id'][:12]}"
    ok(docker("exec", "alpha", "ping", "-c1", "-W2", b["NetworkSettings"]["IPAddress"]))
    routes = ok(docker("exec", "alpha", "ip", "route"))
    assert f"default via {network['Gateway']} dev eth0" in routes
    assert f"inet {network['IPAddress']}/24" in ok(docker("exec", "alpha", "ip", "-4", "addr", "show", "eth0"))
    assert network["IPAddress"] in ok(docker("exec", "alpha", "cat", "/etc/hosts"))
    bridge = json.loads(ok(docker("network", "inspect", "bridge")))[0]
    assert bridge["Options"][BRIDGE_OPTION] == live.default_bridge
    assert set(bridge["Containers"]) == {a["Id"], b["Id"]}
    assert link_exists(live.default_bridge)
    endpoints = [c["NetworkSettings"]["Networks"]["bridge"]["EndpointID"] for c in (a, b)]
    ok(docker("rm", "-f", "alpha", "beta"))
    assert_nothing_left(live, endpoints, [a["Id"], b["Id"]])


def test_a_published_port_answers_on_localhost_and_from_another_container(docker, live):
    port = free_port()
    ok(docker("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", *HTTPD))
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from berth\n"
    gateway = inspect(docker, "web")["NetworkSettings"]["Gateway"]
    # (Debian's busybox wget crashes on -T: timeout does the same)
    got = docker("run", "--rm", "busybox", "timeout", "5", "wget", "-qO-", f"http://{gateway}:{port}/")
    assert ok(got) == "hello from berth\n"
    assert ok(docker("port", "web")) == f"80/tcp -> 0.0.0.0:{port}\n"
    assert f"0.0.0.0:{port}->80/tcp" in ok(docker("ps"))
    ok(docker("stop", "-t", "0", "web"))  # Docker frees the port when the container stops
    assert not [p for p in live.networking().observe()["ports"] if p["host_port"] == port]
    ok(docker("start", "web"))
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from berth\n"


def test_publish_all_picks_ephemeral_ports_that_docker_port_shows(docker):
    ok(docker("run", "-d", "--name", "pa", "-P", "--expose", "80", "busybox", *HTTPD))
    first = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    host_port = int(ok(docker("port", "pa", "80")).strip().rpartition(":")[2])
    assert host_port >= first
    assert fetch(f"http://127.0.0.1:{host_port}/") == "hello from berth\n"


def test_a_host_port_taken_fails_the_start_with_dockers_message_and_leaves_nothing(docker, live):
    port = free_port()
    ok(docker("run", "-d", "--name", "first", "-p", f"{port}:80", "busybox", "sleep", "1000"))
    refused = docker("run", "-d", "--name", "second", "-p", f"{port}:80", "busybox", "sleep", "1000")
    assert refused.returncode == 125
    second = inspect(docker, "second")
    endpoint = second["NetworkSettings"]["Networks"]["bridge"]["EndpointID"]
    assert (f"failed to set up container networking: driver failed programming external connectivity on "
            f"endpoint second ({endpoint}): Bind for 0.0.0.0:{port} failed: port is already allocated") in refused.stderr
    assert (second["State"]["Status"], second["State"]["ExitCode"]) == ("created", 128)
    assert "port is already allocated" in second["State"]["Error"]
    assert_nothing_left(live, [endpoint], [second["Id"]])
    assert [p["host_port"] for p in live.networking().observe()["ports"]
            if p["owner"] == inspect(docker, "first")["Id"]] == [port]


def test_a_host_port_some_process_listens_on_is_refused_too(docker, live):
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        refused = docker("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sleep", "1000")
    assert refused.returncode == 125
    assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in refused.stderr
    web = inspect(docker, "web")
    assert_nothing_left(live, [web["NetworkSettings"]["Networks"]["bridge"]["EndpointID"]], [web["Id"]])


# --- the other modes ------------------------------------------------------------------------------------


def test_host_mode_sees_the_hosts_interfaces_and_ignores_ports_with_a_warning(docker, live):
    ran = docker("run", "--rm", "--network", "host", "-p", "8080:80", "busybox", "ls", "/sys/class/net")
    assert ran.returncode == 0, ran.stderr
    assert "Published ports are discarded when using host network mode" in ran.stderr
    assert set(ran.stdout.split()) >= {"lo", "eth0", live.default_bridge} & set(os.listdir("/sys/class/net"))
    ok(docker("run", "-d", "--name", "onhost", "--network", "host", "busybox", "sleep", "1000"))
    data = inspect(docker, "onhost")
    assert list(data["NetworkSettings"]["Networks"]) == ["host"]
    assert os.readlink(f"/proc/{data['State']['Pid']}/ns/net") == os.readlink("/proc/self/ns/net")


def test_none_mode_has_only_loopback(docker):
    assert ok(docker("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")).split() == ["lo"]
    ok(docker("run", "-d", "--name", "alone", "--network", "none", "busybox", "sleep", "1000"))
    assert list(inspect(docker, "alone")["NetworkSettings"]["Networks"]) == ["none"]


def test_container_mode_shares_the_network_namespace_and_nothing_else(docker):
    ok(docker("run", "-d", "--name", "alpha", "busybox", "sleep", "1000"))
    ok(docker("run", "-d", "--name", "beta", "--network", "container:alpha", "busybox", "sleep", "1000"))
    a, b = inspect(docker, "alpha"), inspect(docker, "beta")
    assert os.readlink(f"/proc/{a['State']['Pid']}/ns/net") == os.readlink(f"/proc/{b['State']['Pid']}/ns/net")
    assert os.readlink(f"/proc/{a['State']['Pid']}/ns/pid") != os.readlink(f"/proc/{b['State']['Pid']}/ns/pid")
    assert b["HostConfig"]["NetworkMode"] == f"container:{a['Id']}" and b["NetworkSettings"]["Networks"] == {}
    assert a["NetworkSettings"]["IPAddress"] in ok(docker("exec", "beta", "ip", "-4", "addr"))
    refused = docker("run", "--network", "container:alpha", "-p", "80", "busybox", "true")
    assert refused.returncode == 125
    assert "conflicting options: port publishing and the container type network mode" in refused.stderr
    ok(docker("stop", "-t", "0", "alpha"))
    ok(docker("stop", "-t", "0", "beta"))
    refused = docker("start", "beta")
    assert refused.returncode == 1 and f"cannot join network of a non running container: {a['Id']}" in refused.stderr


def test_removing_a_container_another_runs_beside_takes_its_interface_from_the_shared_namespace(docker, live):
    # beta's processes keep alpha's namespace alive: alpha's veth and address must go at once all the same,
    # or beta would keep an address the network gives to the next container.
    ok(docker("run", "-d", "--name", "alpha", "busybox", "sleep", "1000"))
    ok(docker("run", "-d", "--name", "beta", "--network", "container:alpha", "busybox", "sleep", "1000"))
    endpoint = inspect(docker, "alpha")["NetworkSettings"]["Networks"]["bridge"]["EndpointID"]
    ok(docker("rm", "-f", "alpha"))
    assert not link_exists(veth_name(endpoint))
    assert ok(docker("exec", "beta", "ls", "/sys/class/net")).split() == ["lo"]


# --- user-defined networks --------------------------------------------------------------------------------


def test_a_user_network_has_its_bridge_and_a_fixed_ip_is_the_address_inside(docker, live):
    network_id, subnet, device = make_network(docker, "mynet")
    gateway, fixed = str(subnet.network_address + 1), str(subnet.network_address + 10)
    assert f"inet {gateway}/24" in subprocess.run(["ip", "-4", "addr", "show", device], capture_output=True,
                                                  text=True).stdout
    listed = ok(docker("network", "ls"))
    assert any(line.startswith(network_id[:12]) and "mynet" in line and "bridge" in line for line in listed.splitlines())
    shown = json.loads(ok(docker("network", "inspect", "mynet")))[0]
    assert shown["IPAM"]["Config"] == [{"Subnet": str(subnet), "Gateway": gateway}]
    assert shown["Options"] == {BRIDGE_OPTION: device} and shown["Id"] == network_id
    ok(docker("run", "-d", "--name", "web", "--network", "mynet", "--ip", fixed, "busybox", "sleep", "1000"))
    assert f"inet {fixed}/24" in ok(docker("exec", "web", "ip", "-4", "addr", "show", "eth0"))
    assert ok(docker("inspect", "-f", "{{.NetworkSettings.Networks.mynet.IPAddress}}", "web")).strip() == fixed
    assert ok(docker("exec", "web", "cat", "/etc/resolv.conf")).startswith(f"nameserver {gateway}\n")
    refused = docker("network", "rm", "mynet")
    assert refused.returncode == 1
    assert f"error while removing network: network mynet id {network_id} has active endpoints" in refused.stderr
    web = inspect(docker, "web")
    ok(docker("rm", "-f", "web"))
    ok(docker("network", "rm", "mynet"))
    assert_nothing_left(live, [web["NetworkSettings"]["Networks"]["mynet"]["EndpointID"]], [web["Id"]], [device])


def test_a_fixed_ip_on_the_default_bridge_is_refused_at_create(docker):
    refused = docker("run", "--ip", "10.198.0.50", "busybox", "true")
    assert refused.returncode == 125
    assert ("invalid config for network default: invalid endpoint settings:\n"
            "user specified IP address is supported on user defined networks only") in refused.stderr
    assert ok(docker("ps", "-aq")) == ""


def test_network_errors_carry_dockers_messages(docker):
    make_network(docker, "mynet")
    duplicate = docker("network", "create", "mynet")
    assert duplicate.returncode == 1 and "network with name mynet already exists" in duplicate.stderr
    predefined = docker("network", "rm", "bridge")
    assert "bridge is a pre-defined network and cannot be removed" in predefined.stderr
    missing = docker("run", "--network", "nosuchnet", "busybox", "true")
    assert missing.returncode == 125 and "network nosuchnet not found" in missing.stderr


def test_names_resolve_on_a_user_network_and_not_across_networks_which_are_isolated(docker, live):
    _, _, front_device = make_network(docker, "front")
    _, _, back_device = make_network(docker, "back")
    ok(docker("run", "-d", "--name", "alpha", "--network", "front", "busybox", "sleep", "1000"))
    ok(docker("run", "-d", "--name", "beta", "--network", "front", "--network-alias", "db", "busybox", "sleep", "1000"))
    ok(docker("run", "-d", "--name", "gamma", "--network", "back", "busybox", "sleep", "1000"))
    b_address = address_of(docker, "beta", "front")
    b_id = inspect(docker, "beta")["Id"]
    for name in ("beta", "db", b_id[:12]):
        answer = docker("exec", "alpha", "nslookup", name)
        assert answer.returncode == 0 and b_address in answer.stdout, (name, answer.stdout, answer.stderr)
    ok(docker("exec", "alpha", "ping", "-c1", "-W2", "beta"))
    assert docker("exec", "gamma", "nslookup", "alpha").returncode != 0
    assert docker("exec", "gamma", "ping", "-c1", "-W2", address_of(docker, "alpha", "front")).returncode != 0
    assert docker("exec", "alpha", "ping", "-c1", "-W2", address_of(docker, "gamma", "back")).returncode != 0
    assert inspect(docker, "beta")["NetworkSettings"]["Networks"]["front"]["DNSNames"] == ["beta", b_id[:12], "db"]
    containers = {name: inspect(docker, name) for name in ("alpha", "beta", "gamma")}
    ok(docker("rm", "-f", "alpha", "beta", "gamma"))
    ok(docker("network", "rm", "front", "back"))
    endpoints = [n["EndpointID"] for c in containers.values() for n in c["NetworkSettings"]["Networks"].values()]
    assert_nothing_left(live, endpoints, [c["Id"] for c in containers.values()], [front_device, back_device])


def test_connect_and_disconnect_a_running_container(docker):
    make_network(docker, "extra")
    ok(docker("run", "-d", "--name", "web", "busybox", "sleep", "1000"))
    ok(docker("network", "connect", "--alias", "www", "extra", "web"))
    assert "eth1" in ok(docker("exec", "web", "ls", "/sys/class/net")).split()
    networks = inspect(docker, "web")["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge", "extra"} and networks["extra"]["Aliases"] == ["www"]
    ok(docker("network", "disconnect", "extra", "web"))
    assert ok(docker("exec", "web", "ls", "/sys/class/net")).split() == ["eth0", "lo"]
    assert set(inspect(docker, "web")["NetworkSettings"]["Networks"]) == {"bridge"}


def test_an_internal_network_has_no_route_out(docker):
    _, subnet, _ = make_network(docker, "private", internal=True)
    ok(docker("run", "-d", "--name", "inside", "--network", "private", "busybox", "sleep", "1000"))
    ok(docker("run", "-d", "--name", "peer", "--network", "private", "busybox", "sleep", "1000"))
    assert "default" not in ok(docker("exec", "inside", "ip", "route"))
    assert json.loads(ok(docker("network", "inspect", "private")))[0]["Internal"] is True
    ok(docker("exec", "inside", "ping", "-c1", "-W2", address_of(docker, "peer", "private")))


def test_the_reconciler_remakes_a_lost_veth_and_port_and_collects_what_no_row_owns(docker, live):
    from console import services

    port = free_port()
    ok(docker("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", *HTTPD))
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from berth\n"
    web = inspect(docker, "web")
    endpoint = web["NetworkSettings"]["Networks"]["bridge"]["EndpointID"]
    net = live.networking()
    # What a careless hand (or a reboot of the kernel's side while the container lives) does.
    subprocess.run(["ip", "link", "delete", veth_name(endpoint)], check=True)
    net.unpublish(web["Id"])
    stray = net.create_netns("f" * 64)
    assert not link_exists(veth_name(endpoint))
    removed = services.reconcile_network()
    assert link_exists(veth_name(endpoint)) and not os.path.exists(stray)
    assert f"netns {os.path.basename(stray)}" in removed
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from berth\n"
    assert f"default via {web['NetworkSettings']['Gateway']} dev eth0" in ok(docker("exec", "web", "ip", "route"))


def test_network_prune_removes_the_unused_ones(docker):
    make_network(docker, "used")
    make_network(docker, "unused")
    ok(docker("run", "-d", "--name", "web", "--network", "used", "busybox", "sleep", "1000"))
    pruned = ok(docker("network", "prune", "-f"))
    assert "unused" in pruned and "used\n" not in pruned.replace("unused", "")
    assert ok(docker("network", "ls", "--format", "{{.Name}}")).split() == ["bridge", "host", "none", "used"]


# --- docker-py --------------------------------------------------------------------------------------------


def test_docker_py_creates_lists_gets_connects_disconnects_and_removes_networks(docker_client, docker, live):
    from docker.errors import NotFound
    from docker.types import IPAMConfig, IPAMPool

    subnet, device = free_subnet(docker), short_unique("p")
    network = docker_client.networks.create(
        "pynet", driver="bridge", options={BRIDGE_OPTION: device},
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet))]), labels={"made-by": "docker-py"})
    assert [n.id for n in docker_client.networks.list(names=["pynet"])] == [network.id]
    got = docker_client.networks.get("pynet")
    assert got.attrs["IPAM"]["Config"][0]["Subnet"] == str(subnet) and got.attrs["Labels"] == {"made-by": "docker-py"}
    container = docker_client.containers.run("busybox", ["sleep", "1000"], detach=True, name="pyweb")
    network.connect(container, aliases=["pyalias"])
    network.reload()
    assert list(network.attrs["Containers"]) == [container.id]
    container.reload()
    assert container.attrs["NetworkSettings"]["Networks"]["pynet"]["Aliases"] == ["pyalias"]
    assert b"eth1" in container.exec_run(["ls", "/sys/class/net"]).output
    network.disconnect(container)
    assert b"eth1" not in container.exec_run(["ls", "/sys/class/net"]).output
    container.remove(force=True)
    network.remove()
    with pytest.raises(NotFound):
        docker_client.networks.get("pynet")
    assert not link_exists(device)
