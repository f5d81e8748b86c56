"""The runtime's ContainerSpec, built from a Container row.

The row holds Docker's create body, validated and normalised by
``services.create_container`` (image defaults merged in, as moby does), so
this is a plain translation with no rules of its own::

    Container.config / host_config  --spec_from_container-->  runtime.ContainerSpec
"""

from __future__ import annotations

import re

from runtime import BindMount, ContainerSpec, NetworkSpec, Resources, Tmpfs
from runtime.errors import InvalidValue
from runtime.spec import NETWORK_HOST, NETWORK_NONE

from . import links

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def spec_from_container(container, network: NetworkSpec | None = None, dns: list[str] | None = None) -> ContainerSpec:
    """``network`` and ``dns``: what the networking layer plans for it (``networking.planned_network``);
    without them, host and none map straight through and anything else is ``none``."""
    config, host_config = container.config, container.host_config
    log_options = (host_config.get("LogConfig") or {}).get("Config") or {}
    has_mount_rows = _has_mount_rows(container)
    return ContainerSpec(
        # The id, not the tag: a tag moved between the click and the task must not change the image.
        image=container.image_id or container.image_ref,
        name=container.name,
        cmd=config.get("Cmd"),
        entrypoint=_entrypoint(config.get("Entrypoint")),
        env=links.link_env(container) + list(config.get("Env") or []),
        working_dir=config.get("WorkingDir") or "",
        user=config.get("User") or "",
        hostname=config.get("Hostname") or "",
        domainname=config.get("Domainname") or "",
        tty=bool(config.get("Tty")),
        console_size=list(host_config.get("ConsoleSize") or []),
        open_stdin=bool(config.get("OpenStdin")),
        stdin_once=bool(config.get("StdinOnce")),
        network=network or NetworkSpec(mode=runtime_network_mode(host_config.get("NetworkMode") or "bridge")),
        resources=Resources(
            memory=host_config.get("Memory") or 0,
            memory_swap=host_config.get("MemorySwap") or 0,
            nano_cpus=host_config.get("NanoCpus") or 0,
            cpu_shares=host_config.get("CpuShares") or 0,
            pids_limit=max(host_config.get("PidsLimit") or 0, 0),  # 0 and -1 both mean unlimited
        ),
        mounts=row_mounts(container) if has_mount_rows else bind_mounts(host_config),
        tmpfs=tmpfs_mounts(container) if has_mount_rows else [],
        extra_hosts=list(host_config.get("ExtraHosts") or []) + links.link_hosts(container),
        dns=list(dns if dns is not None else host_config.get("Dns") or []),
        dns_search=list(host_config.get("DnsSearch") or []),
        dns_options=list(host_config.get("DnsOptions") or []),
        cap_add=list(host_config.get("CapAdd") or []),
        cap_drop=list(host_config.get("CapDrop") or []),
        read_only=bool(host_config.get("ReadonlyRootfs")),
        labels=dict(config.get("Labels") or {}),
        stop_signal=config.get("StopSignal") or "",
        stop_timeout=config.get("StopTimeout"),
        log_max_size=parse_size(log_options.get("max-size") or "0"),
        log_max_files=int(log_options.get("max-file") or 1),
    )


def runtime_network_mode(network_mode: str) -> str:
    """Docker's NetworkMode as the runtime's, where no plan says more: the host's, or a namespace
    of its own with only ``lo`` (bridges and joined namespaces come from ``networking``)."""
    return NETWORK_HOST if network_mode == "host" else NETWORK_NONE


def _has_mount_rows(container) -> bool:
    return container.pk is not None and container.mounts.exists()


def row_mounts(container) -> list[BindMount]:
    """Binds and volumes of the Mount rows: a volume is a bind of its ``_data`` directory."""
    mounts = []
    for mount in container.mounts.select_related("volume").exclude(type="tmpfs"):
        source = mount.volume.mountpoint if mount.volume is not None else mount.source
        mounts.append(BindMount(source, mount.destination, readonly=not mount.read_write))
    return mounts


def tmpfs_mounts(container) -> list[Tmpfs]:
    from .volume_services import tmpfs_options

    return [Tmpfs(m.destination, tmpfs_options(container.host_config, m.destination))
            for m in container.mounts.filter(type="tmpfs")]


def bind_mounts(host_config: dict) -> list[BindMount]:
    mounts = []
    for bind in host_config.get("Binds") or []:
        source, destination, mode = split_bind(bind)
        if not source.startswith("/"):
            continue  # a volume: only ever mounted through its Mount row
        mounts.append(BindMount(source, destination, readonly="ro" in mode.split(",")))
    for mount in host_config.get("Mounts") or []:
        if mount.get("Type") == "bind":
            mounts.append(BindMount(mount["Source"], mount["Target"], readonly=bool(mount.get("ReadOnly"))))
    return mounts


def bind_sources_to_create(host_config: dict) -> list[str]:
    """Sources of ``-v /host:/ctr`` binds: Docker makes a missing one (``--mount`` does not)."""
    return [split_bind(bind)[0] for bind in host_config.get("Binds") or [] if bind.startswith("/")]


def split_bind(bind: str) -> tuple[str, str, str]:
    """``/src:/dst[:mode]`` -> (source, destination, mode); services checked the shape."""
    parts = bind.split(":")
    if len(parts) not in (2, 3):
        raise InvalidValue("bind", f"invalid volume specification: '{bind}'")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def parse_size(text: str) -> int:
    """Docker's sizes in bytes, powers of 1024: "10m", "1.5g", "512k", "4096"."""
    match = _SIZE.match(str(text).strip())
    if not match:
        raise InvalidValue("size", f"invalid size: '{text}'")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def _entrypoint(entrypoint):
    # ``--entrypoint ""`` arrives as [""]: it clears the image's entrypoint.
    if entrypoint == [""]:
        return []
    return entrypoint
