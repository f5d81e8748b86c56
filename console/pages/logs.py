"""The log viewer of a container's page: PID 1's output, live.

    GET /containers/<id>/logs/                 the last lines; ?before=<cursor> older ones; ?q=<term> a search
                                               (a page of its own, or the lines alone for the page's script)
    GET /containers/<id>/logs/download/        the whole log as plain text, streamed
    WS  /ws/containers/<id>/logs/              the last lines, then each new batch; the state of PID 1

Websocket messages are JSON: {"lines": [html, ...], "reset": true} first
(the last lines, replacing what the page shows), then {"lines": [...]} as
PID 1 writes, and {"status": "exited with code 3"} when the container's state
changes (from its group's ``container.changed``). The page answers each
message of lines with {"ack": 1}; at most ``IN_FLIGHT`` go unanswered, so a
slow page slows the reading of the log instead of filling the web server's
buffers. Any signed-in user may read logs (viewers too). The reading itself
is ``console.logstream``.

Whether PID 1 runs is the row's word (its state, then each
``container.changed``): the web process reads the log file and nothing else
of the state root, so it can run as a user of its own.
"""

from __future__ import annotations

import asyncio
import json
import threading

from channels.db import database_sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path

from .. import groups, logstream
from ..consumers import _AuthorisedConsumer
from ..models import Container

# The row's states in which PID 1 runs (and may write more).
RUNNING_STATES = (Container.STATE_RUNNING, Container.STATE_PAUSED)

# Messages of lines sent and not yet acknowledged by the page. The web server buffers whatever a
# slow page has not read; past this, the follower waits and the log file is the buffer.
IN_FLIGHT = 4


def _get_container(container_id: str) -> Container:
    container = Container.objects.filter(pk=container_id).first()
    if container is None:
        raise Http404("No such container")
    return container


@login_required
def container_logs(request, container_id):
    container = _get_container(container_id)
    before = request.GET.get("before", "")
    try:
        cursor = logstream.Cursor.parse(before) if before else None
    except ValueError:
        return HttpResponseBadRequest("Bad cursor for older lines.")
    log = logstream.log_context(container.id, request.GET.get("q", "").strip(), cursor, request.GET.get("timestamps") == "1")
    template = "_log_lines.html" if request.headers.get("HX-Request") == "true" else "_log_page.html"
    return render(request, template, {"row": {"container": container}, "log": log})


@login_required
def container_logs_download(request, container_id):
    container = _get_container(container_id)
    chunks = logstream.download_chunks(logstream.log_path(container.id), request.GET.get("timestamps") == "1")
    response = StreamingHttpResponse(logstream.in_thread(chunks), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{container.name or container.id[:12]}.log"'
    return response


class ContainerLogConsumer(_AuthorisedConsumer):
    """Follows one container's log for its page, and says when PID 1 exits or runs again."""

    follower: asyncio.Task | None = None
    running: threading.Event | None = None  # read by the follower's thread

    def container_id(self) -> str:
        return self.scope["url_route"]["kwargs"]["container_id"]

    def group_name(self) -> str:
        return groups.container_group(self.container_id())

    async def connect(self):
        await super().connect()
        if getattr(self, "group", None) is None:
            return  # refused
        row = await database_sync_to_async(Container.objects.filter(pk=self.container_id()).first)()
        if row is None:
            await self.send(text_data=json.dumps({"status": "no such container"}))
            await self.close()
            return
        await self.send(text_data=json.dumps({"status": logstream.status_text(row.state, row.exit_code)}))
        self.running = threading.Event()
        self._note_state(row.state)
        self.follower = asyncio.ensure_future(self._follow(row.id))

    def _note_state(self, state: str) -> None:
        if self.running is None:
            return
        if state in RUNNING_STATES:
            self.running.set()
        else:
            self.running.clear()

    async def _follow(self, container_id: str) -> None:
        self.unacknowledged = 0
        self.acknowledged = asyncio.Event()
        async for messages in logstream.follow(container_id, self.running):
            for message in messages:
                while self.unacknowledged >= IN_FLIGHT:
                    self.acknowledged.clear()
                    await self.acknowledged.wait()
                self.unacknowledged += 1
                await self.send(text_data=message)

    async def receive(self, text_data=None, bytes_data=None):
        """{"ack": n}: the page has taken n more messages of lines."""
        try:
            taken = int(json.loads(text_data or "{}").get("ack", 0))
        except (ValueError, TypeError, AttributeError):
            return
        if self.follower is not None and taken > 0:
            self.unacknowledged = max(0, self.unacknowledged - taken)
            self.acknowledged.set()

    async def disconnect(self, code):
        await self._stop_following()
        await super().disconnect(code)

    async def _stop_following(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            try:
                await self.follower
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the socket is closing anyway
                pass
            self.follower = None

    async def container_changed(self, event):
        self._note_state(event["state"])
        await self.send(text_data=json.dumps({"status": logstream.status_text(
            event["state"], event["exit_code"], event.get("removed", False))}))
        if event.get("removed"):
            await self._stop_following()


urlpatterns = [
    path("containers/<str:container_id>/logs/", container_logs, name="container-logs"),
    path("containers/<str:container_id>/logs/download/", container_logs_download, name="container-logs-download"),
]

websocket_urlpatterns = [
    path("ws/containers/<str:container_id>/logs/", ContainerLogConsumer.as_asgi()),
]
