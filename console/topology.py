"""How a host's containers are wired, as the database says: plain data for the drawing, the table and the JSON.

One read of the rows (networks, containers with their endpoints and port
mappings) becomes a ``Topology``; nothing here asks the kernel (``drift``
compares this picture with what the worker sees)::

    [host] ----------------------------- host-mode containers
    [berth0 172.17.0.1/16] --eth0 172.17.0.2 / vb3f9a0c1d2e4-- [web] 0.0.0.0:43000 -> 80/tcp
    [br-1a2b 10.0.0.1/24]  --eth1 10.0.0.5 / vb77c0e1f2a3b--'   |  (container:web) [sidecar]
                                                               '- - db - -> [db]   (--link db)
    [none]                                                       [batch] lo

Networks are nodes of their own; a container is attached to each of its
networks by one edge (an Endpoint row), so the number of edges grows with
endpoints, never with pairs of containers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.conf import settings

from runtime.errors import BerthError

from . import links as legacy_links
from .docker_config import container_network_target
from .models import Container, Network

MODE_BRIDGE, MODE_HOST, MODE_NONE, MODE_CONTAINER = "bridge", "host", "none", "container"


@dataclass
class NetworkNode:
    id: str
    name: str
    driver: str
    device: str          # the bridge's name on the host; "" for host and none
    subnet: str
    gateway: str
    internal: bool
    predefined: bool

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass
class Attachment:
    """One endpoint: the edge between a container and a bridge network."""

    endpoint_id: str
    network_id: str
    network_name: str
    address: str         # "172.17.0.2/16", "" while none is allocated
    interface: str       # eth0, eth1... inside the container; "" until its first start
    veth: str            # the host end, enslaved to the bridge; "" until its first start
    mac: str
    aliases: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.endpoint_id[:12]


@dataclass
class PortLabel:
    host_ip: str
    host_port: int | None   # None: not published now (the container is not running)
    container_port: int
    protocol: str

    @property
    def text(self) -> str:
        host_port = self.host_port if self.host_port is not None else "-"
        return f"{self.host_ip}:{host_port} \u2192 {self.container_port}/{self.protocol}"


@dataclass
class LinkEdge:
    """``--link target:alias``: the container resolves ``alias`` to ``target``'s address."""

    target_id: str
    target_name: str
    alias: str


@dataclass
class ContainerNode:
    id: str
    name: str
    state: str
    image: str
    mode: str            # bridge, host, none or container
    shares: str = ""     # container mode: the id of the container whose namespace it joins
    sandbox: str = ""    # its network namespace (bridge mode), as the row knows it
    attachments: list[Attachment] = field(default_factory=list)
    ports: list[PortLabel] = field(default_factory=list)
    links: list[LinkEdge] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state in (Container.STATE_RUNNING, Container.STATE_PAUSED, Container.STATE_RESTARTING)


@dataclass
class Topology:
    host: str
    networks: list[NetworkNode]
    containers: list[ContainerNode]

    def network(self, network_id: str) -> NetworkNode | None:
        return next((n for n in self.networks if n.id == network_id), None)

    def container(self, container_id: str) -> ContainerNode | None:
        return next((c for c in self.containers if c.id == container_id), None)

    @property
    def bridges(self) -> list[NetworkNode]:
        return [n for n in self.networks if n.driver == Network.DRIVER_BRIDGE]

    def edge_count(self) -> int:
        return sum(len(c.attachments) + len(c.links) + (1 if c.mode in (MODE_HOST, MODE_CONTAINER) else 0)
                   for c in self.containers)

    def as_data(self) -> dict:
        """Plain JSON-ready data (the download)."""
        return asdict(self)


def gather(host: str | None = None) -> Topology:
    """The picture of ``host`` (this one by default), in a fixed number of queries."""
    host = host or settings.BERTH_HOST
    networks = [_network_node(n) for n in Network.objects.order_by("-predefined", "name")]
    rows = list(Container.objects.filter(host=host).order_by("name")
                .prefetch_related("endpoints__network", "ports"))
    by_name = {row.name: row for row in rows}
    by_id = {row.id: row for row in rows}
    containers = [_container_node(row, by_name, by_id) for row in rows]
    return Topology(host=host, networks=networks, containers=containers)


def _network_node(network: Network) -> NetworkNode:
    return NetworkNode(id=network.id, name=network.name, driver=network.driver, device=network.bridge_name,
                       subnet=network.subnet, gateway=network.gateway, internal=network.internal,
                       predefined=network.predefined)


def _container_node(row: Container, by_name: dict, by_id: dict) -> ContainerNode:
    mode = (row.host_config or {}).get("NetworkMode") or "bridge"
    target = container_network_target(mode)
    node = ContainerNode(id=row.id, name=row.name, state=row.state, image=row.image_ref,
                         mode=_mode_kind(mode, target), sandbox=row.sandbox_key)
    if target is not None:
        joined = by_id.get(target) or by_name.get(target)
        node.shares = joined.id if joined is not None else target
    node.attachments = [
        Attachment(endpoint_id=e.endpoint_id, network_id=e.network_id, network_name=e.network.name,
                   address=f"{e.ip_address}/{e.prefix_length}" if e.ip_address else "",
                   interface=e.veth_container, veth=e.veth_host, mac=e.mac_address, aliases=list(e.aliases or []))
        for e in sorted(row.endpoints.all(), key=lambda e: e.id)
    ]
    node.ports = [PortLabel(host_ip=p.host_ip, host_port=p.host_port, container_port=p.container_port,
                            protocol=p.protocol) for p in sorted(row.ports.all(), key=lambda p: p.id)]
    node.links = _links(row, by_name, by_id)
    return node


def _mode_kind(mode: str, target: str | None) -> str:
    if target is not None:
        return MODE_CONTAINER
    if mode in (MODE_HOST, MODE_NONE):
        return mode
    return MODE_BRIDGE


def _links(row: Container, by_name: dict, by_id: dict) -> list[LinkEdge]:
    found = []
    for link in (row.host_config or {}).get("Links") or []:
        try:
            target, alias = legacy_links.parse(link)
        except BerthError:
            continue  # a malformed link was refused at create; an old row shows none
        joined = by_name.get(target) or by_id.get(target)
        if joined is not None:
            found.append(LinkEdge(target_id=joined.id, target_name=joined.name, alias=alias))
    return found
