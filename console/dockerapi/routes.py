"""Every endpoint, bound to one API context."""

from __future__ import annotations

import functools

from .handlers import archive, containers, description, execs, images, networks, stats, streams, system, wait
from .server import Router

MODULES = (system, description, containers, wait, streams, execs, archive, stats, images, networks)


def build_router(api) -> Router:
    router = Router()
    for module in MODULES:
        for method, pattern, handler in module.ROUTES:
            router.add(method, pattern, functools.partial(handler, api))
    return router
