"""What a caller asks for (ContainerSpec) and what the runtime observed (Container).

Plain dataclasses, so the console can build a spec from its models and store
what comes back without the runtime knowing about either. Both round-trip
through JSON (``to_dict`` / ``from_dict``): the container record on disk is
the source of truth when every Berth process has restarted.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field

TERMINAL_SIDE_MAX = 0xFFFF  # a terminal's rows or columns: the kernel keeps each in 16 bits

NETWORK_NONE = "none"
NETWORK_HOST = "host"
NETWORK_NETNS = "netns"
NETWORK_MODES = (NETWORK_NONE, NETWORK_HOST, NETWORK_NETNS)

STATUS_CREATED = "created"
STATUS_RUNNING = "running"
STATUS_PAUSED = "paused"
STATUS_EXITED = "exited"


@dataclass
class NetworkSpec:
    """How PID 1 sees the network.

    ``none``: a namespace of its own with only ``lo``. ``host``: the host's.
    ``netns``: a namespace somebody else prepared (the networking layer hands
    in ``/run/netns/...`` with a veth already inside) -- the seam where bridge
    networking plugs in without the runtime knowing about bridges.
    """

    mode: str = NETWORK_NONE
    netns_path: str = ""
    # Lines for /etc/hosts that name this container ("10.0.0.2"), filled by the networking layer.
    addresses: list[str] = field(default_factory=list)


@dataclass
class Resources:
    memory: int = 0          # bytes; 0 = no limit
    memory_swap: int = 0     # bytes of memory+swap; 0 = twice memory (Docker's default), -1 = unlimited
    nano_cpus: int = 0       # 1e9 = one CPU
    cpu_shares: int = 0
    pids_limit: int = 0


@dataclass
class BindMount:
    """A host path mounted into the container; volumes arrive here as binds."""

    source: str
    destination: str
    readonly: bool = False


@dataclass
class Tmpfs:
    """A tmpfs of its own at ``destination``; ``options`` as mount(8) takes them ("size=64m")."""

    destination: str
    options: list[str] = field(default_factory=list)


@dataclass
class ContainerSpec:
    image: str
    name: str = ""
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    # The terminal's [rows, cols] before PID 1 runs (Docker's HostConfig.ConsoleSize, each at most
    # TERMINAL_SIDE_MAX); [] = 0x0 until a resize.
    console_size: list[int] = field(default_factory=list)
    open_stdin: bool = False
    # Close PID 1's stdin when the first attached client closes its input (docker run -i).
    stdin_once: bool = False
    network: NetworkSpec = field(default_factory=NetworkSpec)
    resources: Resources = field(default_factory=Resources)
    mounts: list[BindMount] = field(default_factory=list)
    tmpfs: list[Tmpfs] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)   # "name:ip"
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    read_only: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    stop_timeout: int | None = None
    log_max_size: int = 0      # bytes; 0 = never rotate
    log_max_files: int = 1


@dataclass
class ContainerState:
    status: str = STATUS_CREATED
    pid: int = 0
    exit_code: int = 0
    started_at: str = ""
    finished_at: str = ""
    error: str = ""


@dataclass
class Container:
    id: str
    name: str
    created: str
    image_id: str
    spec: ContainerSpec
    # What PID 1 runs: the image's entrypoint and cmd merged with the spec's.
    path: str
    args: list[str]
    # The environment PID 1 gets: image env merged with the spec's.
    env: list[str] = field(default_factory=list)
    state: ContainerState = field(default_factory=ContainerState)
    monitor_pid: int = 0
    # /proc/<pid>/stat start time of PID 1 and of the monitor: a recycled PID never matches.
    pid_start_time: int = 0
    monitor_start_time: int = 0
    restart_count: int = 0

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state.status in (STATUS_RUNNING, STATUS_PAUSED)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Container":
        return from_dict(cls, data)


def from_dict(cls, data):
    """Build a (nested) dataclass from plain data, ignoring unknown keys so old records still load."""
    kwargs = {}
    for name, nested, item in _fields(cls):
        if name not in data:
            continue
        value = data[name]
        if nested is not None and isinstance(value, dict):
            value = from_dict(nested, value)
        elif item is not None:
            value = [from_dict(item, v) for v in value]
        kwargs[name] = value
    return cls(**kwargs)


@functools.cache
def _fields(cls) -> tuple[tuple[str, type | None, type | None], ...]:
    """Each field's name, its dataclass type, its list's dataclass item type. Resolving the hints
    costs a millisecond, and a record is loaded several times per start."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        nested = hint if dataclasses.is_dataclass(hint) else None
        item = None
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint) or (None,)
            item = item if dataclasses.is_dataclass(item) else None
        fields.append((f.name, nested, item))
    return tuple(fields)
