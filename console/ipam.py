"""Address management as plain functions over ``ipaddress``: pools, gateways, the next free address.

The rows decide who holds an address (``Endpoint``'s unique constraint on
network and address); these functions only say which address to try::

    subnet 172.18.0.0/16   gateway 172.18.0.1   ip-range 172.18.5.0/24 (optional)
    handed out: 172.18.5.0, .1, ... lowest first, never the subnet's network
    or broadcast address, never the gateway

Validation follows moby's ValidateIPAM wording: every problem found, joined
under "invalid network config:".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Iterator

from runtime.errors import InvalidValue

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


def invalid(message: str, field: str = "ipam") -> InvalidValue:
    error = InvalidValue(field, message)
    error.args = (message,)
    return error


@dataclass
class Pool:
    """One network's IPv4 configuration, checked."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None


def _prefix(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _join(problems: list[str]) -> str:
    """moby's joined errors: one alone as it is, several as a "* " list."""
    if len(problems) == 1:
        return problems[0]
    return "* " + "\n* ".join(problem.replace("\n", "\n\t") for problem in problems)


def read_pool(subnet: str, gateway: str = "", ip_range: str = "") -> Pool:
    """A user's ``--subnet`` / ``--gateway`` / ``--ip-range``, checked as moby checks them."""
    problems = []
    network = _prefix(subnet)
    if network is None or "/" not in subnet:
        raise invalid(f"invalid network config:\ninvalid subnet {subnet}: invalid CIDR block notation")
    if network.version != 4:
        raise invalid(f"invalid network config:\ninvalid subnet {subnet}: Berth's networks are IPv4 only")
    if str(network) != _canonical(subnet):
        problems.append(f"invalid subnet {_canonical(subnet)}: it should be {network}")
    address_range = None
    if ip_range:
        address_range = _prefix(ip_range)
        if address_range is None or "/" not in ip_range:
            problems.append(f"invalid ip-range {ip_range}: invalid CIDR block notation")
        elif address_range.version != 4:
            problems.append(f"invalid ip-range {ip_range}: parent subnet is an IPv4 block")
            address_range = None
        else:
            if address_range.prefixlen < network.prefixlen:
                problems.append(f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {network}")
            if str(address_range) != _canonical(ip_range):
                problems.append(f"invalid ip-range {_canonical(ip_range)}: it should be {address_range}")
            if not network.overlaps(address_range):
                problems.append(f"invalid ip-range {ip_range}: parent subnet {network} doesn't contain ip-range")
    gateway_address = None
    if gateway:
        try:
            gateway_address = ipaddress.ip_address(gateway)
        except ValueError:
            problems.append(f"invalid gateway {gateway}: invalid address")
        else:
            if gateway_address.version != 4:
                problems.append(f"invalid gateway {gateway}: parent subnet is an IPv4 block")
            elif gateway_address not in network:
                problems.append(f"invalid gateway {gateway}: parent subnet {network} doesn't contain this address")
    if problems:
        raise invalid("invalid network config:\n" + _join(problems))
    if network.num_addresses < 4:
        raise invalid(f"invalid network config:\ninvalid subnet {network}: too small for a gateway and a container")
    return Pool(network, gateway_address or first_host(network), address_range)


def _canonical(text: str) -> str:
    """``text`` as an address/prefix written the standard way (what moby prints back)."""
    address, _, bits = text.partition("/")
    try:
        return f"{ipaddress.ip_address(address)}/{int(bits)}"
    except ValueError:
        return text


def first_host(subnet: IPv4Network | str) -> IPv4Address:
    network = ipaddress.ip_network(subnet)
    return network.network_address + 1


def overlapping(subnet: IPv4Network | str, others: Iterable[str]) -> str | None:
    """The first of ``others`` (subnets as text) that shares an address with ``subnet``."""
    network = ipaddress.ip_network(subnet)
    for other in others:
        if other and network.overlaps(ipaddress.ip_network(other)):
            return other
    return None


def candidates(subnet: str, gateway: str, ip_range: str = "", taken: Iterable[str] = ()) -> Iterator[IPv4Address]:
    """Addresses to hand out, lowest first: inside the range (the whole subnet without one),
    never the subnet's network or broadcast address, the gateway or anything ``taken``."""
    network = ipaddress.ip_network(subnet)
    pool = ipaddress.ip_network(ip_range) if ip_range else network
    excluded = {int(network.network_address), int(network.broadcast_address), int(ipaddress.ip_address(gateway))}
    excluded |= {int(ipaddress.ip_address(address)) for address in taken}
    first = max(int(pool.network_address), int(network.network_address))
    last = min(int(pool.broadcast_address), int(network.broadcast_address))
    for number in range(first, last + 1):
        if number not in excluded:
            yield IPv4Address(number)


def check_requested(address: str, subnet: str, gateway: str) -> str | None:
    """Why ``address`` cannot be asked for on this network, or None; moby's words where it has some."""
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return f"invalid IPv4 address: {address}"
    if wanted.version != 4 or wanted.is_unspecified:
        return f"invalid IPv4 address: {address}"
    network = ipaddress.ip_network(subnet)
    if wanted not in network:
        return f"no configured subnet or ip-range contain the IP address {address}"
    if wanted in (network.network_address, network.broadcast_address):
        return f"{address} is the network's own address ({'network' if wanted == network.network_address else 'broadcast'})"
    return None


def mac_address(address: str) -> str:
    """Docker's MAC for an address: 02:42 and the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.ip_address(address).packed)


def prefix_length(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen
