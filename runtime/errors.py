"""Typed errors of the runtime.

The console maps these onto HTTP statuses (NotFound -> 404, Conflict -> 409,
InvalidValue -> 400), so every message is written for the person who asked.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager

# Out of blocks or inodes (ENOSPC) or over a quota (EDQUOT): the same remedy for the user.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class BerthError(Exception):
    """Base of every error the runtime raises on purpose."""


class NotFound(BerthError):
    pass


class NoSuchImage(NotFound):
    def __init__(self, reference: str):
        super().__init__(f"No such image: {reference}")
        self.reference = reference


class NoSuchContainer(NotFound):
    def __init__(self, reference: str):
        super().__init__(f"No such container: {reference}")
        self.reference = reference


class Conflict(BerthError):
    pass


class NameInUse(Conflict):
    def __init__(self, name: str, owner_id: str):
        super().__init__(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{owner_id}". You have to remove (or rename) that container to be able to reuse that name.'
        )
        self.name = name
        self.owner_id = owner_id


class ContainerRunning(Conflict):
    def __init__(self, reference: str):
        super().__init__(
            f'cannot remove container "{reference}": container is running: '
            "stop the container before removing or force remove"
        )


class ContainerNotRunning(Conflict):
    def __init__(self, container_id: str):
        super().__init__(f"container {container_id} is not running")
        self.container_id = container_id


class ContainerPaused(Conflict):
    def __init__(self, container_id: str):
        super().__init__(f"container {container_id} is paused, unpause it first")


class ImageInUse(Conflict):
    def __init__(self, reference: str, container_ids):
        short = ", ".join(cid[:12] for cid in container_ids)
        super().__init__(
            f"conflict: unable to remove repository reference \"{reference}\" "
            f"(must force) - image is being used by container {short}"
        )
        self.container_ids = list(container_ids)


class InvalidValue(BerthError):
    """A value a caller gave is wrong; says which field and why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class StartFailed(BerthError):
    """PID 1 could not be started; exit_code follows Docker (127 not found, 126 not executable)."""

    def __init__(self, message: str, exit_code: int = 128):
        super().__init__(message)
        self.exit_code = exit_code


class ImageReferenced(Conflict):
    """Deleting an image by id while several tags name it needs force, as in Docker."""

    def __init__(self, image_id: str):
        short = image_id.removeprefix("sha256:")[:12]
        super().__init__(
            f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
        )
        self.image_id = image_id


class PortAllocated(Conflict):
    """A host port is published by another container or bound by a process on the host."""

    def __init__(self, host_ip: str, host_port: int):
        super().__init__(f"Bind for {host_ip}:{host_port} failed: port is already allocated")
        self.host_ip = host_ip
        self.host_port = host_port


class DiskFull(BerthError):
    """A write under the state root failed because its filesystem is full (blocks, inodes or quota)."""

    def __init__(self, action: str, where: str = ""):
        place = f" (the filesystem of {where})" if where else ""
        super().__init__(f"{action}: no space left on device{place}; free some space and try again")
        self.action = action
        self.where = where


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_SPACE


@contextmanager
def disk_full_as_error(action: str, where=""):
    """Turn ENOSPC/EDQUOT (or a DiskFull from deeper down) into one DiskFull that says what failed."""
    try:
        yield
    except DiskFull as error:
        raise DiskFull(action, str(where)) from error
    except OSError as error:
        if error.errno in NO_SPACE:
            raise DiskFull(action, str(where)) from error
        raise
