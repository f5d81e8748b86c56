"""Drift: the rows' picture beside the kernel's facts; on the live stack, a veth deleted by hand, reported, repaired."""

import json
import time

import pytest
from django.contrib.auth.models import User
from pyroute2 import IPRoute

from console import drift, services, topology
from console.models import Container, Network, Operation
from console.topology import Attachment, ContainerNode, NetworkNode, PortLabel, Topology

NET_ID = "ab" * 32
WEB_ID = "cd" * 32
ENDPOINT_ID = "ef" * 32
SANDBOX = "/run/netns/berth-cdcdcdcdcdcd"


def picture(state="running") -> Topology:
    network = NetworkNode(id=NET_ID, name="backend", driver="bridge", device="br-backend", subnet="10.10.0.0/24",
                          gateway="10.10.0.1", internal=False, predefined=False)
    web = ContainerNode(id=WEB_ID, name="web", state=state, image="busybox", mode="bridge", sandbox=SANDBOX,
                        attachments=[Attachment(endpoint_id=ENDPOINT_ID, network_id=NET_ID, network_name="backend",
                                                address="10.10.0.5/24", interface="eth0", veth="vbefefefefefe",
                                                mac="02:42:0a:0a:00:05")],
                        ports=[PortLabel(host_ip="0.0.0.0", host_port=43000, container_port=80, protocol="tcp")])
    return Topology(host="test-host", networks=[network], containers=[web])


def facts(**changes) -> dict:
    """What the kernel shows when it matches ``picture()``, with ``changes`` applied."""
    seen = {
        "bridges": {"br-backend": {"up": True, "addresses": ["10.10.0.1/24"]}},
        "nft_bridges": ["br-backend"],
        "veths": {"vbefefefefefe": {"master": "br-backend", "up": True}},
        "netns": ["berth-cdcdcdcdcdcd"],
        "namespaces": {SANDBOX: {"present": True, "interfaces": {
            "lo": {"up": True, "addresses": ["127.0.0.1/8"]},
            "eth0": {"up": True, "addresses": ["10.10.0.5/24"]}}}},
        "ports": [{"owner": WEB_ID, "protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 43000,
                   "container_ip": "10.10.0.5", "container_port": 80}],
    }
    seen.update(changes)
    return seen


def kinds(found) -> list[tuple[str, str]]:
    return [(d.kind, d.subject) for d in found]


def test_a_kernel_that_matches_the_rows_shows_no_drift():
    assert drift.compare(picture(), facts()) == []


def test_a_missing_veth_is_reported_with_its_container_and_endpoint():
    found = drift.compare(picture(), facts(veths={}))
    assert kinds(found) == [("veth_missing", "vbefefefefefe")]
    assert (found[0].container_id, found[0].endpoint_id, found[0].problem) == (WEB_ID, ENDPOINT_ID, "missing")
    assert "veth vbefefefefefe of web on br-backend is missing" == found[0].message


def test_a_veth_on_the_wrong_bridge_is_reported():
    found = drift.compare(picture(), facts(veths={"vbefefefefefe": {"master": "berth0", "up": True}}))
    assert kinds(found) == [("veth_wrong_bridge", "vbefefefefefe")]
    assert "is on berth0, not br-backend" in found[0].message


def test_a_missing_bridge_a_bridge_down_and_one_without_its_gateway_are_reported():
    assert kinds(drift.compare(picture(), facts(bridges={}, nft_bridges=[]))) == [("bridge_missing", "br-backend")]
    down = facts(bridges={"br-backend": {"up": False, "addresses": []}})
    assert kinds(drift.compare(picture(), down)) == [("bridge_down", "br-backend"),
                                                     ("bridge_address_missing", "br-backend")]


def test_the_address_missing_in_the_container_is_reported():
    seen = facts(namespaces={SANDBOX: {"present": True, "interfaces": {"eth0": {"up": True, "addresses": []}}}})
    assert kinds(drift.compare(picture(), seen)) == [("address_missing", "10.10.0.5/24")]
    gone = facts(namespaces={SANDBOX: {"present": True, "interfaces": {}}})
    assert kinds(drift.compare(picture(), gone)) == [("interface_missing", "eth0")]
    no_namespace = facts(namespaces={SANDBOX: {"present": False, "interfaces": {}}})
    assert kinds(drift.compare(picture(), no_namespace)) == [("netns_missing", SANDBOX)]


def test_a_missing_port_map_element_is_reported():
    assert kinds(drift.compare(picture(), facts(ports=[]))) == [("port_missing", "tcp 0.0.0.0:43000")]


def test_what_no_row_owns_is_unexpected():
    seen = facts(bridges={"br-backend": {"up": True, "addresses": ["10.10.0.1/24"]},
                          "bt-old0": {"up": True, "addresses": []}},
                 veths={"vbefefefefefe": {"master": "br-backend", "up": True},
                        "vb0123456789a": {"master": "bt-old0", "up": True}})
    seen["ports"].append({"owner": "77" * 32, "protocol": "udp", "host_ip": "0.0.0.0", "host_port": 5353,
                          "container_ip": "10.10.0.9", "container_port": 53})
    found = drift.compare(picture(), seen)
    assert kinds(found) == [("bridge_unowned", "bt-old0"), ("veth_unexpected", "vb0123456789a"),
                            ("port_unexpected", "udp 0.0.0.0:5353")]
    assert {d.problem for d in found} == {"unexpected"}


def test_a_stopped_container_is_not_expected_to_be_wired_and_its_leftovers_are_not_unexpected():
    stopped = picture(state="exited")
    stopped.containers[0].ports[0].host_port = None
    assert drift.compare(stopped, facts(veths={}, ports=[], namespaces={})) == []
    # its veth, made at the last start, still belongs to a known endpoint: the reconcile keeps it
    assert drift.compare(stopped, facts(ports=[])) == []


# --- the live stack: a veth deleted by hand --------------------------------------------------------------


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def link(name: str):
    with IPRoute() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        return ipr.get_links(indexes[0])[0] if indexes else None


def delete_link(name: str) -> None:
    with IPRoute() as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


@pytest.fixture
def live_admin(live):
    user = User.objects.create_user("topology-admin", password="pw", is_superuser=True, is_staff=True)
    try:
        yield user
    finally:
        Operation.objects.filter(user=user).update(user=None)
        user.delete()


@pytest.mark.live
def test_a_veth_deleted_by_hand_is_reported_and_the_repair_brings_it_back(live, live_admin, client):
    network = services.create_network({"Name": "drifty"})
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"],
                                           "ExposedPorts": {"80/tcp": {}},
                                           "HostConfig": {"NetworkMode": "drifty", "PublishAllPorts": True}},
                                          name="drifty-web")
    services.start_container(container.id)
    endpoint = Container.objects.get(pk=container.id).endpoints.get()
    assert endpoint.veth_host and link(endpoint.veth_host).get_attr("IFLA_MASTER") == link(network.bridge_name)["index"]
    ours = lambda report: [d for d in report.items if d.container_id == container.id or d.network_id == network.id]
    before = drift.check(topology.gather())
    assert before.checked, before.error
    assert ours(before) == []

    delete_link(endpoint.veth_host)
    client.force_login(live_admin)
    data = json.loads(client.get("/topology/topology.json?check=1").content)
    assert data["drift"]["checked"], data["drift"]["error"]
    reported = {(d["kind"], d["subject"]) for d in data["drift"]["items"] if d["container_id"] == container.id}
    assert ("veth_missing", endpoint.veth_host) in reported
    assert ("interface_missing", "eth0") in reported  # the peer went with it
    page = client.get("/topology/?check=1").content.decode()
    assert f"veth {endpoint.veth_host} of drifty-web on {network.bridge_name} is missing" in page

    response = client.post("/topology/repair/")
    assert response.status_code == 302
    wait_for(lambda: link(endpoint.veth_host) is not None)
    assert link(endpoint.veth_host).get_attr("IFLA_MASTER") == link(network.bridge_name)["index"]
    after = drift.check(topology.gather())
    assert after.checked and after.items == [], [d.message for d in after.items]
    repair = Operation.objects.filter(action="network.repair").latest("pk")
    assert (repair.user, repair.state) == (live_admin, Operation.STATE_DONE)
    assert Network.objects.filter(pk=network.id).exists()
