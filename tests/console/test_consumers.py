"""The container list websocket, through the whole ASGI stack (origin check, session auth, routing)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from console import events
from console.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def communicator(*headers):
    return WebsocketCommunicator(application, "/ws/containers/", headers=[ORIGIN, *headers])


def session_cookie(client, user):
    client.force_login(user)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_visitor_is_refused():
    async def scenario():
        connection = communicator()
        connected, _ = await connection.connect()
        await connection.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


@pytest.mark.django_db(transaction=True)
def test_a_foreign_origin_is_refused(client, admin):
    async def scenario(cookie):
        connection = WebsocketCommunicator(application, "/ws/containers/",
                                           headers=[(b"origin", b"http://evil.example"), cookie])
        connected, _ = await connection.connect()
        await connection.disconnect()
        return connected

    assert async_to_sync(scenario)(session_cookie(client, admin)) is False


@pytest.mark.django_db(transaction=True)
def test_a_logged_in_user_hears_of_every_container_change(client, admin):
    async def scenario(cookie):
        connection = communicator(cookie)
        connected, _ = await connection.connect()
        try:
            assert connected
            await sync_to_async(events.container_changed)("ab" * 32, "exited", 3)
            return await connection.receive_json_from(timeout=5)
        finally:
            await connection.disconnect()

    message = async_to_sync(scenario)(session_cookie(client, admin))
    assert message == {"id": "ab" * 32, "state": "exited", "exit_code": 3, "removed": False}
