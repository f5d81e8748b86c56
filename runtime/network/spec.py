"""What the networking layer is asked for, and the names every kernel object gets.

Every name derives from an owner's id, so observe() and gc() find everything
by name, as bocker does::

    endpoint 3f9a0c1d2e4b...  ->  host veth  vb3f9a0c1d2e4   (13 chars, under IFNAMSIZ)
    owner    7c1e5d...        ->  netns      /run/netns/<prefix>7c1e5d......
    owner    7c1e5d...        ->  nft elements with comment "7c1e5d..." (its published ports)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import InvalidValue

NETNS_DIR = "/run/netns"
VETH_PREFIX = "vb"
# The kernel's IFNAMSIZ is 16 with the terminating NUL.
MAX_DEVICE_NAME = 15
PROTOCOLS = ("tcp", "udp")
ANY_HOST_IP = "0.0.0.0"
# Names go into nft scripts between quotes: only characters that need no escaping there.
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class BridgeSpec:
    device: str            # "berth0", "br-<12 hex>" or a name the user chose (<= 15 chars)
    subnet: str            # "172.17.0.0/16"
    gateway: str           # "172.17.0.1", set on the bridge itself
    internal: bool = False   # no route out: no masquerade, forwarding to or from outside dropped
    isolated: bool = True    # traffic to or from other Berth bridges is dropped

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet, strict=False)

    def validate(self) -> None:
        check_device_name(self.device)
        try:
            network = self.network
            gateway = ipaddress.IPv4Address(self.gateway)
        except ValueError as exc:
            raise InvalidValue("subnet", str(exc)) from None
        if gateway not in network:
            raise InvalidValue("gateway", f"{self.gateway} is not in {self.subnet}")


@dataclass
class EndpointSpec:
    endpoint_id: str       # 64 hex; the host veth's name derives from it
    device: str            # the bridge
    address: str           # "172.17.0.2"
    prefix_length: int     # 16
    gateway: str
    mac: str = ""          # default: Docker's 02:42 followed by the four address bytes
    interface: str = "eth0"   # its name inside the container: eth0, eth1...
    default_route: bool = True

    @property
    def host_veth(self) -> str:
        return veth_name(self.endpoint_id)

    @property
    def mac_address(self) -> str:
        return self.mac or default_mac(self.address)


@dataclass
class PortSpec:
    protocol: str          # "tcp" | "udp"
    host_ip: str           # "0.0.0.0" or one host address such as "127.0.0.1"
    host_port: int
    container_ip: str
    container_port: int

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidValue("protocol", f"{self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        for name in ("host_port", "container_port"):
            if not 0 < int(getattr(self, name)) < 65536:
                raise InvalidValue("port", f"{getattr(self, name)} is not between 1 and 65535")
        for name in ("host_ip", "container_ip"):
            try:
                ipaddress.IPv4Address(getattr(self, name))
            except ValueError:
                raise InvalidValue("address", f"{getattr(self, name)!r} is not an IPv4 address") from None

    def overlaps(self, other: "PortSpec") -> bool:
        """Same protocol and port on addresses that meet: 0.0.0.0 meets every address."""
        if self.protocol != other.protocol or int(self.host_port) != int(other.host_port):
            return False
        return ANY_HOST_IP in (self.host_ip, other.host_ip) or self.host_ip == other.host_ip


def veth_name(endpoint_id: str) -> str:
    return VETH_PREFIX + endpoint_id[:11]


def default_mac(address: str) -> str:
    """Docker's rule: 02:42 then the IPv4 address, so a MAC tells its address at a glance."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(address).packed)


def check_device_name(name: str) -> None:
    if not _DEVICE.match(name or ""):
        raise InvalidValue("bridge name",
                           f"{name!r} must be 1 to {MAX_DEVICE_NAME} of [A-Za-z0-9_.-], starting with a letter or digit")


def check_owner_id(owner_id: str) -> None:
    if not _OWNER.match(owner_id or ""):
        raise InvalidValue("owner id", f"{owner_id!r} must be 1 to 64 of [A-Za-z0-9_.-]")
