"""Knowing when a container changes: its Channels group, with polling as the safety net.

The worker publishes ``container.changed`` ({"id", "state", "exit_code",
"removed"}) to the group ``container-<id>`` and to the group ``containers``
(console/events.py). The API listens to the latter with one channel for the
whole process, joined before the first waiter re-reads the database, so no
change between the two is lost. If the channel layer is unreachable the
waiter still works, only by polling.

``LocalEvents`` is the same interface inside one process (tests, or an API
run beside in-process services).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from contextlib import asynccontextmanager

from console.groups import CONTAINERS

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
    """One channel for the whole process, in the containers group; each event goes to the local
    waiters of its container (``LocalEvents``).

    A channel of its own per waiter cost every wait three Redis round trips (new channel, join,
    leave), and channels_redis kept for ever what reached such a channel after its waiter left:
    ``docker run -d`` hangs up its wait once the container started, so each one left its events
    behind in the API's memory.
    """

    REJOIN = 600.0  # seconds between two joins: a member leaves the group after a day, or when Redis restarts

    def __init__(self, layer=None):
        self._layer = layer
        self._local = LocalEvents()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._joining: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task] = []

    def layer(self):
        if self._layer is None:
            from channels.layers import get_channel_layer

            self._layer = get_channel_layer()
        return self._layer

    @asynccontextmanager
    async def watch(self, container_id: str):
        if not await self._subscribed():
            yield _QueueWatch(asyncio.Queue())  # no events: the waiter polls
            return
        async with self._local.watch(container_id) as watch:
            yield watch

    async def _subscribed(self) -> bool:
        """In the group before the waiter reads the database, so nothing between the two is lost."""
        loop = asyncio.get_running_loop()
        if self._listening(loop):
            return True
        if self._joining is None or self._loop is not loop:
            self._stop()
            self._loop, self._joining = loop, asyncio.Lock()
        async with self._joining:
            if self._listening(loop):
                return True
            try:
                layer = self.layer()
                channel = await asyncio.wait_for(layer.new_channel(), 5)
                await asyncio.wait_for(layer.group_add(CONTAINERS, channel), 5)
            except Exception as error:  # noqa: BLE001 - no Redis: waiters poll instead of failing
                log.warning("no live container events (%s); waiters poll", error)
                return False
            self._tasks = [loop.create_task(self._receive(layer, channel)),
                           loop.create_task(self._rejoin_every(layer, channel, self.REJOIN))]
            return True

    def _listening(self, loop) -> bool:
        return self._loop is loop and bool(self._tasks) and not any(task.done() for task in self._tasks)

    def _stop(self) -> None:
        for task in self._tasks:
            try:
                task.cancel()
            except RuntimeError:
                pass  # its loop is closed: so is the task
        self._tasks = []

    async def _receive(self, layer, channel: str) -> None:
        failures = 0
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - Redis hiccup: the waiters' polls cover the gap
                # redis-py 8 reads with a 5 s socket timeout, as long as channels_redis's
                # blocking pop: such a timeout is routine, so ask again at once.
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    log.info("channel layer receive failed (%s: %s); retrying", type(error).__name__, error)
                if "timeout" not in type(error).__name__.lower():
                    await asyncio.sleep(min(failures, 5))
                    await _join(layer, channel)  # a restarted Redis forgot the group
                continue
            failures = 0
            if message.get("type") == "container.changed":
                self._local.deliver(message)

    @staticmethod
    async def _rejoin_every(layer, channel: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await _join(layer, channel)


async def _join(layer, channel: str) -> None:
    try:
        await asyncio.wait_for(layer.group_add(CONTAINERS, channel), 5)
    except Exception as error:  # noqa: BLE001 - tried again at the next failure or interval
        log.info("could not join the containers group (%s)", error)


class LocalEvents:
    """In-process events: ``publish`` may be called from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = defaultdict(set)

    def publish(self, container_id: str, state: str, exit_code: int = 0, removed: bool = False) -> None:
        self.deliver({"type": "container.changed", "id": container_id, "state": state,
                      "exit_code": exit_code, "removed": removed})

    def deliver(self, event: dict) -> None:
        """``event`` to the waiters of its container (``event["id"]``), each a copy."""
        with self._lock:
            targets = list(self._watchers.get(event.get("id", ""), ()))
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
