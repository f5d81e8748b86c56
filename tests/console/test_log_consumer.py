"""The log viewer's websocket, /ws/containers/<id>/logs/, against real containers (PID 1 under conmon)."""

import json
import re
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from console import services, state
from console.asgi import application
from tests.helpers.sockets import ORIGIN, connects, session_cookie

pytestmark = pytest.mark.django_db

LINE = re.compile(r'<div class="log-line (stdout|stderr)" data-t="(\d+)" data-ts="[^"]*">(.*?)</div>')


def started(cmd, name=None):
    row = services.create_container({"Image": "busybox", "Cmd": cmd}, name=name)
    services.start_container(row.id)
    return row


def exited(host, row):
    """Wait for PID 1 to end and store it, as the worker's exit watcher would (publishing the change)."""
    host.wait(row.id, timeout=20)
    return state.record(row.id)


def texts(message):
    return [m.group(3) for m in LINE.finditer("".join(message.get("lines", [])))]


class Viewer:
    """One browser tab on the log websocket: what it was sent, decoded."""

    def __init__(self, container_id, cookie):
        self.connection = WebsocketCommunicator(application, f"/ws/containers/{container_id}/logs/",
                                                headers=[ORIGIN, cookie])
        self.messages = []

    async def __aenter__(self):
        connected, _ = await self.connection.connect()
        assert connected
        return self

    async def __aexit__(self, *exc):
        await self.connection.disconnect()

    async def until(self, predicate, timeout=10.0):
        """Read messages until ``predicate(self)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in time; got {self.messages[-3:]}"
            message = json.loads(await self.connection.receive_from(timeout=left))
            self.messages.append(message)
            if "lines" in message:
                await self.connection.send_to(text_data='{"ack": 1}')  # as the page does
        return self

    @property
    def lines(self):
        shown = []
        for message in self.messages:
            if message.get("reset"):
                shown = []
            shown.extend(texts(message))
        return shown

    @property
    def html(self):
        return "".join(line for m in self.messages for line in m.get("lines", []))

    @property
    def statuses(self):
        return [m["status"] for m in self.messages if "status" in m]

    def reset_seen(self):
        return any(m.get("reset") for m in self.messages)


def watch(container_id, cookie, scenario):
    async def run():
        async with Viewer(container_id, cookie) as viewer:
            return await scenario(viewer)

    return async_to_sync(run)()


def test_the_last_lines_arrive_at_connect(client, admin, busybox, host):
    row = started(["seq", "2000"])
    exited(host, row)

    async def scenario(viewer):
        await viewer.until(Viewer.reset_seen)
        return viewer

    viewer = watch(row.id, session_cookie(client, admin), scenario)
    assert viewer.statuses[0] == "exited with code 0"
    first = next(m for m in viewer.messages if m.get("reset"))
    assert texts(first) == [str(n) for n in range(1501, 2001)]


def test_new_lines_arrive_while_following(client, admin, busybox, host):
    row = started(["sh", "-c", "sleep 2; for i in 1 2 3 4 5; do echo tick $i; sleep 0.1; done; sleep 100"])

    async def scenario(viewer):
        await viewer.until(Viewer.reset_seen)
        connected_with = list(viewer.lines)
        await viewer.until(lambda v: "tick 5" in v.lines)
        return connected_with, viewer

    connected_with, viewer = watch(row.id, session_cookie(client, admin), scenario)
    assert connected_with == [] and viewer.statuses[0] == "running"
    assert viewer.lines == [f"tick {i}" for i in range(1, 6)]


def test_a_coloured_line_is_a_span_and_stderr_is_marked(client, admin, busybox, host):
    row = started(["sh", "-c", r"printf '\033[1;31mfailed\033[0m <b>&\n'; echo oops >&2"])
    exited(host, row)

    viewer = watch(row.id, session_cookie(client, admin), lambda v: v.until(lambda v: len(v.lines) == 2))
    assert '<span class="ansi-bold ansi-red">failed</span> &lt;b&gt;&amp;' in viewer.html
    assert "\\u001b" not in json.dumps(viewer.messages) and "\x1b" not in viewer.html
    assert re.search(r'class="log-line stderr"[^>]*>oops<', viewer.html)
    assert re.search(r'class="log-line stdout"[^>]*><span', viewer.html)


def test_the_exit_code_is_said_and_a_restart_is_followed(client, admin, busybox, host):
    row = started(["sh", "-c", "echo run; sleep 0.5; exit 3"])

    async def scenario(viewer):
        await viewer.until(lambda v: "run" in v.lines)
        await sync_to_async(exited)(host, row)
        await viewer.until(lambda v: "exited with code 3" in v.statuses)
        await sync_to_async(services.start_container)(row.id)
        await viewer.until(lambda v: v.lines == ["run", "run"] and v.statuses[-1] == "running")
        await sync_to_async(exited)(host, row)
        await viewer.until(lambda v: v.statuses[-1] == "exited with code 3")
        return viewer

    viewer = watch(row.id, session_cookie(client, admin), scenario)
    assert viewer.statuses == ["running", "exited with code 3", "running", "exited with code 3"]


def test_a_last_line_without_newline_is_shown_once_pid_1_is_gone(client, admin, busybox, host):
    row = started(["sh", "-c", "sleep 1; echo first; printf 'no newline'"])

    async def scenario(viewer):
        await viewer.until(lambda v: v.lines == ["first"])
        await sync_to_async(exited)(host, row)  # the row says PID 1 is gone: the page's word for it
        await viewer.until(lambda v: v.lines == ["first", "no newline"])
        return viewer

    watch(row.id, session_cookie(client, admin), scenario)


def test_a_flood_arrives_whole_in_few_messages(client, admin, busybox, host):
    row = started(["sh", "-c", "sleep 1; seq 100000; sleep 100"])

    async def scenario(viewer):
        await viewer.until(lambda v: v.lines[-1:] == ["100000"], timeout=30)
        return viewer

    viewer = watch(row.id, session_cookie(client, admin), scenario)
    assert viewer.lines == [str(n) for n in range(1, 100001)]
    assert len(viewer.messages) < 1000


def test_a_page_that_does_not_acknowledge_is_sent_no_more_than_a_few_messages(client, admin, busybox, host):
    row = started(["sh", "-c", "sleep 1; for i in $(seq 1 40); do echo $i; usleep 30000; done; sleep 100"])

    async def scenario(viewer):
        heard = []
        while len(heard) < 10 and not await viewer.connection.receive_nothing(timeout=1.5):
            heard.append(json.loads(await viewer.connection.receive_from()))
        held = [m for m in heard if "lines" in m]
        await viewer.connection.send_to(text_data='{"ack": 4}')
        viewer.messages = heard
        await viewer.until(lambda v: v.lines[-1:] == ["40"])
        return held, viewer

    held, viewer = watch(row.id, session_cookie(client, admin), scenario)
    assert len(held) == 4  # the reset, then three batches: then it waited
    assert viewer.lines == [str(n) for n in range(1, 41)]


def test_a_viewer_may_read_the_log(client, busybox, host):
    row = started(["echo", "for everyone"])
    exited(host, row)
    vic = User.objects.create_user("vic", password="pw")

    viewer = watch(row.id, session_cookie(client, vic), lambda v: v.until(Viewer.reset_seen))
    assert viewer.lines == ["for everyone"]


def test_an_anonymous_visitor_is_refused(busybox, host):
    row = started(["echo", "secret"])
    assert connects(f"/ws/containers/{row.id}/logs/") is False


def test_an_unknown_container_is_said_and_closed(client, admin, db):
    async def scenario(cookie):
        connection = WebsocketCommunicator(application, f"/ws/containers/{'cd' * 32}/logs/", headers=[ORIGIN, cookie])
        connected, _ = await connection.connect()
        assert connected
        said = json.loads(await connection.receive_from(timeout=5))
        closed = await connection.receive_output(timeout=5)
        await connection.disconnect()
        return said, closed

    said, closed = async_to_sync(scenario)(session_cookie(client, admin))
    assert said == {"status": "no such container"} and closed["type"] == "websocket.close"
