"""Knowing when a container changes: its Channels group, with polling as the safety net.

The worker publishes ``container.changed`` ({"id", "state", "exit_code",
"removed"}) to the group ``container-<id>`` (console/events.py). A waiter
joins the group *first*, then re-reads the database, so no change between
the two is lost. If the channel layer is unreachable the waiter still works,
only by polling.

``LocalEvents`` is the same interface inside one process (tests, or an API
run beside in-process services).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from contextlib import asynccontextmanager

log = logging.getLogger("berth.dockerapi")


class _QueueWatch:
    def __init__(self, queue: asyncio.Queue):
        self.queue = queue

    async def next(self, timeout: float) -> dict | None:
        """The next event, or None after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None


class ChannelEvents:
    def __init__(self, layer=None):
        self._layer = layer

    def layer(self):
        if self._layer is None:
            from channels.layers import get_channel_layer

            self._layer = get_channel_layer()
        return self._layer

    @asynccontextmanager
    async def watch(self, container_id: str):
        from console.groups import container_group

        queue: asyncio.Queue = asyncio.Queue()
        group = container_group(container_id)
        try:
            layer = self.layer()
            channel = await asyncio.wait_for(layer.new_channel(), 5)
            await asyncio.wait_for(layer.group_add(group, channel), 5)
        except Exception as error:  # noqa: BLE001 - no Redis: poll instead of failing the request
            log.warning("no live events for container %s (%s); polling instead", container_id[:12], error)
            yield _QueueWatch(queue)
            return

        async def receive():
            failures = 0
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - Redis hiccup: the poll covers the gap
                    # redis-py 8 reads with a 5 s socket timeout, as long as channels_redis's
                    # blocking pop: such a timeout is routine, so ask again at once.
                    failures += 1
                    if failures == 1 or failures % 100 == 0:
                        log.info("channel layer receive failed (%s: %s); retrying", type(error).__name__, error)
                    await asyncio.sleep(0 if "timeout" in type(error).__name__.lower() else min(failures, 5))
                    continue
                failures = 0
                if message.get("type") == "container.changed":
                    queue.put_nowait(message)

        receiver = asyncio.ensure_future(receive())
        try:
            yield _QueueWatch(queue)
        finally:
            receiver.cancel()
            try:
                await asyncio.wait_for(layer.group_discard(group, channel), 5)
            except Exception:  # noqa: BLE001 - the group entry expires by itself
                pass


class LocalEvents:
    """In-process events: ``publish`` may be called from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = defaultdict(set)

    def publish(self, container_id: str, state: str, exit_code: int = 0, removed: bool = False) -> None:
        event = {"type": "container.changed", "id": container_id, "state": state,
                 "exit_code": exit_code, "removed": removed}
        with self._lock:
            targets = list(self._watchers.get(container_id, ()))
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, dict(event))
            except RuntimeError:
                pass  # that loop is closed

    @asynccontextmanager
    async def watch(self, container_id: str):
        entry = (asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._watchers[container_id].add(entry)
        try:
            yield _QueueWatch(entry[1])
        finally:
            with self._lock:
                self._watchers[container_id].discard(entry)
                if not self._watchers[container_id]:
                    del self._watchers[container_id]
