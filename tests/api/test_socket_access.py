"""The Docker API socket lets in root and the socket's group, and refuses every other user, as dockerd's does."""

import os
import socket
import stat

import pytest

NOBODY = 65534
SOCKET_GROUP = 4242  # stands for the group an administrator gives access with (`chgrp docker docker.sock`)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def connect_as(path: str, uid: int, gid: int, groups=()) -> str:
    """What connecting to the unix socket ``path`` gives a process of ``uid``/``gid``: "connected" or the error."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the parent has threads (the server's): the child only connects, reports and exits
        outcome = "connected"
        try:
            os.close(reading)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(5)
            probe.connect(path)
            probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
            outcome = "connected " + probe.recv(64).decode(errors="replace").split("\r\n")[0]
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            outcome = type(error).__name__
        finally:
            os.write(writing, outcome.encode())
            os._exit(0)
    os.close(writing)
    try:
        with os.fdopen(reading, "rb") as pipe:
            return pipe.read().decode()
    finally:
        os.waitpid(child, 0)


def test_the_socket_is_root_owned_and_mode_0660(server):
    found = os.stat(server.path)
    assert stat.S_ISSOCK(found.st_mode)
    assert stat.S_IMODE(found.st_mode) == 0o660
    assert (found.st_uid, found.st_gid) == (0, 0)


def test_an_unprivileged_user_is_refused(server):
    assert connect_as(server.path, NOBODY, NOBODY) == "PermissionError"


def test_root_connects_and_is_answered(server):
    assert connect_as(server.path, 0, 0) == "connected HTTP/1.1 200 OK"


def test_a_member_of_the_sockets_group_connects_and_others_still_do_not(server):
    os.chown(server.path, 0, SOCKET_GROUP)
    assert connect_as(server.path, NOBODY, NOBODY, groups=[SOCKET_GROUP]) == "connected HTTP/1.1 200 OK"
    assert connect_as(server.path, NOBODY, NOBODY) == "PermissionError"
