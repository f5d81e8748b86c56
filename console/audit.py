"""Where a change came from, for the audit log: set once per request, read by ``operations``.

::

    browser ──HTTP──> OriginMiddleware ──────> view ──> service ──> Operation(origin="127.0.0.1")
    browser ──ws────> WebsocketOrigin ───────> consumer ──> service ──> Operation(origin="127.0.0.1")
    docker  ──unix──> dockerapi.server (SO_PEERCRED) ──> handler ──> service ──> Operation(origin="uid 1000 pid 4242")

The origin travels in a context variable, not as an argument through every
service: each request (and each connection of the API socket) runs in a
context of its own, and ``sync_to_async`` and the API's worker threads run
the services in a copy of it. Nothing set means the system (the watcher, a
command): the origin is empty.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

_origin: contextvars.ContextVar[str] = contextvars.ContextVar("berth_audit_origin", default="")


def current_origin() -> str:
    """Where the change being made now came from: a client address, a peer's uid and pid, or ""."""
    return _origin.get()


@contextmanager
def origin(value: str):
    """Changes made inside the block come from ``value``."""
    token = _origin.set(value)
    try:
        yield
    finally:
        _origin.reset(token)


def peer_origin(uid: int, pid: int) -> str:
    """A unix socket's peer, as the audit log shows it."""
    return f"uid {uid} pid {pid}"


def client_address(request) -> str:
    """The address the request came from, as the server saw it (a proxy in front is not trusted)."""
    return request.META.get("REMOTE_ADDR", "") or ""


class OriginMiddleware:
    """Django middleware: every page request's changes come from its client's address."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with origin(client_address(request)):
            return self.get_response(request)


class WebsocketOrigin:
    """ASGI middleware for the websockets: a consumer's changes (the shell) come from its client's address."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        client = scope.get("client") or ("",)
        with origin(client[0] or ""):
            return await self.inner(scope, receive, send)
