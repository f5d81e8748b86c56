"""Resource use on the pages: the CPU/memory cell of each list row and the live graph of a container.

The figures come from the host's collector (``console.collector``): its
samples in Redis for what a page shows when opened, its one message per tick
(group ``stats``) for what changes. Both consumers listen to that one group:

    /ws/stats/?state=&name=&page=   the list: the cells ``td#stats-<id>`` of the rows on that page, out of band
    /ws/stats/<id>/                 a container's page: ``div#stats-now`` (figures and SVG graph), out of band

Without JavaScript the container page shows the graph as an image
(``/containers/<id>/stats.svg``), drawn from the same samples.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.template.loader import render_to_string
from django.urls import path
from django.utils.safestring import mark_safe

from .. import collector, groups
from ..collector import HISTORY, Sample
from ..consumers import _AuthorisedConsumer, list_view_of
from ..models import Container
from ..views import list_page

NO_FIGURE = "—"


def human_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # not reached


@dataclass(frozen=True)
class Figures:
    """One sample as the pages word it."""
    sample: Sample

    @property
    def cpu(self) -> str:
        return NO_FIGURE if self.sample.cpu is None else f"{self.sample.cpu:.1f}%"

    @property
    def memory(self) -> str:
        return human_bytes(self.sample.memory)

    @property
    def limit(self) -> str:
        return human_bytes(self.sample.limit)


# --- the graph ----------------------------------------------------------------------------------


class Graph:
    """Two sparklines of the recent samples as one SVG, labelled (with the figures now when standalone)::

        CPU 12.3%                      ___/\\__/\\_____
        Memory 4.1 MiB of 1.9 GiB      _______/‾‾‾‾‾‾‾

    The newest sample is at the right edge; HISTORY samples fill the width.
    CPU is drawn against 100 % (or its peak, above one CPU), memory against its
    own peak, so small containers still show their shape. Inline in a page the
    figures stand in the text above it, and the labels are the names alone.
    """

    WIDTH, ROW, PAD = 420, 34, 5
    LABEL, LABEL_WITH_FIGURES = 70, 190  # room for the labels left of the lines
    CPU_COLOUR, MEMORY_COLOUR = "#1f6feb", "#8250df"

    def __init__(self, samples: list[Sample], standalone: bool = False):
        """``standalone``: an image of its own (with its namespace and the figures), not inline in a page."""
        self.samples = samples[-HISTORY:]
        self.standalone = standalone
        self.label_width = self.LABEL_WITH_FIGURES if standalone else self.LABEL

    def render(self) -> str:
        height = 2 * self.ROW
        namespace = ' xmlns="http://www.w3.org/2000/svg"' if self.standalone else ""
        parts = [f'<svg{namespace} class="stats-graph" width="{self.WIDTH}" height="{height}" '
                 f'viewBox="0 0 {self.WIDTH} {height}" role="img" aria-label="CPU and memory, last two minutes">',
                 f'<rect width="{self.WIDTH}" height="{height}" fill="#fafafa" stroke="#ddd"/>']
        if not self.samples:
            parts.append(f'<text x="{self.PAD}" y="{self.ROW}" font-size="13" font-family="sans-serif">'
                         f'No figures: not running</text>')
        else:
            parts += self.draw_cpu() + self.draw_memory()
        parts.append("</svg>")
        return "".join(parts)

    def draw_cpu(self) -> list[str]:
        values = [s.cpu or 0.0 for s in self.samples]
        ceiling = max(100.0, *values)
        label = f"CPU {Figures(self.samples[-1]).cpu}" if self.standalone else "CPU"
        return self._row(0, label, values, ceiling, self.CPU_COLOUR, "cpu-line")

    def draw_memory(self) -> list[str]:
        values = [float(s.memory) for s in self.samples]
        now = Figures(self.samples[-1])
        label = f"Memory {now.memory} of {now.limit}" if self.standalone else "Memory"
        return self._row(1, label, values, max(values) or 1.0, self.MEMORY_COLOUR, "memory-line")

    def _row(self, index: int, label: str, values: list[float], ceiling: float, colour: str,
             name: str) -> list[str]:
        top = index * self.ROW
        baseline = top + self.ROW - self.PAD
        return [
            f'<text x="{self.PAD}" y="{top + self.ROW / 2 + 5:.0f}" font-size="13" font-family="sans-serif" '
            f'fill="{colour}">{label}</text>',
            f'<polyline class="{name}" fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{self._points(values, ceiling, top + self.PAD, baseline)}"/>',
        ]

    def _points(self, values: list[float], ceiling: float, top: float, baseline: float) -> str:
        span = self.WIDTH - self.label_width - self.PAD
        step = span / max(HISTORY - 1, 1)
        first = self.label_width + (HISTORY - len(values)) * step
        if len(values) == 1:  # a single sample is a dot-long line, not nothing
            values = values * 2
            first -= step
        return " ".join(f"{first + i * step:.1f},{baseline - (baseline - top) * min(v / ceiling, 1.0):.1f}"
                        for i, v in enumerate(values))


# --- what the templates get ----------------------------------------------------------------------


def render_graph(container_id: str, samples: list[Sample]) -> str:
    """The container page's figures and graph (``_container_stats.html``'s graph part), out of band."""
    return render_to_string("_container_stats.html", {
        "part": "graph", "container_id": container_id, "oob": True,
        "figures": Figures(samples[-1]) if samples else None, "svg": mark_safe(Graph(samples).render())}).strip()


def render_cell(container_id: str, sample: Sample | None) -> str:
    """A list row's CPU/memory cell (``_container_stats.html``'s cell part), out of band."""
    return render_to_string("_container_stats.html", {
        "part": "cell", "container_id": container_id, "oob": True,
        "stats": Figures(sample) if sample else None}).strip()


def with_figures(rows: list[dict]) -> list[dict]:
    """The list rows, each running one with ``stats`` (its newest figures) for its cell."""
    running = [row["container"].id for row in rows if row["container"].running]
    newest = collector.latest(running)
    for row in rows:
        sample = newest.get(row["container"].id)
        row["stats"] = Figures(sample) if sample else None
    return rows


# --- views ---------------------------------------------------------------------------------------


@login_required
def container_stats_svg(request, container_id):
    """The graph as an image: what the container page shows without JavaScript."""
    container = Container.objects.filter(pk=container_id).only("id", "state").first()
    if container is None:
        raise Http404("No such container")
    samples = collector.history(container.id) if container.running else []
    response = HttpResponse(Graph(samples, standalone=True).render(), content_type="image/svg+xml")
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    path("containers/<str:container_id>/stats.svg", container_stats_svg, name="container-stats-svg"),
]


# --- consumers -----------------------------------------------------------------------------------


def _page_rows(view: dict) -> dict[str, str]:
    """id -> host of the rows the list page shows with this filter (as ``views.container_list`` pages them)."""
    page = list_page(Container.objects.values_list("id", "host"), view["state"], view["name"], view["page"])
    return dict(page.object_list)


def _container_host(container_id: str) -> str | None:
    return Container.objects.filter(pk=container_id).values_list("host", flat=True).first()


class _StatsConsumer(_AuthorisedConsumer):
    """Both stats sockets hear the collector's ticks on one group; ``joined`` starts one once it is authorised."""

    def group_name(self) -> str:
        return groups.STATS

    async def connect(self):
        await super().connect()
        if getattr(self, "group", None):  # else refused
            await self.joined()

    async def joined(self):
        raise NotImplementedError


class ContainerListStatsConsumer(_StatsConsumer):
    """The list page's CPU/memory cells: the cells of its rows that changed, in one message per tick.

    It also hears the list's ``container.changed``: the list socket then draws
    that row again, with an empty cell, which the next tick must fill even if
    the figures stayed the same.
    """

    async def joined(self):
        await self.channel_layer.group_add(groups.CONTAINERS, self.channel_name)
        self.view = list_view_of(self.scope.get("query_string", b""))
        self.sent: dict[str, str] = {}
        rows = await database_sync_to_async(_page_rows)(self.view)
        newest = await sync_to_async(collector.latest)(list(rows))
        await self.send_cells({container_id: newest.get(container_id) for container_id in rows})

    async def stats_tick(self, event):
        rows = await database_sync_to_async(_page_rows)(self.view)
        figures = event["figures"]
        await self.send_cells({
            container_id: Sample(event["time"], *figures[container_id]) if container_id in figures else None
            for container_id, host in rows.items() if host == event["host"]})

    async def container_changed(self, event):
        self.sent.pop(event["id"], None)

    async def disconnect(self, code):
        await super().disconnect(code)
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(groups.CONTAINERS, self.channel_name)

    async def send_cells(self, samples: dict[str, Sample | None]) -> None:
        changed = []
        for container_id, sample in samples.items():
            cell = render_cell(container_id, sample)
            if self.sent.get(container_id) != cell:
                self.sent[container_id] = cell
                changed.append(cell)
        if changed:
            await self.send(text_data="".join(changed))


class ContainerStatsConsumer(_StatsConsumer):
    """A container page's figures and graph, pushed at connect and then every tick."""

    async def joined(self):
        self.container_id = self.scope["url_route"]["kwargs"]["container_id"]
        self.host = await database_sync_to_async(_container_host)(self.container_id)
        self.samples: deque[Sample] = deque(await sync_to_async(collector.history)(self.container_id),
                                            maxlen=HISTORY)
        await self.send(text_data=render_graph(self.container_id, list(self.samples)))

    async def stats_tick(self, event):
        if event["host"] != self.host:
            return
        figures = event["figures"].get(self.container_id)
        if figures is None:
            if self.samples:  # it stopped: say so once
                self.samples.clear()
                await self.send(text_data=render_graph(self.container_id, []))
            return
        self.samples.append(Sample(event["time"], *figures))
        await self.send(text_data=render_graph(self.container_id, list(self.samples)))


websocket_urlpatterns = [
    path("ws/stats/", ContainerListStatsConsumer.as_asgi()),
    path("ws/stats/<str:container_id>/", ContainerStatsConsumer.as_asgi()),
]
