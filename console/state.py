"""What the host shows, stored: the one place where rows take the kernel's word.

Tasks and the exit watcher both observe containers. Each observation is made
and stored, and its event published, under a per-container file lock, so the
last write is always the latest look at the kernel: a start task racing an
exit can never leave "running" on a container that exited. Rows are changed
with ``update()`` and never ``save()``: a row removed meanwhile stays removed.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.db import transaction

from runtime.errors import NoSuchContainer

from . import events
from .models import Container, Image, ImageTag
from .runtime_access import get_runtime

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def locks_dir() -> Path:
    return Path(settings.BERTH_ROOT) / "locks"


@contextmanager
def container_lock(container_id: str):
    """Serialise observe-and-store for one container across the worker's threads and processes."""
    directory = locks_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / container_id, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(container_id: str) -> Container | None:
    """Look at the container on this host, store what is seen and publish it.

    None when the row or the runtime's container is gone (removed meanwhile).
    """
    with container_lock(container_id):
        try:
            observed = get_runtime().get(container_id)
        except NoSuchContainer:
            return None
        fields = observed_fields(observed)
        # A row being removed keeps saying so until it is deleted.
        changed = Container.objects.filter(pk=container_id).exclude(state=Container.STATE_REMOVING).update(**fields)
        if not changed:
            return None
        row = Container.objects.get(pk=container_id)
        events.container_changed(row.id, row.state, row.exit_code)
        return row


def observed_fields(observed) -> dict:
    """A runtime Container as the row's fields."""
    state = observed.state
    return {
        "state": state.status,
        "pid": state.pid if observed.running else 0,
        "exit_code": state.exit_code,
        "error": state.error,
        "started_at": parse_time(state.started_at),
        "finished_at": parse_time(state.finished_at),
        "path": observed.path,
        "args": list(observed.args),
    }


def forget(container_id: str) -> Container | None:
    """Delete the row of a container the runtime removed; publish it as removed. Idempotent."""
    with container_lock(container_id):
        row = Container.objects.filter(pk=container_id).first()
        if row is not None:
            Container.objects.filter(pk=container_id).delete()
            events.container_changed(container_id, row.state, row.exit_code, removed=True)
    (locks_dir() / container_id).unlink(missing_ok=True)
    return row


def parse_time(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# --- images ------------------------------------------------------------------


def store_images(host: str, images) -> None:
    """Make the host's Image and ImageTag rows match its store (runtime Image objects)."""
    with transaction.atomic():
        for image in images:
            Image.objects.update_or_create(
                id=image.id,
                defaults={"host": host, "created": parse_time(image.created) or EPOCH,
                          "size": image.size, "config": image.raw_config},
            )
        present = {image.id for image in images}
        Image.objects.filter(host=host).exclude(id__in=present).delete()
        wanted = {tag: image.id for image in images for tag in image.repo_tags}
        ImageTag.objects.filter(image__host=host).exclude(name__in=wanted).delete()
        current = dict(ImageTag.objects.filter(name__in=wanted).values_list("name", "image_id"))
        for name, image_id in wanted.items():
            if current.get(name) != image_id:
                ImageTag.objects.update_or_create(name=name, defaults={"image_id": image_id})
