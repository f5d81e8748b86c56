"""The Docker Engine API on a unix socket, for the docker CLI and docker-py.

::

    docker CLI / docker-py ──unix socket──> server.py (HTTP/1.1, keep-alive, chunked, hijack)
                                              │ routes.py -> handlers/*.py
                                              ├── console.services (sync, in worker threads) ──> rows, Celery tasks
                                              ├── channels group container-<id> (wait)
                                              └── the local state root, read-only (logs, attach, exec, cp, stats)

Start it with ``python manage.py dockerapi``. ``run()`` is the same, for
code that already has Django set up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger("berth.dockerapi")


async def start(api, socket_path: str, mode: int = 0o660):
    """Bind the socket and start serving; returns the asyncio server."""
    from .routes import build_router
    from .server import bind_unix_socket, serve

    sock = bind_unix_socket(socket_path, mode)
    return await serve(build_router(api), sock)


async def _run(api, socket_path: str, mode: int, ready=None) -> None:
    server = await start(api, socket_path, mode)
    ours = os.stat(socket_path).st_ino
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready()
    else:
        log.info("Docker API listening on unix://%s", socket_path)
    try:
        await stop.wait()
    finally:
        server.close()
        _remove_socket(socket_path, ours)
        api.close()


def _remove_socket(socket_path: str, inode: int) -> None:
    """Remove our socket file, not one another server put there since."""
    try:
        if os.lstat(socket_path).st_ino == inode:
            os.unlink(socket_path)
    except OSError:
        pass


def run(socket_path: str | None = None, mode: int = 0o660, api=None, ready=None) -> None:
    """Serve until SIGINT or SIGTERM."""
    from django.conf import settings

    from .api import DockerAPI

    api = api or DockerAPI()
    asyncio.run(_run(api, socket_path or settings.BERTH_DOCKER_SOCKET, mode, ready))
