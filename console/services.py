"""Berth's business rules: the one way in for pages, the Docker API and commands.

Errors are the runtime's typed errors (``runtime.errors``) carrying Docker's
messages, so every caller maps them the same way: NotFound (NoSuchContainer,
NoSuchImage) -> 404, Conflict (NameInUse, ContainerRunning, ...) -> 409,
InvalidValue -> 400, StartFailed -> by its ``exit_code``, Forbidden
(``console.errors``: what nobody may do) -> 403, any other BerthError
(NetworkingFailed among them) -> 500.

A service validates, writes its rows, then runs the host's task on that
host's Celery queue and waits for it (``BERTH_TASK_TIMEOUT``): Docker's calls
are synchronous. The worker is another process, so rows are committed before
the task is sent: call services outside ``transaction.atomic()``. Every
state-changing service writes an Operation row (the audit log): who, through
what, which action on what, and how it ended. Networks and a container's
place on them (addresses, published ports, modes) follow the rules of
``network_services``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from runtime.errors import (
    BerthError,
    Conflict,
    ContainerNotRunning,
    ContainerPaused,
    ContainerRunning,
    ImageInUse,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    StartFailed,
    disk_full_as_error,
)
from runtime.images import normalize_reference
from runtime.names import random_name

from . import links, network_services, roles, tasks, volume_services
from .errors import NetworkingFailed
from .humanize import container_status
from .docker_config import check_name, check_signal, invalid, merge_image_config, read_create_body
from .models import Container, Image, ImageTag, Operation, Volume
from .operations import call as _call
from .operations import operation as _operation
from .filters import name_matches

log = logging.getLogger(__name__)

RUNNING_STATES = (Container.STATE_RUNNING, Container.STATE_PAUSED, Container.STATE_RESTARTING)
STOP_GRACE = 10   # seconds, when neither the caller nor the container names a stop timeout
KILL_WAIT = 30    # seconds the runtime may wait for a SIGKILL to take effect
_HEX = re.compile(r"[0-9a-f]+")
_IMAGE_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{4,64})")


def _reload(container: Container) -> Container:
    """The row as stored now; the object as it was if the row is gone (an AutoRemove container that exited)."""
    try:
        container.refresh_from_db()
    except Container.DoesNotExist:
        pass
    return container


def _now_iso() -> str:
    return datetime.now(dt_timezone.utc).isoformat()


# --- containers: create ----------------------------------------------------------------


def create_container(body: dict, name: str | None = None, user=None, source: str = "api") -> Container:
    """Docker's create: validate, write the row, create the container on its host and wait for it."""
    with _operation("container.create", user, source, name=(name or "").lstrip("/")) as operation:
        if name:
            name = check_name(name)
        config, host_config, networking_config = read_create_body(body)
        image = _image_for_create(config["Image"])
        config = merge_image_config(config, image.config)
        plan = network_services.plan_container_network(config, host_config, networking_config, get_container)
        host_config["NetworkMode"] = plan.network_mode
        mounts = volume_services.plan_mounts(config, host_config, get_container)
        roles.check_create(user, host_config, mounts, plan.network_mode, get_container)
        link_targets = links.check(host_config.get("Links"), get_container)
        new_volumes = [m.volume for m in mounts if m.volume and not Volume.objects.filter(name=m.volume).exists()]
        network_services.prepare(plan)
        with transaction.atomic():
            # Its name, its addresses and its ports in one transaction: all of them, or none.
            container = _insert_container(
                name, id=secrets.token_hex(32), host=settings.BERTH_HOST, image=image, image_ref=config["Image"],
                config=config, host_config=host_config, networking_config=networking_config,
                created=timezone.now(), created_by=operation.user,
            )
            network_services.insert_rows(container, plan)
            volume_services.insert_rows(container, mounts)
            # The operation names its container with the rows: if this process dies before the create
            # ends, the worker tells from it whether the container was made (``console.interrupted``).
            Operation.objects.filter(pk=operation.pk).update(target_id=container.id, target_name=container.name)
            if link_targets:
                container.host_config = {**container.host_config,
                                         "Links": links.normalised(container, link_targets)}
                container.save(update_fields=["host_config"])
        container.warnings = plan.warnings
        operation.target_id, operation.target_name = container.id, container.name
        try:
            _call(tasks.create_container, container.host, container.id)
        except BaseException as error:
            Container.objects.filter(pk=container.id).delete()
            _forget_new_volumes(container.host, new_volumes)
            if isinstance(error, NoSuchImage):  # the store lost it since the rows were synced
                raise NoSuchImage(_familiar(config["Image"])) from None
            raise
        return _reload(container)


def _forget_new_volumes(host: str, names: list[str]) -> None:
    """The volumes a failed create made (rows and directories), unless someone mounts them meanwhile."""
    for volume in Volume.objects.filter(name__in=names, mounts__isnull=True):
        try:
            _call(tasks.remove_volume, host, volume.mountpoint)
        except BerthError:
            log.exception("could not remove the directory of volume %s", volume.name)
        volume.delete()


def _image_for_create(reference: str) -> Image:
    try:
        return get_image(reference)
    except NoSuchImage:
        sync_images()  # an image made on the host outside the console (the set-up's busybox)
        return get_image(reference)


def _insert_container(name: str | None, **fields) -> Container:
    """The row, its name claimed by the database's unique constraint (the arbiter of races)."""
    for attempt in range(100):
        candidate = name or (random_name() if attempt < 50 else f"{random_name()}{secrets.randbelow(100)}")
        try:
            with transaction.atomic():
                return Container.objects.create(name=candidate, **fields)
        except IntegrityError:
            if name:
                owner = Container.objects.filter(name=name).values_list("id", flat=True).first()
                raise NameInUse(name, owner or "") from None
    raise BerthError("could not find a free container name")


# --- containers: lifecycle ------------------------------------------------------------------


def start_container(ref: str, user=None, source: str = "api") -> tuple[Container, bool]:
    """Start PID 1. False when it was running already (the API's 304).

    A failed start leaves the container created (or exited) with the exit
    code and the error, as Docker does, and raises StartFailed (PID 1 could
    not run) or NetworkingFailed (its network could not be set up: a host
    port taken, say); an AutoRemove container is removed then.
    """
    container = get_container(ref)
    with _operation("container.start", user, source, container):
        if container.state == Container.STATE_PAUSED:
            raise Conflict("cannot start a paused container, try unpause instead")
        _started_by_user(container)
        try:
            outcome = _call(tasks.start_container, container.host, container.id, _now_iso())
        except ContainerPaused:
            raise Conflict("cannot start a paused container, try unpause instead") from None
        except (StartFailed, NetworkingFailed):
            if container.auto_remove:
                _remove_after_failed_start(container)
            raise
    return _reload(container), outcome["started"]


def _started_by_user(container: Container) -> None:
    """A start by hand: the restart policy counts from zero again and a manual stop is forgotten (Docker).
    A start of what runs changes nothing (the API's 304)."""
    Container.objects.filter(pk=container.id).exclude(state=Container.STATE_RUNNING).update(
        restart_count=0, manually_stopped=False)


def _stopped_by_user(container: Container) -> None:
    """Marked before PID 1 is signalled, so the exit watcher never restarts what the user stopped."""
    Container.objects.filter(pk=container.id).update(manually_stopped=True)


def _remove_after_failed_start(container: Container) -> None:
    try:
        with _operation("container.remove", None, Operation.SOURCE_SYSTEM, container, detail={"reason": "AutoRemove"}):
            _call(tasks.remove_container, container.host, container.id, True, True)
    except BerthError:
        log.exception("could not remove container %s after its start failed", container.id)


def stop_container(ref: str, timeout: int | None = None, signal: str | None = None, user=None,
                   source: str = "api") -> tuple[Container, bool]:
    """The stop signal, ``timeout`` seconds of grace, SIGKILL. False when it was not running (304)."""
    container = get_container(ref)
    if signal:
        check_signal(signal)
    timeout = _timeout(timeout)
    with _operation("container.stop", user, source, container, detail={"timeout": timeout, "signal": signal}):
        _stopped_by_user(container)
        outcome = _call(tasks.stop_container, container.host, container.id, timeout, signal or None,
                        extra_wait=_grace(container, timeout) + KILL_WAIT)
    return _reload(container), outcome["was_running"]


def restart_container(ref: str, timeout: int | None = None, user=None, source: str = "api") -> Container:
    container = get_container(ref)
    timeout = _timeout(timeout)
    with _operation("container.restart", user, source, container, detail={"timeout": timeout}):
        # Its stop is the user's (no policy restart meanwhile); the task forgets it as it starts.
        Container.objects.filter(pk=container.id).update(restart_count=0, manually_stopped=True)
        try:
            _call(tasks.restart_container, container.host, container.id, timeout, _now_iso(),
                  extra_wait=_grace(container, timeout) + KILL_WAIT)
        except (StartFailed, NetworkingFailed):
            if container.auto_remove:
                _remove_after_failed_start(container)
            raise
    return _reload(container)


def kill_container(ref: str, signal: str = "SIGKILL", user=None, source: str = "api") -> Container:
    container = get_container(ref)
    signal = str(signal or "SIGKILL")
    check_signal(signal)
    with _operation("container.kill", user, source, container, detail={"signal": signal}):
        _stopped_by_user(container)  # any signal, as moby's kill does
        try:
            _call(tasks.kill_container, container.host, container.id, signal, extra_wait=KILL_WAIT)
        except ContainerNotRunning:
            raise Conflict(f"cannot kill container: {ref}: container {container.id} is not running") from None
    return _reload(container)


def pause_container(ref: str, user=None, source: str = "api") -> Container:
    container = get_container(ref)
    with _operation("container.pause", user, source, container):
        if container.state == Container.STATE_PAUSED:
            raise Conflict(f"container {container.id} is already paused")
        _call(tasks.pause_container, container.host, container.id)
    return _reload(container)


def unpause_container(ref: str, user=None, source: str = "api") -> Container:
    container = get_container(ref)
    with _operation("container.unpause", user, source, container):
        if container.state != Container.STATE_PAUSED:
            raise Conflict(f"Container {container.id} is not paused")
        _call(tasks.unpause_container, container.host, container.id)
    return _reload(container)


def remove_container(ref: str, force: bool = False, volumes: bool = False, user=None, source: str = "api") -> None:
    """``docker rm``: refused while running unless ``force`` (then killed first).

    ``volumes`` (``rm -v``): its anonymous volumes go too, unless another container mounts them.
    """
    container = get_container(ref)
    with _operation("container.remove", user, source, container, detail={"force": force, "volumes": volumes}):
        if container.state == Container.STATE_RESTARTING and not force:
            raise Conflict(f'cannot remove container "{ref}": container is restarting: '
                           f'stop the container before removing or force remove')
        if container.running and not force:
            container = _refreshed(container)  # the row may lag an exit by a few milliseconds
            if container.state == Container.STATE_PAUSED:
                raise Conflict(f'cannot remove container "{ref}": container is paused and must be unpaused first')
            if container.running:
                raise ContainerRunning(ref)
        previous = _claim_removal(container, ref)
        try:
            _call(tasks.remove_container, container.host, container.id, force, volumes, extra_wait=KILL_WAIT)
        except BaseException as error:
            Container.objects.filter(pk=container.id, state=Container.STATE_REMOVING).update(state=previous)
            _refresh_quietly(container)
            if isinstance(error, ContainerRunning):  # started meanwhile
                raise ContainerRunning(ref) from None
            raise


def _claim_removal(container: Container, ref: str) -> str:
    """Mark the row removing (one remover wins); the state it had."""
    for _ in range(10):
        current = Container.objects.filter(pk=container.id).values_list("state", flat=True).first()
        if current is None:
            raise NoSuchContainer(ref)
        if current == Container.STATE_REMOVING:
            raise Conflict(f"removal of container {ref} is already in progress")
        if Container.objects.filter(pk=container.id, state=current).update(state=Container.STATE_REMOVING):
            return current
    raise Conflict(f"removal of container {ref} is already in progress")


def rename_container(ref: str, new_name: str, user=None, source: str = "api") -> Container:
    container = get_container(ref)
    new_name = (new_name or "").lstrip("/")
    if not new_name:
        raise invalid("Neither old nor new names may be empty", "name")
    check_name(new_name)
    old_name = container.name
    if new_name == old_name:
        raise invalid("Renaming a container with the same name as its current name", "name")
    with _operation("container.rename", user, source, container, detail={"from": old_name, "to": new_name}):
        try:
            with transaction.atomic():
                Container.objects.filter(pk=container.id).update(name=new_name)
        except IntegrityError:
            owner = Container.objects.filter(name=new_name).values_list("id", flat=True).first()
            raise NameInUse(new_name, owner or "") from None
        try:
            _call(tasks.rename_container, container.host, container.id, new_name)
        except BaseException:
            Container.objects.filter(pk=container.id, name=new_name).update(name=old_name)
            raise
    return _reload(container)


def refresh_container(ref: str) -> Container:
    """Look at the container on its host again and store what is seen."""
    container = get_container(ref)
    _call(tasks.refresh_container, container.host, container.id)
    try:
        return Container.objects.get(pk=container.id)
    except Container.DoesNotExist:
        raise NoSuchContainer(ref) from None


def _refreshed(container: Container) -> Container:
    _call(tasks.refresh_container, container.host, container.id)
    return _reload(container)


def _refresh_quietly(container: Container) -> None:
    try:
        _call(tasks.refresh_container, container.host, container.id)
    except BerthError:
        log.exception("could not refresh container %s", container.id)


def _timeout(timeout) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        try:
            timeout = int(str(timeout))
        except ValueError:
            raise invalid(f"invalid timeout: {timeout}", "timeout") from None
    return timeout


def _grace(container: Container, timeout: int | None) -> int:
    if timeout is None:
        timeout = container.config.get("StopTimeout")
    return max(timeout if timeout is not None else STOP_GRACE, 0)


# --- containers: reading -------------------------------------------------------------------


def get_container(ref: str) -> Container:
    """By full id, by name (with or without its "/"), or by a unique id prefix."""
    reference = (ref or "").strip()
    if not reference:
        raise NoSuchContainer(ref or "")
    container = Container.objects.filter(pk=reference).first()
    if container is None:
        container = Container.objects.filter(name=reference.lstrip("/")).first()
    if container is None and len(reference) <= 64 and _HEX.fullmatch(reference):
        matches = list(Container.objects.filter(id__startswith=reference)[:2])
        if len(matches) > 1:
            raise invalid(f"multiple IDs found with provided prefix: {reference}", "container")
        container = matches[0] if matches else None
    if container is None:
        raise NoSuchContainer(ref)
    return container


FILTERS = ("name", "id", "status", "label")


def list_containers(all: bool = False, limit: int | None = None, filters: dict | None = None) -> list[Container]:
    """Newest first. Without ``all`` only running (and paused) ones, unless a status filter or a limit says otherwise.

    ``filters`` as Docker's: {"name": [...], "id": [...], "status": [...], "label": ["k", "k=v"]}
    (the older {"name": {"web": true}} form too). Name and id are regular expressions searched
    in "/name" and the id, as moby does.
    """
    filters = _normalise_filters(filters)
    statuses = filters.get("status", [])
    for status in statuses:
        if status not in dict(Container.STATES):
            raise invalid(f"invalid filter 'status={status}'", "filters")
    rows = Container.objects.select_related("image")
    if statuses:
        rows = rows.filter(state__in=statuses)
    elif not all and not (limit and limit > 0):
        rows = rows.filter(state__in=RUNNING_STATES)
    found = [row for row in rows if _matches(row, filters)]
    return found[:limit] if limit and limit > 0 else found


def _normalise_filters(filters) -> dict[str, list[str]]:
    normalised = {}
    for key, values in (filters or {}).items():
        if key not in FILTERS:
            raise invalid(f"invalid filter '{key}'", "filters")
        if isinstance(values, dict):
            values = [value for value, wanted in values.items() if wanted]
        elif isinstance(values, str):
            values = [values]
        normalised[key] = [str(value) for value in values or []]
    return normalised


def _matches(row: Container, filters: dict[str, list[str]]) -> bool:
    if filters.get("name") and not any(name_matches(pattern, "/" + row.name) for pattern in filters["name"]):
        return False
    if filters.get("id") and not any(name_matches(pattern, row.id) for pattern in filters["id"]):
        return False
    labels = row.config.get("Labels") or {}
    for wanted in filters.get("label", []):
        key, equals, value = wanted.partition("=")
        if key not in labels or (equals and labels[key] != value):
            return False
    return True


def describe_status(container: Container, now: datetime | None = None) -> str:
    """Docker's Status column: "Up 5 minutes", "Exited (3) 2 seconds ago", "Created"..."""
    return container_status(container.state, container.exit_code, container.started_at, container.finished_at,
                            now or timezone.now())


# --- images ------------------------------------------------------------------------------------


def list_images() -> list[Image]:
    return list(Image.objects.prefetch_related("tags").order_by("-created"))


def get_image(ref: str) -> Image:
    """By tag ("busybox" is busybox:latest), by id ("sha256:..."), or by a unique id prefix; tags first."""
    reference = (ref or "").strip()
    if not reference:
        raise NoSuchImage(ref or "")
    if reference.startswith("sha256:"):
        return _image_by_prefix(reference, reference)
    try:
        tag = image_reference(reference)
    except InvalidValue:
        if _IMAGE_PREFIX.fullmatch(reference):
            return _image_by_prefix(reference, reference)
        raise
    found = ImageTag.objects.select_related("image").filter(name=tag).first()
    if found is not None:
        return found.image
    if _IMAGE_PREFIX.fullmatch(reference):
        return _image_by_prefix(reference, tag)
    raise NoSuchImage(tag)


def _image_by_prefix(reference: str, missing: str) -> Image:
    match = _IMAGE_PREFIX.fullmatch(reference)
    if match:
        matches = list(Image.objects.filter(id__startswith="sha256:" + match.group(1))[:2])
        if len(matches) == 1:
            return matches[0]
    raise NoSuchImage(missing)


def image_reference(reference: str) -> str:
    """``name[:tag]`` as Docker's familiar ``name:tag``; Docker's "invalid reference format" otherwise."""
    try:
        return normalize_reference(reference)
    except InvalidValue as error:
        if "lowercase" in error.reason:
            raise invalid(f"invalid reference format: repository name ({reference}) must be lowercase",
                          "reference") from None
        raise invalid("invalid reference format", "reference") from None


def _familiar(reference: str) -> str:
    try:
        return image_reference(reference)
    except InvalidValue:
        return reference


def sync_images() -> None:
    """Make the Image and ImageTag rows match this host's image store."""
    _call(tasks.sync_images, settings.BERTH_HOST)


def tag_image(ref: str, repo: str, tag: str | None = None, user=None, source: str = "api") -> Image:
    image = get_image(ref)
    new_reference = image_reference(f"{repo}:{tag}" if tag else repo)
    with _operation("image.tag", user, source, name=new_reference, detail={"image": image.id}) as operation:
        operation.target_id = image.id
        _call(tasks.tag_image, image.host, image.id, new_reference)
    return get_image(new_reference)


def remove_image(ref: str, force: bool = False, user=None, source: str = "api") -> list[dict]:
    """``docker rmi``: [{"Untagged": "busybox:latest"}, {"Deleted": "sha256:..."}]."""
    image = get_image(ref)
    with _operation("image.remove", user, source, name=ref, detail={"force": force}) as operation:
        operation.target_id = image.id
        try:
            lines = _call(tasks.remove_image, image.host, ref, force)
        except ImageInUse as error:
            raise _image_in_use(ref, image, error) from None
    return [{kind: value} for kind, _, value in (line.partition(": ") for line in lines)]


def _image_in_use(ref: str, image: Image, error: ImageInUse) -> ImageInUse:
    user = error.container_ids[0][:12] if error.container_ids else ""
    short = image.id.removeprefix("sha256:")[:12]
    if ImageTag.objects.filter(name=_familiar(ref)).exists():
        message = (f'conflict: unable to remove repository reference "{ref}" (must force) - '
                   f"container {user} is using its referenced image {short}")
    elif Container.objects.filter(pk__in=error.container_ids, state__in=RUNNING_STATES).exists():
        message = f"conflict: unable to delete {short} (cannot be forced) - image is being used by running container {user}"
    else:
        message = f"conflict: unable to delete {short} (must be forced) - image is being used by stopped container {user}"
    error.args = (message,)
    return error


def import_image(fileobj_or_path, reference: str | None = None, changes=(), user=None, source: str = "api") -> Image:
    """``docker import``: a rootfs tarball (path or binary file object) as a one-layer image."""
    if reference:
        reference = image_reference(reference)
    with _operation("image.import", user, source, name=reference or "") as operation:
        with _upload(fileobj_or_path) as path:
            image_id = _call(tasks.import_image, settings.BERTH_HOST, path, reference, list(changes or ()))
        operation.target_id = image_id
    return get_image(image_id)


def load_images(fileobj_or_path, user=None, source: str = "api") -> list[Image]:
    """``docker load``: a docker-save or OCI archive (path or binary file object); the images in it."""
    with _operation("image.load", user, source) as operation:
        with _upload(fileobj_or_path) as path:
            image_ids = _call(tasks.load_images, settings.BERTH_HOST, path)
        operation.detail = {"images": image_ids}
        Operation.objects.filter(pk=operation.pk).update(detail=operation.detail)
    return [get_image(image_id) for image_id in image_ids]


@contextmanager
def _upload(fileobj_or_path):
    """A path the host's worker can read: the path given, or the stream copied under BERTH_ROOT/tmp."""
    if isinstance(fileobj_or_path, (str, os.PathLike)):
        yield str(fileobj_or_path)
        return
    path = _copy_upload(fileobj_or_path, Path(settings.BERTH_ROOT))
    try:
        yield path
    finally:
        os.unlink(path)


def _copy_upload(fileobj, root: Path) -> str:
    """The stream in a new file under root/tmp; a full disk is a DiskFull, with nothing left behind."""
    with disk_full_as_error("cannot receive the archive", root):
        scratch = root / "tmp"
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="upload-", dir=scratch)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(fileobj, out, 1 << 20)
        except BaseException:
            os.unlink(path)
            raise
    return path


# --- networks (rules in network_services) ------------------------------------------------------------

get_network = network_services.get_network
list_networks = network_services.list_networks
create_network = network_services.create_network
remove_network = network_services.remove_network
prune_networks = network_services.prune_networks
reconcile_network = network_services.reconcile_network


# --- volumes (rules in volume_services) ------------------------------------------------------------

get_volume = volume_services.get_volume
list_volumes = volume_services.list_volumes
create_volume = volume_services.create_volume
remove_volume = volume_services.remove_volume
prune_volumes = volume_services.prune_volumes


def connect_network(network_ref: str, container_ref: str, endpoint_config: dict | None = None, user=None,
                    source: str = "api"):
    """``POST /networks/{id}/connect``: the Endpoint made."""
    return network_services.connect_container(network_ref, get_container(container_ref), endpoint_config, user, source)


def disconnect_network(network_ref: str, container_ref: str, force: bool = False, user=None,
                       source: str = "api") -> None:
    network_services.disconnect_container(network_ref, get_container(container_ref), force, user, source)
