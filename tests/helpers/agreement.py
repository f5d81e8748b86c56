"""Do the database and the kernel agree? What a user would check after a fault, as one helper.

``disagreements(stack)`` lists every difference between a live stack's rows
(``tests.live.LiveStack``; call it where the ``live`` fixture pointed this
process at the stack's database) and what its host shows::

    Container row  <->  runtime container (state dir) and runc container, same status
    running row    <->  each endpoint's veth on its bridge, its address on its
                        interface inside the container's namespace, each
                        published port an element of the nft map owned by it
    kernel object  <->  a row: every runtime or runc container, veth, namespace,
                        port map element and bridge of the stack is owned by one
    duplicates         no two containers with one name, no address on two
                        interfaces, no host port in the map twice

``wait_for_agreement(stack, timeout)`` polls until the list is empty and
returns how long that took (seconds), or fails with the last list.
"""

from __future__ import annotations

import time
from collections import Counter

from runtime.network.inspect import kernel_facts
from runtime.network.spec import veth_name

# Rows in these states are in the middle of something: after a fault they must not stay so.
TRANSITIONAL = ("removing", "restarting")


def disagreements(stack) -> list[str]:
    """Every way the stack's rows and its kernel differ, as sentences; empty when they agree."""
    from console.models import Container, Network

    engine = stack.runtime()
    rows = {row.id: row for row in Container.objects.filter(host=stack.host)
            .prefetch_related("endpoints__network", "ports")}
    containers = {c.id: c for c in engine.list()}
    running = [row for row in rows.values() if row.state in ("running", "paused")]
    facts = kernel_facts(stack.networking(), sorted({row.sandbox_key for row in running if row.sandbox_key}))
    bridges = set(Network.objects.exclude(bridge_name="").values_list("bridge_name", flat=True))
    return [*_containers(rows, containers, set(engine.runc.list_ids())),
            *_wiring(running, facts),
            *_stopped_ports(rows.values()),
            *_unowned(rows, facts, bridges, stack.netns_prefix),
            *_duplicates(containers.values(), facts)]


def wait_for_agreement(stack, timeout: float = 5.0) -> float:
    """Seconds until rows and kernel agreed; AssertionError with the differences after ``timeout``."""
    began = time.monotonic()
    while True:
        found = disagreements(stack)
        if not found:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"rows and kernel still differ after {timeout:g} s:\n  " + "\n  ".join(found))
        time.sleep(0.1)


def _containers(rows: dict, containers: dict, runc_ids: set[str]) -> list[str]:
    found = []
    for row in rows.values():
        seen = containers.get(row.id)
        if row.state in TRANSITIONAL:
            found.append(f"container {row.name} ({row.id[:12]}) stays {row.state}")
        elif seen is None:
            found.append(f"container {row.name} ({row.id[:12]}) has a row ({row.state}) but no container")
        elif seen.state.status != row.state:
            found.append(f"container {row.name} ({row.id[:12]}) is {row.state} in its row, "
                         f"{seen.state.status} on the host")
        elif seen.name != row.name:
            found.append(f"container {row.id[:12]} is {row.name} in its row, {seen.name} on the host")
    found += [f"container {c.name} ({c.id[:12]}, {c.state.status}) has no row"
              for c in containers.values() if c.id not in rows]
    found += [f"runc container {i[:12]} has no row" for i in sorted(runc_ids - set(rows))]
    return found


def _wiring(running: list, facts: dict) -> list[str]:
    found = []
    present_ports = {(p["protocol"], p["host_ip"], int(p["host_port"]), p["owner"]) for p in facts["ports"]}
    for row in running:
        if not row.sandbox_key:
            continue  # host, none and container: modes: no endpoint of its own to check
        namespace = facts["namespaces"].get(row.sandbox_key, {})
        if not namespace.get("present"):
            found.append(f"container {row.name}: its namespace {row.sandbox_key} is missing")
            continue
        for index, endpoint in enumerate(row.endpoints.all()):
            found += _endpoint(row, endpoint, index, facts, namespace)
        for port in row.ports.all():
            if port.host_port is None:
                found.append(f"container {row.name}: {port.container_port}/{port.protocol} is not published")
            elif (port.protocol, port.host_ip, port.host_port, row.id) not in present_ports:
                found.append(f"container {row.name}: {port.protocol} {port.host_ip}:{port.host_port} "
                             f"is not in the port map")
    return found


def _endpoint(row, endpoint, index: int, facts: dict, namespace: dict) -> list[str]:
    found = []
    veth = veth_name(endpoint.endpoint_id)
    seen = facts["veths"].get(veth)
    if seen is None or seen.get("master") != endpoint.network.bridge_name:
        where = "missing" if seen is None else f"on {seen.get('master')}"
        found.append(f"container {row.name}: veth {veth} is {where}, not on {endpoint.network.bridge_name}")
    interface = endpoint.veth_container or f"eth{index}"
    addresses = namespace.get("interfaces", {}).get(interface, {}).get("addresses", [])
    if endpoint.ip_address and f"{endpoint.ip_address}/{endpoint.prefix_length}" not in addresses:
        found.append(f"container {row.name}: {endpoint.ip_address} is not on {interface} in its namespace")
    return found


def _stopped_ports(rows) -> list[str]:
    """A stopped container holds no host port (Docker frees them at stop)."""
    return [f"container {row.name} ({row.state}) still holds host port {port.host_port}"
            for row in rows if row.state not in ("running", "paused")
            for port in row.ports.all() if port.host_port is not None]


def _unowned(rows: dict, facts: dict, bridges: set[str], netns_prefix: str) -> list[str]:
    endpoints = {veth_name(e.endpoint_id) for row in rows.values() for e in row.endpoints.all()}
    namespaces = {netns_prefix + row.id[:12] for row in rows.values()}
    publishing = {row.id for row in rows.values() if row.state in ("running", "paused")}
    mapped = {(row.id, m.protocol, m.host_ip, m.host_port) for row in rows.values() for m in row.ports.all()}
    found = [f"veth {name} belongs to no endpoint" for name in sorted(set(facts["veths"]) - endpoints)]
    found += [f"namespace {name} belongs to no container" for name in facts["netns"] if name not in namespaces]
    for p in facts["ports"]:
        element = f"port map element {p['protocol']} {p['host_ip']}:{p['host_port']} of {p['owner'][:12]}"
        if p["owner"] not in publishing:
            found.append(f"{element} belongs to no running container")
        elif (p["owner"], p["protocol"], p["host_ip"], int(p["host_port"])) not in mapped:
            found.append(f"{element} is none of its container's port mappings")
    found += [f"bridge {name} belongs to no network"
              for name in sorted((set(facts["bridges"]) | set(facts["nft_bridges"])) - bridges)]
    return found


def _duplicates(containers, facts: dict) -> list[str]:
    names = Counter(c.name for c in containers)
    addresses = Counter(address.split("/")[0] for namespace in facts["namespaces"].values()
                        for interface in namespace.get("interfaces", {}).values()
                        for address in interface.get("addresses", []) if not address.startswith("127."))
    ports = Counter((p["protocol"], p["host_ip"], int(p["host_port"])) for p in facts["ports"])
    return ([f"two containers are called {name}" for name, n in names.items() if n > 1]
            + [f"address {address} is on {n} interfaces" for address, n in addresses.items() if n > 1]
            + [f"host port {key} is in the port map {n} times" for key, n in ports.items() if n > 1])
