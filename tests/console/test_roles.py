"""Roles: a viewer looks but cannot change anything, through the services, the pages and the websockets."""

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.utils import timezone

from console import roles, services
from console.models import Container, Operation
from tests.console.test_consumers import hear
from tests.helpers.sockets import session_cookie


@pytest.fixture
def operator(db):
    user = get_user_model().objects.create_user("olga", password="pw")
    roles.grant(user, roles.OPERATOR)
    return user


def make_web():
    now = timezone.now()
    return Container.objects.create(id="ab" * 32, name="web", host="test-host", image_ref="busybox",
                                    state="running", path="sleep", args=["1000"], created=now, started_at=now)


def test_a_user_in_no_group_is_a_viewer(viewer):
    assert roles.role_of(viewer) == roles.VIEWER and not roles.can_change(viewer)


def test_a_superuser_is_an_admin(admin):
    assert roles.role_of(admin) == roles.ADMIN and roles.can_change(admin)


def test_a_granted_role_replaces_the_previous_one(operator):
    assert roles.role_of(operator) == roles.OPERATOR
    roles.grant(operator, roles.ADMIN)
    assert roles.role_of(operator) == roles.ADMIN and operator.groups.count() == 1


def test_an_unknown_role_is_refused(viewer):
    with pytest.raises(ValueError, match="unknown role"):
        roles.grant(viewer, "root")


def test_the_api_socket_and_the_system_are_not_limited():
    assert roles.role_of(None) is None and roles.can_change(None)


def test_a_viewer_is_refused_by_the_service_and_the_refusal_is_audited(viewer):
    web = make_web()
    with pytest.raises(roles.PermissionDenied, match="vic is a viewer and cannot container.stop"):
        services.stop_container(web.id, user=viewer, source="web")
    refusal = Operation.objects.get(action="container.stop")
    assert refusal.state == Operation.STATE_FAILED and refusal.user == viewer and refusal.target_id == web.id
    assert "permission denied" in refusal.error
    assert Container.objects.get(pk=web.id).state == "running"


def test_a_viewer_sees_the_list_without_actions(client, viewer):
    web = make_web()
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert f'id="container-{web.id}"' in page and "/stop/" not in page and ">remove</button>" not in page


def test_a_viewer_sees_a_container_page_without_actions(client, viewer):
    web = make_web()
    client.force_login(viewer)
    page = client.get(f"/containers/{web.id}/").content.decode()
    assert "sleep 1000" in page and ">stop</button>" not in page


def test_the_admin_sees_the_actions(client, admin):
    make_web()
    client.force_login(admin)
    assert ">stop</button>" in client.get("/").content.decode()


@pytest.mark.parametrize("action", ["start", "stop", "restart", "kill", "pause", "unpause", "remove"])
def test_a_viewer_posting_an_action_gets_403_and_nothing_changes(client, viewer, action):
    web = make_web()
    client.force_login(viewer)
    response = client.post(f"/containers/{web.id}/{action}/")
    assert response.status_code == 403 and b"is a viewer" in response.content
    assert Container.objects.get(pk=web.id).state == "running"
    assert Operation.objects.get(action=f"container.{action}").state == Operation.STATE_FAILED


def test_a_viewers_htmx_action_gets_the_message_and_keeps_the_row(client, viewer):
    web = make_web()
    client.force_login(viewer)
    response = client.post(f"/containers/{web.id}/stop/", HTTP_HX_REQUEST="true",
                           HTTP_HX_TARGET=f"container-{web.id}")
    body = response.content.decode()
    assert response.status_code == 403 and response["HX-Reswap"] == "none"
    assert 'id="messages" hx-swap-oob="true"' in body and "is a viewer" in body


def test_a_viewers_bulk_action_gets_403_and_nothing_changes(client, viewer):
    web = make_web()
    client.force_login(viewer)
    response = client.post("/containers/bulk/", {"action": "kill", "ids": [web.id]})
    assert response.status_code == 403 and Container.objects.get(pk=web.id).state == "running"


@pytest.mark.django_db(transaction=True)
def test_a_viewers_pushed_rows_carry_no_actions(client):
    viewer = get_user_model().objects.create_user("vic", password="pw")
    web = make_web()
    message = async_to_sync(hear)("/ws/containers/", session_cookie(client, viewer), web.id, "running")
    assert message.startswith(f'<tr id="container-{web.id}"') and ">stop</button>" not in message


@pytest.mark.django_db(transaction=True)
def test_an_operators_pushed_rows_carry_the_actions(client):
    user = get_user_model().objects.create_user("olga", password="pw")
    roles.grant(user, roles.OPERATOR)
    web = make_web()
    message = async_to_sync(hear)(f"/ws/containers/{web.id}/", session_cookie(client, user), web.id, "running")
    assert ">stop</button>" in message
