"""The topology page: how this host's containers are wired, drawn and tabled, checked against the kernel.

    GET  topology/                 the drawing (SVG, inline, each node a link) beside a table of the same data
    GET  topology/?check=1         the same, with what the kernel lacks or has extra marked (without JavaScript)
    GET  topology/drift/           the drift section alone, and the view with its marks out of band (htmx)
    GET  topology/topology.svg     the drawing as a download (``?check=1``: with drift marks)
    GET  topology/topology.json    the data as a download (``?check=1``: with drift)
    POST topology/repair/          the reconcile, for admins (``network.repair``, audited)
    WS   ws/topology/              the view again, out of band, whenever a container or a network changes

Everyone signed in may look (viewers too); the drawing comes from the
database and the drift from the worker (``drift.check``), the only process
that may read the kernel's networking.
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from runtime.errors import BerthError

from .. import drift, groups, operations, roles, topology
from ..consumers import _AuthorisedConsumer
from ..topology_svg import render_svg

REPAIR = "network.repair"


def _checked(request) -> bool:
    return request.GET.get("check") == "1"


def _report(request, picture):
    return drift.check(picture) if _checked(request) else drift.NOT_CHECKED


def view_context(picture: topology.Topology, report: drift.DriftReport = drift.NOT_CHECKED) -> dict:
    """What ``_topology_view.html`` shows: the drawing and the table rows, drift marked in both."""
    by_container: dict[str, list[str]] = {}
    by_network: dict[str, list[str]] = {}
    for item in report.items:
        if item.container_id:
            by_container.setdefault(item.container_id, []).append(item.message)
        elif item.network_id:
            by_network.setdefault(item.network_id, []).append(item.message)
    names = {c.id: c.name for c in picture.containers}
    on_network: dict[str, int] = {}
    for container in picture.containers:
        for attachment in container.attachments:
            on_network[attachment.network_id] = on_network.get(attachment.network_id, 0) + 1
        if container.mode in (topology.MODE_HOST, topology.MODE_NONE):
            network = next((n for n in picture.networks if n.name == container.mode), None)
            if network is not None:
                on_network[network.id] = on_network.get(network.id, 0) + 1
    return {
        "topology": picture, "svg": render_svg(picture, report), "drift": report,
        "network_rows": [{"network": n, "count": on_network.get(n.id, 0), "drift": by_network.get(n.id, [])}
                         for n in picture.networks],
        "container_rows": [{"container": c, "drift": by_container.get(c.id, []),
                            "shares_name": names.get(c.shares, c.shares[:12])} for c in picture.containers],
        "unowned": [item for item in report.items if not item.container_id and not item.network_id],
    }


@login_required
@require_GET
def topology_page(request):
    picture = topology.gather()
    return render(request, "topology.html", view_context(picture, _report(request, picture)))


@login_required
@require_GET
def topology_drift(request):
    if not request.headers.get("HX-Request"):
        return redirect(f"{reverse('topology')}?check=1")
    picture = topology.gather()
    context = {**view_context(picture, drift.check(picture)), "oob": True}
    return HttpResponse(render_to_string("_topology_drift.html", context, request)
                        + render_to_string("_topology_view.html", context, request))


@login_required
@require_GET
def topology_svg(request):
    picture = topology.gather()
    return _file(request, render_svg(picture, _report(request, picture)), "image/svg+xml",
                 f"topology-{picture.host}.svg")


@login_required
@require_GET
def topology_json(request):
    picture = topology.gather()
    data = {**picture.as_data(), "drift": _report(request, picture).as_data()}
    return _file(request, json.dumps(data, indent=2), "application/json", f"topology-{picture.host}.json")


def _file(request, body: str, content_type: str, filename: str) -> HttpResponse:
    """The picture as a file: shown in the browser, or saved as ``filename`` with ``?download=1``."""
    response = HttpResponse(body, content_type=content_type)
    if request.GET.get("download") == "1":
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_POST
def topology_repair(request):
    picture = topology.gather()
    try:
        operations.require(request.user, REPAIR, "web", name=picture.host)
        removed = drift.repair(request.user, "web", picture.host)
    except roles.PermissionDenied as error:
        messages.error(request, str(error))
        return render(request, "topology.html", view_context(picture), status=403)
    except BerthError as error:
        messages.error(request, f"The repair failed: {error}")
    else:
        messages.success(request, "Repaired: what the database expects was made again"
                         + (f"; removed {', '.join(removed)}." if removed else "; nothing had to be removed."))
    return redirect(f"{reverse('topology')}?check=1")


# --- live -----------------------------------------------------------------------------------------

# At most this many seconds between two pushes: a burst of changes (200 containers starting) is drawn once.
PUSH_INTERVAL = 0.25


def render_live_view() -> str:
    return render_to_string("_topology_view.html", {**view_context(topology.gather()), "oob": True}).strip()


class TopologyConsumer(_AuthorisedConsumer):
    """Every change of a container or a network: the view drawn again (without drift), out of band."""

    def group_name(self) -> str:
        return groups.CONTAINERS

    async def connect(self):
        self.pending = False
        self.pusher: asyncio.Task | None = None
        self.last_push = 0.0
        await super().connect()
        if getattr(self, "group", None):
            await self.channel_layer.group_add(groups.NETWORKS, self.channel_name)

    async def disconnect(self, code):
        if self.pusher is not None:
            self.pusher.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(groups.NETWORKS, self.channel_name)
        await super().disconnect(code)

    async def container_changed(self, event):
        self._soon()

    async def network_changed(self, event):
        self._soon()

    def _soon(self) -> None:
        self.pending = True
        if self.pusher is None or self.pusher.done():
            self.pusher = asyncio.ensure_future(self._push())

    async def _push(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            wait = self.last_push + PUSH_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.pending = False
            await self.send(text_data=await database_sync_to_async(render_live_view)())
            self.last_push = loop.time()


urlpatterns = [
    path("topology/", topology_page, name="topology"),
    path("topology/drift/", topology_drift, name="topology-drift"),
    path("topology/topology.svg", topology_svg, name="topology-svg"),
    path("topology/topology.json", topology_json, name="topology-json"),
    path("topology/repair/", topology_repair, name="topology-repair"),
]
websocket_urlpatterns = [
    path("ws/topology/", TopologyConsumer.as_asgi()),
]
