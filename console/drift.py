"""Drift: where the kernel no longer shows what the rows expect, or shows what no row owns.

The worker reads the kernel (``tasks.inspect_network_state``, over
``runtime.network.inspect``); ``compare`` puts that beside the database's
picture (``topology.gather``)::

    rows expect                          kernel shows             drift
    network br-1a2b (10.0.0.1/24)   vs   bridge up, address    -> nothing
    endpoint of web on br-1a2b      vs   no vb3f9a0c1d2e4      -> veth_missing
    mapping 0.0.0.0:43000 of web    vs   no element in @ports  -> port_missing
    (nobody)                        vs   bridge bt-old0        -> bridge_unowned

Only running containers are expected to be wired; objects that belong to a
known endpoint or container are never "unexpected" (the reconcile keeps
them). ``repair`` runs the worker's reconcile, which remakes what is missing
and removes what no row owns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings

from runtime.errors import BerthError

from . import tasks
from .operations import call, operation
from .topology import MODE_BRIDGE, Topology

MISSING, UNEXPECTED = "missing", "unexpected"


@dataclass
class Drift:
    kind: str              # bridge_missing, bridge_down, veth_missing, veth_wrong_bridge, ...
    problem: str           # missing or unexpected
    message: str
    subject: str = ""      # the kernel object: a device name, a namespace, "tcp 0.0.0.0:43000"
    network_id: str = ""
    container_id: str = ""
    endpoint_id: str = ""


@dataclass
class DriftReport:
    """What a check found; ``error`` when the kernel could not be asked (then ``items`` says nothing)."""

    checked: bool
    items: list[Drift]
    error: str = ""

    @property
    def clean(self) -> bool:
        return self.checked and not self.items

    def containers(self) -> set[str]:
        return {d.container_id for d in self.items if d.container_id}

    def networks(self) -> set[str]:
        return {d.network_id for d in self.items if d.network_id}

    def endpoints(self) -> set[str]:
        return {d.endpoint_id for d in self.items if d.endpoint_id}

    def as_data(self) -> dict:
        return {"checked": self.checked, "error": self.error, "items": [asdict(d) for d in self.items]}


NOT_CHECKED = DriftReport(checked=False, items=[])


# --- asking the kernel, and repairing -------------------------------------------------------------


def check(topology: Topology) -> DriftReport:
    """Ask this host's worker what the kernel has and compare; an unreachable worker is said, not raised."""
    try:
        facts = call(tasks.inspect_network_state, topology.host)
    except BerthError as error:
        return DriftReport(checked=False, items=[], error=str(error))
    return DriftReport(checked=True, items=compare(topology, facts))


def repair(user, source: str = "web", host: str | None = None) -> list[str]:
    """The reconcile (``tasks.reconcile_network``): remake what rows expect, remove what none owns.

    Audited as ``network.repair``; what the collection removed, as the kernel layer says it.
    """
    host = host or settings.BERTH_HOST
    with operation("network.repair", user, source, name=host) as op:
        removed = call(tasks.reconcile_network, host) or []
        op.detail = {"removed": removed}
    return removed


# --- comparing --------------------------------------------------------------------------------------


def compare(topology: Topology, facts: dict) -> list[Drift]:
    """Every difference between the rows' picture and the worker's facts (``runtime.network.inspect``)."""
    return [*_bridges(topology, facts), *_endpoints(topology, facts), *_ports(topology, facts),
            *_unowned(topology, facts)]


def _bridges(topology: Topology, facts: dict) -> list[Drift]:
    found = []
    for network in topology.bridges:
        if not network.device or not network.subnet:
            continue  # the default network before its first use has no bridge yet
        bridge = facts.get("bridges", {}).get(network.device)
        where = dict(subject=network.device, network_id=network.id)
        if bridge is None:
            found.append(Drift("bridge_missing", MISSING, f"bridge {network.device} of network {network.name} "
                                                          f"is missing", **where))
            continue
        if not bridge.get("up"):
            found.append(Drift("bridge_down", MISSING, f"bridge {network.device} of network {network.name} is down",
                               **where))
        prefix = network.subnet.rsplit("/", 1)[-1]
        if network.gateway and f"{network.gateway}/{prefix}" not in bridge.get("addresses", []):
            found.append(Drift("bridge_address_missing", MISSING,
                               f"bridge {network.device} lacks its gateway address {network.gateway}/{prefix}",
                               **where))
    return found


def expected_veth(attachment) -> str:
    return attachment.veth or "vb" + attachment.endpoint_id[:11]


def _endpoints(topology: Topology, facts: dict) -> list[Drift]:
    found = []
    veths = facts.get("veths", {})
    namespaces = facts.get("namespaces", {})
    for container in topology.containers:
        if container.mode != MODE_BRIDGE or not container.running:
            continue
        namespace = namespaces.get(container.sandbox) if container.sandbox else None
        if container.sandbox and namespace is not None and not namespace.get("present"):
            found.append(Drift("netns_missing", MISSING, f"the network namespace {container.sandbox} of "
                                                         f"{container.name} is missing",
                               subject=container.sandbox, container_id=container.id))
        for attachment in container.attachments:
            found += _endpoint(topology, container, attachment, veths, namespace)
    return found


def _endpoint(topology: Topology, container, attachment, veths: dict, namespace: dict | None) -> list[Drift]:
    network = topology.network(attachment.network_id)
    device = network.device if network else ""
    veth = expected_veth(attachment)
    where = dict(container_id=container.id, network_id=attachment.network_id, endpoint_id=attachment.endpoint_id)
    found = []
    seen = veths.get(veth)
    if seen is None:
        found.append(Drift("veth_missing", MISSING, f"veth {veth} of {container.name} on {device} is missing",
                           subject=veth, **where))
    elif seen.get("master") != device:
        found.append(Drift("veth_wrong_bridge", MISSING, f"veth {veth} of {container.name} is on "
                                                         f"{seen.get('master') or 'no bridge'}, not {device}",
                           subject=veth, **where))
    if namespace and namespace.get("present") and attachment.interface and attachment.address:
        interface = namespace.get("interfaces", {}).get(attachment.interface)
        if interface is None:
            found.append(Drift("interface_missing", MISSING, f"{attachment.interface} is missing in "
                                                             f"{container.name}", subject=attachment.interface,
                               **where))
        elif attachment.address not in interface.get("addresses", []):
            found.append(Drift("address_missing", MISSING, f"{attachment.address} is missing on "
                                                           f"{attachment.interface} in {container.name}",
                               subject=attachment.address, **where))
    return found


def _port_key(protocol: str, host_ip: str, host_port) -> tuple:
    return protocol, host_ip, int(host_port)


def _ports(topology: Topology, facts: dict) -> list[Drift]:
    present = {(_port_key(p["protocol"], p["host_ip"], p["host_port"]), p.get("owner", ""))
               for p in facts.get("ports", [])}
    found = []
    for container in topology.containers:
        if container.mode != MODE_BRIDGE or not container.running:
            continue
        for port in container.ports:
            if port.host_port is None:
                continue
            if (_port_key(port.protocol, port.host_ip, port.host_port), container.id) not in present:
                found.append(Drift("port_missing", MISSING, f"the port map element {port.text} of "
                                                            f"{container.name} is missing",
                                   subject=f"{port.protocol} {port.host_ip}:{port.host_port}",
                                   container_id=container.id))
    return found


def _unowned(topology: Topology, facts: dict) -> list[Drift]:
    devices = {n.device for n in topology.networks if n.device}
    found = [Drift("bridge_unowned", UNEXPECTED, f"bridge {name} is Berth's but no network owns it", subject=name)
             for name in sorted(set(facts.get("bridges", {})) | set(facts.get("nft_bridges", [])))
             if name not in devices]
    known = {expected_veth(a) for c in topology.containers for a in c.attachments}
    found += [Drift("veth_unexpected", UNEXPECTED, f"veth {name} (on {seen.get('master') or 'no bridge'}) belongs "
                                                   f"to no endpoint", subject=name)
              for name, seen in sorted(facts.get("veths", {}).items()) if name not in known]
    publishing = {c.id for c in topology.containers if c.running}
    for port in facts.get("ports", []):
        if port.get("owner") not in publishing:
            subject = f"{port['protocol']} {port['host_ip']}:{port['host_port']}"
            found.append(Drift("port_unexpected", UNEXPECTED, f"the port map element {subject} belongs to no "
                                                              f"running container", subject=subject))
    return found
