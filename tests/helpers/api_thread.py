"""A Docker API server on its own event loop in a background thread, for tests that talk to it over its socket."""

from __future__ import annotations

import asyncio
import threading

from console import dockerapi
from console.dockerapi.api import DockerAPI


class ServerThread:
    """One API server on its own event loop in a background thread."""

    def __init__(self, api: DockerAPI, path: str):
        self.api = api
        self.path = path
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dockerapi-test", daemon=True)

    def _run(self):
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported to the test
            self.failure = error
            self.ready.set()

    async def _main(self):
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        server = await dockerapi.start(self.api, self.path)
        self.ready.set()
        await self.stopping.wait()
        server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    def start(self) -> "ServerThread":
        self.thread.start()
        self.ready.wait(10)
        if self.failure is not None:
            raise self.failure
        return self

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)
        self.api.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
