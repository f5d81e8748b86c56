"""Docker's create body, checked and normalised as moby does, before any row is written.

``read_create_body(body)`` -> (config, host_config, networking_config): the
three JSON objects a Container row stores and inspect echoes back. Types are
checked the way Go's JSON decoder checks them (null is the zero value, a
wrong type is a 400 naming the field); values with moby's messages.
``merge_image_config`` then fills in the image's defaults (moby's
mergeAndVerifyConfig).
"""

from __future__ import annotations

import ipaddress
import os
import re

from runtime.errors import InvalidValue
from runtime.images import expand_port_spec
from runtime.signals import parse_signal

from .specs import parse_size

NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")  # \Z: "$" would let a final newline through
HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\Z")
ENV_KEY = re.compile(r"^[^=\s]+$")
MIN_MEMORY = 6 * 1024 * 1024
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
PREDEFINED_NETWORKS = ("default", "bridge", "host", "none")
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
LOG_DRIVERS = ("json-file", "local", "none")
LOG_OPTIONS = ("max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag")
CAPABILITIES = {
    "CAP_" + name for name in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
        "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
        "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
        "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE ALL"
    ).split()
}


def invalid(message: str, field: str = "value") -> InvalidValue:
    """An InvalidValue whose message is exactly ``message`` (Docker's wording, not "invalid field: ...")."""
    error = InvalidValue(field, message)
    error.args = (message,)
    return error


MAX_NAME = 255


def check_name(name: str) -> str:
    """A container name without its leading "/"; Docker's rule and message."""
    if not NAME.match(name):
        raise invalid(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", "name")
    if len(name.lstrip("/")) > MAX_NAME:  # a name is a file name in the state root
        raise invalid(f"Invalid container name: longer than {MAX_NAME} characters", "name")
    return name.lstrip("/")


def check_signal(value) -> int:
    try:
        return parse_signal(value)
    except InvalidValue:
        raise invalid(f"Invalid signal: {value}", "signal") from None


# --- Go-like typed reading ------------------------------------------------------------

_JSON_KINDS = ((bool, "bool"), (str, "string"), ((int, float), "number"), (list, "array"), (dict, "object"))


def _kind(value) -> str:
    for types, name in _JSON_KINDS:
        if isinstance(value, types):
            return name
    return "value"


def _type_error(value, field: str, go_type: str) -> InvalidValue:
    return invalid(f"json: cannot unmarshal {_kind(value)} into Go struct field {field} of type {go_type}", field)


class Fields:
    """One JSON object read like Go's decoder would read it into a struct."""

    def __init__(self, data, where: str):
        if data is not None and not isinstance(data, dict):
            raise _type_error(data, where, "struct")
        self.data = data or {}
        self.where = where

    def _get(self, key: str, types, go_type: str):
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise _type_error(value, f"{self.where}.{key}", go_type)
        if not isinstance(value, types):
            raise _type_error(value, f"{self.where}.{key}", go_type)
        return value

    def string(self, key: str) -> str:
        return self._get(key, str, "string") or ""

    def boolean(self, key: str) -> bool:
        return bool(self._get(key, bool, "bool"))

    def integer(self, key: str, go_type: str = "int64") -> int | None:
        value = self._get(key, int, go_type)
        if value is not None and not INT64_MIN <= value <= INT64_MAX:
            raise _type_error(value, f"{self.where}.{key}", go_type)  # Go's decoder refuses it as well
        return value

    def strings(self, key: str) -> list[str] | None:
        values = self._get(key, list, "[]string")
        for value in values or []:
            if not isinstance(value, str):
                raise _type_error(value, f"{self.where}.{key}", "string")
        return values

    def str_slice(self, key: str) -> list[str] | None:
        """Docker's StrSlice: a string is a one-element list."""
        if isinstance(self.data.get(key), str):
            return [self.data[key]]
        return self.strings(key)

    def string_map(self, key: str) -> dict[str, str]:
        values = self._get(key, dict, "map[string]string") or {}
        for value in values.values():
            if not isinstance(value, str):
                raise _type_error(value, f"{self.where}.{key}", "string")
        return dict(values)

    def object(self, key: str) -> dict:
        return dict(self._get(key, dict, "struct") or {})

    def nested(self, key: str) -> "Fields":
        return Fields(self.data.get(key), f"{self.where}.{key}")

    def list_of_objects(self, key: str, go_type: str) -> list[dict]:
        values = self._get(key, list, go_type) or []
        for value in values:
            if not isinstance(value, dict):
                raise _type_error(value, f"{self.where}.{key}", go_type.removeprefix("[]"))
        return values


# --- the create body --------------------------------------------------------------------


def read_create_body(body) -> tuple[dict, dict, dict]:
    top = Fields(body, "CreateRequest")
    config = _config(top)
    host_config = _host_config(top.nested("HostConfig"), config)
    networking = _networking(top.nested("NetworkingConfig"), host_config["NetworkMode"])
    return config, host_config, networking


def container_network_target(network_mode: str) -> str | None:
    """``container:NAME|ID`` -> NAME|ID; None for every other mode."""
    prefix, colon, target = network_mode.partition(":")
    return target if prefix == "container" and colon else None


def _config(top: Fields) -> dict:
    config = {
        "Hostname": top.string("Hostname"),
        "Domainname": top.string("Domainname"),
        "User": top.string("User"),
        "AttachStdin": top.boolean("AttachStdin"),
        "AttachStdout": top.boolean("AttachStdout"),
        "AttachStderr": top.boolean("AttachStderr"),
        "ExposedPorts": _exposed_ports(top),
        "Tty": top.boolean("Tty"),
        "OpenStdin": top.boolean("OpenStdin"),
        "StdinOnce": top.boolean("StdinOnce"),
        "Env": top.strings("Env") or [],
        "Cmd": top.str_slice("Cmd"),
        "Image": top.string("Image"),
        "Volumes": top.object("Volumes") or None,
        "WorkingDir": top.string("WorkingDir"),
        "Entrypoint": top.str_slice("Entrypoint"),
        "OnBuild": top.strings("OnBuild"),
        "Labels": top.string_map("Labels"),
        "StopSignal": top.string("StopSignal"),
        "StopTimeout": top.integer("StopTimeout", "int"),
    }
    if not config["Image"]:
        raise invalid("No image was specified", "image")
    if config["Hostname"] and not HOSTNAME.match(config["Hostname"]):
        raise invalid(f"invalid hostname format: {config['Hostname']}", "hostname")
    if config["WorkingDir"] and not os.path.isabs(config["WorkingDir"]):
        raise invalid(f"the working directory '{config['WorkingDir']}' is invalid, it needs to be an absolute path",
                      "working dir")
    for entry in config["Env"]:
        if not ENV_KEY.match(entry.partition("=")[0]):
            raise invalid(f"invalid environment variable: {entry}", "env")
    if config["StopSignal"]:
        check_signal(config["StopSignal"])
    return config


def _exposed_ports(top: Fields) -> dict | None:
    ports = {}
    for key in top.object("ExposedPorts"):
        try:
            expanded = expand_port_spec(key)
        except InvalidValue:
            expanded = []
        if len(expanded) != 1:  # one port per key; ranges are the client's to expand
            raise invalid(f'invalid port specification: "{key}"', "port")
        ports[expanded[0]] = {}
    return ports or None


def _host_config(fields: Fields, config: dict) -> dict:
    host_config = dict(fields.data)  # inspect echoes what the client sent; known fields normalised below
    host_config.update({
        "NetworkMode": _network_mode(fields.string("NetworkMode")),
        "AutoRemove": fields.boolean("AutoRemove"),
        "RestartPolicy": _restart_policy(fields.nested("RestartPolicy")),
        "LogConfig": _log_config(fields.nested("LogConfig")),
        "Binds": _binds(fields.strings("Binds")),
        "Mounts": _mounts(fields.list_of_objects("Mounts", "[]mount.Mount")) or None,
        "Memory": fields.integer("Memory") or 0,
        "MemorySwap": fields.integer("MemorySwap") or 0,
        "NanoCpus": fields.integer("NanoCpus") or 0,
        "CpuShares": fields.integer("CpuShares") or 0,
        "PidsLimit": fields.integer("PidsLimit"),
        "ExtraHosts": _extra_hosts(fields.strings("ExtraHosts")),
        "Dns": _dns(fields.strings("Dns")),
        "DnsSearch": fields.strings("DnsSearch") or [],
        "DnsOptions": fields.strings("DnsOptions") or [],
        "CapAdd": _capabilities("CapAdd", fields.strings("CapAdd")),
        "CapDrop": _capabilities("CapDrop", fields.strings("CapDrop")),
        "ReadonlyRootfs": fields.boolean("ReadonlyRootfs"),
        "Privileged": fields.boolean("Privileged"),
        # Ports are planned by network_services, links by console.links, mounts by volume_services.
        "PortBindings": _port_bindings(fields),
        "PublishAllPorts": fields.boolean("PublishAllPorts"),
        "Links": fields.strings("Links"),
        "VolumesFrom": fields.strings("VolumesFrom"),
        "Tmpfs": fields.string_map("Tmpfs") or None,
    })
    if host_config["Privileged"]:
        raise invalid("privileged containers are not supported yet", "privileged")
    _check_resources(host_config)
    if host_config["AutoRemove"] and host_config["RestartPolicy"]["Name"] != "no":
        raise invalid("can't create 'AutoRemove' container with restart policy", "restart policy")
    if host_config["NetworkMode"] == "host" and host_config["Links"]:
        raise invalid("conflicting options: host type networking can't be used with links. "
                      "This would result in undefined behavior", "network mode")
    _check_container_mode(config, host_config)
    return host_config


def _network_mode(mode: str) -> str:
    """"" and "default" are the default network; anything else is looked up later (a network's
    name or id, ``container:NAME|ID``)."""
    if mode in ("", "default"):
        return "bridge"
    if mode == "container" or (mode.startswith("container:") and not container_network_target(mode)):
        raise invalid("Invalid network mode: invalid container format container:<name|id>", "network mode")
    return mode


def _check_container_mode(config: dict, host_config: dict) -> None:
    """moby's validateNetContainerMode: what another container's namespace already decides."""
    if not container_network_target(host_config["NetworkMode"]):
        return
    conflicts = [
        (config["Hostname"], "conflicting options: hostname and the network mode"),
        (host_config["Links"], "conflicting options: container type network can't be used with links. "
                               "This would result in undefined behavior"),
        (host_config["Dns"], "conflicting options: dns and the network mode"),
        (host_config["ExtraHosts"], "conflicting options: custom host-to-IP mapping and the network mode"),
        (host_config["PortBindings"] or host_config["PublishAllPorts"],
         "conflicting options: port publishing and the container type network mode"),
        (config["ExposedPorts"], "conflicting options: port exposing and the container type network mode"),
    ]
    for given, message in conflicts:
        if given:
            raise invalid(message, "network mode")


def _restart_policy(fields: Fields) -> dict:
    name = fields.string("Name") or "no"
    retries = fields.integer("MaximumRetryCount", "int") or 0
    if name not in RESTART_POLICIES:
        raise invalid(f"invalid restart policy: unknown policy '{name}'; use one of "
                      "'no', 'always', 'on-failure', or 'unless-stopped'", "restart policy")
    if retries < 0:
        raise invalid("invalid restart policy: maximum retry count cannot be negative", "restart policy")
    if retries and name != "on-failure":
        raise invalid("invalid restart policy: maximum retry count can only be used with 'on-failure'",
                      "restart policy")
    return {"Name": name, "MaximumRetryCount": retries}


def _log_config(fields: Fields) -> dict:
    driver = fields.string("Type") or "json-file"
    options = fields.string_map("Config")
    if driver not in LOG_DRIVERS:
        raise invalid(f"failed to create task for container: logger: no log driver named '{driver}' is registered",
                      "log driver")
    for key, value in options.items():
        if key not in LOG_OPTIONS:
            raise invalid(f"unknown log opt '{key}' for {driver} log driver", "log options")
    if "max-size" in options:
        try:
            if parse_size(options["max-size"]) <= 0:
                raise InvalidValue("size", "")
        except InvalidValue:
            raise invalid(f"invalid max-size: {options['max-size']}", "log options") from None
    if "max-file" in options:
        if not options["max-file"].isdigit() or int(options["max-file"]) < 1:
            raise invalid("max-file cannot be less than 1", "log options")
    return {"Type": driver, "Config": options}


def _binds(binds: list[str] | None) -> list[str] | None:
    """Shapes and sources are checked by ``volume_services.plan_mounts`` (it knows volumes)."""
    return binds


def _mounts(mounts: list[dict]) -> list[dict]:
    for mount in mounts:
        if not isinstance(mount.get("ReadOnly", False), bool):
            raise _type_error(mount["ReadOnly"], "CreateRequest.HostConfig.Mounts.ReadOnly", "bool")
        for key in ("Type", "Source", "Target"):
            if mount.get(key) is not None and not isinstance(mount[key], str):
                raise _type_error(mount[key], f"CreateRequest.HostConfig.Mounts.{key}", "string")
    return mounts


def _extra_hosts(entries: list[str] | None) -> list[str]:
    hosts = []
    for entry in entries or []:
        separator = "=" if "=" in entry else ":"
        name, _, address = entry.partition(separator)
        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            raise invalid(f'invalid IP address in add-host: "{address}"', "extra hosts") from None
        if not name:
            raise invalid(f"invalid add-host: {entry}", "extra hosts")
        hosts.append(f"{name}:{address.strip('[]')}")
    return hosts


def _dns(servers: list[str] | None) -> list[str]:
    for server in servers or []:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise invalid(f"{server} is not an ip address", "dns") from None
    return servers or []


def _capabilities(field: str, names: list[str] | None) -> list[str]:
    for name in names or []:
        canonical = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        if canonical not in CAPABILITIES:
            raise invalid(f'invalid {field}: unknown capability: "{name}"', field)
    return names or []


def _port_bindings(fields: Fields) -> dict:
    bindings = fields.object("PortBindings")
    for key, value in bindings.items():
        if value is not None and not (isinstance(value, list) and all(isinstance(b, dict) for b in value)):
            raise _type_error(value, "CreateRequest.HostConfig.PortBindings", "[]nat.PortBinding")
        try:
            if len(expand_port_spec(key)) != 1:
                raise InvalidValue("port", "a range")
        except InvalidValue:
            raise invalid(f'invalid port specification: "{key}"', "port") from None
        for binding in value or []:
            binding = Fields(binding, "CreateRequest.HostConfig.PortBindings")
            _host_ip(binding.string("HostIp"))
            _host_port(binding.string("HostPort"))
    return bindings


def _host_ip(text: str) -> str:
    """A binding's HostIp: "" is every IPv4 address (0.0.0.0)."""
    if not text:
        return "0.0.0.0"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise invalid(f"invalid IP address: {text}", "port") from None
    if address.version != 4:
        raise invalid(f"invalid IP address: {text}: Berth publishes ports on IPv4 addresses only", "port")
    return str(address)


def _host_port(text: str) -> int | None:
    """A binding's HostPort: a number, or "" / "0" for any free port."""
    if text in ("", "0"):
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        if "-" in text:
            raise invalid(f"invalid hostPort: {text}: host port ranges are not supported", "port")
        raise invalid(f"invalid hostPort: {text}", "port")
    return int(text)


def port_requests(host_config: dict, exposed_ports: dict | None) -> list[tuple[str, int | None, int, str]]:
    """(host_ip, requested host port or None, container port, protocol) for every port to publish:
    each PortBindings entry, and with PublishAllPorts every exposed port not bound already."""
    requests = []
    bound = set()
    for key, bindings in (host_config.get("PortBindings") or {}).items():
        number, _, protocol = expand_port_spec(key)[0].partition("/")
        bound.add(f"{number}/{protocol}")
        for binding in bindings or [{}]:
            binding = Fields(binding, "CreateRequest.HostConfig.PortBindings")
            request = (_host_ip(binding.string("HostIp")), _host_port(binding.string("HostPort")), int(number), protocol)
            if request not in requests:
                requests.append(request)
    if host_config.get("PublishAllPorts"):
        for key in sorted(exposed_ports or {}, key=lambda k: (k.partition("/")[2], int(k.partition("/")[0]))):
            number, _, protocol = expand_port_spec(key)[0].partition("/")
            if f"{number}/{protocol}" not in bound:
                requests.append(("0.0.0.0", None, int(number), protocol))
    return requests


def _check_resources(host_config: dict) -> None:
    memory, swap = host_config["Memory"], host_config["MemorySwap"]
    if memory and memory < MIN_MEMORY:
        raise invalid("Minimum memory limit allowed is 6MB", "memory")
    if memory > 0 and swap > 0 and swap < memory:
        raise invalid("Minimum memoryswap limit should be larger than memory limit, see usage", "memory swap")
    if memory == 0 and swap > 0:
        raise invalid("You should always set the Memory limit when using Memoryswap limit, see usage", "memory swap")
    cpus = os.cpu_count() or 1
    if host_config["NanoCpus"] < 0 or host_config["NanoCpus"] > cpus * 1_000_000_000:
        raise invalid(f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available", "cpus")
    if host_config["CpuShares"] < 0:
        raise invalid("invalid CPU shares: must not be negative", "cpu shares")


def _networking(fields: Fields, network_mode: str) -> dict:
    endpoints = fields.object("EndpointsConfig")
    problems = []
    for network, settings in endpoints.items():
        settings = Fields(settings, f"CreateRequest.NetworkingConfig.EndpointsConfig.{network}")
        ipam = settings.nested("IPAMConfig")
        found = []
        if network in PREDEFINED_NETWORKS and (ipam.string("IPv4Address") or ipam.string("IPv6Address")):
            found.append("user specified IP address is supported on user defined networks only")
        if network in PREDEFINED_NETWORKS and settings.strings("Aliases"):
            found.append("network-scoped alias is supported only for containers in user defined networks")
        if found:
            problems.append(f"invalid config for network {network}: invalid endpoint settings:\n" + "\n".join(found))
    if problems:
        raise invalid("\n".join(problems), "endpoint settings")
    return {"EndpointsConfig": endpoints}


# --- the image's defaults -------------------------------------------------------------


def merge_image_config(config: dict, image_config: dict) -> dict:
    """moby's mergeAndVerifyConfig: what the user left out comes from the image's config."""
    image = (image_config or {}).get("config") or {}
    merged = dict(config)
    if not merged["User"]:
        merged["User"] = image.get("User") or ""
    ports = {**(image.get("ExposedPorts") or {}), **(merged["ExposedPorts"] or {})}
    merged["ExposedPorts"] = ports or None
    merged["Env"] = merge_env(image.get("Env") or [], merged["Env"])
    merged["Labels"] = {**(image.get("Labels") or {}), **merged["Labels"]}
    if not merged["Entrypoint"]:
        if not merged["Cmd"]:
            merged["Cmd"] = image.get("Cmd")
        if merged["Entrypoint"] is None:
            merged["Entrypoint"] = image.get("Entrypoint")
    if not merged["WorkingDir"]:
        merged["WorkingDir"] = image.get("WorkingDir") or ""
    volumes = {**(image.get("Volumes") or {}), **(merged["Volumes"] or {})}
    merged["Volumes"] = volumes or None
    if not merged["StopSignal"]:
        merged["StopSignal"] = image.get("StopSignal") or ""
    if not merged["Cmd"] and not [part for part in merged["Entrypoint"] or [] if part]:
        raise invalid("No command specified", "cmd")
    return merged


def merge_env(defaults: list[str], overrides: list[str]) -> list[str]:
    """The image's variables, replaced by the user's of the same name; a bare "NAME" unsets it."""
    merged = {entry.partition("=")[0]: entry for entry in defaults}
    for entry in overrides:
        key, equals, _ = entry.partition("=")
        if equals:
            merged[key] = entry
        else:
            merged.pop(key, None)
    return list(merged.values())
