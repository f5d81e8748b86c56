"""Publishing what changed to every open page and API waiter (Channels groups over Redis).

Event ``container.changed``: {"type": "container.changed", "id": ..., "state": ...,
"exit_code": ..., "removed": bool}. Sent to the container's own group and to
the list group; consumers render, the API's ``wait`` reads state and removed.
A removed container's event carries the state and exit code it had last.

Event ``network.changed``: {"type": "network.changed", "id": ..., "action": "create" | "remove" |
"connect" | "disconnect", "container": id or ""}. Sent to the networks group (the topology page).

Each process publishes through one event loop of its own (a daemon thread) and so one Redis
connection; the caller waits until the event is out, so events leave in the order of the changes.
"""

import asyncio
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import groups

log = logging.getLogger(__name__)
SEND_TIMEOUT = 5.0  # seconds a publish may take before the caller goes on without it


def container_changed(container_id: str, state: str, exit_code: int = 0, removed: bool = False) -> None:
    event = {"type": "container.changed", "id": container_id, "state": state,
             "exit_code": exit_code, "removed": removed}
    try:
        _publish([groups.container_group(container_id), groups.CONTAINERS], event)
    except Exception:
        # The row holds the truth already; a page that missed this reloads it.
        log.exception("could not publish %s of container %s", state, container_id)


def network_changed(network_id: str, action: str, container_id: str = "") -> None:
    event = {"type": "network.changed", "id": network_id, "action": action, "container": container_id}
    try:
        _publish([groups.NETWORKS], event)
    except Exception:
        log.exception("could not publish %s of network %s", action, network_id)


def _publish(group_names: list[str], event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if not _is_redis(layer):
        # The in-memory layer of tests: its queues belong to the caller's event loop.
        async_to_sync(_send)(group_names, event)
        return
    # channels_redis keeps a connection pool per event loop: one long-lived loop keeps one connection,
    # where async_to_sync would make a thread and a loop, connect, send and close for every event (~3 ms).
    sending = asyncio.run_coroutine_threadsafe(_send(group_names, event), _publisher_loop())
    try:
        sending.result(SEND_TIMEOUT)
    except TimeoutError:
        sending.cancel()
        raise


def _is_redis(layer) -> bool:
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(layer, RedisChannelLayer)


_publisher = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for publishing, in a daemon thread (made again after a fork)."""
    global _loop, _loop_pid
    with _publisher:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="berth-events", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


async def _send(group_names: list[str], event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # Both groups at once: each send is a few Redis round trips. The caller waits for all of them,
    # so one change's events are out before the next change's.
    await asyncio.gather(*(layer.group_send(name, event) for name in group_names))
