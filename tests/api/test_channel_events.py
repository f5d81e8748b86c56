"""How the API hears of container changes (console/dockerapi/events.py ChannelEvents): one channel
for the whole process, whatever the number of waiters, and nothing kept after a waiter leaves.

Events are sent as the worker sends them (console/events.py): to the container's group and to the
containers group.
"""

from __future__ import annotations

import asyncio
import secrets

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from console.dockerapi.events import ChannelEvents
from console.groups import CONTAINERS, container_group


def changed(container_id: str, state: str, removed: bool = False) -> dict:
    return {"type": "container.changed", "id": container_id, "state": state, "exit_code": 0, "removed": removed}


async def publish(layer, event: dict) -> None:
    for group in (container_group(event["id"]), CONTAINERS):
        await layer.group_send(group, event)


class CountingLayer(InMemoryChannelLayer):
    """The in-memory layer, counting the channels made and the groups joined."""

    def __init__(self):
        super().__init__()
        self.channels_made = 0
        self.joins = 0

    async def new_channel(self, prefix="specific."):
        self.channels_made += 1
        return await super().new_channel(prefix)

    async def group_add(self, group, channel):
        self.joins += 1
        await super().group_add(group, channel)


def test_waiters_share_one_channel_and_each_hears_only_its_own_container():
    async def scenario():
        layer, heard = CountingLayer(), {}
        events = ChannelEvents(layer)
        async with events.watch("aaa") as first, events.watch("bbb") as second:
            await publish(layer, changed("aaa", "running"))
            await publish(layer, changed("bbb", "exited"))
            heard["aaa"] = [await first.next(2), await first.next(0.2)]
            heard["bbb"] = [await second.next(2), await second.next(0.2)]
        async with events.watch("aaa") as again:
            await publish(layer, changed("aaa", "removed", removed=True))
            heard["again"] = await again.next(2)
        return layer, heard

    layer, heard = asyncio.run(scenario())
    assert [e and e["state"] for e in heard["aaa"]] == ["running", None]
    assert [e and e["state"] for e in heard["bbb"]] == ["exited", None]
    assert heard["again"]["removed"] is True
    assert (layer.channels_made, layer.joins) == (1, 1)


def test_a_waiter_that_left_leaves_nothing_behind_in_redis_channels(live_stack):
    """`docker run -d` hangs up its wait once the container started; before, each such wait left a
    buffer behind in channels_redis, and the API grew with every container run."""
    layer = RedisChannelLayer(hosts=[live_stack.redis_url], prefix=f"berth-test-{secrets.token_hex(4)}")

    async def scenario():
        events = ChannelEvents(layer)
        for n in range(20):
            container_id = f"c{n}-{secrets.token_hex(4)}"
            async with events.watch(container_id) as watch:
                await publish(layer, changed(container_id, "running"))
                assert (await watch.next(5))["state"] == "running"
            await publish(layer, changed(container_id, "exited"))  # after its waiter left
        await asyncio.sleep(0.5)  # the exits reach the process, and go nowhere
        buffered = {channel: queue.qsize() for channel, queue in layer.receive_buffer.items()}
        await layer.flush()
        return buffered

    buffered = asyncio.run(scenario())
    assert len(buffered) <= 1 and sum(buffered.values()) == 0, buffered
