"""Small asyncio helpers over raw file descriptors: pipes, ptys, inotify, a blocking iterator in a thread."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Iterator


async def _ready(fd: int, writing: bool = False) -> None:
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def wake():
        if not future.done():
            future.set_result(None)

    (loop.add_writer if writing else loop.add_reader)(fd, wake)
    try:
        await future
    finally:
        (loop.remove_writer if writing else loop.remove_reader)(fd)


async def read_fd(fd: int, size: int = 65536) -> bytes:
    """Read what is there (non-blocking fd); b"" at EOF, also a pty's EIO once its other side is gone."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await _ready(fd)
        except OSError as error:
            if error.errno == errno.EIO:
                return b""
            raise


async def write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
            view = view[written:]
        except BlockingIOError:
            await _ready(fd, writing=True)


def wait_pid(pid: int) -> "asyncio.Future[None]":
    """A future done when process ``pid`` (our child) has exited; reap it with Popen.wait afterwards."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        future.set_result(None)
        return future

    def done():
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(fd, done)

    def cancelled(f):
        if f.cancelled():
            try:
                loop.remove_reader(fd)
                os.close(fd)
            except OSError:
                pass

    future.add_done_callback(cancelled)
    return future


# --- inotify: a wake-up when files change, instead of polling fast --------------------------------

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc.inotify_init1.argtypes = [ctypes.c_int]
    _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
except (OSError, AttributeError):  # pragma: no cover - every Linux libc has them
    _libc = None


class Notifier:
    """Wakes a coroutine when watched paths change; without inotify it just sleeps a little."""

    FALLBACK = 0.02

    def __init__(self):
        self.fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC) if _libc is not None else -1
        self.watched: set[str] = set()

    def watch(self, path, mask: int) -> bool:
        if self.fd < 0:
            return False
        key = f"{path}:{mask}"
        if key in self.watched:
            return True
        if _libc.inotify_add_watch(self.fd, os.fsencode(str(path)), mask) < 0:
            return False
        self.watched.add(key)
        return True

    async def wait(self, timeout: float) -> None:
        if self.fd < 0:
            await asyncio.sleep(min(timeout, self.FALLBACK))
            return
        try:
            await asyncio.wait_for(_ready(self.fd), timeout)
        except asyncio.TimeoutError:
            pass
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except OSError:
                return

    def close(self) -> None:
        """Never waits: closing an inotify fd waits out an SRCU grace period in the kernel (10-20 ms
        here), which on an event loop held up every other request of the process (a start's answer)."""
        if self.fd >= 0:
            _closer.submit(os.close, self.fd)
            self.fd = -1


# One thread closes the Notifiers' fds, in the order they were handed over.
_closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inotify-close")


# --- a blocking iterator, consumed from asyncio --------------------------------------------------


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


async def produce_in_thread(work: Callable[[Callable[[object], bool], threading.Event], None],
                            backlog: int = 256) -> AsyncIterator[list]:
    """Batches of what ``work(put, stop)`` puts, running in a thread of its own.

    ``put(item)`` waits while ``backlog`` items are unread and returns False
    once the consumer has left (``stop`` is set then too): ``work`` should
    return. Each batch is what had arrived when the consumer looked. An
    exception in ``work`` is raised in the consumer after the items before it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    slots = threading.Semaphore(backlog)
    stop = threading.Event()

    def deliver(item) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
            return True
        except RuntimeError:  # the loop is gone
            return False

    def put(item) -> bool:
        while not slots.acquire(timeout=0.2):
            if stop.is_set():
                return False
        return not stop.is_set() and deliver(item)

    def run():
        end = _End()
        try:
            work(put, stop)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            end = _End(error)
        finally:
            deliver(end)

    threading.Thread(target=run, name="dockerapi-stream", daemon=True).start()
    try:
        end = None
        while end is None:
            batch = []
            item = await queue.get()
            while True:
                if isinstance(item, _End):
                    end = item
                    break
                slots.release()
                batch.append(item)
                if len(batch) >= backlog:
                    break
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
            if batch:
                yield batch
        if end.error is not None:
            raise end.error
    finally:
        stop.set()


def iterate_in_thread(make: Callable[[threading.Event], Iterator], backlog: int = 256) -> AsyncIterator[list]:
    """Batches of the items of ``make(stop)``, a blocking iterator run in a thread of its own.

    Leaving the loop sets ``stop``: pass it on to the iterator (follow_logs(stop=...)).
    """

    def work(put, stop):
        for item in make(stop):
            if not put(item):
                return

    return produce_in_thread(work, backlog)
