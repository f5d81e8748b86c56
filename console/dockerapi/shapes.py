"""Rows as the JSON Docker clients expect (DOCKER_API.md §2.6, §2.9, §2.14-2.16).

Plain functions of model rows. They follow relations (ports, mounts,
endpoints, image), so they run in a worker thread like every ORM call.
Types are what Go's decoder wants: ``Created`` an int in lists and an RFC
3339 string in inspect, ``Names`` with a leading ``/``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from runtime.logs import container_log_path

from ..humanize import container_status
from .formats import ZERO_TIME, rfc3339, unix

RUNNING_STATES = ("running", "paused", "restarting")
DEFAULT_NETWORK = "bridge"

_CONFIG_DEFAULTS = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None,
    "Labels": {},
}

_HOST_CONFIG_DEFAULTS = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": DEFAULT_NETWORK, "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
    "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
    "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
    "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
    "UsernsMode": "", "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}


# --- containers -----------------------------------------------------------------------


def _image_config(row) -> dict:
    image = row.image
    if image is None:
        return {}
    return (image.config or {}).get("config") or {}


def _env_merged(image_env: list[str] | None, own_env: list[str] | None) -> list[str] | None:
    """The image's variables, overridden key by key by the container's (what PID 1 sees)."""
    merged: dict[str, str] = {}
    for entry in [*(image_env or []), *(own_env or [])]:
        merged[entry.partition("=")[0]] = entry
    return list(merged.values()) or None


def effective_config(row) -> dict:
    """Config as inspect shows it: the create body's Config with the image's defaults filled in."""
    image = _image_config(row)
    config = {**_CONFIG_DEFAULTS, **(row.config or {})}
    config["Image"] = row.image_ref or config.get("Image") or ""
    config["Hostname"] = config.get("Hostname") or row.id[:12]
    config["Env"] = _env_merged(image.get("Env"), config.get("Env"))
    if config.get("Entrypoint") is None:
        config["Entrypoint"] = image.get("Entrypoint")
        if config.get("Cmd") is None:
            config["Cmd"] = image.get("Cmd")
    config["WorkingDir"] = config.get("WorkingDir") or image.get("WorkingDir") or ""
    config["User"] = config.get("User") or image.get("User") or ""
    config["Labels"] = {**(image.get("Labels") or {}), **(config.get("Labels") or {})}
    exposed = {**(image.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})}
    if exposed:
        config["ExposedPorts"] = exposed
    volumes = {**(image.get("Volumes") or {}), **(config.get("Volumes") or {})}
    config["Volumes"] = volumes or None
    if not config.get("StopSignal") and image.get("StopSignal"):
        config["StopSignal"] = image["StopSignal"]
    return config


def host_config(row) -> dict:
    """HostConfig as received, normalised as moby does (restart "no", network "bridge", log "json-file")."""
    given = dict(row.host_config or {})
    result = {**_HOST_CONFIG_DEFAULTS, **{k: v for k, v in given.items() if v is not None or k not in
                                          ("LogConfig", "RestartPolicy", "PortBindings", "ConsoleSize")}}
    restart = dict(result.get("RestartPolicy") or {})
    restart["Name"] = restart.get("Name") or "no"
    restart.setdefault("MaximumRetryCount", 0)
    result["RestartPolicy"] = restart
    if result.get("NetworkMode") in ("", "default", None):
        result["NetworkMode"] = DEFAULT_NETWORK
    log_config = dict(result.get("LogConfig") or {})
    log_config["Type"] = log_config.get("Type") or "json-file"
    log_config["Config"] = log_config.get("Config") or {}
    result["LogConfig"] = log_config
    return result


def state(row) -> dict:
    running = row.state in RUNNING_STATES
    return {
        "Status": row.state,
        "Running": running,
        "Paused": row.state == "paused",
        "Restarting": row.state == "restarting",
        "OOMKilled": False,
        "Dead": row.state == "dead",
        "Pid": row.pid if running else 0,
        "ExitCode": row.exit_code,
        "Error": row.error or "",
        "StartedAt": rfc3339(row.started_at),
        "FinishedAt": rfc3339(row.finished_at),
    }


def _endpoint_settings(endpoint=None, network=None, container=None) -> dict:
    network = network or (endpoint.network if endpoint is not None else None)
    user_defined = network is not None and not network.predefined
    aliases = list(endpoint.aliases or []) if endpoint is not None else []
    return {
        "IPAMConfig": (endpoint.ipam_config or None) if endpoint is not None else None,
        "Links": None,
        "Aliases": aliases or None,
        "MacAddress": endpoint.mac_address if endpoint is not None else "",
        "DriverOpts": None,
        "GwPriority": 0,
        "NetworkID": network.id if network is not None else "",
        "EndpointID": endpoint.endpoint_id if endpoint is not None else "",
        "Gateway": (network.gateway if endpoint is not None and endpoint.ip_address else "") if network else "",
        "IPAddress": (endpoint.ip_address or "") if endpoint is not None else "",
        "IPPrefixLen": endpoint.prefix_length if endpoint is not None and endpoint.ip_address else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": [container.name, container.id[:12], *aliases] if user_defined and container is not None else None,
    }


def _joined(related, field: str):
    """A model row's related rows with their ``field`` row fetched in the same query (one query, not
    one more per row); related rows of other kinds (tests' stand-ins) as they are.

    For one row at a time (inspect): a list of rows prefetches instead, which this would bypass.
    """
    select_related = getattr(related, "select_related", None)
    return select_related(field) if select_related is not None else related.all()


def networks(row, mode: str | None = None, network_lookup=None, endpoints=None) -> dict:
    """Network name -> endpoint settings; host and none show their predefined network."""
    result = {}
    for endpoint in row.endpoints.all() if endpoints is None else endpoints:
        result[endpoint.network.name] = _endpoint_settings(endpoint, container=row)
    mode = mode or host_config(row)["NetworkMode"]
    if not result and mode in ("host", "none"):
        network = network_lookup(mode) if network_lookup else None
        result[mode] = _endpoint_settings(network=network)
    return result


def port_map(row, config: dict) -> dict:
    """"80/tcp": [{"HostIp","HostPort"}], or null for a port exposed and not published; {} unless running."""
    if row.state not in RUNNING_STATES:
        return {}
    ports: dict = {key: None for key in (config.get("ExposedPorts") or {})}
    for mapping in row.ports.all():
        key = f"{mapping.container_port}/{mapping.protocol}"
        if mapping.host_port is None:
            ports.setdefault(key, None)
            continue
        bindings = ports.get(key) or []
        bindings.append({"HostIp": mapping.host_ip or "0.0.0.0", "HostPort": str(mapping.host_port)})
        ports[key] = bindings
    return ports


def network_settings(row, config: dict, mode: str, network_lookup=None) -> dict:
    nets = networks(row, mode, network_lookup, _joined(row.endpoints, "network"))
    default = nets.get(DEFAULT_NETWORK) or {}
    running = row.state in RUNNING_STATES
    return {
        "Bridge": "", "SandboxID": "",
        # The namespace the networking layer made; Docker shows it while the container runs.
        "SandboxKey": (getattr(row, "sandbox_key", "") or "") if running else "",
        "Ports": port_map(row, config),
        "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": default.get("EndpointID", ""), "Gateway": default.get("Gateway", ""),
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": default.get("IPAddress", ""), "IPPrefixLen": default.get("IPPrefixLen", 0),
        "IPv6Gateway": "", "MacAddress": default.get("MacAddress", ""),
        "Networks": nets,
    }


def mounts(row, joined: bool = False) -> list[dict]:
    result = []
    for mount in _joined(row.mounts, "volume") if joined else row.mounts.all():
        entry = {"Type": mount.type}
        volume = mount.volume if mount.type == "volume" else None
        if volume is not None:
            entry["Name"] = volume.name
        entry["Source"] = mount.source or (volume.mountpoint if volume is not None else "")
        entry["Destination"] = mount.destination
        if volume is not None:
            entry["Driver"] = volume.driver
        entry.update({"Mode": mount.mode or "", "RW": bool(mount.read_write), "Propagation": mount.propagation or ""})
        result.append(entry)
    return result


def container_inspect(row, root: Path, exec_ids: list[str] | None = None, network_lookup=None,
                      sizes: tuple[int, int] | None = None) -> dict:
    config = effective_config(row)
    hc = host_config(row)
    directory = Path(root) / "containers" / row.id
    data = {
        "Id": row.id,
        "Created": rfc3339(row.created),
        "Path": row.path or "",
        "Args": list(row.args or []),
        "State": state(row),
        "Image": row.image.id if row.image is not None else "",
        "ResolvConfPath": str(directory / "resolv.conf"),
        "HostnamePath": str(directory / "hostname"),
        "HostsPath": str(directory / "hosts"),
        "LogPath": str(container_log_path(root, row.id)),
        "Name": "/" + row.name,
        "RestartCount": row.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": hc,
        "GraphDriver": {"Name": "overlay2", "Data": {
            "MergedDir": str(directory / "rootfs"), "UpperDir": str(directory / "upper"),
            "WorkDir": str(directory / "work")}},
        "Mounts": mounts(row, joined=True),
        "Config": config,
        "NetworkSettings": network_settings(row, config, hc["NetworkMode"], network_lookup),
    }
    if sizes is not None:
        data["SizeRw"], data["SizeRootFs"] = sizes
    return data


def command_text(path: str, args: list[str]) -> str:
    """moby's COMMAND column: arguments holding a space are single-quoted."""
    if not args:
        return path or ""
    quoted = [f"'{arg}'" if " " in arg else arg for arg in args]
    return f"{path} {' '.join(quoted)}"


def list_ports(row, config: dict) -> list[dict]:
    if row.state not in RUNNING_STATES:
        return []
    result = []
    published = set()
    for mapping in row.ports.all():
        if mapping.host_port is None:
            continue
        published.add(f"{mapping.container_port}/{mapping.protocol}")
        result.append({"IP": mapping.host_ip or "0.0.0.0", "PrivatePort": mapping.container_port,
                       "PublicPort": mapping.host_port, "Type": mapping.protocol})
    for key in config.get("ExposedPorts") or {}:
        number, _, protocol = key.partition("/")
        if key not in published and number.isdigit():
            result.append({"PrivatePort": int(number), "Type": protocol or "tcp"})
    return result


def container_summary(row, now: datetime | None = None, sizes: tuple[int, int] | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    config = effective_config(row)
    hc = host_config(row)
    item = {
        "Id": row.id,
        "Names": ["/" + row.name],
        "Image": row.image_ref or "",
        "ImageID": row.image.id if row.image is not None else "",
        "Command": command_text(row.path, list(row.args or [])),
        "Created": unix(row.created),
        "Ports": list_ports(row, config),
        "Labels": config.get("Labels") or {},
        "State": row.state,
        "Status": container_status(row.state, row.exit_code, row.started_at, row.finished_at, now),
        "HostConfig": {"NetworkMode": hc["NetworkMode"]},
        "NetworkSettings": {"Networks": networks(row, hc["NetworkMode"])},
        "Mounts": mounts(row),
    }
    if sizes is not None:
        item["SizeRw"], item["SizeRootFs"] = sizes
    return item


# --- images ------------------------------------------------------------------------------


def _tags(image) -> list[str]:
    return sorted(tag.name for tag in image.tags.all())


def image_summary(image) -> dict:
    config = (image.config or {}).get("config") or {}
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": _tags(image),
        "RepoDigests": [],
        "Created": unix(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "Labels": config.get("Labels") or None,
        "Containers": -1,
    }


_IMAGE_CONFIG_DEFAULTS = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def image_inspect(image) -> dict:
    raw = image.config or {}
    history = raw.get("history") or []
    return {
        "Id": image.id,
        "RepoTags": _tags(image),
        "RepoDigests": [],
        "Parent": "",
        "Comment": (history[-1].get("comment", "") if history and isinstance(history[-1], dict) else ""),
        "Created": rfc3339(image.created),
        "DockerVersion": raw.get("docker_version", ""),
        "Author": raw.get("author", ""),
        "Config": {**_IMAGE_CONFIG_DEFAULTS, **(raw.get("config") or {})},
        "Architecture": raw.get("architecture", "amd64"),
        "Variant": raw.get("variant") or None,
        "Os": raw.get("os", "linux"),
        "Size": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list((raw.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }


# --- networks and volumes ----------------------------------------------------------------------


DEFAULT_BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
    "com.docker.network.driver.mtu": "1500",
}


def network_inspect(network, with_containers: bool = False) -> dict:
    config = []
    if network.subnet:
        entry = {"Subnet": network.subnet}
        if getattr(network, "ip_range", ""):
            entry["IPRange"] = network.ip_range
        if network.gateway:
            entry["Gateway"] = network.gateway
        config.append(entry)
    options = dict(network.options or {})
    if network.name == DEFAULT_NETWORK and network.predefined:
        # The device is the host's setting (berth0 unless told otherwise), fixed on first use.
        options = {**DEFAULT_BRIDGE_OPTIONS, **options}
        if network.bridge_name:
            options["com.docker.network.bridge.name"] = network.bridge_name
    containers = {}
    if with_containers:
        for endpoint in network.endpoints.all():
            container = endpoint.container
            containers[container.id] = {
                "Name": container.name, "EndpointID": endpoint.endpoint_id, "MacAddress": endpoint.mac_address,
                "IPv4Address": f"{endpoint.ip_address}/{endpoint.prefix_length}" if endpoint.ip_address else "",
                "IPv6Address": "",
            }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": rfc3339(network.created),
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None if network.driver != "bridge" else {}, "Config": config},
        "Internal": network.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": options,
        "Labels": dict(network.labels or {}),
    }


def volume_inspect(volume) -> dict:
    return {
        "Name": volume.name,
        "Driver": volume.driver,
        "Mountpoint": volume.mountpoint,
        "CreatedAt": rfc3339(volume.created),
        "Labels": dict(volume.labels or {}) or None,
        "Scope": "local",
        "Options": dict(volume.options or {}) or None,
    }
