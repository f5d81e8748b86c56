"""Bridge networking on the real kernel: bridges, veth pairs, namespaces and nftables (root).

Every object is named from the suite's run (``unique``, ``short_unique``), lives
in an nft table of the session's own and is removed after each test, also when
it fails. Subnets are /24s of 172.30.0.0/16 that no host route covers; traffic
goes only to 127.0.0.1 and to namespaces and containers the tests made.
"""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runtime import NetworkSpec
from runtime.errors import NotFound, PortAllocated
from runtime.network.ports import bound
from runtime.network import (
    DEFAULT_POOLS,
    BridgeSpec,
    EndpointSpec,
    Networking,
    PortSpec,
    default_mac,
    gateway_of,
    veth_name,
)
from tests.conftest import PREFIX, RUN_ID, short_unique, unique
from tests.helpers.waiting import wait_until

_start = random.randrange(256)
TEST_POOLS = [f"172.30.{(_start + i) % 256}.0/24" for i in range(256)]


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def networking():
    state = Path("/tmp") / unique("net-")
    net = Networking(table=unique("nft-"), netns_prefix=f"{PREFIX}{RUN_ID}-", state_dir=state, pools=TEST_POOLS)
    try:
        yield net
    finally:
        try:
            net.gc(set(), set(), set(), set())
        finally:
            net.teardown()
            shutil.rmtree(state, ignore_errors=True)


class Lab:
    """Makes bridges, namespaces, endpoints and published ports, and removes all of them."""

    def __init__(self, net: Networking):
        self.net = net
        self.bridges: list[BridgeSpec] = []
        self.owners: list[str] = []
        self.endpoints: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def bridge(self, **options) -> BridgeSpec:
        subnet = self.net.pick_subnet([b.subnet for b in self.bridges])
        spec = BridgeSpec(short_unique("b"), subnet, gateway_of(subnet), **options)
        self.bridges.append(spec)
        self.net.ensure_bridge(spec)
        return spec

    def namespace(self) -> tuple[str, str]:
        owner = secrets.token_hex(32)
        self.owners.append(owner)
        return owner, self.net.create_netns(owner)

    def endpoint(self, bridge: BridgeSpec, netns_path: str, host: int = 2, **options) -> EndpointSpec:
        network = bridge.network
        endpoint = EndpointSpec(secrets.token_hex(32), bridge.device, str(network[host]), network.prefixlen,
                                bridge.gateway, **options)
        self.endpoints.append(endpoint.endpoint_id)
        self.net.attach(netns_path, endpoint)
        return endpoint

    def wired(self, bridge: BridgeSpec, host: int = 2) -> tuple[str, str, EndpointSpec]:
        owner, path = self.namespace()
        return owner, path, self.endpoint(bridge, path, host)

    def owner(self) -> str:
        owner = secrets.token_hex(32)
        self.owners.append(owner)
        return owner

    def serve(self, netns_path: str, port: int = 80) -> None:
        """busybox httpd in a namespace, answering with the namespace's path."""
        www = Path("/tmp") / unique("www-")
        www.mkdir()
        (www / "index.html").write_text(netns_path + "\n")
        self.processes.append(subprocess.Popen(
            ["nsenter", f"--net={netns_path}", "busybox", "httpd", "-f", "-p", str(port), "-h", str(www)]))
        self.processes[-1].www = www

    def cleanup(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
            shutil.rmtree(process.www, ignore_errors=True)
        for action, items in ((self.net.unpublish, self.owners), (self.net.detach, self.endpoints),
                              (self.net.remove_netns, self.owners),
                              (self.net.remove_bridge, [b.device for b in self.bridges])):
            for item in items:
                try:
                    action(item)
                except Exception as exc:  # go on: the rest must go too
                    print(f"cleanup {action.__name__}({item}): {exc}")


@pytest.fixture
def lab(networking):
    made = Lab(networking)
    try:
        yield made
    finally:
        made.cleanup()


# --- helpers -------------------------------------------------------------------------


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def pings(netns_path: str, address: str) -> bool:
    return sh("nsenter", f"--net={netns_path}", "busybox", "ping", "-c1", "-W2", address, check=False).returncode == 0


def in_netns(netns_path: str, *argv: str) -> str:
    return sh("nsenter", f"--net={netns_path}", *argv).stdout


def links() -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(sh("ip", "-j", "-d", "link", "show").stdout)}


def netns_names() -> list[str]:
    return [entry["name"] for entry in json.loads(sh("ip", "-j", "netns", "list").stdout or "[]")]


def table(net: Networking) -> dict:
    """Sets and maps of our nft table: {name: [elements]}."""
    out = sh("nft", "-j", "list", "table", "ip", net.table).stdout
    found = {}
    for item in json.loads(out)["nftables"]:
        kind = item.get("set") or item.get("map")
        if kind:
            found[kind["name"]] = kind.get("elem", [])
    return found


def http_get(url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def peer_seen_by(server_ns: str, server_ip: str, client_ns: str) -> str:
    """Connect from one namespace to a listener in another; the address the listener saw."""
    listener = subprocess.Popen(
        ["nsenter", f"--net={server_ns}", sys.executable, "-c",
         "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         "s.bind(('0.0.0.0', 8000)); s.listen(); print('ready', flush=True); "
         "c, peer = s.accept(); print(peer[0], flush=True)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        sh("nsenter", f"--net={client_ns}", "busybox", "timeout", "5", "busybox", "nc", server_ip, "8000", check=False)
        return listener.stdout.readline().strip()
    finally:
        listener.kill()
        listener.wait()


def container_output(engine, container) -> str:
    engine.wait(container.id, timeout=30)
    return b"".join(record.data for record in engine.logs(container.id)).decode()


HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


# --- names ---------------------------------------------------------------------------


def test_names_derive_from_the_owners_ids(networking):
    endpoint_id = "3f9a0c1d2e4b" + "0" * 52
    assert veth_name(endpoint_id) == "vb3f9a0c1d2e4"
    assert len(veth_name(endpoint_id)) <= 15
    assert networking.netns_path(endpoint_id) == f"/run/netns/{PREFIX}{RUN_ID}-3f9a0c1d2e4b"
    assert Networking().netns_path(endpoint_id) == "/run/netns/berth-3f9a0c1d2e4b"
    assert default_mac("172.17.0.2") == "02:42:ac:11:00:02"


# --- bridges and endpoints -----------------------------------------------------------


def test_a_bridge_comes_up_with_the_gateway_as_its_address(lab, networking):
    bridge = lab.bridge()
    networking.ensure_bridge(bridge)  # again: nothing changes

    link = links()[bridge.device]
    assert link["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in link["flags"]
    addresses = json.loads(sh("ip", "-j", "-4", "addr", "show", "dev", bridge.device).stdout)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addresses] == [(bridge.gateway, 24)]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    seen = networking.observe()["bridges"][bridge.device]
    assert seen == {"up": True, "addresses": [f"{bridge.gateway}/24"]}
    elements = table(networking)
    assert bridge.device in elements["bridges"]
    prefix = {"prefix": {"addr": str(bridge.network.network_address), "len": 24}}
    assert {"concat": [prefix, bridge.device]} in elements["subnets"]
    assert prefix in elements["outbound"]


def test_attach_wires_a_veth_pair_into_the_namespace(lab, networking):
    bridge = lab.bridge()
    owner, path = lab.namespace()
    endpoint = lab.endpoint(bridge, path)
    again = networking.attach(path, endpoint)  # idempotent

    assert again == (veth_name(endpoint.endpoint_id), "eth0")
    host_end = links()[veth_name(endpoint.endpoint_id)]
    assert host_end["master"] == bridge.device and "UP" in host_end["flags"]
    assert host_end["linkinfo"]["info_slave_data"]["hairpin"] is True
    inside = {link["ifname"]: link for link in json.loads(in_netns(path, "ip", "-j", "link", "show"))}
    assert set(inside) == {"lo", "eth0"}
    assert inside["eth0"]["address"] == default_mac(endpoint.address)
    assert "UP" in inside["lo"]["flags"] and "UP" in inside["eth0"]["flags"]
    addresses = json.loads(in_netns(path, "ip", "-j", "-4", "addr", "show", "dev", "eth0"))[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addresses] == [(endpoint.address, 24)]
    routes = json.loads(in_netns(path, "ip", "-j", "route", "show", "default"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [(bridge.gateway, "eth0")]
    assert networking.observe()["veths"][veth_name(endpoint.endpoint_id)] == {"master": bridge.device, "up": True}
    assert path.rsplit("/", 1)[1] in networking.observe()["netns"]


def test_a_second_interface_gets_no_default_route(lab, networking):
    first, second = lab.bridge(), lab.bridge()
    owner, path = lab.namespace()
    lab.endpoint(first, path)
    lab.endpoint(second, path, interface="eth1", default_route=False)

    routes = json.loads(in_netns(path, "ip", "-j", "route", "show", "default"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [(first.gateway, "eth0")]
    addresses = json.loads(in_netns(path, "ip", "-j", "-4", "addr", "show", "dev", "eth1"))[0]["addr_info"]
    assert addresses[0]["local"] == str(second.network[2])


def test_attaching_an_endpoint_to_another_namespace_rewires_it(lab, networking):
    bridge = lab.bridge()
    _, first, endpoint = lab.wired(bridge)
    _, second = lab.namespace()

    networking.attach(second, endpoint)

    assert "eth0" not in in_netns(first, "ip", "-br", "link")
    assert in_netns(second, "ip", "-br", "-4", "addr", "show", "dev", "eth0").split()[2] == f"{endpoint.address}/24"
    assert links()[veth_name(endpoint.endpoint_id)]["master"] == bridge.device


def test_attaching_into_a_missing_namespace_is_an_error_and_makes_nothing(lab, networking):
    bridge = lab.bridge()
    endpoint = EndpointSpec(secrets.token_hex(32), bridge.device, str(bridge.network[2]), 24, bridge.gateway)
    with pytest.raises(NotFound):
        networking.attach(f"/run/netns/{unique('gone-')}", endpoint)
    assert veth_name(endpoint.endpoint_id) not in links()


def test_two_namespaces_on_one_bridge_reach_each_other(lab):
    bridge = lab.bridge()
    _, path_a, a = lab.wired(bridge, 2)
    _, path_b, b = lab.wired(bridge, 3)

    assert pings(path_a, b.address)
    assert pings(path_b, a.address)
    assert pings(path_a, bridge.gateway)


def test_two_bridges_are_isolated(lab):
    _, path_a, a = lab.wired(lab.bridge())
    _, path_b, b = lab.wired(lab.bridge())

    assert not pings(path_a, b.address)
    assert not pings(path_b, a.address)


def test_bridges_that_are_not_isolated_reach_each_other(lab):
    # The control for the test above: routing between the two works, so the drop is the isolation's.
    _, path_a, a = lab.wired(lab.bridge(isolated=False))
    _, path_b, b = lab.wired(lab.bridge(isolated=False))

    assert pings(path_a, b.address)


def test_traffic_leaving_its_bridge_is_masqueraded_and_traffic_within_it_is_not(lab):
    here, there = lab.bridge(isolated=False), lab.bridge(isolated=False)
    _, server_ns, server = lab.wired(there, 2)
    _, neighbour_ns, neighbour = lab.wired(there, 3)
    _, visitor_ns, _ = lab.wired(here, 2)

    assert peer_seen_by(server_ns, server.address, neighbour_ns) == neighbour.address
    assert peer_seen_by(server_ns, server.address, visitor_ns) == there.gateway


def test_an_internal_bridge_has_no_masquerade_and_no_way_out(lab, networking):
    internal = lab.bridge(internal=True, isolated=False)
    _, path_a, a = lab.wired(internal, 2)
    _, path_b, b = lab.wired(internal, 3)
    _, path_c, c = lab.wired(lab.bridge(isolated=False))

    elements = table(networking)
    assert internal.device in elements["internal"]
    assert {"concat": [{"prefix": {"addr": str(internal.network.network_address), "len": 24}}, internal.device]} \
        in elements["subnets"]
    assert not [e for e in elements["outbound"] if e["prefix"]["addr"] == str(internal.network.network_address)]
    assert pings(path_a, b.address)          # within the bridge
    assert not pings(path_a, c.address)      # to anywhere else
    assert not pings(path_c, a.address)      # and from anywhere else


# --- containers ----------------------------------------------------------------------


def test_two_containers_on_one_bridge_reach_each_other_by_ip(lab, engine, run):
    bridge = lab.bridge()
    _, server_ns, server = lab.wired(bridge, 2)
    _, client_ns, client = lab.wired(bridge, 3)
    run("sh", "-c", HTTPD, hostname="server", network=NetworkSpec(mode="netns", netns_path=server_ns))
    assert http_get(f"http://{server.address}/") == "hello from server\n"

    probe = run("sh", "-c", f"ping -c1 -W2 {server.address} >/dev/null && echo ping ok; "
                            f"timeout 5 wget -qO- http://{server.address}/; ip route show default",
                network=NetworkSpec(mode="netns", netns_path=client_ns, addresses=[client.address]))
    text = container_output(engine, probe)
    lines = text.splitlines()
    assert lines[:2] == ["ping ok", "hello from server"]
    assert lines[2].startswith(f"default via {bridge.gateway} dev eth0")


def test_a_published_port_answers_on_the_hosts_loopback(lab, networking, run):
    bridge = lab.bridge()
    _, server_ns, server = lab.wired(bridge)
    run("sh", "-c", HTTPD, hostname="web", network=NetworkSpec(mode="netns", netns_path=server_ns))
    owner = lab.owner()
    port = networking.free_port("tcp", "127.0.0.1")

    networking.publish(owner, [PortSpec("tcp", "127.0.0.1", port, server.address, 80)])

    assert http_get(f"http://127.0.0.1:{port}/") == "hello from web\n"
    assert networking.observe()["ports"] == [{"owner": owner, "protocol": "tcp", "host_ip": "127.0.0.1",
                                               "host_port": port, "container_ip": server.address,
                                               "container_port": 80}]


def test_a_port_published_on_every_address_answers_from_the_host_and_from_containers(lab, engine, networking, run):
    bridge = lab.bridge()
    _, server_ns, server = lab.wired(bridge, 2)
    _, client_ns, _ = lab.wired(bridge, 3)
    run("sh", "-c", HTTPD, hostname="web", network=NetworkSpec(mode="netns", netns_path=server_ns))
    owner = lab.owner()
    port = networking.free_port("tcp")

    networking.publish(owner, [PortSpec("tcp", "0.0.0.0", port, server.address, 80)])

    assert http_get(f"http://127.0.0.1:{port}/") == "hello from web\n"
    # Another container, and the server itself (hairpin), through the gateway's address.
    script = f"timeout 5 wget -qO- http://{bridge.gateway}:{port}/"
    client = run("sh", "-c", script, network=NetworkSpec(mode="netns", netns_path=client_ns))
    assert container_output(engine, client) == "hello from web\n"
    assert in_netns(server_ns, "busybox", "timeout", "5", "busybox", "wget", "-qO-", f"http://{bridge.gateway}:{port}/") \
        == "hello from web\n"


def test_a_second_publish_of_the_same_host_port_is_refused_and_the_first_still_works(lab, networking, run):
    bridge = lab.bridge()
    _, server_ns, server = lab.wired(bridge)
    run("sh", "-c", HTTPD, hostname="first", network=NetworkSpec(mode="netns", netns_path=server_ns))
    first, second = lab.owner(), lab.owner()
    port = networking.free_port("tcp", "127.0.0.1")
    networking.publish(first, [PortSpec("tcp", "127.0.0.1", port, server.address, 80)])
    other = networking.free_port("tcp", "127.0.0.1", {port})
    before = table(networking)

    for host_ip in ("127.0.0.1", "0.0.0.0"):
        with pytest.raises(PortAllocated) as refused:
            # The free port comes first: it must not be published either.
            networking.publish(second, [PortSpec("tcp", "127.0.0.1", other, server.address, 81),
                                        PortSpec("tcp", host_ip, port, server.address, 80)])
        assert str(refused.value) == f"Bind for {host_ip}:{port} failed: port is already allocated"

    assert table(networking) == before
    assert networking.ports.owned(second) == []
    assert http_get(f"http://127.0.0.1:{port}/") == "hello from first\n"


# --- published ports without containers ----------------------------------------------


def test_a_port_in_the_map_is_refused_even_when_the_registry_was_lost(lab, networking):
    first, second = lab.owner(), lab.owner()
    port = networking.free_port("tcp", "127.0.0.1")
    networking.publish(first, [PortSpec("tcp", "127.0.0.1", port, "172.30.0.2", 80)])
    shutil.rmtree(networking.ports.claims_dir)

    with pytest.raises(PortAllocated, match=f"Bind for 127.0.0.1:{port} failed"):
        networking.publish(second, [PortSpec("tcp", "127.0.0.1", port, "172.30.0.3", 80)])
    assert [p["owner"] for p in networking.observe()["ports"]] == [first]


def test_a_port_bound_by_a_host_process_is_refused(lab, networking):
    owner = lab.owner()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        before = table(networking)

        for host_ip in ("127.0.0.1", "0.0.0.0"):
            with pytest.raises(PortAllocated, match=f"Bind for {host_ip}:{port} failed"):
                networking.publish(owner, [PortSpec("tcp", host_ip, port, "172.30.0.2", 80)])
        assert table(networking) == before
        # Another loopback address is another socket address, and UDP another port space: both free.
        networking.publish(owner, [PortSpec("tcp", "127.0.0.2", port, "172.30.0.2", 80),
                                   PortSpec("udp", "0.0.0.0", port, "172.30.0.2", 53)])

    assert sorted((p["protocol"], p["host_ip"]) for p in networking.observe()["ports"] if p["owner"] == owner) \
        == [("tcp", "127.0.0.2"), ("udp", "0.0.0.0")]


def test_publish_replaces_the_owners_ports_and_unpublish_removes_them(lab, networking):
    owner = lab.owner()
    a, b = networking.free_port("tcp", "127.0.0.1"), networking.free_port("udp")
    networking.publish(owner, [PortSpec("tcp", "127.0.0.1", a, "172.30.0.2", 80)])
    networking.publish(owner, [PortSpec("tcp", "127.0.0.1", a, "172.30.0.2", 80)])  # the same again

    networking.publish(owner, [PortSpec("udp", "0.0.0.0", b, "172.30.0.3", 53)])

    mine = [p for p in networking.observe()["ports"] if p["owner"] == owner]
    assert mine == [{"owner": owner, "protocol": "udp", "host_ip": "0.0.0.0", "host_port": b,
                     "container_ip": "172.30.0.3", "container_port": 53}]
    networking.unpublish(owner)
    networking.unpublish(owner)  # gone is fine
    assert [p for p in networking.observe()["ports"] if p["owner"] == owner] == []


def test_free_port_comes_from_the_ephemeral_range_and_skips_published_ports(lab, networking):
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    owner = lab.owner()
    port = networking.free_port("tcp")
    assert low <= port <= high
    networking.publish(owner, [PortSpec("tcp", "0.0.0.0", port, "172.30.0.2", 80)])

    everything_else = set(range(low, high + 1)) - {port}
    with pytest.raises(Exception, match="no free tcp port"):
        networking.free_port("tcp", taken=everything_else)
    assert networking.free_port("udp", taken=everything_else) == port


def test_publishing_with_2000_ports_already_published_works(lab, networking):
    crowd, newcomer = lab.owner(), lab.owner()
    # Below the ephemeral range: an outgoing connection elsewhere on the host can take an
    # ephemeral port between our probe and the publish (CI saw 42616 go that way).
    taken = set(unbound_ports_below_ephemeral_range(2000))
    ports = [PortSpec("tcp", "127.0.0.1", p, "172.30.0.2", 80) for p in sorted(taken)]

    began = time.monotonic()
    networking.publish(crowd, ports)
    crowd_took = time.monotonic() - began
    port = unbound_ports_below_ephemeral_range(1, taken)[0]
    began = time.monotonic()
    networking.publish(newcomer, [PortSpec("tcp", "127.0.0.1", port, "172.30.0.3", 80)])
    one_took = time.monotonic() - began
    print(f"publish of 2000 ports: {crowd_took:.3f}s; of one more beside them: {one_took:.3f}s")

    assert len(table(networking)["host_ports"]) >= 2001
    with pytest.raises(PortAllocated):
        networking.publish(newcomer, [PortSpec("tcp", "0.0.0.0", ports[1000].host_port, "172.30.0.3", 80)])
    networking.unpublish(crowd)
    assert not [p for p in networking.observe()["ports"] if p["owner"] == crowd]


def unbound_ports_below_ephemeral_range(count: int, taken: set[int] = frozenset()) -> list[int]:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    pool = [p for p in range(10000, low) if p not in taken]
    random.shuffle(pool)
    chosen = [p for p in pool[: count * 2] if not bound("tcp", "127.0.0.1", p)][:count]
    assert len(chosen) == count, "the host listens on too many ports below its ephemeral range"
    return chosen


# --- cleanup -------------------------------------------------------------------------


def test_release_of_a_shared_namespace_deletes_the_veths_at_once(lab, networking):
    bridge = lab.bridge()
    owner, path, endpoint = lab.wired(bridge)
    # A process of another container in the namespace keeps it alive after its path is gone.
    holder = subprocess.Popen(["nsenter", f"--net={path}", "sleep", "60"])
    try:
        networking.release(owner, [endpoint.endpoint_id], shared=True)
        assert veth_name(endpoint.endpoint_id) not in links()
        assert "eth0" not in subprocess.run(["nsenter", f"--net=/proc/{holder.pid}/ns/net", "ip", "-br", "link"],
                                            capture_output=True, text=True, check=True).stdout
    finally:
        holder.kill()
        holder.wait()


def test_after_detach_unpublish_remove_netns_and_remove_bridge_nothing_remains(lab, networking):
    bridge = lab.bridge()
    owner, path, endpoint = lab.wired(bridge)
    networking.publish(owner, [PortSpec("tcp", "127.0.0.1", networking.free_port("tcp", "127.0.0.1"),
                                        endpoint.address, 80)])

    networking.detach(endpoint.endpoint_id)
    networking.unpublish(owner)
    networking.remove_netns(owner)
    networking.remove_bridge(bridge.device)
    for again in (networking.detach, networking.unpublish, networking.remove_netns):  # gone is fine
        again(endpoint.endpoint_id if again is networking.detach else owner)
    networking.remove_bridge(bridge.device)

    assert veth_name(endpoint.endpoint_id) not in links()
    assert bridge.device not in links()
    assert path.rsplit("/", 1)[1] not in netns_names()
    text = sh("nft", "-j", "list", "table", "ip", networking.table).stdout
    for name in (bridge.device, owner, endpoint.address, bridge.subnet.split("/")[0]):
        assert name not in text


def test_release_removes_an_owners_ports_veths_and_namespace_at_once(lab, networking):
    bridge = lab.bridge()
    owner, path, endpoint = lab.wired(bridge)
    networking.publish(owner, [PortSpec("tcp", "127.0.0.1", networking.free_port("tcp", "127.0.0.1"),
                                        endpoint.address, 80)])

    networking.release(owner, [endpoint.endpoint_id])
    networking.release(owner, [endpoint.endpoint_id])  # gone is fine

    assert path.rsplit("/", 1)[1] not in netns_names()
    # The veth pair goes with the namespace, in the kernel's own time.
    wait_until(lambda: veth_name(endpoint.endpoint_id) not in links(), 5, "the veth outlived its namespace")
    assert not [p for p in networking.observe()["ports"] if p["owner"] == owner]


def test_gc_removes_what_nobody_owns(lab, networking):
    kept_bridge, lost_bridge = lab.bridge(), lab.bridge()
    kept_owner, kept_ns, kept = lab.wired(kept_bridge)
    lost_owner, lost_ns, lost = lab.wired(lost_bridge)
    for owner, endpoint in ((kept_owner, kept), (lost_owner, lost)):
        port = networking.free_port("tcp", "127.0.0.1")
        networking.publish(owner, [PortSpec("tcp", "127.0.0.1", port, endpoint.address, 80)])

    removed = networking.gc({kept_bridge.device}, {kept.endpoint_id}, {kept_owner}, {kept_owner})

    assert sorted(removed) == sorted([f"veth {veth_name(lost.endpoint_id)}", f"netns {lost_ns.rsplit('/', 1)[1]}",
                                      f"ports {lost_owner}", f"bridge {lost_bridge.device}"])
    seen = networking.observe()
    assert set(seen["bridges"]) == {kept_bridge.device}
    assert set(seen["veths"]) == {veth_name(kept.endpoint_id)}
    assert seen["netns"] == [kept_ns.rsplit("/", 1)[1]]
    assert {p["owner"] for p in seen["ports"]} == {kept_owner}
    assert networking.gc({kept_bridge.device}, {kept.endpoint_id}, {kept_owner}, {kept_owner}) == []


def test_the_table_comes_back_after_a_teardown(lab, networking):
    bridge = lab.bridge()
    networking.teardown()
    networking.ensure_bridge(bridge)
    assert bridge.device in table(networking)["bridges"]

    sh("nft", "delete", "table", "ip", networking.table)   # as a reboot would
    owner = lab.owner()
    networking.publish(owner, [PortSpec("tcp", "127.0.0.1", networking.free_port("tcp", "127.0.0.1"), "172.30.0.2", 80)])
    assert [p["owner"] for p in networking.observe()["ports"]] == [owner]
    assert set(table(networking)) >= {"ports", "host_ports", "bridges", "subnets", "outbound"}


# --- subnets -------------------------------------------------------------------------


def test_pick_subnet_skips_a_subnet_a_host_route_covers(networking):
    first, second, third = [s for s in TEST_POOLS if not overlaps_a_route(s)][:3]
    device = short_unique("r")
    try:
        sh("ip", "link", "add", device, "type", "bridge")
        sh("ip", "link", "set", device, "alias", f"berth:{networking.table}", "up")
        sh("ip", "addr", "add", str(ipaddress.IPv4Network(first)[1]) + "/24", "dev", device)
        picker = Networking(table=networking.table, state_dir=networking.state_dir, pools=[first, second, third])

        assert picker.pick_subnet([]) == second
        assert picker.pick_subnet([second]) == third
    finally:
        sh("ip", "link", "delete", device, check=False)


def test_pick_subnet_follows_dockers_pools_around_host_routes_and_used_subnets():
    picker = Networking()
    free = [s for s in DEFAULT_POOLS if not overlaps_a_route(s)]
    assert picker.pick_subnet([]) == free[0]
    assert picker.pick_subnet([free[0]]) == free[1]
    all_172 = [f"172.{n}.0.0/16" for n in range(17, 32)]
    assert picker.pick_subnet(all_172) == next(s for s in free if s.startswith("192.168."))
    assert DEFAULT_POOLS[:2] == ["172.17.0.0/16", "172.18.0.0/16"] and DEFAULT_POOLS[15] == "192.168.0.0/20"


def overlaps_a_route(subnet: str) -> bool:
    routes = json.loads(sh("ip", "-j", "-4", "route", "show", "table", "main").stdout)
    network = ipaddress.IPv4Network(subnet)
    return any(route["dst"] != "default" and network.overlaps(ipaddress.IPv4Network(route["dst"], strict=False))
               for route in routes)
