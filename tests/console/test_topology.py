"""The topology: the picture of the rows, its SVG (parsed, never as bytes), its JSON, the page and its websocket."""

import json
import secrets
import time
import xml.etree.ElementTree as ET

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.utils import timezone

from console import events, roles, topology
from console.asgi import application
from console.models import Container, Endpoint, Network, Operation, PortMapping
from console.drift import Drift, DriftReport
from console.topology_svg import render_svg
from tests.helpers.sockets import ORIGIN, over_socket, session_cookie

SVG = "{http://www.w3.org/2000/svg}"
HOST = "test-host"


@pytest.fixture(autouse=True)
def on_this_host(settings):
    settings.BERTH_HOST = HOST


def container(name, mode="bridge", state="running", **host_config):
    return Container.objects.create(id=(name.encode().hex() * 64)[:64], name=name, host=HOST, image_ref="busybox",
                                    state=state, created=timezone.now(),
                                    host_config={"NetworkMode": mode, **host_config})


def endpoint(row, network, address, interface, fixed=False):
    prefix = int(network.subnet.split("/")[1])
    endpoint_id = secrets.token_hex(32)
    return Endpoint.objects.create(container=row, network=network, endpoint_id=endpoint_id,
                                   ip_address=address, prefix_length=prefix, veth_host="vb" + endpoint_id[:11],
                                   veth_container=interface, ipam_config={"IPv4Address": address} if fixed else {})


@pytest.fixture
def wired(db):
    """One container of each mode: web (default bridge and a user network with a fixed address, a published
    port), sidecar (container:web), probe (host), batch (none), app (user network, --link web:db)."""
    bridge = Network.objects.get(name="bridge")
    Network.objects.filter(pk=bridge.pk).update(subnet="172.17.0.0/16", gateway="172.17.0.1", bridge_name="berth0")
    bridge.refresh_from_db()
    backend = Network.objects.create(id="be" * 32, name="backend", subnet="10.10.0.0/24", gateway="10.10.0.1",
                                     bridge_name="br-backend", user_subnet=True, internal=True)
    web = container("web")
    endpoint(web, bridge, "172.17.0.2", "eth0")
    endpoint(web, backend, "10.10.0.5", "eth1", fixed=True)
    PortMapping.objects.create(container=web, host=HOST, host_ip="0.0.0.0", requested_port=43000, host_port=43000,
                               container_port=80, protocol="tcp")
    sidecar = container("sidecar", mode=f"container:{web.id}")
    probe = container("probe", mode="host")
    batch = container("batch", mode="none", state="exited")
    app = container("app", mode="backend", Links=["/web:/app/db"])
    endpoint(app, backend, "10.10.0.6", "eth0")
    return {"web": web, "sidecar": sidecar, "probe": probe, "batch": batch, "app": app,
            "bridge": bridge, "backend": backend}


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def node(root, node_id):
    found = root.find(f".//{SVG}g[@id='{node_id}']")
    assert found is not None, f"no node {node_id}"
    return found


def texts(element) -> list[str]:
    return ["".join(t.itertext()) for t in element.iter(f"{SVG}text")]


def links_to(root) -> dict[str, list[str]]:
    """href of every <a> -> the ids of the nodes inside it."""
    return {a.get("href"): [g.get("id") for g in a.iter(f"{SVG}g") if g.get("id")] for a in root.iter(f"{SVG}a")}


# --- the picture and its drawing -------------------------------------------------------------------------


def test_it_draws_every_network_as_a_node_with_its_bridge_subnet_and_gateway(wired):
    root = parsed(render_svg(topology.gather()))
    backend = node(root, f"topo-network-{'be' * 6}")
    assert "backend" in texts(backend)
    assert any("br-backend" in t and "10.10.0.0/24" in t and "gw 10.10.0.1" in t and "internal" in t
               for t in texts(backend))
    bridge = node(root, f"topo-network-{wired['bridge'].id[:12]}")
    assert any("berth0" in t and "172.17.0.0/16" in t for t in texts(bridge))


def test_it_labels_each_bridge_edge_with_the_address_the_interface_and_the_host_veth(wired):
    root = parsed(render_svg(topology.gather()))
    web = wired["web"]
    edges = {g.get("id"): texts(g) for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("topo-edge-")}
    on_bridge, on_backend = Endpoint.objects.filter(container=web).order_by("id")
    assert edges[f"topo-edge-{on_bridge.endpoint_id[:12]}"] == [f"172.17.0.2/16 eth0 · {on_bridge.veth_host}"]
    # the fixed address on the user network
    assert edges[f"topo-edge-{on_backend.endpoint_id[:12]}"] == [f"10.10.0.5/24 eth1 · {on_backend.veth_host}"]
    assert "web" in texts(node(root, f"topo-container-{web.id[:12]}"))


def test_it_shows_published_ports_as_host_side_labels(wired):
    root = parsed(render_svg(topology.gather()))
    ports = [t for t in root.iter(f"{SVG}text") if "port" in (t.get("class") or "").split()]
    assert ["0.0.0.0:43000 \u2192 80/tcp"] == [t.text for t in ports]


def test_a_host_mode_container_hangs_on_the_host_node(wired):
    root = parsed(render_svg(topology.gather()))
    assert "host" in texts(node(root, "topo-host"))
    probe = node(root, f"topo-container-{wired['probe'].id[:12]}")
    assert "host" in probe.get("class").split()
    assert "host network" in texts(probe)
    host_edges = [line for line in root.iter(f"{SVG}line") if line.get("class") == "edge host"]
    assert len(host_edges) == 1


def test_a_none_mode_container_stands_alone_with_lo(wired):
    root = parsed(render_svg(topology.gather()))
    batch = node(root, f"topo-container-{wired['batch'].id[:12]}")
    assert "none" in batch.get("class").split() and "none: lo only" in texts(batch)
    loopbacks = [g for g in root.iter(f"{SVG}g") if g.get("class") == "lo"]
    assert [texts(g) for g in loopbacks] == [["lo"]]


def test_a_container_mode_container_sits_right_under_the_one_whose_namespace_it_shares(wired):
    root = parsed(render_svg(topology.gather()))
    web = node(root, f"topo-container-{wired['web'].id[:12]}").find(f"{SVG}rect")
    sidecar_node = node(root, f"topo-container-{wired['sidecar'].id[:12]}")
    sidecar = sidecar_node.find(f"{SVG}rect")
    assert "container:web" in texts(sidecar_node)
    assert float(sidecar.get("x")) > float(web.get("x"))  # indented
    below = float(web.get("y")) + float(web.get("height"))
    others = [float(g.find(f"{SVG}rect").get("y")) for g in root.iter(f"{SVG}g")
              if (g.get("id") or "").startswith("topo-container-") and g is not sidecar_node]
    assert float(sidecar.get("y")) > below and not any(below < y < float(sidecar.get("y")) for y in others)
    assert len([line for line in root.iter(f"{SVG}line") if line.get("class") == "edge share"]) == 2


def test_a_link_is_a_dashed_edge_labelled_with_its_alias(wired):
    root = parsed(render_svg(topology.gather()))
    links = [g for g in root.iter(f"{SVG}g") if g.get("class") == "link"]
    assert len(links) == 1
    assert links[0].find(f"{SVG}path").get("class") == "edge link"
    assert texts(links[0]) == ["db"]


def test_every_node_opens_its_container_or_network_page(wired):
    hrefs = links_to(parsed(render_svg(topology.gather())))
    for name in ("web", "sidecar", "probe", "batch", "app"):
        row = wired[name]
        assert hrefs[f"/containers/{row.id}/"] == [f"topo-container-{row.id[:12]}"]
    assert hrefs[f"/networks/{'be' * 32}/"] == [f"topo-network-{'be' * 6}"]
    assert hrefs[f"/networks/{Network.objects.get(name='host').id}/"] == ["topo-host"]


def test_drift_is_marked_on_the_edge_the_container_and_as_an_unowned_bridge(wired):
    web = wired["web"]
    on_bridge = Endpoint.objects.filter(container=web).order_by("id").first()
    report = DriftReport(checked=True, items=[
        Drift("veth_missing", "missing", f"veth {on_bridge.veth_host} of web on berth0 is missing",
              subject=on_bridge.veth_host, container_id=web.id, network_id=on_bridge.network_id,
              endpoint_id=on_bridge.endpoint_id),
        Drift("bridge_unowned", "unexpected", "bridge bt-old0 is Berth's but no network owns it", subject="bt-old0")])
    root = parsed(render_svg(topology.gather(), report))
    edge = node(root, f"topo-edge-{on_bridge.endpoint_id[:12]}")
    assert edge.find(f"{SVG}line").get("class") == "edge bridge drift"
    assert "is missing" in edge.find(f"{SVG}title").text
    assert "drift" in node(root, f"topo-container-{web.id[:12]}").get("class").split()
    assert "drift" not in node(root, f"topo-container-{wired['app'].id[:12]}").get("class").split()
    unowned = node(root, "topo-unowned-bt-old0")
    assert "unexpected" in unowned.get("class").split() and "bt-old0" in texts(unowned)


def test_200_containers_on_10_networks_draw_quickly_with_one_edge_per_endpoint(db):
    networks = [Network.objects.create(id=f"{n:02d}" * 32, name=f"net{n}", subnet=f"10.20.{n}.0/24",
                                       gateway=f"10.20.{n}.1", bridge_name=f"br-net{n}") for n in range(10)]
    for index in range(200):
        row = Container.objects.create(id=f"{index:04d}" * 16, name=f"c{index}", host=HOST, image_ref="busybox",
                                       state="running", created=timezone.now(), host_config={"NetworkMode": "net0"})
        for hop in range(1 + index % 2):  # half of them on two networks
            network = networks[(index + hop * 3) % 10]
            Endpoint.objects.create(container=row, network=network, endpoint_id=f"{index:04d}{hop}".ljust(64, "0"),
                                    ip_address=f"10.20.{network.name[3:]}.{index % 250 + 2}", prefix_length=24,
                                    veth_host=f"vb{index:04d}{hop}", veth_container=f"eth{hop}")
    started = time.monotonic()
    picture = topology.gather()
    svg = render_svg(picture)
    elapsed = time.monotonic() - started
    root = parsed(svg)
    edges = [line for line in root.iter(f"{SVG}line") if "bridge" in (line.get("class") or "").split()]
    assert len(edges) == 300  # one per endpoint: no line between two containers
    assert len([g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("topo-container-")]) == 200
    assert elapsed < 2, f"drawing took {elapsed:.2f} s"
    assert float(root.get("width")) < 2500  # the width grows with networks, not with containers


def test_the_picture_reads_the_rows_in_a_fixed_number_of_queries(wired, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):
        picture = topology.gather()
    app = picture.container(wired["app"].id)
    assert [(link.target_name, link.alias) for link in app.links] == [("web", "db")]
    assert picture.container(wired["sidecar"].id).shares == wired["web"].id


# --- the pages -------------------------------------------------------------------------------------------


def test_a_viewer_sees_the_drawing_beside_a_table_of_the_same_data(client, viewer, wired):
    client.force_login(viewer)
    response = client.get("/topology/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="topology-svg"' in page
    assert f'id="topology-container-{wired["web"].id[:12]}"' in page
    assert "0.0.0.0:43000 \u2192 80/tcp" in page and "shares the namespace of" in page
    assert 'id="topology-repair"' not in page  # the repair is for admins


def test_an_admin_gets_the_repair_button(client, admin, wired):
    client.force_login(admin)
    assert 'id="topology-repair"' in client.get("/topology/").content.decode()


@pytest.mark.parametrize("url", ["/topology/", "/topology/topology.svg", "/topology/topology.json",
                                 "/topology/drift/"])
def test_an_anonymous_visitor_is_sent_to_log_in(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_svg_download_is_an_svg_document(client, viewer, wired):
    client.force_login(viewer)
    response = client.get("/topology/topology.svg?download=1")
    assert response["Content-Type"] == "image/svg+xml"
    assert "attachment" in response["Content-Disposition"]
    assert parsed(response.content.decode()).get("id") == "topology-svg"


def test_the_json_download_holds_the_same_picture(client, viewer, wired):
    client.force_login(viewer)
    data = json.loads(client.get("/topology/topology.json").content)
    assert data["drift"] == {"checked": False, "error": "", "items": []}
    by_name = {c["name"]: c for c in data["containers"]}
    assert by_name["web"]["attachments"][1]["address"] == "10.10.0.5/24"
    assert by_name["web"]["ports"] == [{"host_ip": "0.0.0.0", "host_port": 43000, "container_port": 80,
                                        "protocol": "tcp"}]
    assert by_name["sidecar"]["shares"] == wired["web"].id
    assert by_name["app"]["links"] == [{"target_id": wired["web"].id, "target_name": "web", "alias": "db"}]
    assert {c["mode"] for c in data["containers"]} == {"bridge", "container", "host", "none"}
    assert {n["name"] for n in data["networks"]} >= {"bridge", "host", "none", "backend"}


def test_a_viewer_is_refused_the_repair_and_the_refusal_is_recorded(client, viewer, wired):
    client.force_login(viewer)
    response = client.post("/topology/repair/")
    assert response.status_code == 403
    assert "viewer" in response.content.decode()
    refusal = Operation.objects.get(action="network.repair")
    assert (refusal.user, refusal.state, refusal.source) == (viewer, Operation.STATE_FAILED, "web")


def test_an_operator_is_refused_the_repair_too(client, wired):
    operator = User.objects.create_user("otto", password="pw")
    roles.grant(operator, roles.OPERATOR)
    client.force_login(operator)
    assert client.post("/topology/repair/").status_code == 403
    assert Operation.objects.get(action="network.repair").state == Operation.STATE_FAILED
    assert 'id="topology-repair"' not in client.get("/topology/").content.decode()


def test_the_kernel_check_says_so_when_the_networking_layer_cannot_be_inspected(client, admin, host):
    client.force_login(admin)
    data = json.loads(client.get("/topology/topology.json?check=1").content)
    assert data["drift"]["checked"] is False and "cannot be inspected" in data["drift"]["error"]


def test_the_drift_section_comes_alone_to_htmx_and_as_the_whole_page_without_it(client, viewer, host):
    client.force_login(viewer)
    response = client.get("/topology/drift/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.startswith('<section id="topology-drift"')
    assert "The kernel could not be checked" in body and '<div id="topology-view" hx-swap-oob="true">' in body
    response = client.get("/topology/drift/")
    assert response.status_code == 302 and response["Location"] == "/topology/?check=1"


# --- live updates ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_topology_websocket_sends_the_view_again_when_a_network_changes(client):
    viewer = User.objects.create_user("vic", password="pw")

    async def talk(connection):
        await sync_to_async(container)("late")
        await sync_to_async(events.network_changed)("be" * 32, "connect")
        return await connection.receive_from(timeout=5)

    message = over_socket("/ws/topology/", session_cookie(client, viewer), talk)
    assert message.startswith('<div id="topology-view" hx-swap-oob="true">')
    assert "late" in texts(parsed(message[message.index("<svg"):message.index("</svg>") + 6]))


def test_network_changes_are_told_to_the_networks_group(busybox):
    from channels.layers import get_channel_layer

    from console import groups, services

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(groups.NETWORKS, channel)
    network = services.create_network({"Name": "told"})
    row = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="listener")
    services.connect_network("told", row.id)
    services.disconnect_network("told", row.id)
    services.remove_network("told")
    heard = [async_to_sync(layer.receive)(channel) for _ in range(4)]
    assert [(e["type"], e["id"], e["action"], e["container"]) for e in heard] == [
        ("network.changed", network.id, "create", ""), ("network.changed", network.id, "connect", row.id),
        ("network.changed", network.id, "disconnect", row.id), ("network.changed", network.id, "remove", "")]


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_changes_is_drawn_a_few_times_not_once_per_change(client):
    viewer = User.objects.create_user("vic", password="pw")

    async def talk(connection):
        for index in range(20):
            await sync_to_async(events.container_changed)(f"{index:064d}", "running")
        heard = []
        while not await connection.receive_nothing(timeout=0.6):
            heard.append(await connection.receive_from())
        return heard

    heard = over_socket("/ws/topology/", session_cookie(client, viewer), talk)
    assert 1 <= len(heard) <= 3


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_visitor_gets_no_topology_websocket():
    async def scenario():
        connection = WebsocketCommunicator(application, "/ws/topology/", headers=[ORIGIN])
        connected, _ = await connection.connect()
        await connection.disconnect()
        return connected

    assert async_to_sync(scenario)() is False
