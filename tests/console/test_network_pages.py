"""The networks pages: list, create, a network with its containers, remove; admin, viewer, anonymous."""

import pytest

from console import services
from console.models import Endpoint, Network, Operation
from tests.helpers.pages import field_errors


def make_network(name, subnet=None, gateway=None, bridge=None, **fields):
    config = {key: value for key, value in (("Subnet", subnet), ("Gateway", gateway)) if value}
    body = {"Name": name, "IPAM": {"Config": [config] if config else []}, **fields}
    if bridge:
        body["Options"] = {"com.docker.network.bridge.name": bridge}
    return services.create_network(body)


def form(**fields):
    return {"name": "", "subnet": "", "gateway": "", "bridge_name": "", **fields}


def run_on(network, name):
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"],
                                           "HostConfig": {"NetworkMode": network}}, name=name)
    services.start_container(container.id)
    return container


# --- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_every_network_with_its_wiring_and_containers(signed_in, busybox):
    network = make_network("back", "10.77.0.0/24", "10.77.0.254", "bt-back0", Internal=True)
    run_on("back", "on-back")
    page = signed_in.get("/networks/").content.decode()
    row = page[page.index(f'id="network-{network.id[:12]}"'):]
    row = row[:row.index("</tr>")]
    assert f'href="/networks/{network.id}/"' in row
    for cell in ("back", "bridge", "10.77.0.0/24", "10.77.0.254", "bt-back0", "yes", '<td class="containers">1</td>'):
        assert cell in row
    for predefined in ("bridge", "host", "none"):
        assert f">{predefined}</a>" in page


def test_the_nav_links_to_the_networks_page(signed_in):
    assert 'href="/networks/"' in signed_in.get("/").content.decode()


# --- create ---------------------------------------------------------------------------------------------


def test_creating_a_network_from_the_form_opens_its_page(signed_in, host):
    response = signed_in.post("/networks/create/", form(name="front", subnet="10.78.0.0/24", gateway="10.78.0.1",
                                                        bridge_name="bt-front0", internal="on"))
    network = Network.objects.get(name="front")
    assert response.status_code == 302 and response.url == f"/networks/{network.id}/"
    assert (network.subnet, network.gateway, network.bridge_name, network.internal) == \
        ("10.78.0.0/24", "10.78.0.1", "bt-front0", True)
    page = signed_in.get(response.url).content.decode()
    assert "Created network front (10.78.0.0/24)." in page and "bt-front0" in page
    assert "front" in signed_in.get("/networks/").content.decode()


def test_without_a_subnet_one_is_picked(signed_in, host):
    signed_in.post("/networks/create/", form(name="picked"))
    assert Network.objects.get(name="picked").subnet.startswith("10.250.")


@pytest.mark.parametrize("fields, field, message", [
    (form(name="x", subnet="10.79.0.0/33"), "subnet", "invalid subnet 10.79.0.0/33: invalid CIDR block notation"),
    (form(name="x", subnet="10.79.0.1/24"), "subnet", "invalid subnet 10.79.0.1/24: it should be 10.79.0.0/24"),
    (form(name="x", subnet="10.79.0.0/24", gateway="10.8.0.1"), "gateway",
     "invalid gateway 10.8.0.1: parent subnet 10.79.0.0/24 doesn&#x27;t contain this address"),
    (form(name="x", gateway="10.79.0.1"), "gateway", "every ip-range or gateway must have a corresponding subnet"),
    (form(name="x", bridge_name="a-name-far-too-long"), "bridge_name", "invalid bridge name"),
    (form(), "name", "network name is required"),
])
def test_each_bad_field_is_shown_next_to_it_with_the_apis_message(signed_in, host, fields, field, message):
    response = signed_in.post("/networks/create/", fields)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="errorlist' in field_errors(page, field) and message in field_errors(page, field)
    assert not Network.objects.filter(name="x").exists()


def test_both_problems_of_one_config_go_next_to_their_fields(signed_in, host):
    page = signed_in.post("/networks/create/", form(name="x", subnet="10.79.0.1/24", gateway="10.8.0.1")).content.decode()
    assert "it should be 10.79.0.0/24" in field_errors(page, "subnet")
    assert "invalid gateway 10.8.0.1" in field_errors(page, "gateway")


def test_an_overlapping_subnet_is_refused_next_to_the_subnet(signed_in, host):
    make_network("wide", "10.80.0.0/16")
    page = signed_in.post("/networks/create/", form(name="narrow", subnet="10.80.1.0/24")).content.decode()
    assert "Pool overlaps with other one on this address space" in field_errors(page, "subnet")
    assert not Network.objects.filter(name="narrow").exists()


def test_a_name_in_use_is_refused_next_to_the_name(signed_in, host):
    make_network("taken", "10.81.0.0/24")
    page = signed_in.post("/networks/create/", form(name="taken", subnet="10.82.0.0/24")).content.decode()
    assert "network with name taken already exists" in field_errors(page, "name")
    assert Network.objects.filter(name="taken").count() == 1


def test_a_bridge_name_in_use_is_refused_next_to_the_bridge_name(signed_in, host):
    make_network("first", "10.83.0.0/24", bridge="bt-same0")
    page = signed_in.post("/networks/create/", form(name="second", bridge_name="bt-same0")).content.decode()
    assert "bridge name bt-same0 is already used by network first" in field_errors(page, "bridge_name")


def test_the_form_keeps_what_was_typed(signed_in, host):
    page = signed_in.post("/networks/create/", form(name="kept", subnet="10.84.0.0/24", gateway="10.9.9.9")).content.decode()
    assert 'value="kept"' in page and 'value="10.84.0.0/24"' in page


# --- a network's page and remove ----------------------------------------------------------------------------


def test_a_networks_page_shows_its_containers_with_address_mac_and_veth(signed_in, busybox):
    network = make_network("wired", "10.85.0.0/24")
    container = run_on("wired", "on-wired")
    endpoint = Endpoint.objects.get(container=container, network=network)
    page = signed_in.get(f"/networks/{network.id}/").content.decode()
    assert f'href="/containers/{container.id}/"' in page and "on-wired" in page
    assert "10.85.0.2/24" in page and endpoint.mac_address in page
    assert endpoint.veth_host and endpoint.veth_host in page and "eth0" in page


def test_a_host_mode_container_is_on_the_host_networks_page(signed_in, busybox):
    container = services.create_container({"Image": "busybox", "HostConfig": {"NetworkMode": "host"}}, name="hosted")
    host_network = Network.objects.get(name="host")
    page = signed_in.get(f"/networks/{host_network.id}/").content.decode()
    assert f'href="/containers/{container.id}/"' in page and "host mode" in page


def test_an_unknown_network_is_404(signed_in):
    assert signed_in.get("/networks/nope/").status_code == 404


def test_removing_a_network_takes_it_off_the_list(signed_in, host):
    network = make_network("gone", "10.86.0.0/24")
    response = signed_in.post(f"/networks/{network.id}/remove/")
    assert response.status_code == 302 and response.url == "/networks/"
    page = signed_in.get("/networks/").content.decode()
    assert "Removed network gone." in page and f"network-{network.id[:12]}" not in page
    assert not Network.objects.filter(pk=network.id).exists()


def test_a_predefined_network_cannot_be_removed_and_the_page_says_why(signed_in, host):
    bridge = Network.objects.get(name="bridge")
    response = signed_in.post(f"/networks/{bridge.id}/remove/", follow=True)
    assert "bridge is a pre-defined network and cannot be removed" in response.content.decode()
    assert Network.objects.filter(pk=bridge.id).exists()


def test_a_network_in_use_cannot_be_removed_and_the_page_says_why(signed_in, busybox):
    network = make_network("busy", "10.87.0.0/24")
    run_on("busy", "keeps-busy")
    response = signed_in.post(f"/networks/{network.id}/remove/", follow=True)
    assert "has active endpoints" in response.content.decode()
    assert Network.objects.filter(pk=network.id).exists()


# --- a viewer and an anonymous visitor ------------------------------------------------------------------------


def test_a_viewer_sees_networks_but_no_forms(client, viewer, host):
    network = make_network("seen", "10.88.0.0/24")
    client.force_login(viewer)
    for url in ("/networks/", f"/networks/{network.id}/"):
        page = client.get(url).content.decode()
        assert "seen" in page and "<form" not in page.split("<main>")[1]


def test_a_viewer_cannot_create_a_network(client, viewer, host):
    client.force_login(viewer)
    response = client.post("/networks/create/", form(name="sneaky", subnet="10.89.0.0/24"))
    assert response.status_code == 403 and "vic is a viewer and cannot network.create" in response.content.decode()
    assert not Network.objects.filter(name="sneaky").exists()
    operation = Operation.objects.get(action="network.create")
    assert (operation.state, operation.user, operation.target_name) == ("failed", viewer, "sneaky")


def test_a_viewer_cannot_remove_a_network(client, viewer, host):
    network = make_network("kept", "10.90.0.0/24")
    client.force_login(viewer)
    response = client.post(f"/networks/{network.id}/remove/")
    assert response.status_code == 403 and "cannot network.remove" in response.content.decode()
    assert Network.objects.filter(pk=network.id).exists()
    assert Operation.objects.get(action="network.remove", user=viewer).state == "failed"


@pytest.mark.parametrize("url", ["/networks/", "/networks/abc/"])
def test_an_anonymous_visitor_is_sent_to_log_in(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url == f"/login/?next={url}"


def test_an_anonymous_post_changes_nothing(client, db):
    response = client.post("/networks/create/", form(name="anon", subnet="10.91.0.0/24"))
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert not Network.objects.filter(name="anon").exists() and not Operation.objects.exists()


def test_a_viewer_is_refused_before_the_input_is_checked(client, viewer, host):
    client.force_login(viewer)
    response = client.post("/networks/create/", form(name="bad", subnet="10.92.0.0/33"))
    assert response.status_code == 403 and "invalid subnet" not in response.content.decode()
    assert Operation.objects.get(action="network.create", user=viewer).state == "failed"
