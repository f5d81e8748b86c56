"""A stand-in for ``runtime.network`` with its API: real empty namespaces, the rest in memory.

``create_netns`` makes a real namespace (``ip netns add``, ``lo`` up) so
that runc can join it; bridges, veths and published ports are only
recorded, with the checks of the real thing: a host port published by two
owners is refused with PortAllocated's message, ``publish`` is all or
nothing. The console's tests use it (``settings.BERTH_NETWORKING =
"tests.helpers.fake_networking"``), and so does the live stack while the
kernel layer is missing.

``Networking.state(table)`` is what every instance over that table saw and
did, for the tests to look at; ``fail_next(method, error, skip)`` makes a
later call of a method fail.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import PortAllocated

NETNS_DIR = Path("/run/netns")
EPHEMERAL_FIRST = 32768
__all__ = ["BridgeSpec", "EndpointSpec", "Networking", "PortAllocated", "PortSpec"]


@dataclass
class BridgeSpec:
    device: str
    subnet: str
    gateway: str
    internal: bool = False
    isolated: bool = True


@dataclass
class EndpointSpec:
    endpoint_id: str
    device: str
    address: str
    prefix_length: int
    gateway: str
    mac: str = ""
    interface: str = "eth0"
    default_route: bool = True


@dataclass
class PortSpec:
    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


@dataclass
class State:
    bridges: dict = field(default_factory=dict)        # device -> BridgeSpec
    endpoints: dict = field(default_factory=dict)      # endpoint id -> (netns path, EndpointSpec)
    namespaces: set = field(default_factory=set)       # owner ids
    published: dict = field(default_factory=dict)      # owner id -> [PortSpec]
    calls: list = field(default_factory=list)          # (method, first argument)
    failures: dict = field(default_factory=dict)       # method -> error raised by its next call
    lock: threading.RLock = field(default_factory=threading.RLock)


_STATES: dict[str, State] = {}


class Networking:
    def __init__(self, table: str = "berth", netns_prefix: str = "berth-", state_dir=None, pools=None):
        self.table = table
        self.netns_prefix = netns_prefix

    @staticmethod
    def state(table: str) -> State:
        return _STATES.setdefault(table, State())

    @property
    def _state(self) -> State:
        return self.state(self.table)

    def fail_next(self, method: str, error: Exception, skip: int = 0) -> None:
        """The call of ``method`` after the next ``skip`` ones raises ``error``."""
        self._state.failures[method] = [skip, error]

    def _call(self, method: str, argument=None) -> None:
        with self._state.lock:
            self._state.calls.append((method, argument))
            failure = self._state.failures.get(method)
            if failure is None:
                return
            if failure[0] > 0:
                failure[0] -= 1
                return
            del self._state.failures[method]
        raise failure[1]

    # bridges

    def ensure_bridge(self, spec: BridgeSpec) -> None:
        self._call("ensure_bridge", spec.device)
        with self._state.lock:
            self._state.bridges[spec.device] = spec

    def remove_bridge(self, device: str) -> None:
        self._call("remove_bridge", device)
        with self._state.lock:
            self._state.bridges.pop(device, None)

    # namespaces

    def _netns_name(self, owner_id: str) -> str:
        return f"{self.netns_prefix}{owner_id[:12]}"

    def netns_path(self, owner_id: str) -> str:
        return str(NETNS_DIR / self._netns_name(owner_id))

    def create_netns(self, owner_id: str) -> str:
        self._call("create_netns", owner_id)
        name = self._netns_name(owner_id)
        if not (NETNS_DIR / name).exists():
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        with self._state.lock:
            self._state.namespaces.add(owner_id)
        return self.netns_path(owner_id)

    def remove_netns(self, owner_id: str) -> None:
        self._call("remove_netns", owner_id)
        name = self._netns_name(owner_id)
        if (NETNS_DIR / name).exists():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        with self._state.lock:
            self._state.namespaces.discard(owner_id)

    # endpoints

    def attach(self, netns_path: str, spec: EndpointSpec) -> tuple[str, str]:
        self._call("attach", spec.endpoint_id)
        if not Path(netns_path).exists():
            raise FileNotFoundError(f"no network namespace at {netns_path}")
        with self._state.lock:
            self._state.endpoints[spec.endpoint_id] = (netns_path, spec)
        return f"vb{spec.endpoint_id[:12]}", spec.interface

    def detach(self, endpoint_id: str) -> None:
        self._call("detach", endpoint_id)
        with self._state.lock:
            self._state.endpoints.pop(endpoint_id, None)

    # ports

    def publish(self, owner_id: str, ports: list[PortSpec]) -> None:
        self._call("publish", owner_id)
        with self._state.lock:
            for port in ports:
                for other, theirs in self._state.published.items():
                    if other != owner_id and any(_clash(port, mine) for mine in theirs):
                        raise PortAllocated(port.host_ip, port.host_port)
            self._state.published[owner_id] = list(ports)

    def release(self, owner_id, endpoint_ids, netns=True, shared=False):
        # The kernel deletes the veths of a namespace that goes a moment later: here, at once.
        self.unpublish(owner_id)
        for endpoint_id in endpoint_ids:
            self.detach(endpoint_id)
        if netns:
            self.remove_netns(owner_id)

    def unpublish(self, owner_id: str) -> None:
        self._call("unpublish", owner_id)
        with self._state.lock:
            self._state.published.pop(owner_id, None)

    def free_port(self, protocol: str, host_ip: str = "0.0.0.0", taken=frozenset()) -> int:
        with self._state.lock:
            busy = {p.host_port for ports in self._state.published.values() for p in ports if p.protocol == protocol}
        port = EPHEMERAL_FIRST
        while port in busy or port in taken:
            port += 1
        return port

    def pick_subnet(self, used: list[str]) -> str:
        """The first /24 of 10.250.0.0/16 that overlaps nothing used (a pool tests never meet elsewhere)."""
        for candidate in ipaddress.ip_network("10.250.0.0/16").subnets(new_prefix=24):
            if not any(candidate.overlaps(ipaddress.ip_network(u)) for u in used if u):
                return str(candidate)
        raise RuntimeError("the fake's pool is exhausted")

    # the whole

    def observe(self) -> dict:
        with self._state.lock:
            return {"bridges": sorted(self._state.bridges), "endpoints": sorted(self._state.endpoints),
                    "netns": sorted(self._state.namespaces),
                    "published": {owner: list(ports) for owner, ports in self._state.published.items()}}

    def gc(self, bridges, endpoint_ids, netns_owner_ids, port_owners) -> list[str]:
        self._call("gc")
        removed = []
        with self._state.lock:
            for device in set(self._state.bridges) - set(bridges):
                del self._state.bridges[device]
                removed.append(f"bridge {device}")
            for endpoint_id in set(self._state.endpoints) - set(endpoint_ids):
                del self._state.endpoints[endpoint_id]
                removed.append(f"endpoint {endpoint_id[:12]}")
            for owner in set(self._state.published) - set(port_owners):
                del self._state.published[owner]
                removed.append(f"ports of {owner[:12]}")
        owned = {self._netns_name(owner) for owner in netns_owner_ids}
        for name in self._prefixed_namespaces():
            if name not in owned:
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)
                removed.append(f"netns {name}")
        with self._state.lock:
            self._state.namespaces &= set(netns_owner_ids)
        return removed

    def teardown(self) -> None:
        for name in self._prefixed_namespaces():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        _STATES.pop(self.table, None)

    def _prefixed_namespaces(self) -> list[str]:
        if not NETNS_DIR.is_dir():
            return []
        return [entry.name for entry in NETNS_DIR.iterdir() if entry.name.startswith(self.netns_prefix)]


def _clash(a: PortSpec, b: PortSpec) -> bool:
    same_ip = a.host_ip == b.host_ip or "0.0.0.0" in (a.host_ip, b.host_ip)
    return a.protocol == b.protocol and a.host_port == b.host_port and same_ip
