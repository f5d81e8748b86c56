"""Bridge networking on the host's kernel: bridges, veth pairs, namespaces, nftables.

What Docker's bridge driver does, without a userland proxy: the console
builds the specs from its models, a worker calls ``Networking`` and stores
what ``observe()`` shows. Hands a prepared namespace to the container
runtime through ``NetworkSpec(mode="netns", netns_path=...)``.
"""

from ..errors import PortAllocated
from .networking import Networking
from .nft import NftError
from .spec import BridgeSpec, EndpointSpec, PortSpec, default_mac, veth_name
from .subnets import DEFAULT_POOLS, NoFreeSubnet, gateway_of

__all__ = [
    "BridgeSpec", "DEFAULT_POOLS", "EndpointSpec", "Networking", "NftError", "NoFreeSubnet",
    "PortAllocated", "PortSpec", "default_mac", "gateway_of", "veth_name",
]
