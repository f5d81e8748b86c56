"""Websocket consumers: thin, authorised in connect, one group each.

They push htmx partials as text, out of band: the htmx ws extension swaps
every element carrying ``hx-swap-oob`` into the page by its id. The event is
``container.changed`` ({"id", "state", "exit_code", "removed"}, see
``console.events``); the row is read again, so the page shows what the
database holds, not what the event said.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import QueryDict
from django.template.loader import render_to_string

from . import groups, roles
from .context_processors import host_name
from .models import Container
from .views import container_row, containers_with_details


def _load(container_id: str) -> dict | None:
    container = containers_with_details().filter(pk=container_id).first()
    return container_row(container) if container is not None else None


def list_view_of(query_string: bytes) -> dict:
    """What the page shows, from the websocket's query string (the page's own: state, name, page)."""
    query = QueryDict(query_string.decode("latin-1"))
    return {"state": query.get("state", ""), "name": query.get("name", "").strip(), "page": query.get("page", "1")}


def _shown(container: Container, view: dict) -> bool:
    if view["state"] in dict(Container.STATES) and container.state != view["state"]:
        return False
    return view["name"].lower() in container.name.lower()


def render_list_update(container_id: str, removed: bool, view: dict | None = None,
                       can_change: bool = True, page_host: str = "") -> list[str]:
    """The list's out-of-band updates: the row replaced, a new one put on top, or a removed one deleted.

    A row that no longer matches the page's filter leaves it. A just created
    container may not be on the page yet: its row is deleted (if there) and
    put first in the table body, so it never shows twice; only the first page
    (newest first) gets new rows. One message per element: the ws extension
    parses each message as one fragment, and a ``<tr>`` followed by a
    ``<tbody>`` is not valid table markup (the parser would drop the second).
    """
    view = view or {"state": "", "name": "", "page": "1"}
    row = None if removed else _load(container_id)
    deleted = f'<tr id="container-{container_id}" hx-swap-oob="delete"></tr>'
    if row is None or not _shown(row["container"], view):
        return [deleted]
    if row["container"].state == Container.STATE_CREATED and row["container"].started_at is None:
        if view["page"] not in ("", "1"):
            return [deleted]
        html = render_to_string("_container_row.html", {"row": row, "can_change": can_change, "page_host": page_host}).strip()
        return [deleted, f'<tbody hx-swap-oob="afterbegin:#containers-body">{html}</tbody>']
    return [render_to_string("_container_row.html", {"row": row, "oob": True, "can_change": can_change,
                                                    "page_host": page_host}).strip()]


def render_state_update(container_id: str, removed: bool, can_change: bool = True) -> str:
    row = None if removed else _load(container_id)
    if row is None:
        return (f'<section id="container-state-{container_id}" hx-swap-oob="true">'
                f'<p>This container was removed.</p></section>')
    return render_to_string("_container_state.html", {"row": row, "oob": True, "can_change": can_change}).strip()


class _AuthorisedConsumer(AsyncWebsocketConsumer):
    def group_name(self) -> str:
        raise NotImplementedError

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        # Pushed partials are rendered without a request: the page's role-dependent parts come from here.
        self.can_change = await database_sync_to_async(roles.can_change)(user)
        self.page_host = host_name(dict(self.scope.get("headers", [])).get(b"host", b"").decode("latin-1"))
        self.group = self.group_name()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)


class ContainerListConsumer(_AuthorisedConsumer):
    """Every change of any container, for the list page: the row partial, out of band."""

    def group_name(self) -> str:
        return groups.CONTAINERS

    async def container_changed(self, event):
        view = list_view_of(self.scope.get("query_string", b""))
        for message in await database_sync_to_async(render_list_update)(
                event["id"], event["removed"], view, self.can_change, self.page_host):
            await self.send(text_data=message)


class ContainerConsumer(_AuthorisedConsumer):
    """One container's changes, for its page: the state partial, out of band."""

    def group_name(self) -> str:
        return groups.container_group(self.scope["url_route"]["kwargs"]["container_id"])

    async def container_changed(self, event):
        await self.send(text_data=await database_sync_to_async(render_state_update)(
            event["id"], event["removed"], self.can_change))
