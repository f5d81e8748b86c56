"""``POST /containers/{id}/wait``: the headers at once, the body when the condition is met.

::

    join group container-<id>  ->  200 + headers (flushed)  ->  re-read the row
         |                                                   |
         +-- container.changed events ----+------------------+-- poll the row every second
                                          v
                          {"StatusCode": n, "Error": null}

The CLI sends ``start`` only once the headers are in, so joining the group
before answering means the exit of that run cannot be missed. Conditions:
``not-running`` (default: done at once unless running), ``next-exit`` (the
next exit from now on), ``removed`` (the row is gone, also after AutoRemove
of a container whose start failed). The client may hang up at any time
(``docker run -d`` does): the waiter is dropped then.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

from runtime.errors import NoSuchContainer, NotFound

from .. import local
from ..errors import bad_request
from ..shapes import RUNNING_STATES

CONDITIONS = ("not-running", "next-exit", "removed")
EXITED_STATES = ("exited", "dead")
TICK = 0.25  # how often a quiet waiter looks at the client connection
SETTLE = 1.0  # how long a removal seen in the database waits for the event with its exit code


@dataclass
class Seen:
    id: str
    state: str
    exit_code: int
    finished_at: datetime | None


def _seen(services, reference: str) -> Seen | None:
    try:
        row = services.get_container(reference)
    except NotFound:
        return None
    return Seen(row.id, row.state, row.exit_code, row.finished_at)


def _kernel_exit_code(runtime, container_id: str) -> int | None:
    """PID 1's exit code as conmon wrote it, while the file is there."""
    try:
        return int(local.exit_file(runtime, container_id).read_text().strip())
    except (OSError, ValueError):
        return None


class _Waiter:
    def __init__(self, api, condition: str, first: Seen):
        self.api = api
        self.condition = condition
        self.first = first
        self.current: Seen | None = first
        self.exit_code: int | None = first.exit_code if first.state in EXITED_STATES else None
        self.exited_since_start = False
        self.stale_polls = 0

    def code(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return self.current.exit_code if self.current is not None else 0

    def note(self, seen: Seen | None, from_event: bool) -> None:
        if seen is not None and seen.state in EXITED_STATES:
            self.exit_code = seen.exit_code
            if from_event or seen.finished_at != self.first.finished_at:
                self.exited_since_start = True
        self.current = seen

    def done(self) -> bool:
        if self.current is None:
            return True
        if self.condition == "not-running":
            return self.current.state not in RUNNING_STATES
        if self.condition == "next-exit":
            return self.exited_since_start
        return False

    def on_event(self, event: dict) -> None:
        if event.get("removed"):
            if self.exit_code is None and event.get("exit_code") is not None:
                self.exit_code = event["exit_code"]
            self.note(None, True)
            return
        self.note(Seen(self.first.id, event.get("state", ""), event.get("exit_code") or 0,
                       self.current.finished_at if self.current else None), True)

    async def poll(self) -> None:
        seen = await self.api.sync(_seen, self.api.services, self.first.id)
        if seen is None and self.exit_code is None:
            self.exit_code = _kernel_exit_code(self.api.runtime, self.first.id)
        self.note(seen, False)
        await self._nudge_if_stale(seen)

    async def _nudge_if_stale(self, seen: Seen | None) -> None:
        """The row says running but conmon has written the exit: ask the services to look again."""
        if seen is None or seen.state not in RUNNING_STATES:
            self.stale_polls = 0
            return
        if _kernel_exit_code(self.api.runtime, seen.id) is None:
            self.stale_polls = 0
            return
        self.stale_polls += 1
        if self.stale_polls >= 2:
            self.stale_polls = 0
            try:
                await self.api.sync(self.api.services.refresh_container, seen.id)
            except Exception:  # noqa: BLE001 - a hint only; the next poll tries again
                pass


async def _poll(waiter: _Waiter, watch) -> None:
    """Read the row; if it is gone before its exit code was heard, let the events on their way bring it."""
    await waiter.poll()
    deadline = time.monotonic() + SETTLE
    while waiter.current is None and waiter.exit_code is None and time.monotonic() < deadline:
        event = await watch.next(max(0.0, deadline - time.monotonic()))
        if event is not None:
            waiter.on_event(event)


async def wait(api, request):
    condition = request.arg("condition") or "not-running"
    if condition not in CONDITIONS:
        raise bad_request(f'invalid condition: "{condition}"')
    reference = request.params["id"]
    first = await api.sync(_seen, api.services, reference)
    if first is None:
        raise NoSuchContainer(reference)
    async with api.events.watch(first.id) as watch:
        stream = await request.stream("application/json")
        gone = request.watch_disconnect()
        waiter = _Waiter(api, condition, first)
        await _poll(waiter, watch)  # after joining the group: nothing between the two is lost
        last_poll = time.monotonic()
        while not waiter.done():
            if gone.is_set():
                request.conn.must_close = True
                return None
            event = await watch.next(TICK)
            if event is not None:
                waiter.on_event(event)
                continue
            if time.monotonic() - last_poll >= api.poll_interval:
                await _poll(waiter, watch)
                last_poll = time.monotonic()
        body = {"StatusCode": waiter.code(), "Error": None}
        await stream.write(json.dumps(body).encode() + b"\n")
        await stream.end()
    return None


ROUTES = [("POST", "/containers/{id}/wait", wait)]
