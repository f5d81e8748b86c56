"""The container list, a container's page and their actions: an anonymous visitor, the admin."""

from datetime import timedelta

import pytest
from django.utils import timezone

from console import services, views
from console.models import Container, Endpoint, Network, PortMapping


def make_container(name, state="running", created=None, **fields):
    created = created or timezone.now()
    return Container.objects.create(id=(name.encode().hex() + "0" * 64)[:64], name=name, host="test-host",
                                    image_ref="busybox", state=state, path="sleep", args=["1000"], created=created,
                                    started_at=created if state == "running" else None, **fields)


@pytest.fixture
def web(db):
    return Container.objects.create(id="ab" * 32, name="web", host="test-host", image_ref="busybox",
                                    state="running", path="sleep", args=["1000"], created=timezone.now(),
                                    started_at=timezone.now())


@pytest.fixture
def many(db):
    """60 containers, each with a port and an endpoint on one network: more than a page."""
    network = Network.objects.create(id="n" * 64, name="front", subnet="10.9.0.0/16", gateway="10.9.0.1")
    start = timezone.now() - timedelta(hours=1)
    rows = []
    for number in range(60):
        container = make_container(f"c{number:02d}", state="running" if number % 2 else "exited",
                                   created=start + timedelta(seconds=number))
        PortMapping.objects.create(container=container, host="test-host", host_port=20000 + number, container_port=80)
        Endpoint.objects.create(container=container, network=network, endpoint_id=f"{number:064d}",
                                ip_address=f"10.9.0.{number + 2}", prefix_length=16)
        rows.append(container)
    return rows


# --- logging in ---------------------------------------------------------------------------------


def test_the_login_page_renders(client, db):
    response = client.get("/login/")
    assert response.status_code == 200 and b'name="password"' in response.content


def test_the_admin_can_log_in(client, admin):
    response = client.post("/login/", {"username": "alice", "password": "s3cret-pass"})
    assert response.status_code == 302 and response.url == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused(client, admin):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and b"didn't match" in response.content


def test_logging_out_ends_the_session(client, admin):
    client.force_login(admin)
    client.post("/logout/")
    assert client.get("/").status_code == 302


# --- an anonymous visitor -------------------------------------------------------------------------


def test_an_anonymous_visitor_is_sent_to_log_in(client, web):
    response = client.get("/")
    assert response.status_code == 302 and response.url == "/login/?next=/"


def test_an_anonymous_visitor_is_sent_to_log_in_from_a_container_page(client, web):
    response = client.get(f"/containers/{web.id}/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_an_anonymous_visitor_cannot_act_on_a_container(client, web, monkeypatch):
    calls = []
    monkeypatch.setitem(views.ACTIONS, "stop", lambda *args, **kwargs: calls.append(args))
    response = client.post(f"/containers/{web.id}/stop/")
    assert response.status_code == 302 and response.url.startswith("/login/") and calls == []


# --- the list -------------------------------------------------------------------------------------


def test_a_logged_in_user_sees_the_containers(client, admin, web):
    client.force_login(admin)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="container-' + web.id + '"' in page
    assert "web" in page and "sleep 1000" in page and "Up Less than a second" in page
    assert f'href="/containers/{web.id}/"' in page


def test_the_page_loads_htmx_and_its_ws_extension_and_sends_csrf_once(client, admin, web):
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert "/static/vendor/htmx-2.0.4.min.js" in page and "/static/vendor/htmx-ext-ws-2.0.3.min.js" in page
    assert "hx-headers='{\"X-CSRFToken\"" in page
    assert 'ws-connect="/ws/containers/"' in page and 'id="containers-body"' in page


def test_the_list_shows_ports_and_networks(client, admin, many):
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert "0.0.0.0:20059-&gt;80/tcp" in page and "front 10.9.0.61/16" in page


def test_a_published_port_links_to_where_the_browser_reaches_this_host(client, admin, many):
    client.force_login(admin)
    page = client.get("/", HTTP_HOST="localhost:8000").content.decode()
    assert '<a href="http://localhost:20059/"' in page


def test_the_list_is_newest_first_and_paginated(client, admin, many):
    client.force_login(admin)
    first = client.get("/").content.decode()
    assert first.index("c59") < first.index("c58") and "c09" not in first and "page 1 of 2" in first
    second = client.get("/?page=2").content.decode()
    assert "c09" in second and "c59" not in second and "page 2 of 2" in second


def test_the_list_filters_by_state(client, admin, many):
    client.force_login(admin)
    page = client.get("/", {"state": "exited"}).content.decode()
    assert 'ws-connect="/ws/containers/?state=exited"' in page
    assert 'id="container-' + many[0].id + '"' in page and 'id="container-' + many[1].id + '"' not in page


def test_the_list_filters_by_name(client, admin, many):
    client.force_login(admin)
    page = client.get("/", {"name": "c1"}).content.decode()
    assert page.count('<tr id="container-') == 10 and "c21" not in page


def test_the_list_keeps_its_queries_bounded(client, admin, many, django_assert_max_num_queries):
    client.force_login(admin)
    with django_assert_max_num_queries(10):
        assert client.get("/").status_code == 200


# --- a container's page ---------------------------------------------------------------------------


def test_a_logged_in_user_sees_a_container_page(client, admin, many):
    client.force_login(admin)
    container = many[5]
    page = client.get(f"/containers/{container.id}/").content.decode()
    assert f'id="container-state-{container.id}"' in page and f'ws-connect="/ws/containers/{container.id}/"' in page
    assert "10.9.0.7/16" in page and "0.0.0.0:20005" in page and "<details>" in page
    assert f"&quot;Id&quot;: &quot;{container.id}&quot;" in page


def test_a_missing_container_page_is_not_found(client, admin, db):
    client.force_login(admin)
    assert client.get("/containers/nope/").status_code == 404


# --- actions --------------------------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    """Every action's service replaced by a recorder of its calls."""
    calls = []
    for action in views.ACTIONS:
        monkeypatch.setitem(views.ACTIONS, action,
                            lambda ref, action=action, **kwargs: calls.append((action, ref, kwargs)))
    return calls


@pytest.mark.parametrize("action", ["start", "stop", "restart", "kill", "pause", "unpause"])
def test_an_action_calls_its_service_as_the_user_from_the_web(client, admin, web, recorded, action):
    client.force_login(admin)
    response = client.post(f"/containers/{web.id}/{action}/", {"next": f"/containers/{web.id}/"})
    assert response.status_code == 302 and response.url == f"/containers/{web.id}/"
    assert recorded == [(action, web.id, {"user": admin, "source": "web"})]


def test_an_action_needs_a_post(client, admin, web, recorded):
    client.force_login(admin)
    assert client.get(f"/containers/{web.id}/stop/").status_code == 405 and recorded == []


def test_an_htmx_action_gets_the_row_back(client, admin, web, recorded):
    client.force_login(admin)
    response = client.post(f"/containers/{web.id}/stop/", HTTP_HX_REQUEST="true",
                           HTTP_HX_TARGET=f"container-{web.id}")
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith(f'<tr id="container-{web.id}"')
    assert '<template><div id="messages" hx-swap-oob="true">' in page


def test_an_htmx_action_on_a_container_page_gets_the_state_back(client, admin, web, recorded):
    client.force_login(admin)
    response = client.post(f"/containers/{web.id}/restart/", HTTP_HX_REQUEST="true",
                           HTTP_HX_TARGET=f"container-state-{web.id}")
    assert f'<section id="container-state-{web.id}"' in response.content.decode()


def test_the_redirect_after_an_action_stays_on_this_site(client, admin, web, recorded):
    client.force_login(admin)
    response = client.post(f"/containers/{web.id}/stop/", {"next": "https://evil.example/"})
    assert response.url == "/"


def test_remove_with_force_passes_force_on(client, admin, web, recorded):
    client.force_login(admin)
    response = client.post(f"/containers/{web.id}/remove/", {"force": "on"})
    assert response.status_code == 302 and response.url == "/"
    assert recorded == [("remove", web.id, {"user": admin, "source": "web", "force": True})]


def test_an_unknown_action_is_not_found(client, admin, web):
    client.force_login(admin)
    assert client.post(f"/containers/{web.id}/explode/").status_code == 404


def test_a_service_error_is_shown_as_a_message(client, admin, web, monkeypatch):
    from runtime.errors import Conflict

    def refuse(ref, **kwargs):
        raise Conflict("cannot kill container: web: container is not running")

    monkeypatch.setitem(views.ACTIONS, "kill", refuse)
    client.force_login(admin)
    response = client.post(f"/containers/{web.id}/kill/", follow=True)
    assert "container is not running" in response.content.decode()


def test_removing_a_running_container_without_force_is_refused_and_keeps_it(client, admin, busybox):
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="busy")
    services.start_container("busy")
    client.force_login(admin)
    response = client.post(f"/containers/{container.id}/remove/", follow=True)
    assert "container is running: stop the container before removing or force remove" in response.content.decode()
    assert Container.objects.get(pk=container.id).state == "running"
    response = client.post(f"/containers/{container.id}/remove/", {"force": "on"})
    assert response.status_code == 302 and not Container.objects.filter(pk=container.id).exists()


# --- bulk actions ---------------------------------------------------------------------------------


def test_a_bulk_action_calls_the_service_for_each_selected_container(client, admin, many, recorded):
    client.force_login(admin)
    chosen = [many[3].id, many[7].id]
    response = client.post("/containers/bulk/", {"action": "stop", "ids": chosen, "next": "/?page=2"})
    assert response.status_code == 302 and response.url == "/?page=2"
    assert recorded == [("stop", many[7].id, {"user": admin, "source": "web"}),
                        ("stop", many[3].id, {"user": admin, "source": "web"})]


def test_a_bulk_remove_passes_force(client, admin, many, recorded):
    client.force_login(admin)
    client.post("/containers/bulk/", {"action": "remove", "ids": [many[0].id], "force": "on"})
    assert recorded == [("remove", many[0].id, {"user": admin, "source": "web", "force": True})]


def test_a_bulk_action_shows_each_error_and_goes_on(client, admin, many, monkeypatch):
    from runtime.errors import Conflict

    done = []

    def pause(ref, **kwargs):
        if ref == many[2].id:
            raise Conflict("container c02 is already paused")
        done.append(ref)

    monkeypatch.setitem(views.ACTIONS, "pause", pause)
    client.force_login(admin)
    page = client.post("/containers/bulk/", {"action": "pause", "ids": [many[2].id, many[4].id]}, follow=True)
    text = page.content.decode()
    assert "pause c02: container c02 is already paused" in text and "pause: 1 container." in text
    assert done == [many[4].id]


def test_a_bulk_action_without_an_action_is_refused(client, admin, many, recorded):
    client.force_login(admin)
    page = client.post("/containers/bulk/", {"ids": [many[0].id]}, follow=True)
    assert "Choose an action" in page.content.decode() and recorded == []


def test_an_anonymous_visitor_cannot_use_bulk_actions(client, many, recorded):
    response = client.post("/containers/bulk/", {"action": "stop", "ids": [many[0].id]})
    assert response.status_code == 302 and response.url.startswith("/login/") and recorded == []


def test_the_list_offers_bulk_selection(client, admin, web):
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert '<form id="bulk" method="post"' in page and f'name="ids" value="{web.id}" form="bulk"' in page
