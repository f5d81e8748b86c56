"""Networks and volumes: read from the store, changed through the services."""

from __future__ import annotations


from .. import shapes
from ..errors import HTTPError, not_found
from ..params import boolean, check_filter_names, filters
from ..server import Response, empty, json_response
from ...filters import labels_match, name_matches
from .containers import _BOOL, _MAP, _STR, _STRMAP, _check_fields

NETWORK_FILTERS = {"name", "id", "driver", "type", "label", "scope", "dangling"}
VOLUME_FILTERS = {"name", "dangling", "driver", "label"}

# Go's types for the bodies, checked here so a wrong type is a 400 and never reaches the services.
NETWORK_FIELDS = {
    "Name": _STR, "Driver": _STR, "Scope": _STR, "Internal": _BOOL, "Attachable": _BOOL, "Ingress": _BOOL,
    "ConfigOnly": _BOOL, "EnableIPv6": _BOOL, "CheckDuplicate": _BOOL, "IPAM": _MAP, "Options": _STRMAP,
    "Labels": _STRMAP,
}
VOLUME_FIELDS = {"Name": _STR, "Driver": _STR, "DriverOpts": _STRMAP, "Labels": _STRMAP}


def _networks(store, given: dict[str, list[str]]) -> list[dict]:
    # Filtering is a service rule (console.network_services.list_networks), shared with the pages.
    return [shapes.network_inspect(network) for network in store.list_networks(given)]


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


async def create_network(api, request) -> Response:
    body = await request.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "json: cannot unmarshal into Go value of type network.CreateRequest")
    _check_fields(body, NETWORK_FIELDS, "CreateRequest")
    network = await api.sync(api.services.create_network, body)
    return json_response({"Id": network.id, "Warning": ""}, 201)


async def remove_network(api, request) -> Response:
    await api.sync(api.services.remove_network, request.params["id"])
    return empty(204)


async def prune_networks(api, request) -> Response:
    given = filters(request.arg("filters"))
    removed = await api.sync(api.services.prune_networks, given)
    return json_response({"NetworksDeleted": removed or None})


def _container_ref(body) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
        raise HTTPError(400, "no container specified")
    return body["Container"]


async def connect(api, request) -> Response:
    body = await request.json()
    container = _container_ref(body)
    endpoint_config = body.get("EndpointConfig")
    endpoint_config = {} if endpoint_config is None else endpoint_config
    if not isinstance(endpoint_config, dict):
        raise HTTPError(400, "json: cannot unmarshal into Go struct field ConnectRequest.EndpointConfig")
    await api.sync(api.services.connect_network, request.params["id"], container, endpoint_config)
    return Response(200, b"", "text/plain; charset=utf-8")


async def disconnect(api, request) -> Response:
    body = await request.json()
    container = _container_ref(body)
    force = body.get("Force") is True
    await api.sync(api.services.disconnect_network, request.params["id"], container, force)
    return Response(200, b"", "text/plain; charset=utf-8")


def _volumes(store, given: dict[str, list[str]]) -> dict:
    result = []
    for volume in store.list_volumes():
        if "name" in given and not any(name_matches(v, volume.name) for v in given["name"]):
            continue
        if "driver" in given and volume.driver not in given["driver"]:
            continue
        if "label" in given and not labels_match(given["label"], volume.labels or {}):
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


async def create_volume(api, request) -> Response:
    body = await request.json()
    if body is not None and not isinstance(body, dict):
        raise HTTPError(400, "json: cannot unmarshal into Go value of type volume.CreateOptions")
    _check_fields(body or {}, VOLUME_FIELDS, "CreateOptions")
    volume = await api.sync(api.services.create_volume, body or {})
    return json_response(shapes.volume_inspect(volume), 201)


async def remove_volume(api, request) -> Response:
    await api.sync(api.services.remove_volume, request.params["name"], boolean(request.arg("force")))
    return empty(204)


async def prune_volumes(api, request) -> Response:
    given = filters(request.arg("filters"))
    check_filter_names(given, {"label", "all"})
    every = boolean((given.get("all") or ["false"])[0])
    removed, space = await api.sync(api.services.prune_volumes, given, every)
    return json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": space})


ROUTES = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", create_network),
    ("POST", "/networks/prune", prune_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", create_volume),
    ("POST", "/volumes/prune", prune_volumes),
    ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
]
