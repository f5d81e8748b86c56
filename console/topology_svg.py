"""The topology drawn as SVG on the server: networks as vertical buses, containers as rows beside them.

    host  berth0  br-1a2b
     |      |       |
     |      +-------|---- 172.17.0.2/16 eth0 · vb3f9a0c1d2e4 --[ web     ] 0.0.0.0:43000 -> 80/tcp  --.
     |      |       +---- 10.0.0.5/24 eth1 · vb77c0e1f2a3b ----[ running ]                             : db
     |      |       |                                           [ sidecar ] container:web               :
     +------|-------|---- host network ------------------------[ probe   ]                             :
            +-------|---- 172.17.0.3/16 eth0 · vb0d1e2f3a4b5 --[ db      ] <- - - - - - - - - - - - - -'
                                                           lo o[ batch   ] none

Every edge joins one container to one bus (or, dashed, one linking
container to its target), so the drawing grows with the number of
endpoints, never with pairs of containers; rows are as tall as their
endpoints need, so 200 containers on 10 networks stay readable (the page
scrolls; the table beside it says the same for screen readers). Containers
sharing a namespace (``container:X``) sit right under X, indented, joined
by a dotted line.

Text is laid out with a fixed estimate of a character's width: the drawing
is made without a browser.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from django.urls import reverse

from .drift import NOT_CHECKED, DriftReport
from .topology import MODE_CONTAINER, MODE_HOST, MODE_NONE, ContainerNode, Topology

MARGIN = 20
FONT = 12
SMALL_FONT = 11
CHAR_WIDTH = 7          # an estimate for FONT px sans-serif
SMALL_CHAR_WIDTH = 6.2
NODE_HEIGHT = 34        # a network's node at the top of its bus
NODE_STEP = 40          # network nodes are staggered, one under the other, so their labels never collide
BUS_GAP = 110           # between two buses
LABEL_WIDTH = 270       # room for the edge labels between the last bus and the containers
BOX_WIDTH = 230
BOX_MIN_HEIGHT = 46
ATTACH_STEP = 22        # one edge per endpoint, this far apart inside a container's row
ROW_GAP = 12
SHARE_INDENT = 28       # container:X sits under X, this much to the right
PORT_GAP = 12
PORT_WIDTH = 200
LINK_LANES = 6          # dashed link edges spread over this many lanes right of the ports
LANE_GAP = 26
MAX_NAME = 30

STYLE = """
text { font-family: system-ui, sans-serif; font-size: 12px; fill: #222; }
.small { font-size: 11px; fill: #444; }
.title { font-weight: bold; }
.bus { stroke: #4a6fa5; stroke-width: 3; }
.bus.host { stroke: #777; }
.node rect { fill: #eef3fb; stroke: #4a6fa5; }
.node.host rect { fill: #f2f2f2; stroke: #777; }
.container rect { fill: #fff; stroke: #555; }
.container.running rect { fill: #eefbee; stroke: #3a8a3a; }
.edge { stroke: #4a6fa5; stroke-width: 1.5; fill: none; }
.edge.host { stroke: #777; }
.edge.share { stroke: #999; stroke-dasharray: 2 3; }
.edge.link { stroke: #a06a00; stroke-dasharray: 6 4; }
.lo circle { fill: #fff; stroke: #555; }
.port { fill: #6a3d9a; }
.drift rect, .drift circle { stroke: #c00; stroke-width: 2.5; }
.edge.drift { stroke: #c00; stroke-dasharray: 4 3; }
.bus.unexpected { stroke: #c00; stroke-dasharray: 8 4; }
.node.unexpected rect { fill: #fdecec; stroke: #c00; }
.mark { fill: #c00; font-weight: bold; }
"""


def _fit(text: str, limit: int = MAX_NAME) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _text(x: float, y: float, content: str, css: str = "") -> str:
    klass = f" class={quoteattr(css)}" if css else ""
    return f'<text x="{x:g}" y="{y:g}"{klass}>{escape(content)}</text>'


class Bus:
    """A network's vertical line and its node; ``index`` counts from the left."""

    def __init__(self, index: int, key: str, title: str, detail: str, href: str, css: str, drift: list[str]):
        self.index, self.key, self.title, self.detail, self.href, self.css = index, key, title, detail, href, css
        self.drift = drift
        self.x = MARGIN + 10 + index * BUS_GAP
        self.top = MARGIN + index * NODE_STEP


class TopologySVG:
    """``TopologySVG(topology, drift).render()`` -> the SVG document as text."""

    def __init__(self, topology: Topology, drift: DriftReport = NOT_CHECKED):
        self.topology = topology
        self.drift = drift
        self.parts: list[str] = []
        self.buses = self._buses()
        self.rows_top = MARGIN + len(self.buses) * NODE_STEP + NODE_HEIGHT
        self.box_left = (self.buses[-1].x if self.buses else MARGIN) + LABEL_WIDTH
        self.ports_left = self.box_left + BOX_WIDTH + SHARE_INDENT * 2 + PORT_GAP
        self.lanes_left = self.ports_left + PORT_WIDTH
        self.width = self.lanes_left + LINK_LANES * LANE_GAP + MARGIN + 60
        self.boxes: dict[str, tuple[float, float, float]] = {}   # container id -> (left, top, height)

    # --- layout --------------------------------------------------------------------------------

    def _buses(self) -> list[Bus]:
        drift_by_network = {}
        for item in self.drift.items:
            if item.network_id and not item.endpoint_id:
                drift_by_network.setdefault(item.network_id, []).append(item.message)
        host_network = next((n for n in self.topology.networks if n.driver == "host"), None)
        buses = [Bus(0, "host", "host", f"the host's own network ({self.topology.host})",
                     reverse("network-detail", args=[host_network.id]) if host_network else "", "host", [])]
        for network in self.topology.bridges:
            detail = " · ".join(part for part in (
                network.device, network.subnet, f"gw {network.gateway}" if network.gateway else "",
                "internal" if network.internal else "") if part)
            buses.append(Bus(len(buses), network.id, network.name, detail or "no subnet yet",
                             reverse("network-detail", args=[network.id]), "",
                             drift_by_network.get(network.id, [])))
        for item in self.drift.items:
            if item.kind == "bridge_unowned":
                buses.append(Bus(len(buses), f"unowned-{item.subject}", item.subject, "no network owns it",
                                 "", "unexpected", [item.message]))
        return buses

    def bus_of(self, key: str) -> Bus | None:
        return next((bus for bus in self.buses if bus.key == key), None)

    def ordered(self) -> list[tuple[ContainerNode, int]]:
        """Containers top to bottom with their indent: grouped by first bus, sharers right under their target."""
        sharers: dict[str, list[ContainerNode]] = {}
        for container in self.topology.containers:
            if container.mode == MODE_CONTAINER and self.topology.container(container.shares):
                sharers.setdefault(container.shares, []).append(container)
        roots = [c for c in self.topology.containers
                 if c.mode != MODE_CONTAINER or not self.topology.container(c.shares)]
        roots.sort(key=lambda c: (self._group(c), c.name))
        order: list[tuple[ContainerNode, int]] = []
        placed: set[str] = set()

        def place(container: ContainerNode, depth: int) -> None:
            if container.id in placed:
                return
            placed.add(container.id)
            order.append((container, depth))
            for sharer in sharers.get(container.id, []):
                place(sharer, min(depth + 1, 2))

        for root in roots:
            place(root, 0)
        return order

    def _group(self, container: ContainerNode) -> int:
        if container.mode == MODE_HOST:
            return 0
        if container.attachments:
            bus = self.bus_of(container.attachments[0].network_id)
            return bus.index if bus else len(self.buses)
        return len(self.buses) + 1

    @staticmethod
    def row_height(container: ContainerNode) -> int:
        lines = max(len(container.attachments) * ATTACH_STEP + 14, len(container.ports) * 16 + 14)
        return max(BOX_MIN_HEIGHT, lines)

    # --- drawing --------------------------------------------------------------------------------

    def render(self) -> str:
        order = self.ordered()
        y = self.rows_top
        rows = []
        for container, depth in order:
            height = self.row_height(container)
            rows.append((container, depth, y, height))
            self.boxes[container.id] = (self.box_left + depth * SHARE_INDENT, y, height)
            y += height + ROW_GAP
        bottom = y + MARGIN
        for bus in self.buses:
            self.draw_bus(bus, bottom)
        for container, depth, top, height in rows:
            self.draw_container(container, depth, top, height)
        for index, (container, link) in enumerate((c, l) for c, _ in order for l in c.links):
            self.draw_link(container, link, index)
        if not order:
            self.parts.append(_text(self.box_left, self.rows_top + 20, "No containers on this host yet.", "small"))
        return self._document(bottom)

    def _document(self, height: float) -> str:
        title = f"Network topology of {self.topology.host}"
        return (f'<svg xmlns="http://www.w3.org/2000/svg" id="topology-svg" role="img" '
                f'aria-labelledby="topology-svg-title" width="{self.width:g}" height="{height:g}" '
                f'viewBox="0 0 {self.width:g} {height:g}">'
                f'<title id="topology-svg-title">{escape(title)}</title><style>{STYLE}</style>'
                + "".join(self.parts) + "</svg>")

    def draw_bus(self, bus: Bus, bottom: float) -> None:
        css = " ".join(filter(None, ["bus", bus.css]))
        self.parts.append(f'<line class={quoteattr(css)} x1="{bus.x:g}" y1="{bus.top + NODE_HEIGHT:g}" '
                          f'x2="{bus.x:g}" y2="{bottom - MARGIN:g}"/>')
        self.draw_network_node(bus)

    def draw_network_node(self, bus: Bus) -> None:
        width = max(len(bus.title) * CHAR_WIDTH, len(bus.detail) * SMALL_CHAR_WIDTH) + 16
        css = " ".join(filter(None, ["node", "network", bus.css, "drift" if bus.drift else ""]))
        node_id = {"host": "topo-host", "unexpected": f"topo-unowned-{bus.title}"}.get(
            bus.css, f"topo-network-{bus.key[:12]}")
        inner = (f'<rect x="{bus.x - 8:g}" y="{bus.top:g}" width="{width:g}" height="{NODE_HEIGHT}" rx="4"/>'
                 + _text(bus.x, bus.top + 14, bus.title, "title")
                 + _text(bus.x, bus.top + 28, bus.detail, "small"))
        if bus.drift:
            inner += f"<title>{escape('; '.join(bus.drift))}</title>"
            inner += _text(bus.x + width - 4, bus.top + 14, "!", "mark")
        self._node(node_id, css, bus.href, inner)

    def _node(self, node_id: str, css: str, href: str, inner: str) -> None:
        group = f'<g id="{node_id}" class={quoteattr(css)}>{inner}</g>'
        self.parts.append(f'<a href={quoteattr(href)}>{group}</a>' if href else group)

    def draw_container(self, container: ContainerNode, depth: int, top: float, height: float) -> None:
        left = self.box_left + depth * SHARE_INDENT
        drift = [d.message for d in self.drift.items if d.container_id == container.id and not d.endpoint_id]
        for index, attachment in enumerate(container.attachments):
            self.draw_attachment(container, attachment, top + 16 + index * ATTACH_STEP, left)
        if container.mode == MODE_HOST:
            self.draw_host_edge(container, top + 16, left)
        elif container.mode == MODE_NONE:
            self.draw_loopback(left, top + 16)
        elif container.mode == MODE_CONTAINER:
            self.draw_share(container, left, top)
        css = " ".join(filter(None, ["container", container.state, container.mode,
                                     "drift" if drift or container.id in self.drift.containers() else ""]))
        inner = (f'<rect x="{left:g}" y="{top:g}" width="{BOX_WIDTH:g}" height="{height:g}" rx="4"/>'
                 + _text(left + 8, top + 15, _fit(container.name), "title")
                 + _text(left + 8, top + 29, _fit(f"{container.state} · {container.image}", 36), "small")
                 + _text(left + 8, top + 42, self._mode_text(container), "small"))
        messages = [d.message for d in self.drift.items if d.container_id == container.id]
        if messages:
            inner += f"<title>{escape('; '.join(messages))}</title>"
            inner += _text(left + BOX_WIDTH - 12, top + 15, "!", "mark")
        self._node(f"topo-container-{container.short_id}", css,
                   reverse("container-detail", args=[container.id]), inner)
        self.draw_ports(container, left, top)

    def _mode_text(self, container: ContainerNode) -> str:
        if container.mode == MODE_HOST:
            return "host network"
        if container.mode == MODE_NONE:
            return "none: lo only"
        if container.mode == MODE_CONTAINER:
            target = self.topology.container(container.shares)
            return _fit(f"container:{target.name if target else container.shares[:12]}")
        return ""

    def draw_attachment(self, container: ContainerNode, attachment, y: float, left: float) -> None:
        bus = self.bus_of(attachment.network_id)
        if bus is None:
            return
        drifted = attachment.endpoint_id in self.drift.endpoints()
        css = "edge bridge drift" if drifted else "edge bridge"
        label = " ".join(part for part in (attachment.address or "no address", attachment.interface or "",
                                           f"· {attachment.veth}" if attachment.veth else "") if part)
        messages = [d.message for d in self.drift.items if d.endpoint_id == attachment.endpoint_id]
        title = f"<title>{escape('; '.join(messages))}</title>" if messages else ""
        self.parts.append(
            f'<g id="topo-edge-{attachment.short_id}" class="attachment">'
            f'<line class={quoteattr(css)} x1="{bus.x:g}" y1="{y:g}" x2="{left:g}" y2="{y:g}"/>'
            f'<circle cx="{bus.x:g}" cy="{y:g}" r="3" fill="#4a6fa5"/>'
            + _text(self.buses[-1].x + 12, y - 4, label, "small edge-label") + title + "</g>")

    def draw_host_edge(self, container: ContainerNode, y: float, left: float) -> None:
        bus = self.buses[0]
        self.parts.append(
            f'<g class="attachment"><line class="edge host" x1="{bus.x:g}" y1="{y:g}" x2="{left:g}" y2="{y:g}"/>'
            f'<circle cx="{bus.x:g}" cy="{y:g}" r="3" fill="#777"/>'
            + _text(self.buses[-1].x + 12, y - 4, "host network", "small edge-label") + "</g>")

    def draw_loopback(self, left: float, y: float) -> None:
        self.parts.append(f'<g class="lo"><line class="edge" x1="{left - 12:g}" y1="{y:g}" x2="{left:g}" y2="{y:g}"/>'
                          f'<circle cx="{left - 18:g}" cy="{y:g}" r="6"/>'
                          + _text(left - 40, y + 4, "lo", "small") + "</g>")

    def draw_share(self, container: ContainerNode, left: float, top: float) -> None:
        """A dotted line up to the container whose namespace this one joined."""
        target = self.boxes.get(container.shares)
        if target is None:
            return
        target_left, target_top, target_height = target
        x = target_left + 10
        self.parts.append(f'<line class="edge share" x1="{x:g}" y1="{target_top + target_height:g}" '
                          f'x2="{x:g}" y2="{top + 16:g}"/>'
                          f'<line class="edge share" x1="{x:g}" y1="{top + 16:g}" x2="{left:g}" y2="{top + 16:g}"/>')

    def draw_ports(self, container: ContainerNode, left: float, top: float) -> None:
        x = left + BOX_WIDTH + PORT_GAP
        for index, port in enumerate(container.ports):
            self.parts.append(_text(x, top + 15 + index * 16, port.text, "small port"))

    def draw_link(self, container: ContainerNode, link, index: int) -> None:
        """A dashed curve from the linking container to its target, out in a lane right of the ports."""
        source, target = self.boxes.get(container.id), self.boxes.get(link.target_id)
        if source is None or target is None:
            return
        lane = self.lanes_left + (index % LINK_LANES) * LANE_GAP
        x1, y1 = source[0] + BOX_WIDTH, source[1] + source[2] - 8
        x2, y2 = target[0] + BOX_WIDTH, target[1] + target[2] - 8
        apex = (x1 + x2) / 8 + 0.75 * lane   # the curve's x halfway (both control points in the lane)
        self.parts.append(
            f'<g class="link"><path class="edge link" d="M{x1:g},{y1:g} C{lane:g},{y1:g} {lane:g},{y2:g} '
            f'{x2:g},{y2:g}"/>' + _text(apex + 4, (y1 + y2) / 2 + 4, link.alias, "small link-label")
            + f"<title>{escape(f'{container.name} links to {link.target_name} as {link.alias}')}</title></g>")


def render_svg(topology: Topology, drift: DriftReport = NOT_CHECKED) -> str:
    return TopologySVG(topology, drift).render()
