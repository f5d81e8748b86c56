"""Detaching from ``attach`` with the detach sequence, over a state root written by hand and a stand-in
for conmon's attach socket: the sequence ends the attach, never reaches the container, and the
container runs on."""

import socket

import pytest

from console.dockerapi.handlers.streams import EscapeSequence


@pytest.fixture
def running(services, fake_runtime):
    """A running container with stdin open, and conmon's attach socket (a listening stand-in)."""
    made = []

    def make(tty: bool):
        row = services.create_container({"Image": "busybox", "Tty": tty, "OpenStdin": True}, name="typist")
        fake_runtime.write_record(row.id, "running", "2026-01-01T00:00:01Z")
        directory = fake_runtime.sockets_dir / row.id[:16]
        directory.mkdir()
        conmon = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conmon.bind(str(directory / "attach"))
        conmon.listen(1)
        conmon.settimeout(5)
        made.append(conmon)
        return row.id, conmon

    yield make
    for conmon in made:
        conmon.close()


def attach(client, cid: str, query: str = ""):
    c = client()
    c.request("POST", f"/v1.45/containers/{cid}/attach?stream=1&stdin=1&stdout=1{query}", None,
              {"Connection": "Upgrade", "Upgrade": "tcp"})
    status, _, _ = c.response()
    assert status == 101
    return c


def received_until_closed(peer: socket.socket) -> bytes:
    data = b""
    while packet := peer.recv(100):
        data += packet
    return data


def test_ctrl_p_ctrl_q_on_a_terminal_detaches_and_the_container_runs_on(client, running, services):
    cid, conmon = running(tty=True)
    c = attach(client, cid)
    peer, _ = conmon.accept()
    peer.settimeout(5)
    c.send(b"ls\n\x10\x11")
    assert c.read_to_close() == b""  # the server ended the attach
    assert received_until_closed(peer) == b"ls\n"
    assert not [call for call in services.calls if call[0] in ("stop", "kill")]
    peer.close()


def test_the_clients_own_sequence_detaches_and_a_false_start_is_typed_through(client, running):
    cid, conmon = running(tty=True)
    c = attach(client, cid, "&detachKeys=ctrl-x,x")
    peer, _ = conmon.accept()
    peer.settimeout(5)
    c.send(b"a\x18b\x10\x11")  # ctrl-x then not x: typed; ctrl-p,ctrl-q is not this client's sequence
    c.send(b"\x18x")
    assert c.read_to_close() == b""
    assert received_until_closed(peer) == b"a\x18b\x10\x11"
    peer.close()


def test_without_a_terminal_the_sequence_is_data(client, running):
    cid, conmon = running(tty=False)
    c = attach(client, cid)
    peer, _ = conmon.accept()
    peer.settimeout(5)
    c.send(b"\x10\x11 binary")
    c.sock.shutdown(socket.SHUT_WR)
    assert received_until_closed(peer) == b"\x10\x11 binary"
    peer.close()


def test_the_sequence_split_over_reads_is_still_found():
    escape = EscapeSequence(b"\x10\x11")
    assert escape.feed(b"abc\x10") == (b"abc", False)
    assert escape.feed(b"\x11tail") == (b"", True)
    other = EscapeSequence(b"\x10\x11")
    assert other.feed(b"\x10") == (b"", False) and other.feed(b"z") == (b"\x10z", False)
