"""The audit log: who, through what and from where, for pages, the Docker API socket and the system.

A page's change is the signed-in user's, from the client's address; the
Docker API socket's is "docker API", from the peer's uid and pid as the
kernel tells them (SO_PEERCRED); the watcher's is the system's. Refusals are
rows too. The events page lists and filters them and changes none; the
Django admin shows them read-only.
"""

import os
import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib import admin as django_admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from console import audit, services
from console.dockerapi.api import DockerAPI
from console.dockerapi.events import LocalEvents
from console.models import Container, Network, Operation, Volume
from tests.api.conftest import RawClient, ServerThread


def event_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="event-(\d+)"', page)]


def record(action="container.start", **fields) -> Operation:
    return Operation.objects.create(action=action, state="done", **fields)


# --- pages -----------------------------------------------------------------------------------------------


def test_a_page_action_records_the_user_the_source_and_the_client_address(client, admin, host):
    client.force_login(admin)
    response = client.post("/volumes/create/", {"name": "audited", "labels": ""}, REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 302 and Volume.objects.filter(name="audited").exists()
    row = Operation.objects.get(action="volume.create")
    assert (row.user, row.source, row.origin, row.target_name, row.state) == (
        admin, "web", "192.0.2.7", "audited", Operation.STATE_DONE)


def test_a_refusal_records_who_was_refused_and_from_where(client, viewer, db):
    client.force_login(viewer)
    response = client.post("/volumes/create/", {"name": "nope", "labels": ""}, REMOTE_ADDR="198.51.100.9")
    assert response.status_code == 403 and not Volume.objects.filter(name="nope").exists()
    row = Operation.objects.get(action="volume.create")
    assert (row.user, row.source, row.origin, row.state) == (viewer, "web", "198.51.100.9", Operation.STATE_FAILED)
    assert "vic is a viewer" in row.error


def test_a_system_action_has_no_origin_even_inside_a_request(busybox):
    container = services.create_container({"Image": "busybox", "Cmd": ["true"]}, name="quick")
    with audit.origin("192.0.2.7"):
        from console.operations import operation

        with operation("container.remove", None, Operation.SOURCE_SYSTEM, container):
            pass
    row = Operation.objects.get(action="container.remove")
    assert (row.user, row.source, row.origin) == (None, "system", "")


# --- the websocket ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("predefined_networks")
def test_a_shell_records_the_client_address_of_its_websocket(client, admin, busybox):
    from console.asgi import application
    from tests.console.test_shell import ORIGIN, session_cookie

    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="shelled")
    services.start_container(container.id)

    async def scenario(cookie):
        connection = WebsocketCommunicator(application, f"/ws/containers/{container.id}/shell/",
                                           headers=[ORIGIN, cookie])
        connection.scope["client"] = ("203.0.113.5", 51000)
        connected, _ = await connection.connect(timeout=10)
        await connection.disconnect(timeout=10)
        return connected

    assert async_to_sync(scenario)(session_cookie(client, admin))
    row = Operation.objects.get(action="container.exec")
    assert (row.user, row.source, row.origin) == (admin, "web", "203.0.113.5")


# --- the Docker API socket ------------------------------------------------------------------------------


@pytest.fixture
def api_socket(host, tmp_path):
    """The Docker API over the real services (tasks inline), on a socket of this test."""
    running = ServerThread(DockerAPI(events=LocalEvents()), str(tmp_path / "docker.sock"))
    yield running.start()
    running.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("predefined_networks")
def test_a_docker_api_call_records_docker_api_and_the_peers_uid_and_pid(api_socket, client, admin):
    connection = RawClient(api_socket.path)
    try:
        status, _, _ = connection.json("POST", "/v1.45/volumes/create", {"Name": "from-the-socket"})
    finally:
        connection.close()
    assert status == 201
    row = Operation.objects.get(action="volume.create")
    assert (row.user, row.source, row.origin, row.state) == (
        None, "api", f"uid {os.getuid()} pid {os.getpid()}", Operation.STATE_DONE)
    client.force_login(admin)
    page = client.get("/events/", {"origin": f"uid {os.getuid()}"}).content.decode()
    assert event_ids(page) == [row.pk]
    assert '<td class="who">docker API</td>' in page and f"uid {os.getuid()} pid {os.getpid()}" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("predefined_networks")
def test_the_socket_is_not_limited_by_roles(api_socket):
    connection = RawClient(api_socket.path)
    try:
        status, _, body = connection.json("POST", "/v1.45/networks/create", {"Name": "socket-net"})
    finally:
        connection.close()
    assert status == 201 and Network.objects.filter(name="socket-net").exists()
    assert Operation.objects.get(action="network.create").source == "api"


# --- the events page ------------------------------------------------------------------------------------


@pytest.fixture
def mixed(admin, viewer):
    return {
        "web": record(user=admin, source="web", origin="192.0.2.7", target_name="web"),
        "refused": record("network.create", user=viewer, source="web", origin="198.51.100.9", target_name="lan"),
        "api": record("volume.create", source="api", origin="uid 1000 pid 4242", target_name="v1"),
        "api-other": record("volume.remove", source="api", origin="uid 0 pid 17", target_name="v2"),
        "system": record("container.remove", source="system", target_name="gone"),
    }


@pytest.mark.parametrize("query, expected", [
    ({"origin": "192.0.2.7"}, ["web"]),
    ({"origin": "uid 1000"}, ["api"]),
    ({"origin": "uid 1000 pid 4242"}, ["api"]),
    ({"origin": "uid 10"}, []),
    ({"user": "docker API"}, ["api-other", "api"]),
    ({"user": "system"}, ["system"]),
    ({"user": "vic"}, ["refused"]),
])
def test_the_events_page_filters_by_origin_and_who(client, admin, mixed, query, expected):
    client.force_login(admin)
    page = client.get("/events/", query).content.decode()
    assert event_ids(page) == [mixed[name].pk for name in expected]


def test_the_events_page_shows_where_each_change_came_from(client, admin, mixed):
    client.force_login(admin)
    page = client.get("/events/").content.decode()
    assert "<th>From</th>" in page
    for name in ("web", "refused", "api"):
        row = page[page.index(f'id="event-{mixed[name].pk}"'):]
        assert f'<td class="origin">{mixed[name].origin}</td>' in row[:row.index("</tr>")]


def test_the_audit_log_cannot_be_changed_from_the_console(client, admin, mixed):
    client.force_login(admin)
    assert client.post("/events/", {"action": "x"}).status_code == 405
    assert client.delete("/events/").status_code == 405
    assert Operation.objects.count() == len(mixed)


@pytest.mark.parametrize("model", [Operation, Container, Network, Volume])
def test_the_django_admin_shows_berths_rows_read_only(admin, model):
    request = RequestFactory().get("/admin/")
    request.user = admin
    model_admin = django_admin.site._registry[model]
    assert model_admin.has_view_permission(request)
    assert not (model_admin.has_add_permission(request) or model_admin.has_change_permission(request)
                or model_admin.has_delete_permission(request))


def test_users_and_groups_are_in_the_django_admin():
    from django.contrib.auth.models import Group

    assert get_user_model() in django_admin.site._registry and Group in django_admin.site._registry


def test_the_django_admin_lists_the_audit_log_and_offers_no_change(client, admin, mixed):
    client.force_login(admin)
    listing = client.get("/admin/console/operation/")
    assert listing.status_code == 200 and "uid 1000 pid 4242" in listing.content.decode()
    assert client.get("/admin/console/operation/add/").status_code == 403
    assert client.post(f"/admin/console/operation/{mixed['api'].pk}/delete/", {"post": "yes"}).status_code == 403
    assert Operation.objects.filter(pk=mixed["api"].pk).exists()
