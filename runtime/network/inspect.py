"""What the kernel shows of one Networking's objects, as plain data: the facts drift is judged on.

``Networking.observe()`` gives the host's side (our bridges and veths by
their alias, our namespaces, the port maps' elements); this adds the
bridges listed in the table's @bridges set and, for each namespace asked
about, its interfaces and their IPv4 addresses::

    {"bridges": {"berth0": {"up": true, "addresses": ["172.17.0.1/16"]}},
     "nft_bridges": ["berth0"],
     "veths": {"vb3f9a0c1d2e4": {"master": "berth0", "up": true}},
     "netns": ["berth-3f9a0c1d2e4b"],
     "namespaces": {"/run/netns/berth-3f9a0c1d2e4b": {"present": true,
                    "interfaces": {"eth0": {"up": true, "addresses": ["172.17.0.2/16"]}}}},
     "ports": [{"owner", "protocol", "host_ip", "host_port", "container_ip", "container_port"}]}

Namespaces are entered with ``namespaces.netlink_socket_in`` (a thread
steps in, the process never forks), so this is safe in a prefork worker.
"""

from __future__ import annotations

from ..errors import NotFound
from . import links, nft


def kernel_facts(net, netns_paths: list[str]) -> dict:
    """The facts for ``net`` (a ``Networking``) and the namespaces at ``netns_paths``."""
    facts = net.observe()
    facts["nft_bridges"] = nft.bridge_devices(net.table)
    facts["namespaces"] = {path: namespace_facts(path) for path in netns_paths}
    return facts


def namespace_facts(netns_path: str) -> dict:
    """{"present": bool, "interfaces": {name: {"up", "addresses"}}} of one namespace."""
    if not links.is_netns(netns_path):
        return {"present": False, "interfaces": {}}
    try:
        with links.iproute(netns_path) as ns:
            interfaces = {
                link.get_attr("IFLA_IFNAME"): {"up": links.is_up(link),
                                               "addresses": links.ipv4_addresses(ns, link["index"])}
                for link in ns.get_links()
            }
    except NotFound:
        return {"present": False, "interfaces": {}}
    return {"present": True, "interfaces": interfaces}
