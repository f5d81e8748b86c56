"""HTTP/1.1 as the docker CLI and docker-py speak it, against the server on a temporary socket."""

import json
import os
import socket
import stat
import struct
import time

import pytest

from console.dockerapi import stdcopy
from console.dockerapi.params import boolean
from console.dockerapi.server import bind_unix_socket


def test_get_ping_answers_ok_with_the_version_headers(client):
    c = client()
    c.request("GET", "/_ping")
    status, headers, body = c.response()
    assert (status, body) == (200, b"OK")
    assert headers["api-version"] == "1.45"
    assert headers["ostype"] == "linux"
    assert headers["docker-experimental"] == "false"
    assert headers["server"].startswith("Berth/") and headers["server"].endswith("(linux)")
    assert headers["cache-control"] == "no-cache, no-store, must-revalidate"


def test_head_ping_has_the_headers_and_an_empty_body(client):
    c = client()
    c.request("HEAD", "/_ping")
    status, headers, _ = c.response(head_only=True)
    assert status == 200
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "0"
    assert headers["api-version"] == "1.45"
    c.request("GET", "/_ping")  # nothing was left on the wire after the HEAD answer
    assert c.response()[2] == b"OK"


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.45", "/v1.50"])
def test_versioned_and_unversioned_paths_reach_the_same_handler(client, prefix):
    status, headers, body = client().json("GET", f"{prefix}/version")
    assert status == 200
    assert body["ApiVersion"] == "1.45" and body["MinAPIVersion"] == "1.24"
    assert body["Os"] == "linux" and body["Version"] == "berth-0.1"


def test_a_version_below_the_minimum_is_refused_in_dockers_words(client):
    status, headers, body = client().json("GET", "/v1.23/containers/json")
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body == {"message": "client version 1.23 is too old. Minimum supported API version is 1.24, "
                               "please upgrade your client to a newer version"}


def test_a_version_above_the_maximum_is_refused(client):
    status, _, body = client().json("GET", "/v1.51/version")
    assert status == 400
    assert body["message"] == "client version 1.51 is too new. Maximum supported API version is 1.50"


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("GET", "/v1.45/plugins/x/json"),
                                         ("PUT", "/_ping"), ("DELETE", "/version")])
def test_an_unknown_route_or_method_is_404_page_not_found(client, method, path):
    status, headers, body = client().json(method, path)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert body == {"message": "page not found"}


def test_bad_json_is_a_400_with_a_clear_message(client):
    c = client()
    c.request("POST", "/v1.45/containers/create", b'{"Image": "busybox",', {"Content-Type": "application/json"})
    status, headers, body = c.response()
    assert status == 400
    assert json.loads(body)["message"].startswith("invalid JSON:")


@pytest.mark.parametrize("payload,message", [
    ({"Image": "busybox", "Tty": "yes"}, "json: cannot unmarshal string into Go struct field Config.Tty of type bool"),
    ({"Image": "busybox", "Env": "A=1"},
     "json: cannot unmarshal string into Go struct field Config.Env of type []string"),
    ({"Image": "busybox", "HostConfig": {"Memory": "1g"}},
     "json: cannot unmarshal string into Go struct field HostConfig.Memory of type int64"),
    ([1, 2], "json: cannot unmarshal array into Go value of type container.CreateRequest"),
])
def test_wrong_types_in_a_create_body_are_400_like_gos_decoder(client, services, payload, message):
    status, _, body = client().json("POST", "/containers/create", payload)
    assert (status, body) == (400, {"message": message})
    assert not services.containers


def test_a_chunked_request_body_is_read_whole(client, services):
    payload = json.dumps({"Image": "busybox", "Cmd": ["echo", "chunked"]}).encode()
    pieces = [payload[:7], payload[7:20], payload[20:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    c = client()
    c.request("POST", "/v1.45/containers/create?name=chunky", chunked,
              {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    status, _, body = c.response()
    assert status == 201
    assert services.get_container("chunky").config["Cmd"] == ["echo", "chunked"]
    c.request("GET", "/_ping")  # the connection is still in step
    assert c.response()[2] == b"OK"


def test_an_oversized_body_is_refused_before_it_is_read(client):
    c = client()
    c.send(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
           b"Content-Length: 104857600\r\n\r\n{")
    status, headers, body = c.response()
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert "too large" in json.loads(body)["message"]
    assert c.read_to_close() == b""  # and the connection is closed, not left half-read


def test_an_oversized_chunked_body_is_refused_too(client):
    c = client()
    c.send(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(20):
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body = c.response()
    assert status == 413


def test_two_requests_share_one_connection(client):
    c = client()
    c.request("GET", "/_ping")
    first = c.response()
    c.request("GET", "/v1.45/version")
    second = c.response()
    assert first[2] == b"OK"
    assert json.loads(second[2])["ApiVersion"] == "1.45"


def test_pipelined_requests_are_answered_in_order(client):
    c = client()
    c.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\nGET /v1.45/version HTTP/1.1\r\nHost: d\r\n\r\n")
    assert c.response()[2] == b"OK"
    assert json.loads(c.response()[2])["ApiVersion"] == "1.45"


def test_connection_close_is_honoured(client):
    c = client()
    c.request("GET", "/_ping", headers={"Connection": "close"})
    assert c.response()[2] == b"OK"
    assert c.read_to_close() == b""


def _exec(client, services, cmd, tty=False, stdin=False):
    services.containers.clear()
    row = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1"]}, name="target")
    services.start_container(row.id)
    status, _, created = client().json("POST", f"/v1.45/containers/{row.id}/exec",
                                       {"Cmd": cmd, "Tty": tty, "AttachStdin": stdin, "AttachStdout": True,
                                        "AttachStderr": True})
    assert status == 201
    return created["Id"]


def _hijack(c, exec_id, tty=False):
    body = json.dumps({"Detach": False, "Tty": tty}).encode()
    c.request("POST", f"/v1.45/exec/{exec_id}/start", body,
              {"Content-Type": "application/json", "Connection": "Upgrade", "Upgrade": "tcp"})


def test_hijack_sends_the_101_header_block_alone_before_any_output(client, services):
    exec_id = _exec(client, services, ["sh", "-c", "sleep 0.3; echo out; echo err >&2"])
    c = client()
    _hijack(c, exec_id)
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.sock.recv(1)  # byte by byte: nothing past the header block is consumed
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 101 UPGRADED"
    assert b"Content-Type: application/vnd.docker.multiplexed-stream\r\n" in head
    assert b"Connection: Upgrade\r\n" in head and b"Upgrade: tcp\r\n" in head
    c.sock.settimeout(0.1)
    with pytest.raises(socket.timeout):
        c.sock.recv(1)  # the output comes later, in writes of its own
    c.sock.settimeout(10)
    frames = stdcopy.parse(c.read_to_close())
    assert (stdcopy.STDOUT, b"out\n") in frames and (stdcopy.STDERR, b"err\n") in frames


def test_a_client_that_shuts_its_write_side_still_gets_everything(client, services):
    exec_id = _exec(client, services, ["sh", "-c", "sleep 0.2; echo late"])
    c = client()
    _hijack(c, exec_id)
    c.sock.shutdown(socket.SHUT_WR)  # what the CLI does when no stdin is attached
    status, _, _ = c.response()
    assert status == 101
    assert stdcopy.parse(c.read_to_close()) == [(stdcopy.STDOUT, b"late\n")]


def test_without_an_upgrade_header_the_stream_follows_a_200(client, services):
    exec_id = _exec(client, services, ["echo", "plain"])
    c = client()
    c.request("POST", f"/exec/{exec_id}/start", b'{"Detach": false}', {"Content-Type": "application/json"})
    status, headers, _ = c.response(head_only=True)
    assert status == 200 and headers["content-type"] == "application/vnd.docker.raw-stream"
    assert stdcopy.parse(c.read_to_close()) == [(stdcopy.STDOUT, b"plain\n")]


@pytest.mark.parametrize("value,expected", [
    (None, False), ("", False), ("0", False), ("no", False), ("False", False), ("NONE", False), (" false ", False),
    ("1", True), ("True", True), ("yes", True), ("anything", True),
])
def test_booleans_in_the_query_read_as_moby_reads_them(value, expected):
    assert boolean(value) is expected


def test_stdcopy_frames_carry_stream_and_big_endian_length():
    framed = stdcopy.frame(stdcopy.STDERR, b"abc")
    assert framed == b"\x02\x00\x00\x00\x00\x00\x00\x03abc"
    assert stdcopy.parse(framed + stdcopy.frame(1, b"")) == [(2, b"abc"), (1, b"")]
    big = stdcopy.frame(1, b"x" * (stdcopy.MAX_FRAME + 5))
    assert [len(d) for _, d in stdcopy.parse(big)] == [stdcopy.MAX_FRAME, 5]
    assert struct.unpack(">BxxxL", big[:8]) == (1, stdcopy.MAX_FRAME)


def test_the_socket_replaces_a_stale_file_and_has_mode_0660(root):
    path = root / "run" / "docker.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody answers on
    sock = bind_unix_socket(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        sock.close()


def test_the_socket_is_not_taken_from_a_server_that_answers(server):
    with pytest.raises(RuntimeError, match="another server"):
        bind_unix_socket(server.path)


def test_the_parent_directory_of_the_socket_is_created(root):
    path = root / "a" / "b" / "docker.sock"
    sock = bind_unix_socket(path)
    sock.close()
    assert path.parent.is_dir()


def test_a_malformed_request_line_is_a_400_and_a_close(client):
    c = client()
    c.send(b"NONSENSE\r\n\r\n")
    status, _, body = c.response()
    assert status == 400
    assert c.read_to_close() == b""


def test_a_client_that_goes_away_mid_stream_does_not_break_the_server(client, services, fake_runtime):
    row = services.create_container({"Image": "busybox"}, name="quiet")
    services.start_container(row.id)
    fake_runtime.write_record(row.id, "running", "2026-01-01T00:00:00Z")
    fake_runtime.log(row.id, "stdout", b"hello")
    c = client()
    c.request("GET", f"/containers/{row.id}/logs?follow=1&stdout=1")
    assert c.response(head_only=True)[0] == 200
    c.close()
    time.sleep(0.3)
    status, _, body = client().json("GET", "/_ping")
    assert status == 200


def test_expect_continue_gets_a_100_before_the_body_is_sent(client, services):
    payload = json.dumps({"Image": "busybox"}).encode()
    c = client()
    c.send(b"POST /containers/create?name=patient HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
           b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(payload))
    assert c.readline() == b"HTTP/1.1 100 Continue"
    assert c.readline() == b""
    c.send(payload)
    assert c.response()[0] == 201
    assert services.get_container("patient")
