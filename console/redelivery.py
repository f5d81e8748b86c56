"""Tasks a killed worker held, queued again as soon as its successor starts.

Tasks are ``acks_late``: a worker takes a message, runs the task, then acks it.
With Redis as the broker, a taken message waits in kombu's ``unacked`` hash;
a worker that dies without acking leaves it there, and kombu puts it back on
its queue only after the visibility timeout (an hour by default). Meanwhile
the caller (a page, the Docker API) waits for nothing until its own timeout::

    worker A takes "start c1" --> SIGKILL --> unacked: {tag: ("start c1", host.h1)}
    worker B starts (host.h1) --> restore(tag) --> host.h1: ["start c1"] --> B runs it --> the caller hears

A host has one worker on its queue (``host.<BERTH_HOST>``), so every message
of that queue taken before this worker began is its dead predecessor's.
Messages taken by this worker itself (later than ``began``) are left alone.
Each task is idempotent (``console.tasks``), and a message whose caller gave
up meanwhile has expired (``operations.call`` sends each with ``expires``):
Celery drops it unrun.
"""

from __future__ import annotations

import json
import logging
import time

from celery.signals import worker_init
from celery.worker import state as worker_state

from .celery import app, host_queue

log = logging.getLogger(__name__)

_began = 0.0


@worker_init.connect
def note_start(sender=None, **kwargs) -> None:
    """Before the worker consumes anything: later deliveries are its own."""
    global _began
    _began = time.time()


def restore_orphaned(host: str) -> int:
    """Put back on ``host``'s queue the messages a previous worker took and never acked; how many."""
    queue = host_queue(host)
    restored = 0
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        qos = getattr(channel, "qos", None)
        if qos is None or not hasattr(qos, "restore_by_tag"):
            return 0  # not the Redis transport: its broker redelivers by itself
        client = channel.client
        for tag in client.zrangebyscore(qos.unacked_index_key, 0, _began or time.time()):
            payload = client.hget(qos.unacked_key, tag)
            if payload is None or queue not in _routing_keys(json.loads(payload)):
                continue
            qos.restore_by_tag(tag, leftmost=True)
            restored += 1
    if restored:
        log.warning("queued again %d task(s) a previous worker of %s took and never finished", restored, host)
    return restored


def has_task_for(target_id: str) -> bool:
    """Is a task naming ``target_id`` running in this worker, reserved by it, or waiting on its queue?

    Asked from the worker's main process, which knows the requests it handed to its pool."""
    if not target_id:
        return False
    requests = [*worker_state.active_requests, *worker_state.reserved_requests]
    if any(target_id in repr(request.argsrepr or request.args) for request in requests):
        return True
    from django.conf import settings

    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        # The queue's messages carry their arguments' repr in plain JSON (argsrepr).
        return any(target_id.encode() in message for message in client.lrange(host_queue(settings.BERTH_HOST), 0, -1))


def _routing_keys(entry: list) -> set[str]:
    """kombu's unacked entry is [message, exchange, routing key]."""
    message, _, routing_key = entry
    info = (message.get("properties") or {}).get("delivery_info") or {}
    return {routing_key, info.get("routing_key")}
