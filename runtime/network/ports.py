"""Who publishes which host port, without asking nft for the whole map.

A small registry under the networking state dir answers "is this port ours
already?" in time that does not grow with the number of published ports::

    <state>/ports/<owner>.json          that owner's PortSpecs (what unpublish deletes)
    <state>/claims/<proto>-<port>.json  {host_ip: owner} for one protocol and port

The nft elements carry the owner as their comment too, so observe() and gc()
can read ownership from the kernel when the registry is lost. Callers hold
the state dir's lock around every read-check-write.
"""

from __future__ import annotations

import errno
import json
import os
import random
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from ..errors import InvalidValue
from .spec import ANY_HOST_IP, PortSpec

PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


class PortRegistry:
    def __init__(self, root: Path):
        self.owners_dir = root / "ports"
        self.claims_dir = root / "claims"

    def owned(self, owner_id: str) -> list[PortSpec]:
        return [PortSpec(**entry) for entry in _read(self.owners_dir / f"{owner_id}.json", [])]

    def owners(self) -> list[str]:
        if not self.owners_dir.is_dir():
            return []
        return [path.stem for path in self.owners_dir.glob("*.json")]

    def holders(self, port: PortSpec) -> set[str]:
        """Owners of claims that overlap ``port`` (0.0.0.0 overlaps every address)."""
        return {
            owner_id for host_ip, owner_id in self._claims(port.protocol, port.host_port).items()
            if ANY_HOST_IP in (host_ip, port.host_ip) or host_ip == port.host_ip
        }

    def record(self, owner_id: str, ports: list[PortSpec]) -> None:
        """Make ``ports`` the whole of what ``owner_id`` publishes."""
        previous = self.owned(owner_id)
        for port in previous:
            self._unclaim(port, owner_id)
        for port in ports:
            claims = self._claims(port.protocol, port.host_port)
            claims[port.host_ip] = owner_id
            _write(self._claim_path(port.protocol, port.host_port), claims)
        if ports:
            _write(self.owners_dir / f"{owner_id}.json", [asdict(p) for p in ports])
        else:
            (self.owners_dir / f"{owner_id}.json").unlink(missing_ok=True)

    def _unclaim(self, port: PortSpec, owner_id: str) -> None:
        claims = self._claims(port.protocol, port.host_port)
        if claims.get(port.host_ip) == owner_id:
            del claims[port.host_ip]
        path = self._claim_path(port.protocol, port.host_port)
        if claims:
            _write(path, claims)
        else:
            path.unlink(missing_ok=True)

    def _claims(self, protocol: str, port: int) -> dict[str, str]:
        return _read(self._claim_path(protocol, port), {})

    def _claim_path(self, protocol: str, port: int) -> Path:
        return self.claims_dir / f"{protocol}-{int(port)}.json"


def bound(protocol: str, host_ip: str, port: int) -> bool:
    """Whether a process on the host holds the port: try to bind it ourselves, without SO_REUSEADDR.

    The kernel answers with its own rules: 0.0.0.0 conflicts with every
    address, a dual-stack [::] listener with IPv4 too.
    """
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        try:
            probe.bind((host_ip, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidValue("host ip", f"{host_ip} is not an address of this host") from None
            raise
    return False


def ephemeral_range() -> range:
    """The kernel's ephemeral port range, where -P picks (32768-60999 by default)."""
    low, high = (int(n) for n in PORT_RANGE.read_text().split())
    return range(low, high + 1)


def candidates(ports: range) -> Iterator[int]:
    """Every port of the range once, ascending from a random start and wrapping around."""
    start = random.randrange(len(ports))
    return (ports[(start + i) % len(ports)] for i in range(len(ports)))


def _read(path: Path, default):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write(path: Path, data) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
