"""``logs`` and ``attach`` over a state root written by hand in conmon's formats."""

import socket
import threading
import time

import pytest

from console.dockerapi import stdcopy
from console.dockerapi.handlers.streams import LogTail, tail_count, timestamp_ns


@pytest.fixture
def container(services, fake_runtime):
    def make(name="talker", tty=False, stdin=False, status="created", started_at=""):
        row = services.create_container({"Image": "busybox", "Tty": tty, "OpenStdin": stdin}, name=name)
        fake_runtime.write_record(row.id, status, started_at)
        return row.id
    return make


def _logs(client, cid, query):
    c = client()
    c.request("GET", f"/v1.45/containers/{cid}/logs?{query}")
    return c.response()


def test_logs_are_stdcopy_frames_of_both_streams(client, container, fake_runtime):
    cid = container()
    fake_runtime.log(cid, "stdout", b"one")
    fake_runtime.log(cid, "stderr", b"two")
    fake_runtime.log(cid, "stdout", b"thr", partial=True)
    fake_runtime.log(cid, "stdout", b"ee")
    status, headers, body = _logs(client, cid, "stdout=1&stderr=1")
    assert status == 200
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert headers["transfer-encoding"] == "chunked"
    assert stdcopy.parse(body) == [(1, b"one\n"), (2, b"two\n"), (1, b"three\n")]


def test_logs_pick_streams_tail_and_timestamps(client, container, fake_runtime):
    cid = container()
    for text in (b"a", b"b", b"c"):
        fake_runtime.log(cid, "stdout", text)
    fake_runtime.log(cid, "stderr", b"oops")
    _, _, body = _logs(client, cid, "stdout=1&tail=2")
    assert stdcopy.parse(body) == [(1, b"b\n"), (1, b"c\n")]
    _, _, body = _logs(client, cid, "stderr=1&timestamps=1")
    ((stream, line),) = stdcopy.parse(body)
    stamp, _, text = line.partition(b" ")
    assert stream == 2 and text == b"oops\n" and stamp.endswith(b"Z") and b"T" in stamp


@pytest.mark.parametrize("query", ["stdout=1&stderr=1", "stdout=1&stderr=1&tail=1500"])
def test_a_log_larger_than_a_send_block_comes_back_whole_and_in_order(client, container, fake_runtime, query):
    cid = container()
    lines = [(1 if n % 3 else 2, f"line {n:05d} ".encode() + b"x" * 200) for n in range(2000)]  # ~430 KiB
    for stream, text in lines:
        fake_runtime.log(cid, "stdout" if stream == 1 else "stderr", text)
    status, _, body = _logs(client, cid, query)
    expected = [(stream, text + b"\n") for stream, text in lines]
    assert status == 200 and stdcopy.parse(body) == (expected[-1500:] if "tail" in query else expected)


def test_logs_without_any_stream_are_400(client, container):
    cid = container()
    status, _, body = _logs(client, cid, "follow=1")
    assert status == 400 and b"you must choose at least one stream" in body


def test_tty_logs_are_raw(client, container, fake_runtime):
    cid = container(tty=True)
    fake_runtime.log(cid, "stdout", b"/ # ", partial=True)
    fake_runtime.log(cid, "stdout", b"ls\r")
    _, headers, body = _logs(client, cid, "stdout=1&stderr=1")
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert body == b"/ # ls\r\n"


def test_follow_streams_new_lines_until_the_container_exits(client, container, fake_runtime):
    cid = container(status="running", started_at="2026-01-01T00:00:00Z")
    fake_runtime.log(cid, "stdout", b"before")
    c = client()
    c.request("GET", f"/containers/{cid}/logs?follow=1&stdout=1&tail=all")

    def later():
        time.sleep(0.3)
        fake_runtime.log(cid, "stdout", b"after")
        time.sleep(0.2)
        fake_runtime.exit(cid, 0)

    threading.Thread(target=later).start()
    started = time.monotonic()
    status, _, body = c.response()
    assert status == 200
    assert stdcopy.parse(body) == [(1, b"before\n"), (1, b"after\n")]
    assert time.monotonic() - started >= 0.4


def test_follow_of_a_stopped_container_ends_at_once(client, container, fake_runtime):
    cid = container(status="exited")
    fake_runtime.log(cid, "stdout", b"old")
    _, _, body = _logs(client, cid, "follow=1&stdout=1")
    assert stdcopy.parse(body) == [(1, b"old\n")]


@pytest.mark.parametrize("value,ns", [(None, None), ("0", None), ("1700000000", 1700000000 * 10**9),
                                      ("1700000000.5", 1700000000 * 10**9 + 500_000_000)])
def test_since_and_until_are_unix_times(value, ns):
    assert timestamp_ns("since", value) == ns


def test_tail_reads_numbers_and_all():
    assert (tail_count("10"), tail_count("all"), tail_count(None), tail_count("-1")) == (10, None, None, None)


# --- attach ---------------------------------------------------------------------------------


def _attach(client, cid, query="stream=1&stdout=1&stderr=1"):
    c = client()
    c.request("POST", f"/v1.45/containers/{cid}/attach?{query}", None,
              {"Connection": "Upgrade", "Upgrade": "tcp", "Content-Type": "text/plain"})
    status, headers, _ = c.response()
    return c, status, headers


def test_attach_before_start_gets_the_runs_output_then_the_end(client, container, fake_runtime):
    cid = container()
    c, status, headers = _attach(client, cid)
    assert status == 101
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert headers["upgrade"] == "tcp" and headers["connection"] == "Upgrade"
    assert fake_runtime.log_path(cid).exists()  # made ready before conmon: nothing can be missed
    c.sock.shutdown(socket.SHUT_WR)  # no stdin, as the CLI does
    fake_runtime.write_record(cid, "running", "2026-01-01T00:00:01Z")
    fake_runtime.log(cid, "stdout", b"hi")
    fake_runtime.log(cid, "stderr", b"warn")
    fake_runtime.exit(cid, 0)
    assert stdcopy.parse(c.read_to_close()) == [(1, b"hi\n"), (2, b"warn\n")]


def test_attach_sees_output_of_a_run_that_ended_before_it_looked(client, container, fake_runtime):
    cid = container()
    c, _, _ = _attach(client, cid)
    # The whole run happens between two looks, and the container is removed right after (--rm).
    fake_runtime.log(cid, "stdout", b"quick")
    fake_runtime.write_record(cid, "running", "2026-01-01T00:00:01Z")
    fake_runtime.exit(cid, 0)
    import shutil

    shutil.rmtree(fake_runtime.state.container_dir(cid))
    assert stdcopy.parse(c.read_to_close()) == [(1, b"quick\n")]


def test_attach_to_a_tty_container_is_raw_and_sends_partial_lines_at_once(client, container, fake_runtime):
    cid = container(tty=True, status="running", started_at="2026-01-01T00:00:00Z")
    fake_runtime.log(cid, "stdout", b"old output")  # before the attach: not replayed
    c, _, headers = _attach(client, cid)
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    fake_runtime.log(cid, "stdout", b"/ # ", partial=True)
    c.sock.settimeout(5)
    assert c.sock.recv(100) == b"/ # "
    fake_runtime.exit(cid, 0)
    assert c.read_to_close() == b""


def test_attach_with_logs_replays_the_history_first(client, container, fake_runtime):
    cid = container(status="exited")
    fake_runtime.log(cid, "stdout", b"history")
    c, _, _ = _attach(client, cid, "logs=1&stdout=1")
    assert stdcopy.parse(c.read_to_close()) == [(1, b"history\n")]


def test_attach_stdin_reaches_conmons_socket_once_the_run_started(client, container, fake_runtime):
    cid = container(stdin=True)
    directory = fake_runtime.sockets_dir / cid[:16]
    directory.mkdir()
    conmon = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conmon.bind(str(directory / "attach"))
    conmon.listen(1)
    conmon.settimeout(5)
    c, _, _ = _attach(client, cid, "stream=1&stdin=1&stdout=1")
    c.send(b"typed early\n")  # before the start: held back
    time.sleep(0.2)
    fake_runtime.write_record(cid, "running", "2026-01-01T00:00:01Z")
    peer, _ = conmon.accept()
    peer.settimeout(5)
    assert peer.recv(100) == b"typed early\n"
    c.send(b"more\n")
    assert peer.recv(100) == b"more\n"
    fake_runtime.exit(cid, 0)
    assert c.read_to_close() == b""
    peer.close()
    conmon.close()


def test_attach_to_a_missing_container_is_a_plain_404(client):
    status, _, data = client().json("POST", "/containers/ghost/attach?stream=1&stdout=1")
    assert (status, data) == (404, {"message": "No such container: ghost"})


def test_the_log_tail_follows_a_rotation(fake_runtime, services):
    row = services.create_container({"Image": "busybox"}, name="rot")
    fake_runtime.write_record(row.id, "running")
    fake_runtime.log(row.id, "stdout", b"first")
    tail = LogTail(fake_runtime.log_path(row.id), from_start=True, create=False)
    assert tail.read() == [("stdout", b"first\n")]
    fake_runtime.log(row.id, "stdout", b"second")
    path = fake_runtime.log_path(row.id)
    path.rename(path.with_name("ctr.log.1"))
    fake_runtime.log(row.id, "stdout", b"third")  # conmon reopened: a new file
    assert tail.read() == [("stdout", b"second\n"), ("stdout", b"third\n")]
    tail.close()


def test_stdin_sent_and_closed_before_the_start_still_arrives_in_order(client, container, fake_runtime):
    cid = container(stdin=True)
    directory = fake_runtime.sockets_dir / cid[:16]
    directory.mkdir()
    conmon = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conmon.bind(str(directory / "attach"))
    conmon.listen(1)
    conmon.settimeout(5)
    c, _, _ = _attach(client, cid, "stream=1&stdin=1&stdout=1")
    for word in (b"one ", b"two ", b"three\n"):
        c.send(word)
    c.sock.shutdown(socket.SHUT_WR)  # echo hello | docker run -i: all of stdin, then EOF, before the start
    time.sleep(0.2)
    fake_runtime.write_record(cid, "running", "2026-01-01T00:00:01Z")
    peer, _ = conmon.accept()
    peer.settimeout(5)
    received = b""
    while True:
        packet = peer.recv(100)
        if not packet:
            break  # our side shut its writing: conmon sees the end of the client's input
        received += packet
    assert received == b"one two three\n"
    fake_runtime.exit(cid, 0)
    assert c.read_to_close() == b""
    peer.close()
    conmon.close()
