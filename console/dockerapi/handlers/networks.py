"""Networks and volumes: reading them; making and removing them comes with the networking issue."""

from __future__ import annotations

import re

from .. import shapes
from ..errors import HTTPError, not_found, not_implemented
from ..params import boolean, check_filter_names, filters
from ..server import Response, json_response

NETWORK_FILTERS = {"name", "id", "driver", "type", "label", "scope", "dangling"}
VOLUME_FILTERS = {"name", "dangling", "driver", "label"}


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _labels_match(wanted: list[str], labels: dict) -> bool:
    return all(k in labels and (not sep or labels[k] == v) for k, sep, v in (w.partition("=") for w in wanted))


def _networks(store, given: dict[str, list[str]]) -> list[dict]:
    result = []
    for network in store.list_networks():
        if "name" in given and not any(_search(v, network.name) for v in given["name"]):
            continue
        if "id" in given and not any(network.id.startswith(v) for v in given["id"]):
            continue
        if "driver" in given and network.driver not in given["driver"]:
            continue
        if "type" in given and ("builtin" if network.predefined else "custom") not in given["type"]:
            continue
        if "scope" in given and "local" not in given["scope"]:
            continue
        if "label" in given and not _labels_match(given["label"], network.labels or {}):
            continue
        result.append(shapes.network_inspect(network))
    return result


async def list_networks(api, request) -> Response:
    given = filters(request.arg("filters"))
    check_filter_names(given, NETWORK_FILTERS)
    return json_response(await api.sync(_networks, api.store, given))


def _network(store, reference: str, with_containers: bool = True) -> dict:
    network = store.get_network(reference)
    if network is None:
        raise not_found(f"network {reference} not found")
    return shapes.network_inspect(network, with_containers)


async def inspect_network(api, request) -> Response:
    return json_response(await api.sync(_network, api.store, request.params["id"]))


async def remove_network(api, request) -> Response:
    data = await api.sync(_network, api.store, request.params["id"], False)
    if data["Name"] in ("bridge", "host", "none"):
        raise HTTPError(403, f"{data['Name']} is a pre-defined network and cannot be removed")
    raise not_implemented("removing networks")


async def network_write(api, request) -> Response:
    raise not_implemented(f"{request.method} {request.path} (networks are created with the networking issue)")


def _volumes(store, given: dict[str, list[str]]) -> dict:
    result = []
    for volume in store.list_volumes():
        if "name" in given and not any(_search(v, volume.name) for v in given["name"]):
            continue
        if "driver" in given and volume.driver not in given["driver"]:
            continue
        if "label" in given and not _labels_match(given["label"], volume.labels or {}):
            continue
        if "dangling" in given and boolean(given["dangling"][0]) != (not volume.mounts.exists()):
            continue
        result.append(shapes.volume_inspect(volume))
    return {"Volumes": result, "Warnings": None}


async def list_volumes(api, request) -> Response:
    given = filters(request.arg("filters"))
    check_filter_names(given, VOLUME_FILTERS)
    return json_response(await api.sync(_volumes, api.store, given))


def _volume(store, name: str) -> dict:
    volume = store.get_volume(name)
    if volume is None:
        raise not_found(f"get {name}: no such volume")
    return shapes.volume_inspect(volume)


async def inspect_volume(api, request) -> Response:
    return json_response(await api.sync(_volume, api.store, request.params["name"]))


async def remove_volume(api, request) -> Response:
    await api.sync(_volume, api.store, request.params["name"])
    raise not_implemented("removing volumes")


async def volume_write(api, request) -> Response:
    raise not_implemented(f"{request.method} {request.path} (volumes are created with the volumes issue)")


ROUTES = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", network_write),
    ("POST", "/networks/prune", network_write),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/{id}/connect", network_write),
    ("POST", "/networks/{id}/disconnect", network_write),
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", volume_write),
    ("POST", "/volumes/prune", volume_write),
    ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
]
