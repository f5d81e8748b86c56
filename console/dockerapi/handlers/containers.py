"""Container lifecycle: create, list, inspect, start, stop, restart, kill, pause, rename, remove, resize."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from runtime.errors import ContainerNotRunning
from runtime.signals import parse_signal
from runtime.spec import TERMINAL_SIDE_MAX

from .. import local, shapes
from ..errors import bad_request, conflict, not_implemented
from ..params import boolean, check_filter_names, filters, integer
from ..server import Response, empty, json_response
from ...filters import labels_match

CONTAINER_FILTERS = {"id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume",
                     "network", "publish", "expose", "health", "isolation", "is-task"}
STATES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


# --- the create body: types as Go's decoder checks them ------------------------------------

_KINDS = {bool: "bool", str: "string", int: "number", float: "number", list: "array", dict: "object"}


def _kind(value) -> str:
    return _KINDS.get(type(value), "value")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _string_map(value) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


# field -> (check, Go type name); null is always fine (Go leaves the zero value)
_STR = (lambda v: isinstance(v, str), "string")
_BOOL = (lambda v: isinstance(v, bool), "bool")
_INT = (_is_int, "int64")
_STRS = (_strings, "[]string")
_MAP = (lambda v: isinstance(v, dict), "map[string]interface {}")
_STRMAP = (_string_map, "map[string]string")
_LIST = (lambda v: isinstance(v, list), "[]interface {}")
_STRSLICE = (lambda v: isinstance(v, str) or _strings(v), "strslice.StrSlice")

CONFIG_FIELDS = {
    "Hostname": _STR, "Domainname": _STR, "User": _STR, "AttachStdin": _BOOL, "AttachStdout": _BOOL,
    "AttachStderr": _BOOL, "Tty": _BOOL, "OpenStdin": _BOOL, "StdinOnce": _BOOL, "Env": _STRS,
    "Cmd": _STRSLICE, "Entrypoint": _STRSLICE, "Shell": _STRSLICE, "Image": _STR, "Volumes": _MAP,
    "WorkingDir": _STR, "Labels": _STRMAP, "ExposedPorts": _MAP, "StopSignal": _STR, "StopTimeout": _INT,
    "NetworkDisabled": _BOOL, "MacAddress": _STR, "OnBuild": _STRS, "ArgsEscaped": _BOOL, "Healthcheck": _MAP,
    "HostConfig": _MAP, "NetworkingConfig": _MAP,
}
HOST_CONFIG_FIELDS = {
    "Binds": _STRS, "ContainerIDFile": _STR, "LogConfig": _MAP, "NetworkMode": _STR, "PortBindings": _MAP,
    "RestartPolicy": _MAP, "AutoRemove": _BOOL, "VolumeDriver": _STR, "VolumesFrom": _STRS,
    "ConsoleSize": (lambda v: isinstance(v, list) and all(_is_int(i) and i >= 0 for i in v), "[2]uint"),
    "Annotations": _STRMAP, "CapAdd": _STRSLICE, "CapDrop": _STRSLICE, "CgroupnsMode": _STR, "Dns": _STRS,
    "DnsOptions": _STRS, "DnsSearch": _STRS, "ExtraHosts": _STRS, "GroupAdd": _STRS, "IpcMode": _STR,
    "Cgroup": _STR, "Links": _STRS, "OomScoreAdj": _INT, "PidMode": _STR, "Privileged": _BOOL,
    "PublishAllPorts": _BOOL, "ReadonlyRootfs": _BOOL, "SecurityOpt": _STRS, "StorageOpt": _STRMAP,
    "Tmpfs": _STRMAP, "UTSMode": _STR, "UsernsMode": _STR, "ShmSize": _INT, "Sysctls": _STRMAP,
    "Runtime": _STR, "Isolation": _STR, "CpuShares": _INT, "Memory": _INT, "NanoCpus": _INT,
    "CgroupParent": _STR, "BlkioWeight": _INT, "CpuPeriod": _INT, "CpuQuota": _INT, "CpusetCpus": _STR,
    "CpusetMems": _STR, "Devices": _LIST, "MemoryReservation": _INT, "MemorySwap": _INT,
    "MemorySwappiness": _INT, "OomKillDisable": _BOOL, "PidsLimit": _INT, "Ulimits": _LIST, "Mounts": _LIST,
    "Init": _BOOL, "MaskedPaths": _STRS, "ReadonlyPaths": _STRS,
}
_STRSLICE_FIELDS = ("Cmd", "Entrypoint", "Shell")


def _check_fields(data: dict, fields: dict, struct: str) -> None:
    for key, (check, go_type) in fields.items():
        value = data.get(key)
        if value is not None and not check(value):
            raise bad_request(f"json: cannot unmarshal {_kind(value)} into Go struct field "
                              f"{struct}.{key} of type {go_type}")


def _check_console_size(size) -> None:
    """Go takes any uint; a terminal keeps rows and columns in 16 bits each, as an exec's size is checked."""
    if size and any(side > TERMINAL_SIDE_MAX for side in size):
        raise bad_request(f"invalid ConsoleSize {size}: rows and columns are each at most {TERMINAL_SIDE_MAX}")


def check_create_body(body) -> dict:
    """The create body with Go's type rules applied; a plain string Cmd becomes a one-item list."""
    if not isinstance(body, dict):
        raise bad_request(f"json: cannot unmarshal {_kind(body)} into Go value of type container.CreateRequest")
    _check_fields(body, CONFIG_FIELDS, "Config")
    if body.get("HostConfig") is not None:
        _check_fields(body["HostConfig"], HOST_CONFIG_FIELDS, "HostConfig")
        _check_console_size(body["HostConfig"].get("ConsoleSize"))
        if body["HostConfig"].get("CapAdd") is not None and isinstance(body["HostConfig"]["CapAdd"], str):
            body["HostConfig"]["CapAdd"] = [body["HostConfig"]["CapAdd"]]
        if body["HostConfig"].get("CapDrop") is not None and isinstance(body["HostConfig"]["CapDrop"], str):
            body["HostConfig"]["CapDrop"] = [body["HostConfig"]["CapDrop"]]
    for key in _STRSLICE_FIELDS:
        if isinstance(body.get(key), str):
            body[key] = [body[key]]
    return body


# --- handlers ----------------------------------------------------------------------------


async def create(api, request) -> Response:
    name = request.arg("name") or None
    body = await request.json()
    if body is None:
        raise bad_request("config cannot be empty in order to create a container")
    body = check_create_body(body)
    container = await api.sync(api.services.create_container, body, name=name)
    return json_response({"Id": container.id, "Warnings": list(getattr(container, "warnings", None) or [])}, 201)


def _regex_match(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _image_matches(row, references: list[str]) -> bool:
    image = row.image
    names = {row.image_ref}
    if image is not None:
        names |= {tag.name for tag in image.tags.all()}
    for reference in references:
        full = reference if ":" in reference.rsplit("/", 1)[-1] else f"{reference}:latest"
        if reference in names or full in names:
            return True
        if image is not None and image.id.removeprefix("sha256:").startswith(reference.removeprefix("sha256:")):
            return True
    return False


def _port_matches(row, wanted: list[str], published: bool) -> bool:
    ports = set()
    for mapping in row.ports.all():
        if published and mapping.host_port is None:
            continue
        number = mapping.host_port if published else mapping.container_port
        ports |= {str(number), f"{number}/{mapping.protocol}"}
    if not published:
        for key in shapes.effective_config(row).get("ExposedPorts") or {}:
            ports |= {key, key.partition("/")[0]}
    return any(item in ports or f"{item}/tcp" in ports for item in wanted)


def _matches(row, given: dict[str, list[str]], created_bounds) -> bool:
    if "id" in given and not any(_regex_match(v, row.id) for v in given["id"]):
        return False
    if "name" in given and not any(_regex_match(v, "/" + row.name) for v in given["name"]):
        return False
    if "status" in given and row.state not in given["status"]:
        return False
    if "exited" in given and not (row.state == "exited" and str(row.exit_code) in given["exited"]):
        return False
    if "label" in given and not labels_match(given["label"], shapes.effective_config(row).get("Labels") or {}):
        return False
    if "ancestor" in given and not _image_matches(row, given["ancestor"]):
        return False
    before, since = created_bounds
    if before is not None and not row.created < before:
        return False
    if since is not None and not row.created > since:
        return False
    if "network" in given:
        nets = {e.network.name for e in row.endpoints.all()} | {e.network.id for e in row.endpoints.all()}
        nets.add(shapes.host_config(row)["NetworkMode"])
        if not any(v in nets for v in given["network"]):
            return False
    if "volume" in given:
        places = set()
        for mount in row.mounts.all():
            places |= {mount.source, mount.destination, mount.volume.name if mount.volume is not None else ""}
        if not any(v in places for v in given["volume"]):
            return False
    if "publish" in given and not _port_matches(row, given["publish"], True):
        return False
    if "expose" in given and not _port_matches(row, given["expose"], False):
        return False
    if "health" in given and "none" not in given["health"]:
        return False
    if "is-task" in given and any(boolean(v) for v in given["is-task"]):
        return False
    return True


def _check_list_filters(given: dict[str, list[str]]) -> None:
    check_filter_names(given, CONTAINER_FILTERS)
    for value in given.get("status", []):
        if value not in STATES:
            raise bad_request(f"invalid filter 'status={value}'")
    for value in given.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise bad_request(f"invalid filter 'exited={value}'")


def _with_relations(rows: list) -> list:
    """Rows with what a summary reads fetched in a few queries, not a few per row."""
    if rows and hasattr(rows[0], "_meta"):
        from django.db.models import prefetch_related_objects

        prefetch_related_objects(rows, "ports", "mounts__volume", "endpoints__network", "image__tags")
    return rows


def _list(api, all_: bool, limit: int, size: bool, given: dict[str, list[str]]) -> list[dict]:
    services = api.services
    bounds = []
    for key in ("before", "since"):
        bound = None
        for reference in given.get(key, []):
            bound = services.get_container(reference).created
        bounds.append(bound)
    rows = _with_relations(services.list_containers(all=True))
    include_all = all_ or limit > 0 or "status" in given or "exited" in given
    picked = []
    for row in sorted(rows, key=lambda r: r.created, reverse=True):
        if not include_all and row.state not in shapes.RUNNING_STATES:
            continue
        if _matches(row, given, bounds):
            picked.append(row)
        if limit > 0 and len(picked) >= limit:
            break
    now = datetime.now(timezone.utc)
    result = []
    for row in picked:
        sizes = None
        if size:
            written = local.upper_size(api.runtime, row.id)
            sizes = (written, written + (row.image.size if row.image is not None else 0))
        result.append(shapes.container_summary(row, now, sizes))
    return result


async def list_containers(api, request) -> Response:
    given = filters(request.arg("filters"))
    _check_list_filters(given)
    all_ = boolean(request.arg("all"))
    limit = integer("limit", request.arg("limit"), -1)
    size = boolean(request.arg("size"))
    return json_response(await api.sync(_list, api, all_, limit, size, given))


def _inspect(api, reference: str, size: bool) -> dict:
    row = api.services.get_container(reference)
    sizes = None
    if size:
        written = local.upper_size(api.runtime, row.id)
        sizes = (written, written + (row.image.size if row.image is not None else 0))
    return shapes.container_inspect(row, api.root, api.execs.ids_for(row.id), api.store.network_by_name, sizes)


async def inspect(api, request) -> Response:
    return json_response(await api.sync(_inspect, api, request.params["id"], boolean(request.arg("size"))))


async def start(api, request) -> Response:
    await request.read_body()  # a HostConfig on start is long gone from the API (1.24); ignore it
    container, started = await api.sync(api.services.start_container, request.params["id"])
    size = api.pending_resize.pop(container.id, None)
    if size is not None:
        await api.sync(_resize_quietly, api.runtime, container.id, *size)
    return empty(204 if started else 304)


async def stop(api, request) -> Response:
    timeout = integer("t", request.arg("t"))
    signal = request.arg("signal") or None
    if signal:
        parse_signal(signal)
    _, stopped = await api.sync(api.services.stop_container, request.params["id"], timeout=timeout, signal=signal)
    return empty(204 if stopped else 304)


async def restart(api, request) -> Response:
    timeout = integer("t", request.arg("t"))
    await api.sync(api.services.restart_container, request.params["id"], timeout=timeout)
    return empty(204)


async def kill(api, request) -> Response:
    reference = request.params["id"]
    signal = request.arg("signal") or "SIGKILL"
    parse_signal(signal)
    try:
        await api.sync(api.services.kill_container, reference, signal=signal)
    except ContainerNotRunning as error:
        raise conflict(f"cannot kill container: {reference}: {error}") from None
    return empty(204)


async def pause(api, request) -> Response:
    await api.sync(api.services.pause_container, request.params["id"])
    return empty(204)


async def unpause(api, request) -> Response:
    await api.sync(api.services.unpause_container, request.params["id"])
    return empty(204)


async def rename(api, request) -> Response:
    new_name = request.arg("name") or ""
    if not new_name:
        raise bad_request("Neither old nor new names may be empty")
    await api.sync(api.services.rename_container, request.params["id"], new_name)
    return empty(204)


async def remove(api, request) -> Response:
    if boolean(request.arg("link")):
        raise not_implemented("removing legacy links")
    force = boolean(request.arg("force"))
    volumes = boolean(request.arg("v"))
    await api.sync(api.services.remove_container, request.params["id"], force=force, volumes=volumes)
    return empty(204)


def _resize_quietly(runtime, container_id: str, height: int, width: int) -> bool:
    try:
        local.resize(runtime, container_id, height, width)
        return True
    except OSError:
        return False


def _resize(api, reference: str, height: int, width: int) -> None:
    row = api.services.get_container(reference)
    if row.state not in shapes.RUNNING_STATES or not _resize_quietly(api.runtime, row.id, height, width):
        # Not started yet (the CLI resizes right after start, and may be early): apply at start.
        api.pending_resize[row.id] = (height, width)


async def resize(api, request) -> Response:
    height = integer("h", request.arg("h"), 0, minimum=0)
    width = integer("w", request.arg("w"), 0, minimum=0)
    await api.sync(_resize, api, request.params["id"], height, width)
    return Response(200, b"", "text/plain; charset=utf-8")


async def changes(api, request) -> Response:
    raise not_implemented("container changes")


async def export(api, request) -> Response:
    raise not_implemented("container export")


async def prune(api, request) -> Response:
    raise not_implemented("container prune")


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_containers),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/resize", resize),
    ("DELETE", "/containers/{id}", remove),
    ("GET", "/containers/{id}/changes", changes),
    ("GET", "/containers/{id}/export", export),
]
