"""The list's and a container page's websockets, through the whole ASGI stack (origin, session auth, routing)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from console import events
from console.asgi import application
from console.models import Container
from tests.helpers.sockets import ORIGIN, connects, session_cookie



@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/containers/", f"/ws/containers/{'ab' * 32}/"])
def test_an_anonymous_visitor_is_refused(path):
    assert connects(path) is False


@pytest.mark.django_db(transaction=True)
def test_a_foreign_origin_is_refused(client, admin):
    assert connects("/ws/containers/", [(b"origin", b"http://evil.example"), session_cookie(client, admin)]) is False


def make_web(state="running", started=True):
    now = timezone.now()
    return Container.objects.create(id="ab" * 32, name="web", host="test-host", image_ref="busybox", state=state,
                                    path="sleep", args=["1000"], created=now, started_at=now if started else None)


async def hear(path, cookie, container_id, state, removed=False, messages=1):
    """Connect to ``path``, publish one change of the container, return what the page is sent (and no more)."""
    connection = WebsocketCommunicator(application, path, headers=[ORIGIN, cookie])
    connected, _ = await connection.connect()
    try:
        assert connected
        await sync_to_async(events.container_changed)(container_id, state, 0, removed)
        heard = [await connection.receive_from(timeout=5) for _ in range(messages)]
        assert await connection.receive_nothing(timeout=0.1)
        return heard[0] if messages == 1 else heard
    finally:
        await connection.disconnect()


@pytest.mark.django_db(transaction=True)
def test_a_logged_in_user_is_sent_the_changed_row_out_of_band(client, admin):
    web = make_web()
    message = async_to_sync(hear)("/ws/containers/", session_cookie(client, admin), web.id, "running")
    assert message.startswith(f'<tr id="container-{web.id}"')
    assert 'hx-swap-oob="true"' in message and "Up Less than a second" in message


@pytest.mark.django_db(transaction=True)
def test_a_new_container_is_put_on_top_of_the_list(client, admin):
    web = make_web(state="created", started=False)
    deleted, added = async_to_sync(hear)("/ws/containers/", session_cookie(client, admin), web.id, "created",
                                         messages=2)
    assert deleted == f'<tr id="container-{web.id}" hx-swap-oob="delete"></tr>'
    assert added.startswith(f'<tbody hx-swap-oob="afterbegin:#containers-body"><tr id="container-{web.id}"')
    assert added.endswith("</tr></tbody>") and "Created" in added


@pytest.mark.django_db(transaction=True)
def test_a_row_that_no_longer_matches_the_filter_leaves_the_list(client, admin):
    web = make_web(state="exited")
    message = async_to_sync(hear)("/ws/containers/?state=running", session_cookie(client, admin), web.id, "exited")
    assert message == f'<tr id="container-{web.id}" hx-swap-oob="delete"></tr>'


@pytest.mark.django_db(transaction=True)
def test_a_row_matching_the_name_filter_stays(client, admin):
    web = make_web()
    message = async_to_sync(hear)("/ws/containers/?name=WE", session_cookie(client, admin), web.id, "running")
    assert message.startswith(f'<tr id="container-{web.id}"') and 'hx-swap-oob="true"' in message


@pytest.mark.django_db(transaction=True)
def test_a_new_container_is_not_put_on_an_older_page(client, admin):
    web = make_web(state="created", started=False)
    message = async_to_sync(hear)("/ws/containers/?page=2", session_cookie(client, admin), web.id, "created")
    assert message == f'<tr id="container-{web.id}" hx-swap-oob="delete"></tr>'


@pytest.mark.django_db(transaction=True)
def test_a_removed_container_is_deleted_from_the_list(client, admin):
    message = async_to_sync(hear)("/ws/containers/", session_cookie(client, admin), "cd" * 32, "exited", True)
    assert message == f'<tr id="container-{"cd" * 32}" hx-swap-oob="delete"></tr>'


@pytest.mark.django_db(transaction=True)
def test_a_container_page_is_sent_its_state_out_of_band(client, admin):
    web = make_web()
    message = async_to_sync(hear)(f"/ws/containers/{web.id}/", session_cookie(client, admin), web.id, "running")
    assert message.startswith(f'<section id="container-state-{web.id}"') and 'hx-swap-oob="true"' in message


@pytest.mark.django_db(transaction=True)
def test_a_container_page_hears_nothing_of_other_containers(client, admin):
    async def scenario(cookie):
        connection = WebsocketCommunicator(application, f"/ws/containers/{'ef' * 32}/", headers=[ORIGIN, cookie])
        connected, _ = await connection.connect()
        try:
            assert connected
            await sync_to_async(events.container_changed)("ab" * 32, "exited", 3)
            return await connection.receive_nothing(timeout=0.3)
        finally:
            await connection.disconnect()

    assert async_to_sync(scenario)(session_cookie(client, admin)) is True


@pytest.mark.django_db(transaction=True)
def test_a_removed_container_page_says_so(client, admin):
    gone = "cd" * 32
    message = async_to_sync(hear)(f"/ws/containers/{gone}/", session_cookie(client, admin), gone, "exited", True)
    assert message.startswith(f'<section id="container-state-{"cd" * 32}" hx-swap-oob="true">') and "removed" in message


def test_the_vendored_htmx_is_served_by_the_web_app():
    async def scenario():
        scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "headers": [],
                 "path": "/static/vendor/htmx-2.0.4.min.js", "raw_path": b"", "query_string": b""}
        connection = ApplicationCommunicator(application, scope)
        await connection.send_input({"type": "http.request", "body": b""})
        start = await connection.receive_output(timeout=5)
        body = b""
        while True:  # a streamed file ends with a body message without "body"
            chunk = await connection.receive_output(timeout=5)
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                return start["status"], body

    status, body = async_to_sync(scenario)()
    assert status == 200 and body.startswith(b"var htmx=")
