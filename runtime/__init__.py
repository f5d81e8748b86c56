"""Berth's engine: images, root filesystems, OCI bundles, PID 1 under a monitor, logs.

Plain library over dataclasses; it never imports Django or Celery. The
console builds a ContainerSpec from its models and stores what comes back.
"""

from .containers import ExecResult, Runtime
from .errors import (
    BerthError,
    Conflict,
    ContainerNotRunning,
    ContainerPaused,
    ContainerRunning,
    ImageInUse,
    ImageReferenced,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    NotFound,
    PortAllocated,
    StartFailed,
)
from .images import Image, ImageConfig, ImageStore
from .logs import LogRecord
from .paths import StateRoot
from .spec import (
    NETWORK_HOST,
    NETWORK_NETNS,
    NETWORK_NONE,
    BindMount,
    Container,
    ContainerSpec,
    ContainerState,
    NetworkSpec,
    Resources,
    Tmpfs,
)

__all__ = [name for name in dir() if not name.startswith("_")]
