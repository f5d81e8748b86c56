"""What the kernel must show for the rows: bridges, namespaces, veths, published ports.

The worker's half of networking (its tasks, the exit watcher and the
reconcile call these); the rules that decide the rows are in
``network_services``::

    /run/netns/<prefix><id12>
    [ctr eth0 172.17.0.2] --veth-- [berth0 172.17.0.1] --masquerade--> out
                                        ^
    [host :8080, 127.0.0.1:8080, other containers] --DNAT 8080->172.17.0.2:80

Every kernel object is named from an id (endpoint id, container id, bridge
device) and every call of the networking layer is idempotent, so a start, a
stop or a reconcile may run twice. A start whose network cannot be set up
undoes all of it: no veth, namespace, nft element or claimed host port is
left behind.

A container's own lock (``locks/<id>.net``) orders set-up with start and
the release of its ports at exit: ports are released only while PID 1 is
not running, so an exit noticed late never unpublishes a later start.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from runtime import NETWORK_HOST, NETWORK_NETNS, NETWORK_NONE, NetworkSpec
from runtime.errors import BerthError, Conflict, NoSuchContainer

from .docker_config import container_network_target
from .errors import NetworkingFailed
from .models import Container, Endpoint, Network, PortMapping
from .runtime_access import get_networking, get_runtime, networking_api
from .state import locks_dir

log = logging.getLogger(__name__)

PORT_ATTEMPTS = 20


@contextmanager
def network_lock(container_id: str):
    """Serialise set-up, release and tear-down of one container's network across processes."""
    directory = locks_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / f"{container_id}.net", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def collection_lock(exclusive: bool):
    """Kernel objects are made under it shared (a start's namespace, veths and ports); the reconcile's
    last look and its gc hold it alone, so nothing is made between what it saw and what it removes."""
    directory = locks_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / "network.collect", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


# --- reading the rows --------------------------------------------------------------


def network_mode(row: Container) -> str:
    return (row.host_config or {}).get("NetworkMode") or "bridge"


def has_own_namespace(row: Container) -> bool:
    """Bridge and user networks: a namespace the networking layer makes (host, none and
    container modes have none of their own from it)."""
    mode = network_mode(row)
    return mode not in ("host", "none") and container_network_target(mode) is None


def endpoints_of(row: Container) -> list[Endpoint]:
    return list(Endpoint.objects.filter(container_id=row.id).select_related("network").order_by("id"))


def bridge_spec(network: Network):
    return networking_api().BridgeSpec(device=network.bridge_name, subnet=network.subnet, gateway=network.gateway,
                                       internal=network.internal, isolated=True)


def _dns(row: Container, endpoints: list[Endpoint]) -> list[str] | None:
    """On a user-defined network the embedded DNS at its gateway answers first (names of the
    network's containers, then the host's resolvers); elsewhere the runtime's default stays."""
    gateways = [e.network.gateway for e in endpoints if e.network.user_defined and e.network.gateway]
    if not gateways:
        return None
    return [gateways[0], *((row.host_config or {}).get("Dns") or [])]


def _addresses(endpoints: list[Endpoint]) -> list[str]:
    return [e.ip_address for e in endpoints if e.ip_address]


def _joined(target_id: str, must_run: bool) -> NetworkSpec:
    """The network of ``container:<id>``: that container's namespace (the host's for a host-mode one)."""
    try:
        target = Container.objects.get(pk=target_id)
    except Container.DoesNotExist:
        raise NoSuchContainer(target_id) from None
    mode = network_mode(target)
    if mode == "host":
        return NetworkSpec(mode=NETWORK_HOST)
    nested = container_network_target(mode)
    if nested is not None:
        return _joined(nested, must_run)
    if not must_run:
        return NetworkSpec(mode=NETWORK_NETNS, netns_path=target.sandbox_key or get_networking().netns_path(target.id))
    try:
        observed = get_runtime().get(target.id)
    except NoSuchContainer:
        observed = None
    if observed is None or not observed.running:
        raise Conflict(f"cannot join network of a non running container: {target.id}")
    if mode == "none":
        # runc made that namespace; it lives as long as PID 1.
        return NetworkSpec(mode=NETWORK_NETNS, netns_path=f"/proc/{observed.state.pid}/ns/net")
    return NetworkSpec(mode=NETWORK_NETNS, netns_path=target.sandbox_key or get_networking().netns_path(target.id))


def planned_network(row: Container) -> tuple[NetworkSpec, list[str] | None]:
    """What a start will hand the runtime, without touching the kernel (create writes its bundle with it)."""
    mode = network_mode(row)
    if mode == "host":
        return NetworkSpec(mode=NETWORK_HOST), None
    if mode == "none":
        return NetworkSpec(mode=NETWORK_NONE), None
    target = container_network_target(mode)
    if target is not None:
        return _joined(target, must_run=False), None
    endpoints = endpoints_of(row)
    return (NetworkSpec(mode=NETWORK_NETNS, netns_path=get_networking().netns_path(row.id),
                        addresses=_addresses(endpoints)), _dns(row, endpoints))


# --- start: set up, or undo everything --------------------------------------------------


def set_up(row: Container) -> tuple[NetworkSpec | None, list[str] | None, "Wiring | None"]:
    """What the runtime needs before ``runc create`` (the namespace, the claimed host ports), and the
    rest as a ``Wiring`` for the runtime to run while it creates PID 1: the bridges up, a veth per
    endpoint (eth0, eth1... in endpoint order), then the published ports. Returns the runtime's NetworkSpec,
    resolvers (None: what create wrote stays, for host and none) and the Wiring (None: nothing to wire).

    NetworkingFailed, with nothing left, when the first part cannot be made; the Wiring raises
    NetworkingFailed too, and then the caller undoes everything (``undo``)."""
    mode = network_mode(row)
    target = container_network_target(mode)
    if mode in ("host", "none"):
        return None, None, None
    if target is not None:
        return _joined(target, must_run=True), None, None
    net = get_networking()
    endpoints = endpoints_of(row)
    publishing = False
    try:
        bridges = [bridge_spec(network) for network in {e.network_id: e.network for e in endpoints}.values()]
        with collection_lock(exclusive=False):
            path, wires = _prepare(net, row, endpoints)
        publishing = True
        ports = _claim_ports(net, row, endpoints)
    except Exception as error:  # netlink's, nft's, ours: whatever it was, nothing may stay
        undo(row.id, endpoints)
        raise _failure(row, endpoints, error, publishing) from error
    spec = NetworkSpec(mode=NETWORK_NETNS, netns_path=path, addresses=_addresses(endpoints))
    return spec, _dns(row, endpoints), Wiring(net, row, endpoints, path, wires, ports, bridges)


def _failure(row: Container, endpoints: list[Endpoint], error: Exception, publishing: bool) -> NetworkingFailed:
    """Docker's words; a host port that is taken is the endpoint's "external connectivity"."""
    if publishing and isinstance(error, Conflict):
        endpoint = endpoints[0].endpoint_id if endpoints else ""
        return NetworkingFailed(f"failed to set up container networking: driver failed programming external "
                                f"connectivity on endpoint {row.name} ({endpoint}): {error}")
    return NetworkingFailed(f"failed to set up container networking: {error}")


def _prepare(net, row: Container, endpoints: list[Endpoint]) -> tuple[str, list]:
    """The namespace made (runc joins it); each endpoint's spec. The bridges are the Wiring's: nothing
    before ``runc create`` needs them."""
    path = net.create_netns(row.id)
    Container.objects.filter(pk=row.id).update(sandbox_key=path)
    wires, routed = [], False
    for index, endpoint in enumerate(endpoints):
        default_route = not routed and not endpoint.network.internal
        routed = routed or default_route
        wires.append(_endpoint_spec(endpoint, f"eth{index}", default_route))
    return path, wires


@dataclass
class Wiring:
    """The kernel's part of a start, run beside ``runc create`` (another thread: no database while it
    runs): the bridges up, a veth per endpoint, then the published ports. ``store`` writes the veths'
    names after."""

    net: object
    row: Container
    endpoints: list[Endpoint]
    path: str
    wires: list
    ports: list
    bridges: list = field(default_factory=list)
    names: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self) -> None:
        publishing = False
        try:
            with collection_lock(exclusive=False):
                for bridge in self.bridges:
                    self.net.ensure_bridge(bridge)
                self.names = [self.net.attach(self.path, wire) for wire in self.wires]
                publishing = True
                if self.ports:
                    self.net.publish(self.row.id, self.ports)
        except Exception as error:
            raise _failure(self.row, self.endpoints, error, publishing) from error

    def store(self) -> None:
        for endpoint, (host_veth, inside) in zip(self.endpoints, self.names):
            Endpoint.objects.filter(pk=endpoint.pk).update(veth_host=host_veth, veth_container=inside)
            endpoint.veth_host, endpoint.veth_container = host_veth, inside


def _endpoint_spec(endpoint: Endpoint, interface: str, default_route: bool):
    network = endpoint.network
    return networking_api().EndpointSpec(
        endpoint_id=endpoint.endpoint_id, device=network.bridge_name, address=endpoint.ip_address,
        prefix_length=endpoint.prefix_length, gateway=network.gateway, mac=endpoint.mac_address,
        interface=interface, default_route=default_route)


def _attach(net, path: str, endpoint: Endpoint, interface: str, default_route: bool) -> None:
    host_veth, inside = net.attach(path, _endpoint_spec(endpoint, interface, default_route))
    Endpoint.objects.filter(pk=endpoint.pk).update(veth_host=host_veth, veth_container=inside)
    endpoint.veth_host, endpoint.veth_container = host_veth, inside


def _claim_ports(net, row: Container, endpoints: list[Endpoint]) -> list:
    """Claim every mapping's host port (the database decides between containers); the specs for one
    atomic publish (the kernel layer refuses ports some process holds)."""
    mappings = list(PortMapping.objects.filter(container_id=row.id).order_by("id"))
    reachable = [e for e in endpoints if e.ip_address and not e.network.internal]
    if not mappings or not reachable:
        return []
    container_ip = reachable[0].ip_address
    return [networking_api().PortSpec(protocol=mapping.protocol, host_ip=mapping.host_ip,
                                      host_port=_claim(net, mapping), container_ip=container_ip,
                                      container_port=mapping.container_port)
            for mapping in mappings]


def _claim(net, mapping: PortMapping) -> int:
    if mapping.requested_port:
        try:
            with transaction.atomic():
                PortMapping.objects.filter(pk=mapping.pk).update(host_port=mapping.requested_port)
        except IntegrityError:
            raise Conflict(f"Bind for {mapping.host_ip}:{mapping.requested_port} failed: "
                           "port is already allocated") from None
        return mapping.requested_port
    taken = set(PortMapping.objects.filter(host=mapping.host, protocol=mapping.protocol, host_port__isnull=False)
                .exclude(pk=mapping.pk).values_list("host_port", flat=True))
    for _ in range(PORT_ATTEMPTS):
        port = net.free_port(mapping.protocol, mapping.host_ip, taken=set(taken))
        try:
            with transaction.atomic():
                PortMapping.objects.filter(pk=mapping.pk).update(host_port=port)
            return port
        except IntegrityError:
            taken.add(port)  # another container claimed it since we looked
    raise BerthError(f"no free host port for {mapping.container_port}/{mapping.protocol}")


def undo(container_id: str, endpoints: list[Endpoint]) -> None:
    """Everything a start made, removed; each step tried even when one fails."""
    net = get_networking()
    steps = [("unpublish", lambda: net.unpublish(container_id))]
    steps += [(f"detach {e.endpoint_id[:12]}", lambda e=e: net.detach(e.endpoint_id)) for e in endpoints]
    steps.append(("remove netns", lambda: net.remove_netns(container_id)))
    for what, step in steps:
        try:
            step()
        except Exception:
            log.exception("container %s: %s failed while undoing its network", container_id, what)
    PortMapping.objects.filter(container_id=container_id).update(host_port=None)
    Endpoint.objects.filter(container_id=container_id).update(veth_host="", veth_container="")
    Container.objects.filter(pk=container_id).update(sandbox_key="")


# --- stop, exit, remove -----------------------------------------------------------------


def release_ports(container_id: str) -> bool:
    """After PID 1 ended: its published ports go (Docker frees them at stop). True if any went.

    Left alone while it runs (a start came in between). When the kernel layer
    fails, the rows keep the ports claimed, so no other container gets a port
    still forwarded here; the reconcile retries.
    """
    if not PortMapping.objects.filter(container_id=container_id, host_port__isnull=False).exists():
        return False
    with network_lock(container_id):
        if _running(container_id):
            return False
        try:
            get_networking().unpublish(container_id)
        except Exception:
            log.exception("could not unpublish the ports of container %s", container_id)
            return False
        PortMapping.objects.filter(container_id=container_id).update(host_port=None)
    return True


def _joined_by_others(row: Container) -> bool:
    """Does another container use this one's namespace (``--network container:``)? Create stores the mode
    with the full id of the container joined."""
    return Container.objects.filter(host_config__NetworkMode=f"container:{row.id}").exclude(pk=row.id).exists()


def tear_down(row: Container) -> None:
    """Remove: its ports, veths and namespace go (its addresses go with its Endpoint rows)."""
    endpoints = endpoints_of(row)
    if not (endpoints or row.sandbox_key or PortMapping.objects.filter(container_id=row.id).exists()):
        (locks_dir() / f"{row.id}.net").unlink(missing_ok=True)
        return
    net = get_networking()
    with network_lock(row.id):
        net.release(row.id, [endpoint.endpoint_id for endpoint in endpoints],
                    netns=bool(has_own_namespace(row) or row.sandbox_key), shared=_joined_by_others(row))
        PortMapping.objects.filter(container_id=row.id).update(host_port=None)
    (locks_dir() / f"{row.id}.net").unlink(missing_ok=True)


# --- connect and disconnect while running --------------------------------------------------


def connect(row: Container, endpoint: Endpoint) -> None:
    """A running container gains an interface on ``endpoint``'s network: the next free ethN."""
    net = get_networking()
    with network_lock(row.id):
        net.ensure_bridge(bridge_spec(endpoint.network))
        others = [e for e in endpoints_of(row) if e.pk != endpoint.pk]
        used = {e.veth_container for e in others}
        index = next(i for i in range(len(others) + 1) if f"eth{i}" not in used)
        routed = any(e.veth_container and not e.network.internal for e in others)
        path = row.sandbox_key or net.netns_path(row.id)
        with collection_lock(exclusive=False):
            _attach(net, path, endpoint, f"eth{index}", default_route=not routed and not endpoint.network.internal)


def disconnect(row: Container, endpoint: Endpoint) -> None:
    if not endpoint.veth_host and not row.sandbox_key:
        return  # never wired: nothing in the kernel
    with network_lock(row.id):
        get_networking().detach(endpoint.endpoint_id)


# --- networks ------------------------------------------------------------------------------


def ensure_bridge(network: Network) -> None:
    with collection_lock(exclusive=False):
        get_networking().ensure_bridge(bridge_spec(network))


def remove_bridge(device: str) -> None:
    if device:
        get_networking().remove_bridge(device)


def pick_subnet(used: list[str]) -> str:
    return get_networking().pick_subnet(list(used))


# --- reconcile --------------------------------------------------------------------------------


def reconcile(host: str) -> list[str]:
    """After a reboot or a hand that removed things: make again what running containers' rows
    expect (bridges, veths, published ports), release ports of stopped ones, and have the
    networking layer collect everything no row owns. What it removed, as its gc says."""
    try:
        net = get_networking()
    except BerthError as error:
        log.warning("reconcile: %s", error)
        return []
    # The kernel first, then the rows: rows are written before their kernel objects, so whatever is
    # made after this look has a row the query below may miss, and is kept (``_made_since``).
    before = net.observe()
    bridges = []
    for network in Network.objects.filter(driver=Network.DRIVER_BRIDGE).exclude(subnet="").exclude(bridge_name=""):
        try:
            net.ensure_bridge(bridge_spec(network))
        except Exception:
            log.exception("reconcile: could not make the bridge %s of network %s", network.bridge_name, network.name)
        bridges.append(network.bridge_name)
    rows = list(Container.objects.filter(host=host))
    owners, endpoint_ids, publishing, republish = [], [], [], []
    for row in rows:
        if not has_own_namespace(row):
            continue
        owners.append(row.id)
        endpoints = endpoints_of(row)
        endpoint_ids += [e.endpoint_id for e in endpoints]
        try:
            with network_lock(row.id):  # a start in the middle of its set-up has published, not yet run
                running = _running(row.id)
            if not running:
                release_ports(row.id)
            elif _stray_ports(row, before):
                republish.append((row, endpoints))  # all of its elements go with the gc, then its own again
            elif _restore(net, row, endpoints):
                publishing.append(row.id)
        except Exception:
            log.exception("reconcile of the network of container %s failed", row.id)
    with collection_lock(exclusive=True):
        made, veths, namespaces, ports = _made_since(net, before)
        removed = list(net.gc(bridges=bridges + made, endpoint_ids=endpoint_ids + veths,
                              netns_owner_ids=owners + namespaces,
                              port_owners=publishing + [p for p in ports if p not in {r.id for r, _ in republish}]))
    for row, endpoints in republish:
        try:
            _restore(net, row, endpoints)
        except Exception:
            log.exception("reconcile: could not publish the ports of container %s again", row.id)
    return removed


def _stray_ports(row: Container, before: dict) -> bool:
    """Does the port map hold elements of this container that none of its mappings names? A start
    killed between the map's transaction and the port registry's record leaves them, and the registry,
    which unpublish goes by, does not know them: only the gc, which reads the map, removes them."""
    wanted = {(m.protocol, m.host_ip, m.host_port)
              for m in PortMapping.objects.filter(container_id=row.id, host_port__isnull=False)}
    seen = {(p["protocol"], p["host_ip"], int(p["host_port"])) for p in before.get("ports", ()) if p["owner"] == row.id}
    return bool(seen - wanted)


def _made_since(net, before: dict) -> tuple[list[str], list[str], list[str], list[str]]:
    """Bridges, veths, namespaces and port owners the kernel shows now but did not at ``before``: made
    meanwhile for rows the reconcile did not see (a network created, a container started). As gc's
    keep lists: a veth by the part of its endpoint id in its name, a namespace by the part of its owner id."""
    now = net.observe()
    veth_name = getattr(networking_api(), "veth_name", None)
    veth_prefix = veth_name("0" * 11)[:-11] if veth_name else ""
    bridges = list(set(now.get("bridges", ())) - set(before.get("bridges", ())))
    veths = [name[len(veth_prefix):] for name in set(now.get("veths", ())) - set(before.get("veths", ()))]
    namespaces = [name[len(net.netns_prefix):] for name in set(now.get("netns", ())) - set(before.get("netns", ()))]
    ports = list({p["owner"] for p in now.get("ports", ())} - {p["owner"] for p in before.get("ports", ())})
    return bridges, veths, namespaces, ports


def _running(container_id: str) -> bool:
    """The kernel's word, not the row's (a row may lag an exit nobody has stored yet)."""
    try:
        return get_runtime().get(container_id).running
    except NoSuchContainer:
        return False


def _restore(net, row: Container, endpoints: list[Endpoint]) -> bool:
    """A running container's veths and ports, made again where the kernel lost them. True if it publishes."""
    path = row.sandbox_key or net.netns_path(row.id)
    if not os.path.exists(path):
        log.warning("container %s runs but its namespace %s is gone: its network cannot be restored", row.id, path)
        return False
    with network_lock(row.id):
        routed = False
        for index, endpoint in enumerate(endpoints):
            default_route = not routed and not endpoint.network.internal
            routed = routed or default_route
            _attach(net, path, endpoint, endpoint.veth_container or f"eth{index}", default_route)
        mappings = list(PortMapping.objects.filter(container_id=row.id, host_port__isnull=False).order_by("id"))
        reachable = [e for e in endpoints if e.ip_address and not e.network.internal]
        if not mappings or not reachable:
            return False
        api = networking_api()
        try:
            net.publish(row.id, [api.PortSpec(protocol=m.protocol, host_ip=m.host_ip, host_port=m.host_port,
                                              container_ip=reachable[0].ip_address, container_port=m.container_port)
                                 for m in mappings])
        except Conflict as error:
            log.warning("container %s: its ports cannot be published again: %s", row.id, error)
    return True
