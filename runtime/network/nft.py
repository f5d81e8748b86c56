"""nftables: one table, and maps and sets where Docker has a rule per port or per bridge.

The whole ruleset is fixed; a new port or bridge is an element, never a rule,
so lookup and update cost do not grow with the number of published ports::

    [outside] --eth0--+                                    +--[ctr eth0] 172.17.0.2:80
                      |-- prerouting: fib daddr local --> published:
    [ctr on berth0] --+     dnat to ip daddr . l4proto . dport map @host_ports
    [host, 127.0.0.1] --- output: fib daddr local  -->      dnat to l4proto . dport map @ports

    postrouting: DNATed, from a bridge's subnet back out that bridge (hairpin) -> masquerade
                 127.0.0.0/8 going out a bridge (host loopback)                   -> masquerade
                 from a bridge's subnet staying on that bridge                    -> as is
                 from a subnet in @outbound (bridges that are not internal)       -> masquerade
    forward:     within one bridge accept; @internal to or from elsewhere drop;
                 between two Berth bridges where one is @isolated drop

Each change is one transaction through libnftables (what ``nft -f -`` runs):
the kernel applies all of it or nothing. Every transaction starts with the
skeleton (``add`` of what exists is a no-op and chains are flushed and
refilled), so the table comes back by itself after a reboot or a ``teardown``.

nft 1.0.6 has no ``destroy``: deleting an element that may be gone is written
as ``add`` (a no-op when it is there with the same data) followed by
``delete`` in the same transaction.
"""

from __future__ import annotations

import json
import os
import threading

import nftables

from ..errors import BerthError
from .spec import ANY_HOST_IP, BridgeSpec, PortSpec

FAMILY = "ip"

# name -> declaration. Maps hold published ports; sets describe the bridges.
SETS = {
    "ports": "map", "host_ports": "map",
    "bridges": "set", "intra": "set", "isolated": "set", "internal": "set", "subnets": "set", "outbound": "set",
}
_DECLARATIONS = {
    "ports": "type inet_proto . inet_service : ipv4_addr . inet_service;",
    "host_ports": "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
    "bridges": "type ifname;",
    "intra": "type ifname . ifname;",
    "isolated": "type ifname;",
    "internal": "type ifname;",
    # The postrouting hook knows no input interface: a bridge's traffic is told by its subnet.
    "subnets": "type ipv4_addr . ifname; flags interval;",
    "outbound": "type ipv4_addr; flags interval;",
}
# chain -> (base chain hook, rules)
CHAINS = {
    "published": (None, [
        "dnat to ip daddr . meta l4proto . th dport map @host_ports",
        "dnat to meta l4proto . th dport map @ports",
    ]),
    "prerouting": ("type nat hook prerouting priority dstnat; policy accept;", [
        "fib daddr type local jump published",
    ]),
    "output": ("type nat hook output priority -100; policy accept;", [
        "fib daddr type local jump published",
    ]),
    "postrouting": ("type nat hook postrouting priority srcnat; policy accept;", [
        "ct status dnat ip saddr . oifname @subnets masquerade",
        "ip saddr 127.0.0.0/8 oifname @bridges masquerade",
        "ip saddr . oifname @subnets return",
        "ip saddr @outbound masquerade",
    ]),
    "forward": ("type filter hook forward priority filter; policy accept;", [
        "iifname . oifname @intra accept",
        "iifname @internal drop",
        "oifname @internal drop",
        "iifname @isolated oifname @bridges drop",
        "iifname @bridges oifname @isolated drop",
    ]),
    # route_localnet is on for our bridges (host loopback -> container); nothing may come in for 127/8 through them.
    "guard": ("type filter hook prerouting priority raw; policy accept;", [
        "iifname @bridges ip daddr 127.0.0.0/8 drop",
    ]),
}


class NftError(BerthError):
    pass


# --- script pieces -------------------------------------------------------------------


def skeleton(table: str) -> list[str]:
    lines = [f"add table {FAMILY} {table}"]
    for name, kind in SETS.items():
        lines.append(f"add {kind} {FAMILY} {table} {name} {{ {_DECLARATIONS[name]} }}")
    for name, (hook, rules) in CHAINS.items():
        lines.append(f"add chain {FAMILY} {table} {name}" + (f" {{ {hook} }}" if hook else ""))
        lines.append(f"flush chain {FAMILY} {table} {name}")
        lines += [f"add rule {FAMILY} {table} {name} {rule}" for rule in rules]
    return lines


def teardown_script(table: str) -> list[str]:
    return [f"add table {FAMILY} {table}", f"delete table {FAMILY} {table}"]


def add_elements(table: str, name: str, elements: list[str]) -> list[str]:
    return [f"add element {FAMILY} {table} {name} {{ {e} }}" for e in elements]


def delete_elements(table: str, name: str, elements: list[str], keys: list[str] | None = None) -> list[str]:
    """Delete whether or not they are there: add (a no-op if present), then delete by key."""
    keys = keys if keys is not None else elements
    return add_elements(table, name, elements) + [
        f"delete element {FAMILY} {table} {name} {{ {k} }}" for k in keys
    ]


def port_map(port: PortSpec) -> str:
    return "ports" if port.host_ip == ANY_HOST_IP else "host_ports"


def port_key(port: PortSpec) -> str:
    key = f"{port.protocol} . {int(port.host_port)}"
    return key if port.host_ip == ANY_HOST_IP else f"{port.host_ip} . {key}"


def port_element(port: PortSpec, owner_id: str) -> str:
    return f'{port_key(port)} comment "{owner_id}" : {port.container_ip} . {int(port.container_port)}'


def add_ports(table: str, owner_id: str, ports: list[PortSpec]) -> list[str]:
    return [line for p in ports for line in add_elements(table, port_map(p), [port_element(p, owner_id)])]


def delete_ports(table: str, owner_id: str, ports: list[PortSpec]) -> list[str]:
    return [
        line for p in ports
        for line in delete_elements(table, port_map(p), [port_element(p, owner_id)], [port_key(p)])
    ]


def bridge_elements(spec: BridgeSpec) -> dict[str, list[str]]:
    """The elements that describe one bridge, by set."""
    device = f'"{spec.device}"'
    elements = {"bridges": [device], "intra": [f"{device} . {device}"], "isolated": [], "internal": [],
                "subnets": [f"{spec.network} . {device}"], "outbound": []}
    if spec.isolated:
        elements["isolated"].append(device)
    if spec.internal:
        elements["internal"].append(device)
    else:
        elements["outbound"].append(str(spec.network))
    return elements


def forget_bridge(table: str, device: str, subnets: list[str]) -> list[str]:
    """Every element a bridge may have; ``subnets`` are the subnets it has in @subnets now."""
    quoted = f'"{device}"'
    lines = []
    for name, elements in (("bridges", [quoted]), ("intra", [f"{quoted} . {quoted}"]), ("isolated", [quoted]),
                           ("internal", [quoted]), ("subnets", [f"{s} . {quoted}" for s in subnets]),
                           ("outbound", subnets)):
        lines += delete_elements(table, name, elements)
    return lines


# --- running nft ----------------------------------------------------------------------


class _Session:
    """libnftables in this process, one netlink socket kept open for its whole life.

    ``nft`` as a process costs a fork and exec per change, and its exit
    closes the socket, where this kernel waits out an RCU grace period after
    any element was deleted: 10-25 ms a deletion, against 0.1 ms here.
    Threads take turns; a forked child (Celery's pool) starts afresh, its
    parent's lock possibly held by a thread that does not exist in it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text = self._json = None

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._text = self._json = None  # the parent's sockets: never used here

    def run(self, script: str, as_json: bool = False) -> tuple[int, str, str]:
        with self._lock:
            if self._text is None:
                self._text, self._json = nftables.Nftables(), nftables.Nftables()
                self._json.set_json_output(True)
            return (self._json if as_json else self._text).cmd(script)


_session = _Session()
os.register_at_fork(after_in_child=_session.forget_after_fork)


def apply(lines: list[str]) -> None:
    """One transaction: the whole script or none of it."""
    rc, _, error = _session.run("\n".join(lines) + "\n")
    if rc != 0:
        raise NftError(f"nft: {error.strip()}")


def list_json(*what: str) -> list[dict]:
    """``nft -j list ...`` as its list of objects; a missing table or set lists nothing."""
    rc, output, error = _session.run("list " + " ".join(what), as_json=True)
    if rc != 0:
        if "No such file or directory" in error:
            return []
        raise NftError(f"nft: {error.strip()}")
    return json.loads(output).get("nftables", []) if output else []


def has_element(table: str, name: str, key: str) -> bool:
    rc, _, _ = _session.run(f"get element {FAMILY} {table} {name} {{ {key} }}")
    return rc == 0


def set_elements(table: str, name: str) -> list:
    for item in list_json("set" if SETS[name] == "set" else "map", FAMILY, table, name):
        kind = item.get("set") or item.get("map")
        if kind:
            return kind.get("elem", [])
    return []


def bridge_subnets(table: str, device: str) -> list[str]:
    """The subnets one bridge has in @subnets (one, unless its subnet changed midway), as nft text."""
    found = []
    for elem in set_elements(table, "subnets"):
        value = elem.get("elem", {}).get("val", elem) if isinstance(elem, dict) else elem
        subnet, name = value["concat"]
        if name == device:
            found.append(_prefix_text(subnet))
    return found


def bridge_devices(table: str) -> list[str]:
    return [e for e in set_elements(table, "bridges") if isinstance(e, str)]


def observed_ports(table: str) -> list[dict]:
    """Every element of both port maps, with the owner from its comment."""
    ports = []
    for item in list_json("table", FAMILY, table):
        kind = item.get("map")
        if not kind or kind.get("name") not in ("ports", "host_ports"):
            continue
        for key, data in kind.get("elem", []):
            owner = ""
            if isinstance(key, dict) and "elem" in key:
                owner = key["elem"].get("comment", "")
                key = key["elem"]["val"]
            parts = key["concat"]
            host_ip = ANY_HOST_IP if kind["name"] == "ports" else parts.pop(0)
            container_ip, container_port = data["concat"]
            ports.append({"owner": owner, "protocol": parts[0], "host_ip": host_ip, "host_port": parts[1],
                          "container_ip": container_ip, "container_port": container_port})
    return ports


def _prefix_text(value) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if isinstance(value, dict) and "range" in value:
        return "-".join(value["range"])
    return str(value)
