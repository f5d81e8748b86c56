"""console.dockerapi.fdio.Notifier: the inotify fd an attach or a log follow watches with.

Closing one waits out an SRCU grace period in the kernel (~12 ms median in the API process,
up to ~20 ms), so ``close`` hands the fd to a thread of its own: on the event loop it held
up every other request. The fd must still go, and a change after close must wake nobody.
"""

from __future__ import annotations

import asyncio
import os

from console.dockerapi.fdio import IN_CREATE, Notifier
from tests.helpers.waiting import wait_until


def inotify_fds() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                found.add(int(name))
        except OSError:
            continue
    return found


def test_a_notifier_wakes_on_a_change_and_its_fd_goes_after_close(tmp_path):
    before = inotify_fds()
    notifier = Notifier()
    assert notifier.watch(tmp_path, IN_CREATE)
    fd = notifier.fd
    assert fd in inotify_fds() - before

    async def woken() -> bool:
        (tmp_path / "new").write_text("x")
        loop = asyncio.get_running_loop()
        began = loop.time()
        await notifier.wait(5.0)
        return loop.time() - began < 5.0

    assert asyncio.run(woken())
    notifier.close()
    assert notifier.fd == -1
    wait_until(lambda: fd not in inotify_fds(), timeout=5, what="the notifier's inotify fd closed")
    notifier.close()  # twice is fine
