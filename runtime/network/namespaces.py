"""Network namespaces without forking: the work happens in a short-lived thread.

setns(2) and unshare(2) with CLONE_NEWNET change only the calling thread, so
a thread can step into a namespace, open a netlink socket there (a socket
stays in the namespace it was made in) or make a new namespace and
bind-mount it, and end; the process never leaves the host's namespace.
pyroute2's own netns support forks a child for this, which is unsafe in a
Celery prefork worker: a child of the pool process that unwinds into the
pool's code runs a task in the container's namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

from ..errors import NotFound

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)


def _in_thread(work):
    box: dict = {}

    def run():
        try:
            box["value"] = work()
        except BaseException as error:  # handed to the caller's thread
            box["error"] = error

    thread = threading.Thread(target=run, name="berth-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def netlink_socket_in(netns_path: str) -> int:
    """A NETLINK_ROUTE socket inside ``netns_path``; its file descriptor (pyroute2's IPRoute(fileno=...))."""
    def work() -> int:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"network namespace {netns_path} not found") from None
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns_path}")
        finally:
            os.close(fd)
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE).detach()
    return _in_thread(work)


def create_netns(path: str) -> None:
    """A new network namespace, kept alive by a bind mount at ``path`` (as ``ip netns add`` does)."""
    def work() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "x"):
            pass
        own = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        try:
            _check(_libc.mount(own.encode(), path.encode(), b"none", MS_BIND, None), f"bind {path}")
        except OSError:
            os.unlink(path)
            raise
    _in_thread(work)
