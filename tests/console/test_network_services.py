"""Networks and containers on them: IPAM, modes, ports, start/stop/remove wiring, DNS records, reconcile.

The services and tasks run inline against the real runtime (runc, real
namespaces); the networking layer is the stand-in of
tests/helpers/fake_networking.py, which records bridges, veths and
published ports and makes real empty namespaces. The live tests
(tests/api/test_live_network_cli.py) do it all on the kernel.
"""

import os
import re
import threading
import time

import pytest

from console import dns_sync, ipam, network_services, networking as wiring, services
from console.dockerapi import shapes
from console.errors import Forbidden, NetworkingFailed
from console.models import Container, Endpoint, Network, PortMapping
from runtime.errors import Conflict, InvalidValue, NotFound
from tests.helpers.fake_networking import PortAllocated

HEX64 = re.compile(r"[0-9a-f]{64}")


def create(name=None, network=None, ip=None, aliases=None, **fields):
    body = {"Image": "busybox", "Cmd": ["sleep", "1000"], **fields}
    if network or ip or aliases:
        key = network or "default"
        settings = {}
        if ip:
            settings["IPAMConfig"] = {"IPv4Address": ip}
        if aliases:
            settings["Aliases"] = aliases
        body.setdefault("HostConfig", {}).setdefault("NetworkMode", network or "default")
        body["NetworkingConfig"] = {"EndpointsConfig": {key: settings}}
    return services.create_container(body, name=name)


def run(name=None, **options):
    container = create(name, **options)
    services.start_container(container.id)
    return Container.objects.get(pk=container.id)


def make_network(name, subnet=None, gateway=None, ip_range=None, bridge=None, **fields):
    config = {k: v for k, v in {"Subnet": subnet, "Gateway": gateway, "IPRange": ip_range}.items() if v}
    body = {"Name": name, "Driver": "bridge", "IPAM": {"Config": [config] if config else []}, **fields}
    if bridge:
        body["Options"] = {"com.docker.network.bridge.name": bridge}
    return services.create_network(body)


def endpoint(container, network="bridge"):
    return Endpoint.objects.select_related("network").get(container_id=container.id, network__name=network)


def inode(path):
    return os.stat(path).st_ino


# --- IPAM, pure --------------------------------------------------------------------------------


def test_the_lowest_free_address_is_handed_out_never_network_broadcast_or_gateway():
    found = [str(a) for a in ipam.candidates("10.9.0.0/29", "10.9.0.1", taken=["10.9.0.3"])]
    assert found == ["10.9.0.2", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
    assert [str(a) for a in ipam.candidates("10.9.0.0/29", "10.9.0.6")][:2] == ["10.9.0.1", "10.9.0.2"]


def test_an_ip_range_limits_the_addresses_handed_out():
    found = [str(a) for a in ipam.candidates("10.9.0.0/24", "10.9.0.1", ip_range="10.9.0.128/30")]
    assert found == ["10.9.0.128", "10.9.0.129", "10.9.0.130", "10.9.0.131"]


@pytest.mark.parametrize("subnet, gateway, ip_range, message", [
    ("10.9.0.0/33", "", "", "invalid network config:\ninvalid subnet 10.9.0.0/33: invalid CIDR block notation"),
    ("10.9.0.1/24", "", "", "invalid network config:\ninvalid subnet 10.9.0.1/24: it should be 10.9.0.0/24"),
    ("10.9.0.0/24", "10.8.0.1", "", "invalid network config:\ninvalid gateway 10.8.0.1: "
                                    "parent subnet 10.9.0.0/24 doesn't contain this address"),
    ("10.9.0.0/24", "", "10.8.0.0/25", "invalid network config:\ninvalid ip-range 10.8.0.0/25: "
                                       "parent subnet 10.9.0.0/24 doesn't contain ip-range"),
    ("10.9.0.0/24", "10.8.0.1", "10.9.0.0/16",
     "invalid network config:\n* invalid ip-range 10.9.0.0/16: CIDR block is bigger than its parent subnet "
     "10.9.0.0/24\n* invalid gateway 10.8.0.1: parent subnet 10.9.0.0/24 doesn't contain this address"),
])
def test_a_pool_is_checked_as_moby_checks_it(subnet, gateway, ip_range, message):
    with pytest.raises(InvalidValue) as refused:
        ipam.read_pool(subnet, gateway, ip_range)
    assert str(refused.value) == message


def test_a_pool_without_a_gateway_gets_the_first_host():
    pool = ipam.read_pool("10.9.0.0/24")
    assert (str(pool.subnet), str(pool.gateway), pool.ip_range) == ("10.9.0.0/24", "10.9.0.1", None)


def test_the_mac_address_carries_the_addresss_bytes():
    assert ipam.mac_address("172.17.0.2") == "02:42:ac:11:00:02"


# --- the default network and addresses ------------------------------------------------------------


def test_the_default_network_gets_its_subnet_and_bridge_on_first_use(busybox, host):
    assert Network.objects.get(name="bridge").subnet == ""
    container = create("web")
    network = Network.objects.get(name="bridge")
    assert (network.subnet, network.gateway, network.bridge_name) == ("10.250.0.0/24", "10.250.0.1", "bt-default0")
    assert network.options["com.docker.network.bridge.name"] == "bt-default0"
    found = endpoint(container)
    assert (found.ip_address, found.prefix_length, found.mac_address) == ("10.250.0.2", 24, "02:42:0a:fa:00:02")
    assert HEX64.fullmatch(found.endpoint_id)


def test_addresses_are_the_lowest_free_and_come_back_when_the_container_goes(busybox, host):
    first, second = create("one"), create("two")
    assert [endpoint(c).ip_address for c in (first, second)] == ["10.250.0.2", "10.250.0.3"]
    services.remove_container("one")
    assert endpoint(create("three")).ip_address == "10.250.0.2"


def test_an_address_taken_between_look_and_insert_is_skipped_by_the_constraint(busybox, host, monkeypatch):
    first = create("first")
    assert endpoint(first).ip_address == "10.250.0.2"
    stale, looks = ipam.candidates, []

    def as_if_nothing_was_taken(subnet, gateway, ip_range="", taken=()):
        # The first look of a create that read before "first" was inserted: .2 looks free.
        looks.append(1)
        return stale(subnet, gateway, ip_range, [t for t in taken if t != "10.250.0.2" or len(looks) > 1])

    monkeypatch.setattr(ipam, "candidates", as_if_nothing_was_taken)
    assert endpoint(create("second")).ip_address == "10.250.0.3"
    assert len(looks) == 2


# --- user-defined networks ----------------------------------------------------------------------------


def test_a_user_network_gets_the_users_subnet_and_its_bridge(busybox, host, networking):
    network = make_network("mynet", subnet="10.251.0.0/16", gateway="10.251.0.254", bridge="bt-mynet")
    assert HEX64.fullmatch(network.id)
    assert (network.subnet, network.gateway, network.bridge_name, network.user_subnet) == (
        "10.251.0.0/16", "10.251.0.254", "bt-mynet", True)
    spec = networking.state(networking.table).bridges["bt-mynet"]
    assert (spec.subnet, spec.gateway, spec.internal, spec.isolated) == ("10.251.0.0/16", "10.251.0.254", False, True)


def test_a_user_network_without_a_subnet_gets_a_free_one_and_a_br_device(busybox, host):
    network_services.ensure_default_subnet()
    network = make_network("auto", Internal=True, Labels={"team": "red"})
    assert network.subnet == "10.250.1.0/24" and not network.user_subnet
    assert network.bridge_name == f"br-{network.id[:12]}"
    assert network.internal and network.labels == {"team": "red"}


def test_a_duplicate_name_is_a_conflict_and_an_overlapping_pool_is_forbidden(busybox, host):
    make_network("mynet", subnet="10.251.0.0/16")
    with pytest.raises(Conflict, match=r"^network with name mynet already exists$"):
        make_network("mynet", subnet="10.252.0.0/16")
    with pytest.raises(Forbidden, match=r"^Pool overlaps with other one on this address space$"):
        make_network("other", subnet="10.251.4.0/24")
    assert list(Network.objects.filter(predefined=False).values_list("name", flat=True)) == ["mynet"]


@pytest.mark.parametrize("driver, error, message", [
    ("host", Forbidden, 'only one instance of "host" network is allowed'),
    ("null", Forbidden, 'only one instance of "null" network is allowed'),
    ("overlay", NotFound, "could not find plugin overlay in v1 plugin registry: plugin not found"),
])
def test_drivers_other_than_bridge_are_refused_as_moby_does(busybox, host, driver, error, message):
    with pytest.raises(error) as refused:
        services.create_network({"Name": "x", "Driver": driver})
    assert str(refused.value) == message


def test_predefined_networks_and_networks_in_use_cannot_be_removed(busybox, host, networking):
    for name in ("bridge", "host", "none"):
        with pytest.raises(Forbidden, match=rf"^{name} is a pre-defined network and cannot be removed$"):
            services.remove_network(name)
    network = make_network("mynet", subnet="10.251.0.0/16", bridge="bt-mynet")
    create("web", network="mynet")
    with pytest.raises(Forbidden) as refused:
        services.remove_network("mynet")
    assert str(refused.value) == f"error while removing network: network mynet id {network.id} has active endpoints"
    services.remove_container("web")
    services.remove_network(network.id[:8])
    assert not Network.objects.filter(name="mynet").exists()
    assert "bt-mynet" not in networking.state(networking.table).bridges
    with pytest.raises(NotFound, match=r"^network mynet not found$"):
        services.get_network("mynet")


def test_prune_removes_unused_user_networks_only(busybox, host):
    make_network("used", subnet="10.251.0.0/16")
    make_network("idle", subnet="10.252.0.0/16", Labels={"keep": "no"})
    make_network("kept", subnet="10.253.0.0/16", Labels={"keep": "yes"})
    create("web", network="used")
    assert services.prune_networks({"label!": ["keep=yes"]}) == ["idle"]
    assert sorted(Network.objects.values_list("name", flat=True)) == ["bridge", "host", "kept", "none", "used"]


def test_list_filters_as_docker_does(busybox, host):
    make_network("front", subnet="10.251.0.0/16", Labels={"tier": "web"})
    assert [n.name for n in services.list_networks({"type": ["custom"]})] == ["front"]
    assert [n.name for n in services.list_networks({"driver": ["null"]})] == ["none"]
    assert [n.name for n in services.list_networks({"label": ["tier=web"]})] == ["front"]
    assert [n.name for n in services.list_networks({"dangling": ["true"]})] == ["front"]
    with pytest.raises(InvalidValue, match=r"^invalid filter 'colour'$"):
        services.list_networks({"colour": ["red"]})


# --- container create: modes, addresses, ports -------------------------------------------------------


def test_a_fixed_ip_is_honoured_on_a_user_network_with_a_subnet(busybox, host):
    make_network("mynet", subnet="10.251.0.0/16")
    container = create("web", network="mynet", ip="10.251.0.10", aliases=["www", "www"])
    found = endpoint(container, "mynet")
    assert (found.ip_address, found.prefix_length, found.aliases) == ("10.251.0.10", 16, ["www"])
    assert found.ipam_config == {"IPv4Address": "10.251.0.10"}
    with pytest.raises(Conflict, match=r"^Address already in use: 10.251.0.10 on network mynet$"):
        create("again", network="mynet", ip="10.251.0.10")
    assert not Container.objects.filter(name="again").exists()


@pytest.mark.parametrize("network, ip, message", [
    (None, "10.250.0.50", "invalid config for network default: invalid endpoint settings:\n"
                          "user specified IP address is supported on user defined networks only"),
    ("bridge", "10.250.0.50", "invalid config for network bridge: invalid endpoint settings:\n"
                              "user specified IP address is supported on user defined networks only"),
    ("auto", "10.250.1.9", "invalid config for network auto: invalid endpoint settings:\n"
                           "user specified IP address is supported only when connecting to networks "
                           "with user configured subnets"),
    ("mynet", "10.9.9.9", "invalid config for network mynet: invalid endpoint settings:\n"
                          "no configured subnet or ip-range contain the IP address 10.9.9.9"),
    ("mynet", "not-an-ip", "invalid config for network mynet: invalid endpoint settings:\n"
                           "invalid IPv4 address: not-an-ip"),
])
def test_a_fixed_ip_is_refused_where_moby_refuses_it(busybox, host, network, ip, message):
    make_network("mynet", subnet="10.251.0.0/16")
    network_services.ensure_default_subnet()
    make_network("auto")
    with pytest.raises(InvalidValue) as refused:
        create("web", network=network, ip=ip)
    assert str(refused.value) == message
    assert not Container.objects.exists()


def test_aliases_on_the_default_bridge_are_refused(busybox, host):
    with pytest.raises(InvalidValue) as refused:
        create("web", network="bridge", aliases=["www"])
    assert str(refused.value) == ("invalid config for network bridge: invalid endpoint settings:\n"
                                  "network-scoped alias is supported only for containers in user defined networks")


@pytest.mark.parametrize("fields, message", [
    ({"Hostname": "h"}, "conflicting options: hostname and the network mode"),
    ({"HostConfig": {"Links": ["a:b"]}},
     "conflicting options: container type network can't be used with links. This would result in undefined behavior"),
    ({"HostConfig": {"Dns": ["1.1.1.1"]}}, "conflicting options: dns and the network mode"),
    ({"HostConfig": {"ExtraHosts": ["a:1.2.3.4"]}}, "conflicting options: custom host-to-IP mapping and the network mode"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}},
     "conflicting options: port publishing and the container type network mode"),
    ({"HostConfig": {"PublishAllPorts": True}}, "conflicting options: port publishing and the container type network mode"),
    ({"ExposedPorts": {"80/tcp": {}}}, "conflicting options: port exposing and the container type network mode"),
    ({"HostConfig": {"NetworkMode": "container:"}}, "Invalid network mode: invalid container format container:<name|id>"),
])
def test_container_mode_conflicts_are_refused_with_moby_wording(busybox, host, fields, message):
    create("base")
    body = {**fields, "HostConfig": {"NetworkMode": "container:base", **fields.get("HostConfig", {})}}
    with pytest.raises(InvalidValue) as refused:
        create("joiner", **body)
    assert str(refused.value) == message


def test_container_mode_stores_the_targets_full_id_and_makes_no_endpoint(busybox, host):
    base = create("base")
    joiner = create("joiner", HostConfig={"NetworkMode": "container:base"})
    assert joiner.host_config["NetworkMode"] == f"container:{base.id}"
    assert not joiner.endpoints.exists()


def test_host_mode_accepts_published_ports_with_a_warning_and_publishes_nothing(busybox, host):
    container = create("web", HostConfig={"NetworkMode": "host", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}})
    assert container.warnings == ["Published ports are discarded when using host network mode"]
    assert not container.ports.exists() and not container.endpoints.exists()


def test_port_bindings_and_publish_all_become_port_mappings(busybox, host):
    container = create("web", ExposedPorts={"53/udp": {}, "443/tcp": {}}, HostConfig={
        "PublishAllPorts": True,
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": ""}],
                         "443/tcp": [{"HostIp": "", "HostPort": "8443"}]}})
    rows = list(container.ports.values_list("host_ip", "requested_port", "container_port", "protocol", "host_port"))
    assert rows == [("0.0.0.0", 8080, 80, "tcp", None), ("127.0.0.1", None, 80, "tcp", None),
                    ("0.0.0.0", 8443, 443, "tcp", None), ("0.0.0.0", None, 53, "udp", None)]


@pytest.mark.parametrize("binding, message", [
    ({"HostPort": "http"}, "invalid hostPort: http"),
    ({"HostPort": "70000"}, "invalid hostPort: 70000"),
    ({"HostIp": "localhost", "HostPort": "80"}, "invalid IP address: localhost"),
])
def test_bad_port_bindings_are_refused(busybox, host, binding, message):
    with pytest.raises(InvalidValue) as refused:
        create("web", HostConfig={"PortBindings": {"80/tcp": [binding]}})
    assert str(refused.value) == message


def test_sctp_ports_cannot_be_published_yet(busybox, host):
    with pytest.raises(InvalidValue, match=r"^cannot publish 9/sctp: Berth publishes tcp and udp ports only$"):
        create("web", HostConfig={"PortBindings": {"9/sctp": [{"HostPort": "9"}]}})


# --- start, stop, remove -----------------------------------------------------------------------------


def test_start_wires_the_bridge_a_namespace_a_veth_and_the_ports_then_runs_pid_1_there(busybox, host, networking):
    container = run("web", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    state = networking.state(networking.table)
    found = endpoint(container)
    assert "bt-default0" in state.bridges
    path, spec = state.endpoints[found.endpoint_id]
    assert path == container.sandbox_key == networking.netns_path(container.id)
    assert (spec.device, spec.address, spec.prefix_length, spec.gateway, spec.mac, spec.interface,
            spec.default_route) == ("bt-default0", "10.250.0.2", 24, "10.250.0.1", "02:42:0a:fa:00:02", "eth0", True)
    assert (found.veth_host, found.veth_container) == (f"vb{found.endpoint_id[:12]}", "eth0")
    [port] = state.published[container.id]
    assert (port.protocol, port.host_ip, port.host_port, port.container_ip, port.container_port) == (
        "tcp", "0.0.0.0", 18080, "10.250.0.2", 80)
    assert inode(f"/proc/{container.pid}/ns/net") == inode(path)
    hosts = (host.state.container_dir(container.id) / "hosts").read_text()
    assert f"10.250.0.2\t{container.id[:12]}" in hosts


def test_ephemeral_ports_are_picked_at_start_and_freed_at_stop(busybox, host, networking):
    container = run("web", ExposedPorts={"80/tcp": {}}, HostConfig={"PublishAllPorts": True})
    mapping = container.ports.get()
    assert mapping.host_port >= 32768 and mapping.requested_port is None
    services.stop_container("web", timeout=0)
    assert container.ports.get().host_port is None
    assert container.id not in networking.state(networking.table).published
    assert ("unpublish", container.id) in networking.state(networking.table).calls


def test_a_host_port_taken_fails_the_start_with_dockers_message_and_leaves_nothing(busybox, host, networking):
    run("first", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    second = create("second", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    with pytest.raises(NetworkingFailed) as failed:
        services.start_container("second")
    found = endpoint(second)
    assert str(failed.value) == (
        "failed to set up container networking: driver failed programming external connectivity on endpoint "
        f"second ({found.endpoint_id}): Bind for 0.0.0.0:18080 failed: port is already allocated")
    _assert_nothing_left(second, networking)


def test_a_port_the_kernel_layer_refuses_fails_the_start_the_same_way(busybox, host, networking):
    container = create("web", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18081"}]}})
    networking.fail_next("publish", PortAllocated("0.0.0.0", 18081))
    with pytest.raises(NetworkingFailed, match=r"\): Bind for 0.0.0.0:18081 failed: port is already allocated$"):
        services.start_container("web")
    _assert_nothing_left(container, networking)
    assert services.start_container("web")[0].state == "running"  # once the port is free, it starts


def test_a_failure_while_wiring_undoes_everything_made_so_far(busybox, host, networking):
    make_network("mynet", subnet="10.251.0.0/16")
    container = create("web", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18082"}]}})
    services.connect_network("mynet", "web")
    networking.fail_next("attach", OSError("the second veth could not be made"), skip=1)
    with pytest.raises(NetworkingFailed, match=r"^failed to set up container networking: the second veth"):
        services.start_container("web")
    state = networking.state(networking.table)
    assert [c[0] for c in state.calls if c[0] in ("attach", "detach")] == ["attach", "attach", "detach", "detach"]
    row = Container.objects.get(pk=container.id)
    assert (row.state, row.exit_code, row.sandbox_key) == ("created", 128, "")
    assert not [e for e in row.endpoints.all() if e.endpoint_id in state.endpoints]
    assert container.id not in state.namespaces and not os.path.exists(networking.netns_path(container.id))
    assert list(row.ports.values_list("host_port", flat=True)) == [None]


def _assert_nothing_left(container, networking):
    row = Container.objects.get(pk=container.id)
    assert (row.state, row.exit_code) == ("created", 128)
    assert row.error.startswith("failed to set up container networking:")
    state = networking.state(networking.table)
    assert container.id not in state.published and container.id not in state.namespaces
    assert not [e for e in state.endpoints if e in {x.endpoint_id for x in row.endpoints.all()}]
    assert not os.path.exists(networking.netns_path(container.id))
    assert list(row.ports.values_list("host_port", flat=True)) == [None]
    assert row.sandbox_key == ""


def test_a_failed_start_of_an_auto_remove_container_removes_it(busybox, host, networking):
    run("first", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    second = create("second", HostConfig={"AutoRemove": True, "PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    with pytest.raises(NetworkingFailed):
        services.start_container(second.id)
    assert not Container.objects.filter(pk=second.id).exists()


def test_remove_detaches_removes_the_namespace_and_releases_the_address(busybox, host, networking):
    container = run("web", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    found = endpoint(container)
    services.remove_container("web", force=True)
    state = networking.state(networking.table)
    assert found.endpoint_id not in state.endpoints and container.id not in state.published
    assert not os.path.exists(networking.netns_path(container.id))
    assert not Endpoint.objects.filter(pk=found.pk).exists() and not PortMapping.objects.exists()


def test_a_user_network_container_asks_the_gateway_for_names(busybox, host):
    make_network("mynet", subnet="10.251.0.0/16", gateway="10.251.0.1")
    on_user = run("web", network="mynet", HostConfig={"NetworkMode": "mynet", "Dns": ["192.0.2.53"]})
    assert (host.state.container_dir(on_user.id) / "resolv.conf").read_text().splitlines()[:2] == [
        "nameserver 10.251.0.1", "nameserver 192.0.2.53"]
    on_default = run("plain")
    assert "nameserver 10.250.0.1" not in (host.state.container_dir(on_default.id) / "resolv.conf").read_text()


def test_internal_networks_give_no_default_route(busybox, host, networking):
    make_network("private", subnet="10.251.0.0/16", Internal=True)
    container = run("web", network="private")
    _, spec = networking.state(networking.table).endpoints[endpoint(container, "private").endpoint_id]
    assert spec.default_route is False


def test_container_mode_joins_the_targets_namespace_once_it_runs(busybox, host):
    base = create("base")
    joiner = create("joiner", HostConfig={"NetworkMode": "container:base"})
    with pytest.raises(Conflict, match=rf"^cannot join network of a non running container: {base.id}$"):
        services.start_container("joiner")
    base = services.start_container("base")[0]
    joiner = services.start_container("joiner")[0]
    assert inode(f"/proc/{joiner.pid}/ns/net") == inode(f"/proc/{base.pid}/ns/net")
    assert inode(f"/proc/{joiner.pid}/ns/pid") != inode(f"/proc/{base.pid}/ns/pid")


def test_container_mode_joins_a_none_mode_container_by_its_pid(busybox, host):
    base = run("base", HostConfig={"NetworkMode": "none"})
    joiner = run("joiner", HostConfig={"NetworkMode": "container:base"})
    assert inode(f"/proc/{joiner.pid}/ns/net") == inode(f"/proc/{base.pid}/ns/net")


def test_host_and_none_modes_touch_no_networking(busybox, host, networking):
    on_host = run("onhost", HostConfig={"NetworkMode": "host"})
    on_none = run("onnone", HostConfig={"NetworkMode": "none"})
    assert inode(f"/proc/{on_host.pid}/ns/net") == inode("/proc/self/ns/net")
    assert inode(f"/proc/{on_none.pid}/ns/net") != inode("/proc/self/ns/net")
    assert not [c for c in networking.state(networking.table).calls if c[1] in (on_host.id, on_none.id)]


# --- connect and disconnect -----------------------------------------------------------------------------


def test_connect_gives_a_running_container_the_next_interface_and_disconnect_takes_it(busybox, host, networking):
    make_network("mynet", subnet="10.251.0.0/16")
    container = run("web")
    made = services.connect_network("mynet", "web", {"Aliases": ["www"], "IPAMConfig": {"IPv4Address": "10.251.0.9"}})
    state = networking.state(networking.table)
    _, spec = state.endpoints[made.endpoint_id]
    assert (spec.interface, spec.address, spec.default_route) == ("eth1", "10.251.0.9", False)
    assert endpoint(container, "mynet").aliases == ["www"]
    with pytest.raises(Forbidden, match=r"^endpoint with name web already exists in network mynet$"):
        services.connect_network("mynet", "web")
    services.disconnect_network("mynet", "web")
    assert made.endpoint_id not in state.endpoints
    assert not Endpoint.objects.filter(container_id=container.id, network__name="mynet").exists()
    with pytest.raises(Forbidden, match=rf"^container {container.id} is not connected to network mynet$"):
        services.disconnect_network("mynet", "web")


def test_connect_to_a_stopped_container_writes_only_the_endpoint_and_start_wires_it(busybox, host, networking):
    make_network("mynet", subnet="10.251.0.0/16")
    create("web")
    made = services.connect_network("mynet", "web")
    state = networking.state(networking.table)
    assert made.endpoint_id not in state.endpoints
    services.start_container("web")
    assert state.endpoints[made.endpoint_id][1].interface == "eth1"


@pytest.mark.parametrize("mode, network, message", [
    ("host", "mynet", "container cannot be disconnected from host network or connected to host network"),
    ("none", "mynet", "container cannot be connected to multiple networks with one of the networks in private (none) mode"),
    ("bridge", "host", "container cannot be disconnected from host network or connected to host network"),
])
def test_connect_is_refused_where_moby_refuses_it(busybox, host, mode, network, message):
    make_network("mynet", subnet="10.251.0.0/16")
    create("web", HostConfig={"NetworkMode": mode})
    with pytest.raises(InvalidValue) as refused:
        services.connect_network(network, "web")
    assert str(refused.value) == message


# --- inspect ------------------------------------------------------------------------------------------------


def test_inspect_shows_the_network_settings_docker_clients_read(busybox, host, tmp_path):
    container = run("web", ExposedPorts={"443/tcp": {}}, HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    found = endpoint(container)
    data = shapes.container_inspect(container, tmp_path, network_lookup=lambda name: Network.objects.get(name=name))
    settings = data["NetworkSettings"]
    bridge = settings["Networks"]["bridge"]
    assert (bridge["IPAddress"], bridge["IPPrefixLen"], bridge["Gateway"], bridge["MacAddress"]) == (
        "10.250.0.2", 24, "10.250.0.1", "02:42:0a:fa:00:02")
    assert (bridge["EndpointID"], bridge["NetworkID"], bridge["DNSNames"]) == (
        found.endpoint_id, Network.objects.get(name="bridge").id, None)
    assert (settings["IPAddress"], settings["Gateway"], settings["EndpointID"]) == (
        "10.250.0.2", "10.250.0.1", found.endpoint_id)
    assert settings["SandboxKey"] == container.sandbox_key
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}], "443/tcp": None}
    summary = shapes.container_summary(container)
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 18080, "Type": "tcp"} in summary["Ports"]


def test_a_user_network_endpoint_lists_its_dns_names_and_the_network_its_containers(busybox, host, tmp_path):
    network = make_network("mynet", subnet="10.251.0.0/16")
    container = run("web", network="mynet", aliases=["www"])
    data = shapes.container_inspect(container, tmp_path)
    assert data["NetworkSettings"]["Networks"]["mynet"]["DNSNames"] == ["web", container.id[:12], "www"]
    assert data["NetworkSettings"]["IPAddress"] == ""  # the mirror fields are the default bridge's
    shown = shapes.network_inspect(network, with_containers=True)
    assert shown["IPAM"]["Config"] == [{"Subnet": "10.251.0.0/16", "Gateway": "10.251.0.1"}]
    assert shown["Containers"] == {container.id: {
        "Name": "web", "EndpointID": endpoint(container, "mynet").endpoint_id, "MacAddress": "02:42:0a:fb:00:02",
        "IPv4Address": "10.251.0.2/16", "IPv6Address": ""}}


def test_the_default_bridge_shows_its_device_and_dockers_options(busybox, host):
    create("web")
    shown = shapes.network_inspect(Network.objects.get(name="bridge"))
    assert shown["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert shown["Options"]["com.docker.network.bridge.name"] == "bt-default0"
    assert shown["IPAM"]["Config"] == [{"Subnet": "10.250.0.0/24", "Gateway": "10.250.0.1"}]


# --- the embedded DNS's records --------------------------------------------------------------------------


def test_dns_records_hold_name_short_id_and_aliases_of_running_containers_per_network(busybox, host):
    front = make_network("front", subnet="10.251.0.0/16")
    back = make_network("back", subnet="10.252.0.0/16")
    web = run("web", network="front", aliases=["www"])
    run("db", network="back")
    create("idle", network="front")
    run("plain")
    wanted = dns_sync.wanted_networks()
    assert set(wanted) == {front.id, back.id}
    assert wanted[front.id] == dns_sync.Served("10.251.0.1", "10.251.0.0/16", True, {
        "web": ["10.251.0.2"], web.id[:12]: ["10.251.0.2"], "www": ["10.251.0.2"]})
    assert list(wanted[back.id].records) == ["db", Container.objects.get(name="db").id[:12]]


class RecordingServer:
    def __init__(self):
        self.calls = []
        self.records = {}

    def serve_network(self, network_id, gateway, subnet=None, forward=True):
        self.calls.append(("serve", network_id, gateway))
        self.how = (subnet, forward)

    def forget_network(self, network_id):
        self.calls.append(("forget", network_id))
        self.records.pop(network_id, None)

    def set_records(self, network_id, records):
        self.calls.append(("records", network_id))
        self.records[network_id] = records


def test_the_dns_sync_serves_updates_and_forgets_networks(busybox, host, tmp_path):
    server = RecordingServer()
    sync = dns_sync.DnsSync(server, tmp_path)
    network = make_network("front", subnet="10.251.0.0/16")
    sync.sync()
    assert server.calls == [("serve", network.id, "10.251.0.1"), ("records", network.id)]
    run("web", network="front")
    sync.sync()
    sync.sync()  # nothing changed: nothing said
    assert server.calls[2:] == [("records", network.id)] and "web" in server.records[network.id]
    services.remove_container("web", force=True)
    services.remove_network("front")
    sync.sync()
    assert server.calls[-1] == ("forget", network.id) and not server.records


def test_notify_waits_until_the_sync_thread_applied_the_change(transactional_db, busybox, host):
    server = RecordingServer()
    sync = dns_sync.DnsSync(server)
    thread = threading.Thread(target=sync.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not (dns_sync.dns_dir() / "server").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        network = make_network("front", subnet="10.251.0.0/16")  # its task notifies and waits
        assert ("serve", network.id, "10.251.0.1") in server.calls
        run("web", network="front")
        assert "web" in server.records[network.id]
    finally:
        sync.stop()
        thread.join(10)
    assert not (dns_sync.dns_dir() / "server").exists()


# --- reconcile ------------------------------------------------------------------------------------------------


def test_reconcile_remakes_what_running_containers_expect_and_collects_the_rest(busybox, host, networking):
    container = run("web", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}})
    stopped = run("stopped", HostConfig={"PortBindings": {"81/tcp": [{"HostPort": "18081"}]}})
    host.stop(stopped.id, timeout=0)  # exited behind the console's back: its ports still held
    state = networking.state(networking.table)
    # What a reboot of the kernel's side (or a careless hand) does: rules and links gone, strays left.
    state.bridges.clear()
    state.endpoints.clear()
    state.published.clear()
    state.published["f" * 64] = []
    networking.ensure_bridge(wiring.bridge_spec(Network(bridge_name="bt-stray", subnet="10.9.0.0/24",
                                                        gateway="10.9.0.1")))
    stray = networking.create_netns("e" * 64)
    removed = services.reconcile_network()
    assert "bt-default0" in state.bridges and "bt-stray" not in state.bridges
    assert endpoint(container).endpoint_id in state.endpoints
    assert [p.host_port for p in state.published[container.id]] == [18080]
    assert set(state.published) == {container.id}
    assert PortMapping.objects.get(container_id=stopped.id).host_port is None
    assert not os.path.exists(stray)
    assert "bridge bt-stray" in removed


def test_reconcile_makes_no_bridge_for_a_default_network_never_used(busybox, host, networking):
    services.reconcile_network()
    assert Network.objects.get(name="bridge").subnet == ""
    assert not networking.state(networking.table).bridges

