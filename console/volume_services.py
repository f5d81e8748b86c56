"""Volumes and a container's mounts: the rules, and the rows they make.

A create body names mounts five ways; each becomes one ``MountPlan``::

    Binds        "/host:/ctr[:ro]"  -> bind      "name:/ctr[:ro]" -> volume
    Mounts       {"Type": bind|volume|tmpfs, "Source", "Target", "ReadOnly", ...}
    Volumes      {"/ctr": {}}       -> anonymous volume (64-hex name)
    VolumesFrom  ["other[:ro|rw]"]  -> other's binds and volumes at the same paths
    Tmpfs        {"/ctr": "size=64m"}

``plan_mounts`` checks everything and writes nothing, so a refused spec leaves
nothing behind; ``insert_rows`` writes the Volume and Mount rows inside the
create's transaction. The directories are the host's (``tasks``): a volume's
data is ``BERTH_ROOT/volumes/<name>/_data``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from runtime.errors import Conflict, NotFound

from runtime.paths import tree_size

from . import tasks
from .docker_config import MAX_NAME, invalid
from .models import Container, Mount, Volume
from .operations import call as _call
from .operations import operation as _operation
from .filters import labels_match

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")  # \Z: "$" would let a final newline through
REFUSED_SOURCES = ("/proc", "/sys", "/dev")
BIND_MODES = {"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate", "nocopy"}
TMPFS_DEFAULT_OPTIONS = ["nosuid", "nodev", "noexec"]


@dataclass
class MountPlan:
    type: str
    destination: str
    source: str = ""          # the host path of a bind
    volume: str = ""          # a volume's name ("" for binds and tmpfs)
    anonymous: bool = False
    read_write: bool = True
    mode: str = ""
    propagation: str = ""
    nocopy: bool = False
    options: list[str] = field(default_factory=list)   # tmpfs mount options


def volume_mountpoint(name: str) -> str:
    return str(Path(settings.BERTH_ROOT) / "volumes" / name / "_data")


class VolumeNotFound(NotFound):
    def __init__(self, name: str):
        super().__init__(f"get {name}: no such volume")


# --- planning a container's mounts ------------------------------------------------------------


def plan_mounts(config: dict, host_config: dict, find_container) -> list[MountPlan]:
    """Every mount of a new container, checked; later kinds do not replace paths taken already
    (explicit mounts first, then VolumesFrom, then the image's and ``-v /dir`` anonymous volumes)."""
    plans: dict[str, MountPlan] = {}

    def add(plan: MountPlan, explicit: bool = True) -> None:
        destination = os.path.normpath(plan.destination)
        if destination in plans:
            if explicit:
                raise invalid(f"Duplicate mount point: {destination}", "mounts")
            return
        plan.destination = destination
        plans[destination] = plan

    for bind in host_config.get("Binds") or []:
        add(_plan_bind(bind))
    for mount in host_config.get("Mounts") or []:
        add(_plan_mount(mount))
    for destination, options in (host_config.get("Tmpfs") or {}).items():
        add(_plan_tmpfs(destination, options))
    for reference in host_config.get("VolumesFrom") or []:
        for plan in _plan_volumes_from(reference, find_container):
            add(plan, explicit=False)
    for destination in config.get("Volumes") or {}:
        _check_destination(destination, destination, "volume")
        add(MountPlan("volume", destination, volume=secrets.token_hex(32), anonymous=True), explicit=False)
    return list(plans.values())


def _plan_bind(bind: str) -> MountPlan:
    parts = bind.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise invalid(f"invalid volume specification: '{bind}'", "binds")
    source, destination = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    for mode in modes:
        if mode not in BIND_MODES:
            raise invalid(f"invalid mode: {parts[2]}", "binds")
    if "ro" in modes and "rw" in modes:
        raise invalid(f"invalid mode: {parts[2]}", "binds")
    kind = "bind" if source.startswith("/") else "volume"
    _check_destination(destination, bind, kind)
    read_write = "ro" not in modes
    if kind == "bind":
        _check_bind_source(source)
        return MountPlan("bind", destination, source=os.path.normpath(source), read_write=read_write,
                         mode=parts[2] if len(parts) == 3 else "", propagation="rprivate")
    check_volume_name(source)
    return MountPlan("volume", destination, volume=source, read_write=read_write,
                     mode=parts[2] if len(parts) == 3 else "z", nocopy="nocopy" in modes)


def _plan_mount(mount: dict) -> MountPlan:
    kind = mount.get("Type") or ""
    source, target = mount.get("Source") or "", mount.get("Target") or ""
    read_only = bool(mount.get("ReadOnly"))
    if kind not in ("bind", "volume", "tmpfs"):
        raise invalid(f'mount type unknown: "{kind}"', "mounts")
    if not target:
        raise invalid(f'invalid mount config for type "{kind}": field Target must not be empty', "mounts")
    _check_destination(target, target, kind)
    if kind == "bind":
        if not source:
            raise invalid('invalid mount config for type "bind": field Source must not be empty', "mounts")
        if not source.startswith("/"):
            raise invalid(f'invalid mount config for type "bind": invalid mount path: \'{source}\' '
                          "mount path must be absolute", "mounts")
        _check_bind_source(source)
        if not os.path.exists(source):
            raise invalid(f'invalid mount config for type "bind": bind source path does not exist: {source}',
                          "mounts")
        return MountPlan("bind", target, source=os.path.normpath(source), read_write=not read_only,
                         propagation="rprivate")
    if kind == "tmpfs":
        if source:
            raise invalid('invalid mount config for type "tmpfs": field Source must not be specified', "mounts")
        options = (mount.get("TmpfsOptions") or {})
        extra = [f"size={int(options['SizeBytes'])}"] if options.get("SizeBytes") else []
        if options.get("Mode"):
            extra.append(f"mode={int(options['Mode']):o}")
        return MountPlan("tmpfs", target, read_write=not read_only, options=extra + (["ro"] if read_only else []))
    if source:
        check_volume_name(source)
    nocopy = bool((mount.get("VolumeOptions") or {}).get("NoCopy"))
    return MountPlan("volume", target, volume=source or secrets.token_hex(32), anonymous=not source,
                     read_write=not read_only, nocopy=nocopy)


def _plan_tmpfs(destination: str, options) -> MountPlan:
    _check_destination(destination, destination, "tmpfs")
    given = [option for option in str(options or "").split(",") if option]
    for option in given:
        key = option.partition("=")[0]
        if key not in ("size", "mode", "ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
                       "uid", "gid", "nr_inodes"):
            raise invalid(f"invalid tmpfs option [\"{option}\"]", "tmpfs")
    return MountPlan("tmpfs", destination, read_write="ro" not in given, options=given)


def _plan_volumes_from(reference: str, find_container) -> list[MountPlan]:
    name, _, mode = reference.partition(":")
    if mode not in ("", "ro", "rw"):
        raise invalid(f"invalid mode: {mode}", "volumes from")
    source = find_container(name)
    plans = []
    for mount in source.mounts.select_related("volume").exclude(type=Mount.TYPE_TMPFS):
        read_write = mount.read_write and mode != "ro"
        plans.append(MountPlan(mount.type, mount.destination, source=mount.source if mount.type == "bind" else "",
                               volume=mount.volume.name if mount.volume is not None else "",
                               read_write=read_write, mode=mount.mode, propagation=mount.propagation,
                               nocopy=True))
    return plans


def _check_destination(destination: str, spec: str, kind: str) -> None:
    if not destination.startswith("/"):
        raise invalid(f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                      f"invalid mount path: '{destination}' mount path must be absolute", "mounts")
    if os.path.normpath(destination) == "/":
        raise invalid(f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                      "invalid specification: destination can't be '/'", "mounts")


def _check_bind_source(source: str) -> None:
    """No bind of the engine's own state or of the kernel's pseudo filesystems (resolved, so a
    symlink on the host cannot smuggle them in)."""
    resolved = os.path.realpath(source)
    root = os.path.realpath(settings.BERTH_ROOT)
    for refused in (*REFUSED_SOURCES, root):
        if resolved == refused or resolved.startswith(refused.rstrip("/") + "/") or \
                (refused == root and root.startswith(resolved.rstrip("/") + "/")):
            raise invalid(f'invalid mount config for type "bind": bind source path {source} is refused: '
                          "Berth does not bind /proc, /sys, /dev or its state root", "mounts")


def check_volume_name(name: str) -> str:
    if not VOLUME_NAME.match(name):
        raise invalid(f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                      '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                      "use absolute path", "volume name")
    if len(name) > MAX_NAME:  # a volume is a directory named after it
        raise invalid(f"create {name[:32]}...: volume name longer than {MAX_NAME} characters", "volume name")
    return name


# --- rows ----------------------------------------------------------------------------------------


def _volume_row(name: str, anonymous: bool = False, labels: dict | None = None,
                options: dict | None = None) -> tuple[Volume, bool]:
    """The volume of that name, made when missing; (row, made now)."""
    existing = Volume.objects.filter(name=name).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return Volume.objects.create(name=name, host=settings.BERTH_HOST, mountpoint=volume_mountpoint(name),
                                         anonymous=anonymous, labels=labels or {}, options=options or {}), True
    except IntegrityError:
        return Volume.objects.get(name=name), False


def insert_rows(container: Container, plans: list[MountPlan]) -> None:
    """The container's Mount rows and the volumes they name (inside the create's transaction)."""
    for plan in plans:
        volume = _volume_row(plan.volume, plan.anonymous)[0] if plan.type == Mount.TYPE_VOLUME else None
        Mount.objects.create(container=container, type=plan.type, volume=volume, source=plan.source,
                             destination=plan.destination, mode=plan.mode, read_write=plan.read_write,
                             propagation=plan.propagation)


def tmpfs_options(host_config: dict, destination: str) -> list[str]:
    """The options a tmpfs mount of that container was asked with."""
    for mount in host_config.get("Mounts") or []:
        if mount.get("Type") == "tmpfs" and os.path.normpath(mount.get("Target") or "") == destination:
            return _plan_mount(mount).options
    for path, options in (host_config.get("Tmpfs") or {}).items():
        if os.path.normpath(path) == destination:
            return [option for option in str(options or "").split(",") if option]
    return []


def nocopy_destinations(host_config: dict) -> set[str]:
    """Volume destinations the image's content must not be copied into."""
    found = set()
    for bind in host_config.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) == 3 and "nocopy" in parts[2].split(","):
            found.add(os.path.normpath(parts[1]))
    for mount in host_config.get("Mounts") or []:
        if mount.get("Type") == "volume" and (mount.get("VolumeOptions") or {}).get("NoCopy"):
            found.add(os.path.normpath(mount.get("Target") or ""))
    return found


def anonymous_volumes_of(container_id: str) -> list[str]:
    return list(Volume.objects.filter(anonymous=True, mounts__container_id=container_id)
                .values_list("name", flat=True).distinct())


# --- docker volume ... -------------------------------------------------------------------------------


def get_volume(name: str) -> Volume:
    volume = Volume.objects.filter(name=name).first()
    if volume is None:
        raise VolumeNotFound(name)
    return volume


def list_volumes() -> list[Volume]:
    return list(Volume.objects.order_by("name"))


def create_volume(body: dict | None, user=None, source: str = "api") -> Volume:
    """``docker volume create``: an existing name is returned as it is (Docker's 201 either way)."""
    body = body or {}
    name = body.get("Name") or ""
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise NotFound(f"plugin \"{driver}\" not found")
    if name:
        check_volume_name(name)
    with _operation("volume.create", user, source, name=name) as operation:
        volume, made = _volume_row(name or secrets.token_hex(32), anonymous=not name,
                                   labels=body.get("Labels") or {}, options=body.get("DriverOpts") or {})
        operation.target_id = operation.target_name = volume.name
        if made:
            try:
                _call(tasks.create_volume, volume.host, volume.mountpoint)
            except BaseException:
                volume.delete()
                raise
    return volume


def remove_volume(name: str, force: bool = False, user=None, source: str = "api") -> None:
    """``docker volume rm``: 409 while a container uses it (even with ``force``, as Docker)."""
    try:
        volume = get_volume(name)
    except VolumeNotFound:
        if force:
            return
        raise
    with _operation("volume.remove", user, source, name=name) as operation:
        operation.target_id = volume.name
        try:
            # The row first: PROTECT makes a container that mounts it meanwhile win, not lose its data.
            volume.delete()
        except ProtectedError:
            users = list(Mount.objects.filter(volume=volume).values_list("container_id", flat=True).distinct())
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]") from None
        _call(tasks.remove_volume, volume.host, volume.mountpoint)


def prune_volumes(filters: dict | None = None, all: bool = False, user=None, source: str = "api") -> tuple[list[str], int]:
    """``docker volume prune``: unused anonymous volumes (every unused one with ``all``); (names, bytes)."""
    rows = Volume.objects.filter(mounts__isnull=True)
    if not all:
        rows = rows.filter(anonymous=True)
    removed, space = [], 0
    for volume in rows.distinct():
        if not labels_match((filters or {}).get("label") or [], volume.labels or {}):
            continue
        space += tree_size(Path(volume.mountpoint))
        try:
            remove_volume(volume.name, user=user, source=source)
        except (Conflict, NotFound):
            continue
        removed.append(volume.name)
    return removed, space


def release_anonymous_volumes(names: list[str]) -> None:
    """After a container went (``rm -v``, ``--rm``): its anonymous volumes nobody else mounts."""
    for volume in Volume.objects.filter(name__in=names, anonymous=True, mounts__isnull=True):
        volume.delete()
        tasks.remove_volume_directory(volume.mountpoint)

