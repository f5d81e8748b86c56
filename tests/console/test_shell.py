"""The shell in the browser: its websocket against a real running busybox container, through a real Docker API."""

import asyncio
import json
import os
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model

from console import roles, services
from console.asgi import application
from console.hangup import shell_processes
from console.models import Operation
from tests.helpers.sockets import ORIGIN, over_socket, session_cookie

# The consumer reads rows from other threads; the predefined networks (a data migration) come back for each test.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("predefined_networks", "docker_api")]


@pytest.fixture
def sleeper(host, busybox, admin):
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"]}, user=admin, source="web")
    services.start_container(container.id, user=admin, source="web")
    return services.get_container(container.id)


async def connect(cookie, container_id, query=""):
    headers = [ORIGIN] + ([cookie] if cookie else [])
    connection = WebsocketCommunicator(application, f"/ws/containers/{container_id}/shell/{query}", headers=headers)
    connected, _ = await connection.connect(timeout=10)
    return connection, connected


def in_shell(cookie, container_id: str, talk, query: str = ""):
    return over_socket(f"/ws/containers/{container_id}/shell/{query}", cookie, talk)


async def read_until(connection, wanted: bytes, timeout: float = 10) -> bytes:
    """The terminal's output until ``wanted`` shows up in it, line ends as the reader sees them.

    runc clears ONLCR on the container's tty only once the shell may have started: a line may end
    with "\\r\\r\\n", which a terminal shows as "\\r\\n" does. Compare without the carriage returns.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = b""
    while wanted not in seen.replace(b"\r", b""):
        try:
            message = await connection.receive_output(timeout=max(deadline - loop.time(), 0.01))
        except asyncio.TimeoutError:
            raise AssertionError(f"{wanted!r} did not come within {timeout} s; the output was {seen!r}") from None
        assert message["type"] == "websocket.send", f"closed before {wanted!r} came; the output was {seen!r}"
        seen += message.get("bytes") or b""
    return seen.replace(b"\r", b"")


async def read_control(connection, timeout: float = 10) -> dict:
    """The next JSON message, past any terminal output."""
    while True:
        message = await connection.receive_output(timeout=timeout)
        assert message["type"] == "websocket.send", message
        if message.get("text") is not None:
            return json.loads(message["text"])


async def type_and_read(connection, line: str, wanted: bytes) -> bytes:
    await connection.send_to(bytes_data=line.encode() + b"\r")
    return await read_until(connection, wanted)


def runc_execs(container_id: str) -> list[int]:
    """Host pids of the `runc exec` processes of this container."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"exec" in words and container_id.encode() in words:
                found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    return [int(child) for path in Path(f"/proc/{pid}/task").glob("*/children") for child in path.read_text().split()]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan under a PID 1 that never reaps stays one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_shell_runs_what_is_typed(client, admin, sleeper):
    async def talk(connection):
        return await type_and_read(connection, "echo $((6*7))", b"42\n")

    assert b"42\n" in in_shell(session_cookie(client, admin), sleeper.id, talk)


def test_the_terminal_is_xterm_with_the_size_the_page_asked_for(client, admin, sleeper):
    async def talk(connection):
        await type_and_read(connection, "echo term=$TERM", b"term=xterm-256color\n")
        return await type_and_read(connection, "stty size", b"40 120\n")

    in_shell(session_cookie(client, admin), sleeper.id, talk, "?cols=120&rows=40")


def test_a_resize_reaches_the_shell(client, admin, sleeper):
    async def talk(connection):
        await type_and_read(connection, "stty size", b"24 80\n")
        await connection.send_to(text_data=json.dumps({"resize": [100, 30]}))
        return await type_and_read(connection, "stty size", b"30 100\n")

    in_shell(session_cookie(client, admin), sleeper.id, talk)


def test_a_bad_resize_is_answered_and_the_shell_goes_on(client, admin, sleeper):
    async def talk(connection):
        await connection.send_to(text_data=json.dumps({"resize": [0, "x"]}))
        error = await read_control(connection)
        await type_and_read(connection, "echo still $((1+1))", b"still 2\n")
        return error

    error = in_shell(session_cookie(client, admin), sleeper.id, talk)
    assert error["error"].startswith("bad control message: a size is [cols, rows]")


def test_a_large_paste_arrives_whole(client, admin, sleeper):
    pasted = "".join(f"{n:06d}" for n in range(20000))  # 120,000 bytes, more than a pty buffer holds

    async def talk(connection):
        # No echo, no line editing (a line holds 4095 bytes at most): head takes the paste as it is.
        await type_and_read(connection, "stty -echo -icanon; echo set $((1+1)); head -c 120000 | wc -c; stty sane",
                            b"set 2\n")
        await connection.send_to(bytes_data=pasted.encode())
        return await read_until(connection, b"120000\n", timeout=20)

    assert b"120000" in in_shell(session_cookie(client, admin), sleeper.id, talk)


def test_exit_ends_the_shell_with_a_final_message_and_the_close(client, admin, sleeper):
    async def talk(connection):
        await type_and_read(connection, "echo ready $((1+1))", b"ready 2\n")
        execs = runc_execs(sleeper.id)
        await connection.send_to(bytes_data=b"exit 3\r")
        final = await read_control(connection)
        closed = await connection.receive_output(timeout=5)
        return final, closed, execs

    final, closed, execs = in_shell(session_cookie(client, admin), sleeper.id, talk)
    assert final == {"status": "ended", "exit_code": 3}
    assert closed["type"] == "websocket.close"
    assert len(execs) == 1 and not os.path.exists(f"/proc/{execs[0]}")


def test_stopping_the_container_ends_its_shell(client, admin, sleeper):
    async def talk(connection):
        await type_and_read(connection, "echo ready $((1+1))", b"ready 2\n")
        await sync_to_async(services.stop_container)(sleeper.id, timeout=0, user=admin, source="web")
        return await read_control(connection), await connection.receive_output(timeout=5)

    final, closed = in_shell(session_cookie(client, admin), sleeper.id, talk)
    assert final["status"] == "ended" and final["exit_code"] != 0
    assert closed["type"] == "websocket.close"
    assert runc_execs(sleeper.id) == []


def test_text_input_in_a_control_message_is_typed_too(client, admin, sleeper):
    async def talk(connection):
        await connection.send_to(text_data=json.dumps({"input": "echo $((2*3))x\r"}))
        return await read_until(connection, b"6x\n")

    in_shell(session_cookie(client, admin), sleeper.id, talk)


def test_leaving_the_page_leaves_no_exec_running(client, admin, sleeper):
    async def scenario(cookie):
        connection, connected = await connect(cookie, sleeper.id)
        assert connected
        await type_and_read(connection, "echo ready $((1+1))", b"ready 2\n")
        await connection.send_to(bytes_data=b"sleep 1000\r")
        await asyncio.sleep(0.3)
        (runc,) = runc_execs(sleeper.id)
        (leader,) = children(runc)
        shell = shell_processes(runc)
        await connection.disconnect(timeout=10)
        return runc, leader, shell

    runc, leader, shell = async_to_sync(scenario)(session_cookie(client, admin))
    assert len(shell) == 2 and leader in shell, "the shell and the sleep it runs"
    assert not os.path.exists(f"/proc/{runc}"), "runc exec is gone and reaped"
    assert not os.path.exists(f"/proc/{leader}"), "the shell is gone and reaped (by runc)"
    assert not any(running(pid) for pid in shell)
    assert runc_execs(sleeper.id) == []
    assert services.get_container(sleeper.id).state == "running", "the container itself goes on"


def test_opening_a_shell_is_in_the_audit_log(client, admin, sleeper):
    async def scenario(cookie):
        connection, connected = await connect(cookie, sleeper.id)
        await connection.disconnect(timeout=10)
        return connected

    assert async_to_sync(scenario)(session_cookie(client, admin))
    operation = Operation.objects.get(action="container.exec", source="web")  # the API records its own too
    assert (operation.user, operation.source, operation.target_id, operation.state) == (
        admin, "web", sleeper.id, Operation.STATE_DONE)


def test_an_operator_may_open_a_shell(client, sleeper):
    operator = get_user_model().objects.create_user("olga", password="pw")
    roles.grant(operator, roles.OPERATOR)

    async def talk(connection):
        return await type_and_read(connection, "echo $((6*7))", b"42\n")

    in_shell(session_cookie(client, operator), sleeper.id, talk)


def refused(cookie, container_id):
    async def scenario():
        connection, connected = await connect(cookie, container_id)
        try:
            if not connected:
                return None, None
            return await read_control(connection), await connection.receive_output(timeout=5)
        finally:
            await connection.disconnect(timeout=10)

    return async_to_sync(scenario)()


def test_a_viewer_is_refused(client, viewer, sleeper):
    message, closed = refused(session_cookie(client, viewer), sleeper.id)
    assert message == {"error": "permission denied: vic is a viewer and cannot container.exec"}
    assert closed == {"type": "websocket.close", "code": 4403}
    assert runc_execs(sleeper.id) == []
    assert Operation.objects.get(action="container.exec", source="web").state == Operation.STATE_FAILED


def test_an_anonymous_visitor_is_refused(sleeper):
    assert refused(None, sleeper.id) == (None, None)
    assert runc_execs(sleeper.id) == []


def test_a_stopped_container_is_refused_with_a_clear_message(client, admin, sleeper):
    services.stop_container(sleeper.id, timeout=0, user=admin, source="web")
    message, closed = refused(session_cookie(client, admin), sleeper.id)
    assert message == {"error": f"container {sleeper.name} is not running: start it to open a shell"}
    assert closed == {"type": "websocket.close", "code": 4409}


def test_an_unknown_container_is_refused(client, admin, host):
    message, closed = refused(session_cookie(client, admin), "f" * 64)
    assert message == {"error": f"No such container: {'f' * 64}"}
    assert closed["code"] == 4404


# --- the tab on the container page ----------------------------------------------------------------

def test_the_page_of_a_running_container_offers_the_shell(client, admin, sleeper):
    client.force_login(admin)
    page = client.get(f"/containers/{sleeper.id}/").content.decode()
    assert '<button type="button" id="shell-open" hidden>Open a shell</button>' in page
    assert 'id="terminal"' in page and 'id="shell-status"' in page
    assert f'data-ws="/ws/containers/{sleeper.id}/shell/"' in page
    assert "/static/vendor/xterm-5.5.0.min.js" in page and "/static/js/shell.js" in page
    assert "<noscript><p>The shell is a terminal that runs in the browser: it needs JavaScript." in page


def test_the_page_of_a_stopped_container_says_it_is_not_running(client, admin, sleeper):
    services.stop_container(sleeper.id, timeout=0, user=admin, source="web")
    client.force_login(admin)
    page = client.get(f"/containers/{sleeper.id}/").content.decode()
    assert "The container is not running: start it to open a shell." in page
    assert "shell-open" not in page and "xterm" not in page


def test_a_viewer_is_not_offered_the_shell(client, viewer, sleeper):
    client.force_login(viewer)
    page = client.get(f"/containers/{sleeper.id}/").content.decode()
    assert "A viewer cannot open a shell in a container." in page
    assert "shell-open" not in page


def test_other_pages_do_not_load_the_terminal(client, admin, sleeper):
    client.force_login(admin)
    assert "xterm" not in client.get("/").content.decode()


def test_the_vendored_terminal_files_match_their_pinned_hashes():
    import hashlib

    vendor = Path(settings.BASE_DIR) / "static" / "vendor"
    pinned = {line.split()[4]: line.split()[6] for line in (vendor / "VERSIONS").read_text().splitlines()
              if line.startswith("@xterm/")}
    assert set(pinned) == {"xterm-5.5.0.min.js", "xterm-5.5.0.css", "xterm-addon-fit-0.10.0.min.js"}
    for name, digest in pinned.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest
