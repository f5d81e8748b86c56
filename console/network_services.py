"""Networks, and containers' places on them: the rules (IPAM, modes, published ports) and their services.

A container's networking is decided when it is created, in the same
transaction as its row (``plan_container_network`` then ``insert_rows``)::

    NetworkMode "bridge" | <network>  ->  Endpoint rows (address, MAC, aliases) + PortMapping rows
    NetworkMode "host" | "none"       ->  nothing (published ports ignored on host, with a warning)
    NetworkMode "container:<id>"      ->  nothing: it joins that container's namespace at start

Addresses: the lowest free one of the network's range, the Endpoint's unique
constraint on (network, address) deciding between concurrent creates. Host
ports are claimed at start (``console.networking``). The worker makes the
kernel match; these functions only write rows and call its tasks.

Errors carry moby's words: 404 ``network X not found``, 409 ``network with
name X already exists``, 403 for what nobody may do (predefined networks,
networks in use, overlapping pools), 400 for bad input.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from runtime.errors import BerthError, Conflict, NotFound

from . import events, ipam, tasks
from .docker_config import Fields, container_network_target, invalid, port_requests
from .errors import Forbidden
from .models import Container, Endpoint, Network, PortMapping
from .operations import call, operation
from .filters import labels_match, name_matches

DEFAULT_NETWORK = "bridge"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"
HOST_PORTS_WARNING = "Published ports are discarded when using host network mode"
SHARED_NETWORK = "container sharing network namespace with another container or host cannot be connected to any other network"
HOST_NETWORK = "container cannot be disconnected from host network or connected to host network"
NO_NETWORK = "container cannot be connected to multiple networks with one of the networks in private (none) mode"
IP_ON_DEFAULT = "user specified IP address is supported on user defined networks only"
IP_WITHOUT_SUBNET = "user specified IP address is supported only when connecting to networks with user configured subnets"
ALIAS_ON_DEFAULT = "network-scoped alias is supported only for containers in user defined networks"
PUBLISHABLE = ("tcp", "udp")
SUBNET_ATTEMPTS = 5
ADDRESS_ATTEMPTS = 64
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
MAX_NETWORK_NAME = 255  # the column's width
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_HEX = re.compile(r"[0-9a-f]+")
NETWORK_FILTERS = ("name", "id", "driver", "type", "label", "scope", "dangling")


# --- reading -----------------------------------------------------------------------------------


def get_network(ref: str) -> Network:
    """By full id, exact name, or unique id prefix."""
    reference = (ref or "").strip()
    network = None
    if reference:
        network = Network.objects.filter(pk=reference).first() or Network.objects.filter(name=reference).first()
    if network is None and reference and _HEX.fullmatch(reference):
        matches = list(Network.objects.filter(id__startswith=reference)[:2])
        network = matches[0] if len(matches) == 1 else None
    if network is None:
        raise NotFound(f"network {ref} not found")
    return network


def default_network() -> Network:
    return Network.objects.get(name=DEFAULT_NETWORK, predefined=True)


def list_networks(filters: dict | None = None) -> list[Network]:
    """Sorted by name; ``filters`` as Docker's (name and id searched, driver, type custom|builtin,
    label k or k=v, dangling: without containers)."""
    given = {key: [str(v) for v in (values if isinstance(values, list) else [values])]
             for key, values in (filters or {}).items()}
    for key in given:
        if key not in NETWORK_FILTERS:
            raise invalid(f"invalid filter '{key}'", "filters")
    found = []
    for network in Network.objects.order_by("name"):
        if "name" in given and not any(name_matches(v, network.name) for v in given["name"]):
            continue
        if "id" in given and not any(network.id.startswith(v) or name_matches(v, network.id) for v in given["id"]):
            continue
        if "driver" in given and network.driver not in given["driver"]:
            continue
        if "type" in given and ("builtin" if network.predefined else "custom") not in given["type"]:
            continue
        if "scope" in given and "local" not in given["scope"]:
            continue
        if "label" in given and not labels_match(given["label"], network.labels or {}):
            continue
        if "dangling" in given:
            dangling = not network.predefined and not network.endpoints.exists()
            if dangling != (given["dangling"][0].lower() in ("1", "true")):
                continue
        found.append(network)
    return found


# --- create ------------------------------------------------------------------------------------


@dataclass
class NetworkRequest:
    name: str
    internal: bool = False
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    pool: ipam.Pool | None = None


def read_network_body(body) -> NetworkRequest:
    """``POST /networks/create``'s body, checked as moby checks it."""
    top = Fields(body, "CreateRequest")
    name = top.string("Name")
    check_network_name(name)
    driver = top.string("Driver") or Network.DRIVER_BRIDGE
    if driver in (Network.DRIVER_HOST, Network.DRIVER_NULL):
        raise Forbidden(f'only one instance of "{driver}" network is allowed')
    if driver != Network.DRIVER_BRIDGE:
        raise NotFound(f"could not find plugin {driver} in v1 plugin registry: plugin not found")
    if top.string("Scope") not in ("", "local"):
        raise invalid(f"invalid scope {top.string('Scope')!r}: Berth's networks are local", "scope")
    if top.boolean("EnableIPv6"):
        raise invalid("IPv6 networks are not supported by Berth yet", "ipv6")
    if top.boolean("Ingress") or top.boolean("ConfigOnly") or top.object("ConfigFrom").get("Network"):
        raise invalid("ingress and config-only networks need a swarm, which Berth is not", "network")
    options = top.string_map("Options")
    bridge_name = options.get(BRIDGE_NAME_OPTION, "")
    if bridge_name and (not _IFNAME.match(bridge_name) or bridge_name in (".", "..")):
        raise invalid(f"invalid bridge name {bridge_name!r}: at most 15 of [A-Za-z0-9_.-]", "bridge name")
    request = NetworkRequest(name=name, internal=top.boolean("Internal"), labels=top.string_map("Labels"),
                             options=options)
    ipam_fields = top.nested("IPAM")
    if ipam_fields.string("Driver") not in ("", "default"):
        raise NotFound(f"could not find plugin {ipam_fields.string('Driver')} in v1 plugin registry: plugin not found")
    configs = ipam_fields.list_of_objects("Config", "[]network.IPAMConfig")
    if len(configs) > 1:
        raise invalid("invalid network config:\nBerth's networks have one IPv4 subnet each", "ipam")
    if configs:
        config = Fields(configs[0], "CreateRequest.IPAM.Config")
        request.pool = ipam.read_pool(config.string("Subnet"), config.string("Gateway"), config.string("IPRange"))
    return request


def check_network_name(name: str) -> str:
    """Docker's rule for names of networks; a name is also a DNS label and a path of the API."""
    if not name:
        raise invalid("network name is required", "name")
    if not NETWORK_NAME.fullmatch(name):
        raise invalid(f'invalid network name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed', "name")
    if len(name) > MAX_NETWORK_NAME:
        raise invalid(f"invalid network name {name[:32]}...: longer than {MAX_NETWORK_NAME} characters", "name")
    return name


def create_network(body, user=None, source: str = "api") -> Network:
    """``docker network create``: the row (its subnet the user's, or picked from the pools), then its
    bridge on this host."""
    request = read_network_body(body)
    with operation("network.create", user, source, name=request.name) as op:
        if Network.objects.filter(name=request.name).exists():
            raise Conflict(f"network with name {request.name} already exists")
        network = _insert_network(request)
        op.target_id = network.id
        try:
            call(tasks.create_network, settings.BERTH_HOST, network.id)
        except BaseException:
            Network.objects.filter(pk=network.id).delete()
            raise
    events.network_changed(network.id, "create")
    return network


def _insert_network(request: NetworkRequest) -> Network:
    network_id = secrets.token_hex(32)
    bridge_name = request.options.get(BRIDGE_NAME_OPTION) or f"br-{network_id[:12]}"
    owner = Network.objects.filter(bridge_name=bridge_name).first()
    if owner is not None:
        raise Conflict(f"bridge name {bridge_name} is already used by network {owner.name}")
    fields = dict(id=network_id, name=request.name, driver=Network.DRIVER_BRIDGE, bridge_name=bridge_name,
                  internal=request.internal, labels=request.labels, options=request.options)
    for _ in range(SUBNET_ATTEMPTS):
        pool = request.pool or _picked_pool()
        fields.update(subnet=str(pool.subnet), gateway=str(pool.gateway),
                      ip_range=str(pool.ip_range) if pool.ip_range else "", user_subnet=request.pool is not None)
        try:
            with transaction.atomic():
                if ipam.overlapping(pool.subnet, _used_subnets()):
                    raise Forbidden("Pool overlaps with other one on this address space")
                return Network.objects.create(**fields)
        except IntegrityError:
            if Network.objects.filter(name=request.name).exists():
                raise Conflict(f"network with name {request.name} already exists") from None
            if request.pool is not None:
                raise Forbidden("Pool overlaps with other one on this address space") from None
        except Forbidden:
            if request.pool is not None:
                raise
            # A picked subnet another network took meanwhile: pick again.
    raise BerthError("could not find a free subnet for the network")


def _used_subnets() -> list[str]:
    return list(Network.objects.exclude(subnet="").values_list("subnet", flat=True))


def _picked_pool() -> ipam.Pool:
    subnet = call(tasks.pick_subnet, settings.BERTH_HOST, _used_subnets())
    return ipam.Pool(ipaddress.ip_network(subnet), ipam.first_host(subnet))


def ensure_default_subnet() -> Network:
    """The default network's subnet, chosen on first use (one no route of the host overlaps)."""
    network = default_network()
    for _ in range(SUBNET_ATTEMPTS):
        if network.subnet:
            return network
        pool = _picked_pool()
        options = {**(network.options or {}), BRIDGE_NAME_OPTION: settings.BERTH_DEFAULT_BRIDGE,
                   DEFAULT_BRIDGE_OPTION: "true"}
        try:
            with transaction.atomic():
                Network.objects.filter(pk=network.pk, subnet="").update(
                    subnet=str(pool.subnet), gateway=str(pool.gateway), bridge_name=settings.BERTH_DEFAULT_BRIDGE,
                    options=options)
        except IntegrityError:
            pass  # a user network took that subnet meanwhile: pick again
        network.refresh_from_db()
    if network.subnet:
        return network
    raise BerthError("could not find a free subnet for the default network")


# --- remove and prune -----------------------------------------------------------------------------


def remove_network(ref: str, user=None, source: str = "api") -> None:
    network = get_network(ref)
    with operation("network.remove", user, source, network):
        _remove(network)


def _remove(network: Network) -> None:
    if network.predefined:
        raise Forbidden(f"{network.name} is a pre-defined network and cannot be removed")
    in_use = Forbidden(f"error while removing network: network {network.name} id {network.id} has active endpoints")
    if network.endpoints.exists():
        raise in_use
    try:
        # Endpoint.network is PROTECT: a container joining meanwhile keeps the row, and says so.
        Network.objects.filter(pk=network.pk).delete()
    except ProtectedError:
        raise in_use from None
    call(tasks.remove_network, settings.BERTH_HOST, network.id, network.bridge_name)
    events.network_changed(network.id, "remove")


def prune_networks(filters: dict | None = None, user=None, source: str = "api") -> list[str]:
    """Every user-defined network without containers, removed; their names. Filters: label, label!, until."""
    given = {key: [str(v) for v in (values if isinstance(values, list) else [values])]
             for key, values in (filters or {}).items()}
    for key in given:
        if key not in ("label", "label!", "until"):
            raise invalid(f"invalid filter '{key}'", "filters")
    until = _until(given["until"][0]) if given.get("until") else None
    removed = []
    with operation("network.prune", user, source, name="networks") as op:
        for network in Network.objects.filter(predefined=False).order_by("name"):
            labels = network.labels or {}
            if given.get("label") and not labels_match(given["label"], labels):
                continue
            if given.get("label!") and any(labels_match([wanted], labels) for wanted in given["label!"]):
                continue
            if until is not None and network.created >= until:
                continue
            try:
                _remove(network)
            except Forbidden:
                continue
            removed.append(network.name)
        op.detail = {"removed": removed}
    return removed


def _until(value: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"invalid filter 'until={value}'", "filters") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# --- containers: the plan at create ------------------------------------------------------------------


@dataclass
class EndpointRequest:
    network: Network
    key: str                     # as the client named it (error messages say it)
    address: str = ""
    aliases: list = field(default_factory=list)
    mac: str = ""
    ipam_config: dict = field(default_factory=dict)


@dataclass
class NetworkPlan:
    network_mode: str            # as the row stores it ("container:<full id>" for container mode)
    endpoints: list = field(default_factory=list)
    ports: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def plan_container_network(config: dict, host_config: dict, networking_config: dict, find_container) -> NetworkPlan:
    """What a container's create decides about its network, checked with moby's messages.

    ``find_container(ref)`` resolves ``container:NAME|ID`` (services.get_container).
    """
    mode = host_config["NetworkMode"]
    endpoints_config = (networking_config or {}).get("EndpointsConfig") or {}
    target = container_network_target(mode)
    if target is not None:
        joined = find_container(target)
        if endpoints_config:
            raise invalid(SHARED_NETWORK, "network mode")
        return NetworkPlan(network_mode=f"container:{joined.id}")
    primary = default_network() if mode == DEFAULT_NETWORK else get_network(mode)
    if not primary.is_bridge:
        if set(endpoints_config) - {mode, primary.name, primary.id}:
            raise invalid(SHARED_NETWORK if primary.driver == Network.DRIVER_HOST else NO_NETWORK, "network mode")
        warnings = [HOST_PORTS_WARNING] if primary.driver == Network.DRIVER_HOST and host_config.get("PortBindings") else []
        return NetworkPlan(network_mode=primary.name, warnings=warnings)
    requests = {primary.id: EndpointRequest(primary, key="default" if mode == DEFAULT_NETWORK else mode)}
    for key, endpoint_settings in endpoints_config.items():
        network = primary if key in ("default", mode, primary.name, primary.id) else get_network(key)
        if not network.is_bridge:
            raise invalid(HOST_NETWORK if network.driver == Network.DRIVER_HOST else NO_NETWORK, "network mode")
        request = requests.setdefault(network.id, EndpointRequest(network, key=key))
        request.key = key
        _read_endpoint_settings(request, endpoint_settings)
    problems = [problem for request in requests.values() if (problem := _endpoint_problems(request))]
    if problems:
        raise invalid("\n".join(problems), "endpoint settings")
    ports = port_requests(host_config, config.get("ExposedPorts"))
    for _, _, port, protocol in ports:
        if protocol not in PUBLISHABLE:
            raise invalid(f"cannot publish {port}/{protocol}: Berth publishes tcp and udp ports only", "port")
    return NetworkPlan(network_mode=mode, endpoints=list(requests.values()), ports=ports)


def _read_endpoint_settings(request: EndpointRequest, data) -> None:
    endpoint = Fields(data, f"EndpointSettings.{request.key}")
    ipam_config = endpoint.nested("IPAMConfig")
    request.address = ipam_config.string("IPv4Address")
    if ipam_config.string("IPv6Address"):
        raise invalid(f"invalid config for network {request.key}: invalid endpoint settings:\n"
                      "Berth's networks are IPv4 only", "endpoint settings")
    request.ipam_config = {k: v for k, v in ipam_config.data.items() if v} or {}
    request.aliases = list(dict.fromkeys(endpoint.strings("Aliases") or []))
    request.mac = endpoint.string("MacAddress")


def _endpoint_problems(request: EndpointRequest) -> str:
    """moby's "invalid config for network X: invalid endpoint settings:\\n..." or ""."""
    network, found = request.network, []
    if request.address:
        if network.predefined:
            found.append(IP_ON_DEFAULT)
        elif not network.user_subnet:
            found.append(IP_WITHOUT_SUBNET)
        else:
            problem = ipam.check_requested(request.address, network.subnet, network.gateway)
            if problem:
                found.append(problem)
    if request.aliases and network.predefined:
        found.append(ALIAS_ON_DEFAULT)
    if request.mac and not _MAC.match(request.mac):
        found.append(f"invalid MAC address: {request.mac}")
    if not found:
        return ""
    return f"invalid config for network {request.key}: invalid endpoint settings:\n" + "\n".join(found)


def prepare(plan: NetworkPlan) -> None:
    """Outside the create's transaction: the default network gets its subnet on first use."""
    for request in plan.endpoints:
        if request.network.predefined and not request.network.subnet:
            request.network = ensure_default_subnet()


def insert_rows(container: Container, plan: NetworkPlan) -> None:
    """Inside the create's transaction: the container's endpoints and its port mappings."""
    for request in plan.endpoints:
        allocate_endpoint(container, request)
    for host_ip, requested, container_port, protocol in plan.ports:
        PortMapping.objects.create(container=container, host=container.host, host_ip=host_ip,
                                   requested_port=requested, container_port=container_port, protocol=protocol)


def allocate_endpoint(container: Container, request: EndpointRequest) -> Endpoint:
    """An Endpoint with the requested address, or the lowest free one; the database decides races."""
    network = request.network
    if Endpoint.objects.filter(container=container, network=network).exists():
        raise Forbidden(f"endpoint with name {container.name} already exists in network {network.name}")
    prefix = ipam.prefix_length(network.subnet)

    def insert(address: str) -> Endpoint:
        with transaction.atomic():
            return Endpoint.objects.create(
                container=container, network=network, endpoint_id=secrets.token_hex(32), ip_address=address,
                prefix_length=prefix, mac_address=request.mac or ipam.mac_address(address),
                aliases=request.aliases, ipam_config=request.ipam_config)

    if request.address:
        in_use = Conflict(f"Address already in use: {request.address} on network {network.name}")
        if request.address == network.gateway:
            raise in_use
        try:
            return insert(request.address)
        except IntegrityError:
            raise in_use from None
    taken = set(Endpoint.objects.filter(network=network, ip_address__isnull=False)
                .values_list("ip_address", flat=True))
    for _ in range(ADDRESS_ATTEMPTS):
        address = next(ipam.candidates(network.subnet, network.gateway, network.ip_range, taken), None)
        if address is None:
            break
        try:
            return insert(str(address))
        except IntegrityError:
            if Endpoint.objects.filter(container=container, network=network).exists():
                raise Forbidden(f"endpoint with name {container.name} already exists in network {network.name}") from None
            taken.add(str(address))  # taken meanwhile by another create
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {network.name} ({network.id})")


# --- connect and disconnect ---------------------------------------------------------------------------


def connect_container(network_ref: str, container: Container, endpoint_config: dict | None = None, user=None,
                      source: str = "api") -> Endpoint:
    """``docker network connect``: an address now; the interface now if it runs, else at its start."""
    network = get_network(network_ref)
    with operation("network.connect", user, source, container, detail={"network": network.name}):
        mode = (container.host_config or {}).get("NetworkMode") or DEFAULT_NETWORK
        if network.driver == Network.DRIVER_HOST or mode == "host":
            raise invalid(HOST_NETWORK, "network mode")
        if container_network_target(mode) is not None:
            raise invalid(SHARED_NETWORK, "network mode")
        if network.driver == Network.DRIVER_NULL or mode == "none":
            raise invalid(NO_NETWORK, "network mode")
        request = EndpointRequest(network, key=network.name)
        _read_endpoint_settings(request, endpoint_config or {})
        problem = _endpoint_problems(request)
        if problem:
            raise invalid(problem, "endpoint settings")
        if network.predefined and not network.subnet:
            request.network = network = ensure_default_subnet()
        endpoint = allocate_endpoint(container, request)
        try:
            call(tasks.connect_container, container.host, container.id, endpoint.endpoint_id)
        except BaseException:
            Endpoint.objects.filter(pk=endpoint.pk).delete()
            raise
    events.network_changed(network.id, "connect", container.id)
    return endpoint


def disconnect_container(network_ref: str, container: Container, force: bool = False, user=None,
                         source: str = "api") -> None:
    """``docker network disconnect``: the interface goes at once, the address with it."""
    network = get_network(network_ref)
    with operation("network.disconnect", user, source, container, detail={"network": network.name, "force": force}):
        if network.driver == Network.DRIVER_HOST:
            raise invalid(HOST_NETWORK, "network mode")
        endpoint = Endpoint.objects.filter(container=container, network=network).first()
        if endpoint is None:
            raise Forbidden(f"container {container.id} is not connected to network {network.name}")
        call(tasks.disconnect_container, container.host, container.id, endpoint.endpoint_id)
    events.network_changed(network.id, "disconnect", container.id)


# --- the kernel, asked to match -------------------------------------------------------------------------


def reconcile_network(host: str | None = None, user=None, source: str = "system") -> list[str]:
    """Remake what rows expect and the kernel lacks; remove what no row owns. What went, as the kernel
    layer's gc reports it.

    Rows are always written before their kernel objects, so what the kernel holds and no row
    read here owns is a leftover; only an object made in the instant between that read and the
    collection could be taken for one (run it when the host is quiet, as the worker does at start).
    """
    with operation("network.reconcile", user, source, name=host or settings.BERTH_HOST):
        return call(tasks.reconcile_network, host or settings.BERTH_HOST) or []

