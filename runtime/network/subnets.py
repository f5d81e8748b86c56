"""Address pools: the first private subnet that no host route and no other network uses.

Docker's order: 172.17.0.0/16, then 172.18-31.0.0/16, then /20s of
192.168.0.0/16. A host that already runs Docker has docker0 on
172.17.0.0/16, so Berth's default network moves to the next free one.
"""

from __future__ import annotations

import ipaddress

from ..errors import Conflict

DEFAULT_POOLS = [f"172.{n}.0.0/16" for n in range(17, 32)] + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]


class NoFreeSubnet(Conflict):
    def __init__(self):
        super().__init__("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def pick_subnet(pools: list[str], used: list[str], routes: list[ipaddress.IPv4Network]) -> str:
    taken = [ipaddress.IPv4Network(u, strict=False) for u in used] + list(routes)
    for candidate in pools:
        network = ipaddress.IPv4Network(candidate)
        if not any(network.overlaps(other) for other in taken):
            return str(network)
    raise NoFreeSubnet()


def gateway_of(subnet: str) -> str:
    """The first host address, which the bridge itself gets."""
    return str(next(ipaddress.IPv4Network(subnet, strict=False).hosts()))
