"""``/_ping``, ``/version``, ``/info``."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from ..server import API_VERSION, MIN_API_VERSION, SERVER_VERSION, Response, json_response

VERSION = f"berth-{SERVER_VERSION}"
_PING_HEADERS = [
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Builder-Version", "1"),
    ("Swarm", "inactive"),
]


async def ping(api, request) -> Response:
    return Response(200, b"OK", "text/plain; charset=utf-8", list(_PING_HEADERS))


async def ping_head(api, request) -> Response:
    # Content-Length 0 on HEAD, as moby answers it (the CLI only reads the headers).
    return Response(200, b"", "text/plain; charset=utf-8", list(_PING_HEADERS))


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


async def version(api, request) -> Response:
    kernel = platform.release()
    details = {"ApiVersion": API_VERSION, "Arch": _arch(), "BuildTime": "", "Experimental": "false",
               "GitCommit": "", "GoVersion": "", "KernelVersion": kernel, "MinAPIVersion": MIN_API_VERSION,
               "Os": "linux"}
    return json_response({
        "Platform": {"Name": "Berth"},
        "Components": [{"Name": "Engine", "Version": VERSION, "Details": details}],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    })


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _counts(services) -> tuple[dict, int]:
    containers = services.list_containers(all=True)
    states = [c.state for c in containers]
    counts = {
        "Containers": len(states),
        "ContainersRunning": sum(s in ("running", "restarting") for s in states),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": sum(s not in ("running", "restarting", "paused") for s in states),
    }
    images = len({image.id for image in services.list_images()})
    return counts, images


async def info(api, request) -> Response:
    counts, images = await api.sync(_counts, api.services)
    cgroup_v2 = not Path("/sys/fs/cgroup/memory").is_dir()
    return json_response({
        "ID": socket.gethostname(),
        **counts,
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "overlayfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["k8s-file"]},
        "MemoryLimit": True,
        "SwapLimit": Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": Path("/proc/sys/net/ipv4/ip_forward").exists()
        and Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1",
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": _now_rfc3339(),
        "LoggingDriver": "k8s-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if cgroup_v2 else "1",
        "NEventsListener": 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                           "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": None},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": str(api.root),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": VERSION,
        "Runtimes": {"runc": {"path": "runc"}},
        "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=no-new-privileges"],
        "CDISpecDirs": [],
        "Warnings": None,
    })


def _now_rfc3339() -> str:
    from datetime import datetime, timezone

    from ..formats import rfc3339

    return rfc3339(datetime.now(timezone.utc))


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping_head),
    ("GET", "/version", version),
    ("GET", "/info", info),
]
