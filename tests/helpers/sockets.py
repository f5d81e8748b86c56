"""The console's websockets in tests, through the whole ASGI stack (origin, session auth, routing)."""

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings

from console.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie(client, user):
    """The header that signs a socket in as ``user`` (signed in through the test client)."""
    client.force_login(user)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


def connects(path: str, headers=(ORIGIN,)) -> bool:
    """Whether a socket to ``path`` with these headers is accepted; it is closed again at once."""
    async def scenario():
        connection = WebsocketCommunicator(application, path, headers=list(headers))
        connected, _ = await connection.connect()
        await connection.disconnect()
        return connected

    return async_to_sync(scenario)()


def over_socket(path: str, cookie, talk):
    """What ``await talk(connection)`` returns over a socket to ``path`` that must connect; it is closed after."""
    async def scenario():
        connection = WebsocketCommunicator(application, path, headers=[ORIGIN, cookie])
        connected, _ = await connection.connect(timeout=10)
        try:
            assert connected
            return await talk(connection)
        finally:
            await connection.disconnect(timeout=10)

    return async_to_sync(scenario)()
