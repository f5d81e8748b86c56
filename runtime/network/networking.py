"""The kernel side of Docker's bridge driver, as one object the worker calls.

    [ctr eth0] --veth-- [berth0] --DNAT 8080->80-- [host]

Every method is idempotent: making what exists or removing what is gone
succeeds, so a task can be retried and the reconciler can call anything at
any time. Names derive from the owners' ids (see spec.py); what the kernel
has that is ours is what carries our alias (links), our prefix (namespaces)
or sits in our nft table.

State kept on disk (``state_dir``, default ``$BERTH_ROOT/network/<table>``):
the published-ports registry (ports.py) and a lock file that serialises
every nft transaction of this table on this host.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from ..errors import Conflict, PortAllocated
from ..paths import StateRoot
from . import links, nft
from .ports import PortRegistry, bound, candidates, ephemeral_range
from .spec import (
    NETNS_DIR,
    BridgeSpec,
    EndpointSpec,
    PortSpec,
    check_device_name,
    check_owner_id,
    veth_name,
)
from .subnets import DEFAULT_POOLS, pick_subnet

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Tables whose skeleton this process has applied: later transactions carry only elements (the skeleton
# costs ~15 ms, an element ~1 ms, whatever the number of elements already there).
_tables_ready: set[str] = set()
# Bridges whose nft elements this process applied: (table, device) -> (the spec, the table's generation then).
# A start on a known bridge skips the listing and the skeleton (two nft processes); any process that removes
# a bridge or finds the table gone bumps the generation (a file in state_dir), and every cache entry is stale.
_bridges_ready: dict[tuple[str, str], tuple[str, int]] = {}


class Networking:
    def __init__(self, table: str = "berth", netns_prefix: str = "berth-",
                 state_dir: Path | str | None = None, pools: list[str] | None = None):
        self.table = table
        self.netns_prefix = netns_prefix
        self.state_dir = Path(state_dir) if state_dir else StateRoot.from_env().root / "network" / table
        self.pools = list(pools or DEFAULT_POOLS)
        self.alias = f"berth:{table}"
        self.ports = PortRegistry(self.state_dir)
        # Ours: the prefix and then at most 12 characters of an id, so "berth-" never claims "berth-test-...".
        self._netns_name = re.compile(re.escape(netns_prefix) + r"[A-Za-z0-9_.]{1,12}$")

    # --- bridges -----------------------------------------------------------------------

    def ensure_bridge(self, spec: BridgeSpec) -> None:
        spec.validate()
        _write_sysctl(IP_FORWARD, "1")
        links.ensure_bridge(spec, self.alias)
        # The host's own 127.0.0.1 -> container traffic leaves through the bridge (see nft.py's guard chain).
        _write_sysctl(Path(f"/proc/sys/net/ipv4/conf/{spec.device}/route_localnet"), "1")
        key, wanted = (self.table, spec.device), repr(spec)
        if _bridges_ready.get(key) == (wanted, self._generation()):
            return
        with self._locked():
            generation = self._generation()
            stale = nft.forget_bridge(self.table, spec.device, nft.bridge_subnets(self.table, spec.device))
            fresh = [line for name, elements in nft.bridge_elements(spec).items()
                     for line in nft.add_elements(self.table, name, elements)]
            self._apply(stale + fresh, repair=True)
            _bridges_ready[key] = (wanted, generation)

    def remove_bridge(self, device: str) -> None:
        check_device_name(device)
        links.delete_link(device)
        with self._locked():
            self._bump_generation()
            self._apply(nft.forget_bridge(self.table, device, nft.bridge_subnets(self.table, device)))

    # --- namespaces and endpoints ------------------------------------------------------

    def netns_path(self, owner_id: str) -> str:
        check_owner_id(owner_id)
        return f"{NETNS_DIR}/{self.netns_prefix}{owner_id[:12]}"

    def create_netns(self, owner_id: str) -> str:
        path = self.netns_path(owner_id)
        links.create_netns(path)
        return path

    def remove_netns(self, owner_id: str) -> None:
        links.remove_netns(self.netns_path(owner_id))

    def attach(self, netns_path: str, endpoint: EndpointSpec) -> tuple[str, str]:
        check_owner_id(endpoint.endpoint_id)
        return links.attach(netns_path, endpoint, self.alias)

    def detach(self, endpoint_id: str) -> None:
        check_owner_id(endpoint_id)
        links.delete_link(veth_name(endpoint_id))

    def release(self, owner_id: str, endpoint_ids: Iterable[str], netns: bool = True, shared: bool = False) -> None:
        """Everything an owner holds goes: its published ports, its veths, its namespace (``netns``).

        A namespace that goes takes its veths with it: once nothing holds it, the kernel deletes them
        in a worker of its own, batched with other dying namespaces, where deleting each pair here
        would wait ~20 ms (an RCU grace period under the rtnl lock). They are deleted here when the
        namespace stays (``netns`` False) or is ``shared`` (a ``--network container:`` user runs in
        it and would keep this owner's addresses). The port map's transaction waits for the kernel
        too, under another lock, so it runs beside.
        """
        check_owner_id(owner_id)
        endpoint_ids = list(endpoint_ids)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-unpublish") as pool:
            ports = pool.submit(self.unpublish, owner_id)
            try:
                if shared or not netns:
                    for endpoint_id in endpoint_ids:
                        self.detach(endpoint_id)
                if netns:
                    self.remove_netns(owner_id)
            finally:
                ports.result()  # its error, if any, after the namespace is gone all the same

    # --- published ports ---------------------------------------------------------------

    def publish(self, owner_id: str, ports: list[PortSpec]) -> None:
        """Make ``ports`` all that ``owner_id`` publishes, in one nft transaction; nothing changes on failure."""
        check_owner_id(owner_id)
        ports = _distinct(ports)
        with self._locked():
            previous = self.ports.owned(owner_id)
            for port in ports:
                self._check_free(owner_id, port, previous)
            # Written ahead: a process killed between the transaction and the record leaves the registry
            # naming every port the map may hold (unpublish deletes them whether or not they are there).
            self.ports.record(owner_id, previous + [p for p in ports if p not in previous])
            try:
                self._apply(nft.delete_ports(self.table, owner_id, previous)
                            + nft.add_ports(self.table, owner_id, ports))
            except nft.NftError as exc:
                self.ports.record(owner_id, previous)
                self._explain_conflict(exc, ports, previous)
                raise
            self.ports.record(owner_id, ports)

    def unpublish(self, owner_id: str) -> None:
        check_owner_id(owner_id)
        with self._locked():
            self._unpublish(owner_id, self.ports.owned(owner_id))

    def free_port(self, protocol: str, host_ip: str = "0.0.0.0", taken: Iterable[int] = ()) -> int:
        """A host port from the kernel's ephemeral range that is neither published nor bound."""
        taken = set(taken)
        for port in candidates(ephemeral_range()):
            probe = PortSpec(protocol, host_ip, port, "0.0.0.0", 1)
            if port in taken or self.ports.holders(probe) or bound(protocol, host_ip, port):
                continue
            return port
        raise Conflict(f"no free {protocol} port left on {host_ip} in the ephemeral range")

    def _check_free(self, owner_id: str, port: PortSpec, previous: list[PortSpec]) -> None:
        if self.ports.holders(port) - {owner_id}:
            raise PortAllocated(port.host_ip, port.host_port)
        # A port we publish already has no socket; any other must not be bound by a process on the host.
        if not any(_same_host_port(port, p) for p in previous) and bound(port.protocol, port.host_ip, port.host_port):
            raise PortAllocated(port.host_ip, port.host_port)

    def _explain_conflict(self, exc: nft.NftError, ports: list[PortSpec], previous: list[PortSpec]) -> None:
        """The map had a key the registry did not know (a lost state dir): name the port as Docker would."""
        if "File exists" not in str(exc):
            return
        for port in ports:
            mine = any(_same_host_port(port, p) for p in previous)
            if not mine and nft.has_element(self.table, nft.port_map(port), nft.port_key(port)):
                raise PortAllocated(port.host_ip, port.host_port) from None

    def _unpublish(self, owner_id: str, ports: list[PortSpec]) -> None:
        if ports:
            self._apply(nft.delete_ports(self.table, owner_id, ports))
        self.ports.record(owner_id, [])

    # --- subnets -----------------------------------------------------------------------

    def pick_subnet(self, used: list[str]) -> str:
        return pick_subnet(self.pools, used, links.host_routes())

    # --- what the kernel has, and cleaning it up ---------------------------------------

    def observe(self) -> dict:
        """What the kernel has that is ours, for the reconciler and the topology page::

            {"bridges": {device: {"up", "addresses": ["172.17.0.1/16"]}},
             "veths": {host end: {"master": bridge or None, "up"}},
             "netns": [names under /run/netns],
             "ports": [{"owner", "protocol", "host_ip", "host_port", "container_ip", "container_port"}]}
        """
        owned = links.owned_links(self.alias)
        return {
            "bridges": {name: {"up": link["up"], "addresses": link["addresses"]}
                        for name, link in owned.items() if link["kind"] == "bridge"},
            "veths": {name: {"master": link["master"], "up": link["up"]}
                      for name, link in owned.items() if link["kind"] == "veth"},
            "netns": sorted(name for name in _listdir(NETNS_DIR) if self._netns_name.match(name)),
            "ports": nft.observed_ports(self.table),
        }

    def gc(self, bridges: set[str], endpoint_ids: set[str], netns_owner_ids: set[str],
           port_owners: set[str]) -> list[str]:
        """Remove every object of ours that nobody owns; returns what went, as "kind name"."""
        seen = self.observe()
        removed = []
        keep_veths = {veth_name(e) for e in endpoint_ids}
        for name in sorted(set(seen["veths"]) - keep_veths):
            links.delete_link(name)
            removed.append(f"veth {name}")
        keep_netns = {f"{self.netns_prefix}{o[:12]}" for o in netns_owner_ids}
        for name in sorted(set(seen["netns"]) - keep_netns):
            links.remove_netns(f"{NETNS_DIR}/{name}")
            removed.append(f"netns {name}")
        removed += self._gc_ports(seen["ports"], set(port_owners))
        known = set(seen["bridges"]) | set(nft.bridge_devices(self.table))
        for device in sorted(known - set(bridges)):
            self.remove_bridge(device)
            removed.append(f"bridge {device}")
        return removed

    def _gc_ports(self, observed: list[dict], keep: set[str]) -> list[str]:
        removed = []
        with self._locked():
            stale = (set(self.ports.owners()) | {p["owner"] for p in observed}) - keep
            for owner_id in sorted(stale):
                in_kernel = [PortSpec(**{k: v for k, v in p.items() if k != "owner"})
                             for p in observed if p["owner"] == owner_id]
                ports = self.ports.owned(owner_id) + in_kernel
                self._apply(nft.delete_ports(self.table, owner_id, ports))
                self.ports.record(owner_id, [])
                removed.append(f"ports {owner_id or '(no owner)'}")
        return removed

    def teardown(self) -> None:
        """Remove the whole nft table and the ports registry (tests, uninstall)."""
        with self._locked():
            self._bump_generation()
            nft.apply(nft.teardown_script(self.table))
            _tables_ready.discard(self.table)
            shutil.rmtree(self.ports.owners_dir, ignore_errors=True)
            shutil.rmtree(self.ports.claims_dir, ignore_errors=True)

    def _apply(self, lines: list[str], repair: bool = False) -> None:
        """One transaction, led by the skeleton the first time in this process, on ``repair``, or if the table is gone."""
        if repair or self.table not in _tables_ready:
            nft.apply(nft.skeleton(self.table) + lines)
            _tables_ready.add(self.table)
            return
        try:
            nft.apply(lines)
        except nft.NftError as exc:
            if "No such file or directory" not in str(exc):
                raise
            self._bump_generation()  # the bridges' elements went with the table: the next start restores them
            nft.apply(nft.skeleton(self.table) + lines)   # a reboot or a teardown elsewhere took the table

    def _generation(self) -> int:
        """A counter that grows whenever bridges' elements may have gone (a removal, a teardown, the table found gone)."""
        try:
            return int((self.state_dir / "generation").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _bump_generation(self) -> None:
        """Under the lock; written whole by rename, so a reader sees the old number or the new."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = self.state_dir / "generation.new"
        fresh.write_text(str(self._generation() + 1))
        os.replace(fresh, self.state_dir / "generation")

    @contextmanager
    def _locked(self):
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.state_dir / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _distinct(ports: list[PortSpec]) -> list[PortSpec]:
    """Validated, exact repeats dropped; two different mappings of one host port are a conflict."""
    kept: list[PortSpec] = []
    for port in ports:
        port.validate()
        if port in kept:
            continue
        if any(port.overlaps(other) for other in kept):
            raise PortAllocated(port.host_ip, port.host_port)
        kept.append(port)
    return kept


def _same_host_port(a: PortSpec, b: PortSpec) -> bool:
    return (a.protocol, a.host_ip, int(a.host_port)) == (b.protocol, b.host_ip, int(b.host_port))


def _write_sysctl(path: Path, value: str) -> None:
    if path.read_text().strip() != value:
        path.write_text(value)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
