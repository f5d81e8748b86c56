"""Bridges, veth pairs and namespaces through netlink (pyroute2), each step idempotent.

The recipe of one endpoint, as bocker runs it::

    [berth0 172.17.0.1/16] --master-- [vb3f9a0c1d2e4] ==veth== [eth0 172.17.0.2/16]  (in /run/netns/<ns>)
                                                                default via 172.17.0.1

The peer is created directly inside the namespace, so a half-made pair never
sits in the host's namespace under a temporary name, and deleting either the
host end or the namespace removes the whole pair.

Every link we make carries an alias (IFLA_IFALIAS, ``berth:<table>``): that,
not a name pattern, is how observe() and gc() tell ours from the host's.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import socket
from contextlib import contextmanager
from typing import Iterator

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pyroute2_netns

from ..errors import BerthError, Conflict, NotFound
from . import namespaces
from .spec import BridgeSpec, EndpointSpec

IFF_UP = 0x1
MAIN_TABLE = 254
TEMP_PEER_PREFIX = "vp"


@contextmanager
def iproute(netns_path: str | None = None) -> Iterator[IPRoute]:
    """A netlink socket in the host's namespace or in ``netns_path``; flags=0: a missing one is an error."""
    if netns_path is None:
        ipr = IPRoute(groups=0)
    else:
        ipr = IPRoute(fileno=namespaces.netlink_socket_in(netns_path), groups=0)
    try:
        yield ipr
    finally:
        ipr.close()


def find(ipr: IPRoute, name: str):
    """The link called ``name``, or None: one request (a lookup of its index first would be two)."""
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ERANGE):  # ERANGE: a name too long to exist
            return None
        raise


def kind(link) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else ""


def is_up(link) -> bool:
    return bool(link["flags"] & IFF_UP)


def ipv4_addresses(ipr: IPRoute, index: int) -> list[str]:
    return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index, family=socket.AF_INET)]


def ensure_addresses(ipr: IPRoute, index: int, wanted: list[str]) -> None:
    """Leave exactly ``wanted`` ("a.b.c.d/len") as the link's IPv4 addresses."""
    present = ipv4_addresses(ipr, index)
    for cidr in present:
        if cidr not in wanted:
            address, length = cidr.split("/")
            _ignore(ipr.addr, "del", index=index, address=address, prefixlen=int(length), codes=(errno.EADDRNOTAVAIL,))
    for cidr in wanted:
        if cidr not in present:
            address, length = cidr.split("/")
            _ignore(ipr.addr, "add", index=index, address=address, prefixlen=int(length), codes=(errno.EEXIST,))


def delete_link(name: str) -> bool:
    """Delete a link by name; True if there was one."""
    with iproute() as ipr:
        link = find(ipr, name)
        if link is None:
            return False
        return _ignore(ipr.link, "del", index=link["index"], codes=(errno.ENODEV,))


# --- bridges -------------------------------------------------------------------------


def ensure_bridge(spec: BridgeSpec, alias: str) -> None:
    """Bridge up, with the gateway as its only IPv4 address and a MAC of its own."""
    prefix = f"{spec.gateway}/{spec.network.prefixlen}"
    with iproute() as ipr:
        link = find(ipr, spec.device)
        if link is None:
            # A fixed MAC: else the bridge takes its lowest port's, and the gateway's MAC changes under the containers.
            _ignore(ipr.link, "add", ifname=spec.device, kind="bridge", address=random_mac(), codes=(errno.EEXIST,))
            link = find(ipr, spec.device)
        if link is None or kind(link) != "bridge":
            raise Conflict(f"{spec.device} exists on the host and is not a bridge")
        index = link["index"]
        if link.get_attr("IFLA_IFALIAS") != alias:
            ipr.link("set", index=index, ifalias=alias)
        ensure_addresses(ipr, index, [prefix])
        if not is_up(link):
            ipr.link("set", index=index, state="up")


def random_mac() -> str:
    first = (secrets.randbits(8) & 0xFC) | 0x02   # unicast, locally administered
    return ":".join(f"{b:02x}" for b in [first, *secrets.token_bytes(5)])


# --- veth pairs ----------------------------------------------------------------------


def attach(netns_path: str, endpoint: EndpointSpec, alias: str) -> tuple[str, str]:
    host_name = endpoint.host_veth
    if not is_netns(netns_path):
        raise NotFound(f"network namespace {netns_path} not found")
    with iproute() as ipr:
        bridge = find(ipr, endpoint.device)
        if bridge is None or kind(bridge) != "bridge":
            raise NotFound(f"bridge {endpoint.device} not found")
        for _ in range(2):
            host = _ensure_pair(ipr, host_name, TEMP_PEER_PREFIX + endpoint.endpoint_id[:11], netns_path)
            if configure_peer(netns_path, endpoint, host.get_attr("IFLA_LINK"), host["index"]):
                break
            # Our host end, but its peer is not in this namespace (a namespace made anew): start over.
            delete_link(host_name)
        else:
            raise BerthError(f"could not wire {host_name} into {netns_path}")
        index = host["index"]
        if host.get_attr("IFLA_MASTER") != bridge["index"] or host.get_attr("IFLA_IFALIAS") != alias:
            ipr.link("set", index=index, master=bridge["index"], ifalias=alias)
        # Hairpin: a container reaching its own published port through the host comes back out the same port.
        ipr.brport("set", index=index, mode=1)
        if not is_up(host):
            ipr.link("set", index=index, state="up")
    return host_name, endpoint.interface


def _ensure_pair(ipr: IPRoute, host_name: str, peer_name: str, netns_path: str):
    host = find(ipr, host_name)
    if host is None:
        _ignore(ipr.link, "add", ifname=host_name, kind="veth",
                peer={"ifname": peer_name, "net_ns_fd": netns_path}, codes=(errno.EEXIST,))
        host = find(ipr, host_name)
    if host is None or kind(host) != "veth":
        raise Conflict(f"{host_name} exists on the host and is not a veth")
    return host


def configure_peer(netns_path: str, endpoint: EndpointSpec, peer_index: int, host_index: int) -> bool:
    """Name, MAC, address, up and default route of the peer; False if the peer is not in this namespace."""
    with iproute(netns_path) as ns:
        try:
            peer = ns.get_links(peer_index)[0]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
        if kind(peer) != "veth" or peer.get_attr("IFLA_LINK") != host_index:
            return False
        if peer.get_attr("IFLA_IFNAME") != endpoint.interface:
            if find(ns, endpoint.interface) is not None:
                raise Conflict(f"{endpoint.interface} already exists in {netns_path}")
            ns.link("set", index=peer_index, state="down")
            ns.link("set", index=peer_index, ifname=endpoint.interface)
        if peer.get_attr("IFLA_ADDRESS") != endpoint.mac_address:
            ns.link("set", index=peer_index, address=endpoint.mac_address)
        ensure_addresses(ns, peer_index, [f"{endpoint.address}/{endpoint.prefix_length}"])
        ns.link("set", index=peer_index, state="up")
        _loopback_up(ns)
        if endpoint.default_route:
            ns.route("replace", dst="0.0.0.0/0", gateway=endpoint.gateway, oif=peer_index)
    return True


# --- namespaces ----------------------------------------------------------------------


def create_netns(path: str) -> None:
    if os.path.exists(path) and not is_netns(path):
        os.unlink(path)   # an empty mount point left by a create that was interrupted
    if not os.path.exists(path):
        try:
            namespaces.create_netns(path)
        except FileExistsError:
            pass
    with iproute(path) as ns:
        _loopback_up(ns)


def remove_netns(path: str) -> bool:
    try:
        pyroute2_netns.remove(path)
    except FileNotFoundError:
        return False
    return True


def is_netns(path: str) -> bool:
    """A bind mount of a network namespace lives on nsfs, as /proc/self/ns/net does."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except FileNotFoundError:
        return False


def _loopback_up(ns: IPRoute) -> None:
    lo = find(ns, "lo")
    if lo is not None and not is_up(lo):
        ns.link("set", index=lo["index"], state="up")


# --- what the kernel has -------------------------------------------------------------


def owned_links(alias: str) -> dict[str, dict]:
    """Links that carry our alias: {name: {"kind", "up", "master", "addresses"}}."""
    found = {}
    with iproute() as ipr:
        links = ipr.get_links()
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        for link in links:
            if link.get_attr("IFLA_IFALIAS") != alias:
                continue
            found[link.get_attr("IFLA_IFNAME")] = {
                "kind": kind(link),
                "up": is_up(link),
                "master": names.get(link.get_attr("IFLA_MASTER")),
                "addresses": ipv4_addresses(ipr, link["index"]),
            }
    return found


def host_routes() -> list[ipaddress.IPv4Network]:
    """Destinations of the main table's IPv4 routes on every interface, the default route left out."""
    with iproute() as ipr:
        routes = ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE)
    return [
        ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
        for r in routes
        if r["dst_len"] > 0 and r.get_attr("RTA_DST")
    ]


def _ignore(call, *args, codes: tuple[int, ...], **kwargs) -> bool:
    """Run one netlink request; an error in ``codes`` (exists, gone) means it was already done: False."""
    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code in codes:
            return False
        raise
    return True
