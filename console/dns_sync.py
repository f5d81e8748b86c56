"""The embedded DNS of user-defined networks, kept in step with the rows.

One ``runtime.dns.DnsServer`` runs in the worker's main process (started
when the worker is ready, like the exit watcher) and answers on the gateway
of every user-defined network; containers there get ``nameserver
<gateway>``. Tasks may run in other processes (a prefork pool), so they
never touch it: after a change they call ``notify()``, which bumps a
counter; the sync thread wakes (inotify on the folder), reads the rows,
gives each network its records and writes the counter it applied.
``notify()`` waits for that (``BERTH_DNS_WAIT`` at most), so a name
resolves as soon as ``docker run`` returns::

    task (start, stop, remove, connect...) --notify()--> dns/wanted = n
    sync thread: rows -> serve_network / set_records / forget_network --> dns/applied = n

Records of a network: for each running container with an address there,
its name, its short id and its aliases. Names of other networks' containers
are not in them, so they do not resolve. The default bridge has no names
(Docker's behaviour; links write /etc/hosts lines instead, see console.links).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

from .models import Container, Endpoint, Network

log = logging.getLogger(__name__)

RUNNING_STATES = (Container.STATE_RUNNING, Container.STATE_PAUSED, Container.STATE_RESTARTING)
FULL_SYNC = 5.0   # seconds between syncs nobody asked for (a network whose bridge came late, say)
POLL = 0.01       # seconds between looks at the applied counter while notify() waits


def dns_dir() -> Path:
    return Path(settings.BERTH_ROOT) / "dns"


# --- what the rows say ---------------------------------------------------------------------


@dataclass
class Served:
    """One network as the DNS server gets it: where it listens, whom it answers, what it knows."""

    gateway: str
    subnet: str
    forward: bool             # unknown names to the host's resolvers (not on --internal networks)
    records: dict = field(default_factory=dict)   # name -> [addresses]

    def listening(self) -> tuple:
        return self.gateway, self.subnet, self.forward


def wanted_networks() -> dict[str, Served]:
    """network id -> what to serve, for every user-defined bridge network."""
    networks = {}
    for network in Network.objects.filter(predefined=False, driver=Network.DRIVER_BRIDGE).exclude(gateway=""):
        networks[network.id] = Served(network.gateway, network.subnet, not network.internal)
    endpoints = (Endpoint.objects.filter(network_id__in=networks, container__state__in=RUNNING_STATES,
                                         ip_address__isnull=False)
                 .select_related("container").order_by("id"))
    for endpoint in endpoints:
        records = networks[endpoint.network_id].records
        container = endpoint.container
        for name in dict.fromkeys([container.name, container.id[:12], *(endpoint.aliases or [])]):
            if endpoint.ip_address not in records.setdefault(name, []):
                records[name].append(endpoint.ip_address)
    return networks


# --- the sync thread ---------------------------------------------------------------------------


class DnsSync:
    """Keeps one DnsServer's networks and records equal to ``wanted_networks()``."""

    def __init__(self, server, directory: Path | None = None):
        self.server = server
        self.directory = directory or dns_dir()
        self.served: dict[str, Served] = {}   # network id -> what the server was handed
        self.stopping = threading.Event()

    def sync(self) -> None:
        wanted = wanted_networks()
        for network_id in set(self.served) - set(wanted):
            self._forget(network_id)
        for network_id, network in wanted.items():
            current = self.served.get(network_id)
            try:
                if current is None or current.listening() != network.listening():
                    self.server.serve_network(network_id, network.gateway, subnet=network.subnet,
                                              forward=network.forward)
                    current = self.served[network_id] = Served(*network.listening(), records=None)
                if current.records != network.records:
                    self.server.set_records(network_id, network.records)
                    current.records = network.records
            except OSError as error:
                # Its bridge is not up yet (its task, or the reconcile after a reboot, runs meanwhile): next sync.
                log.warning("dns: network %s not served on %s yet: %s", network_id, network.gateway, error)
            except Exception:
                log.exception("dns: could not serve network %s on %s", network_id, network.gateway)

    def _forget(self, network_id: str) -> None:
        try:
            self.server.forget_network(network_id)
        except Exception:
            log.exception("dns: could not forget network %s", network_id)
        self.served.pop(network_id, None)

    def run(self) -> None:
        from .watcher import _inotify, _wait

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_int(self.directory / "server", os.getpid())
        inotify = _inotify(self.directory)
        applied, last_full = None, 0.0
        try:
            while not self.stopping.is_set():
                wanted = _read_int(self.directory / "wanted")
                if wanted != applied or time.monotonic() - last_full >= FULL_SYNC:
                    try:
                        self.sync()
                    except Exception:
                        log.exception("dns: sync failed")
                    last_full = time.monotonic()
                    applied = wanted
                    _write_int(self.directory / "applied", wanted)
                    close_old_connections()
                _wait(inotify, 0.05 if inotify is None else FULL_SYNC)
        finally:
            if inotify is not None:
                os.close(inotify)
            if _read_int(self.directory / "server") == os.getpid():
                (self.directory / "server").unlink(missing_ok=True)

    def stop(self) -> None:
        self.stopping.set()
        try:
            _write_int(self.directory / "stopping", os.getpid())  # wakes the thread's inotify wait
        except OSError:
            pass


# --- tasks' side ---------------------------------------------------------------------------------


def is_named(container_id: str) -> bool:
    """Has the container a name in some user-defined network's DNS (an endpoint there)?"""
    return Endpoint.objects.filter(container_id=container_id, network__predefined=False).exists()


def notify_for(container_id: str, named: bool | None = None) -> None:
    """``notify()`` when the container's names are in some network's records; ``named`` if known
    already (a removed container's rows are gone)."""
    if named if named is not None else is_named(container_id):
        notify()


def notify() -> None:
    """The rows changed: have the sync thread apply them, and wait until it has (or BERTH_DNS_WAIT)."""
    directory = dns_dir()
    if not _alive(_read_int(directory / "server")):
        return  # no DNS server on this host: nothing to tell
    wanted = _bump(directory / "wanted")
    deadline = time.monotonic() + settings.BERTH_DNS_WAIT
    while time.monotonic() < deadline:
        if _read_int(directory / "applied") >= wanted:
            return
        time.sleep(POLL)
    log.warning("dns: the sync thread did not apply change %d within %g s", wanted, settings.BERTH_DNS_WAIT)


def _bump(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.read(fd, 64).decode().strip()
        number = (int(text) if text.isdigit() else 0) + 1
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(number).encode(), 0)
        return number
    finally:
        os.close(fd)  # the close is what wakes the sync thread (IN_CLOSE_WRITE)


def _read_int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _write_int(path: Path, number: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(str(number))
    os.replace(temporary, path)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# --- in the worker ---------------------------------------------------------------------------------

_sync: DnsSync | None = None


def dns_server():
    """The embedded DNS server of this host, or None where runtime.dns is missing."""
    try:
        from runtime.dns import DnsServer
    except ImportError as error:
        log.warning("no embedded DNS (%s): names do not resolve on user-defined networks", error)
        return None
    return DnsServer()


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    global _sync
    server = dns_server()
    if server is None:
        return
    server.start()
    _sync = DnsSync(server)
    threading.Thread(target=_sync.run, name="berth-dns-sync", daemon=True).start()


@worker_shutdown.connect
def on_worker_shutdown(sender=None, **kwargs) -> None:
    if _sync is not None:
        _sync.stop()
        try:
            _sync.server.stop()
        except Exception:
            log.exception("dns: could not stop the server")
