"""``exec``: create, start (hijacked or detached), resize, inspect; the command runs on the host here."""

import json
import time

import pytest

from console.dockerapi import stdcopy


@pytest.fixture
def running(services):
    row = services.create_container({"Image": "busybox"}, name="srv")
    services.start_container(row.id)
    return row.id


def _create(client, cid, cmd, **options):
    body = {"AttachStdout": True, "AttachStderr": True, "Cmd": cmd, **options}
    status, _, data = client().json("POST", f"/v1.45/containers/{cid}/exec", body)
    assert status == 201, data
    return data["Id"]


def _start(client, exec_id, tty=False, stdin=b""):
    c = client()
    c.request("POST", f"/v1.45/exec/{exec_id}/start", json.dumps({"Detach": False, "Tty": tty}).encode(),
              {"Content-Type": "application/json", "Connection": "Upgrade", "Upgrade": "tcp"})
    status, headers, _ = c.response()
    assert status == 101
    if stdin:
        c.send(stdin)
    import socket

    c.sock.shutdown(socket.SHUT_WR)
    return headers, c.read_to_close()


def test_exec_streams_both_pipes_and_records_the_exit_code(client, running):
    exec_id = _create(client, running, ["sh", "-c", "echo out; echo err >&2; exit 4"])
    _, _, before = client().json("GET", f"/v1.45/exec/{exec_id}/json")
    assert before["Running"] is False and before["ExitCode"] is None
    assert before["ProcessConfig"] == {"tty": False, "entrypoint": "sh",
                                       "arguments": ["-c", "echo out; echo err >&2; exit 4"],
                                       "privileged": False, "user": ""}
    headers, output = _start(client, exec_id)
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert sorted(stdcopy.parse(output)) == [(1, b"out\n"), (2, b"err\n")]
    _, _, after = client().json("GET", f"/exec/{exec_id}/json")
    assert after["ExitCode"] == 4 and after["Running"] is False and after["ContainerID"] == running
    assert after["Pid"] > 0


def test_exec_feeds_the_clients_stdin(client, running):
    exec_id = _create(client, running, ["cat"], AttachStdin=True)
    _, output = _start(client, exec_id, stdin=b"piped\n")
    assert stdcopy.parse(output) == [(1, b"piped\n")]


def test_exec_with_a_tty_is_raw(client, running):
    exec_id = _create(client, running, ["sh", "-c", "tty >/dev/null && echo terminal"], Tty=True)
    headers, output = _start(client, exec_id, tty=True)
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert output == b"terminal\r\n"


def test_a_command_that_cannot_start_gives_dockers_message_and_127(client, running):
    exec_id = _create(client, running, ["nosuchcmd"])
    _, output = _start(client, exec_id)
    assert stdcopy.parse(output) == [(1, b'OCI runtime exec failed: exec failed: unable to start container process: '
                                        b'exec: "nosuchcmd": executable file not found in $PATH: unknown\r\n')]
    assert client().json("GET", f"/exec/{exec_id}/json")[2]["ExitCode"] == 127


def test_detached_exec_answers_200_and_runs_on(client, running):
    exec_id = _create(client, running, ["sh", "-c", "sleep 0.2; exit 2"])
    status, headers, body = client().json("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert status == 200 and body == b""
    deadline = time.monotonic() + 5
    while client().json("GET", f"/exec/{exec_id}/json")[2]["ExitCode"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client().json("GET", f"/exec/{exec_id}/json")[2]["ExitCode"] == 2


def test_an_exec_starts_once(client, running):
    exec_id = _create(client, running, ["true"])
    _start(client, exec_id)
    status, _, data = client().json("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert status == 409


def test_exec_in_a_stopped_container_is_409(client, services):
    row = services.create_container({"Image": "busybox"}, name="idle")
    status, _, data = client().json("POST", "/containers/idle/exec", {"Cmd": ["true"]})
    assert (status, data) == (409, {"message": f"container {row.id} is not running"})


def test_exec_without_a_command_is_400(client, running):
    status, _, data = client().json("POST", f"/containers/{running}/exec", {"Cmd": []})
    assert (status, data) == (400, {"message": "No exec command specified"})


def test_unknown_exec_ids_are_404(client):
    for method, path in (("GET", "/exec/nope/json"), ("POST", "/exec/nope/start"),
                         ("POST", "/exec/nope/resize?h=1&w=1")):
        status, _, data = client().json(method, path, {} if method == "POST" else None)
        assert (status, data) == (404, {"message": "No such exec instance: nope"})


def test_exec_resize_sets_the_pty_window(client, running):
    exec_id = _create(client, running, ["sh", "-c", "sleep 0.5; stty size"], Tty=True)
    c = client()
    c.request("POST", f"/exec/{exec_id}/start", b'{"Tty": true}',
              {"Content-Type": "application/json", "Connection": "Upgrade", "Upgrade": "tcp"})
    assert c.response()[0] == 101
    resize = client()
    resize.request("POST", f"/exec/{exec_id}/resize?h=33&w=111")
    assert resize.response()[0] == 200
    assert c.read_to_close() == b"33 111\r\n"


def test_a_terminal_size_beyond_16_bits_is_400_and_starts_nothing(client, running):
    exec_id = _create(client, running, ["stty", "size"], Tty=True)
    status, _, data = client().json("POST", f"/exec/{exec_id}/start", {"Tty": True, "ConsoleSize": [70000, 80]})
    assert status == 400 and "ConsoleSize" in data["message"], data
    assert client().json("GET", f"/exec/{exec_id}/json")[2]["Running"] is False
    resize = client()
    resize.request("POST", f"/exec/{exec_id}/resize?h=24&w=65536")
    status, _, body = resize.response()
    assert status == 400 and b"65536 is above 65535" in body, body


def test_inspect_lists_running_exec_ids(client, running):
    exec_id = _create(client, running, ["sleep", "0.5"])
    client().json("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert client().json("GET", f"/containers/{running}/json")[2]["ExecIDs"] == [exec_id]
