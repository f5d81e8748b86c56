"""Waiting for a host's task, and sending it again when it was lost on the way.

Redis runs without persistence (``scripts/start``: ``--save "" --appendonly no``): when it
restarts, the queued tasks, the ones a worker held and their results are gone. A caller
waiting for one would wait its whole timeout (``BERTH_TASK_TIMEOUT``) for nothing, its rows
half-made all that while. So the wait is cut in slices, and between two slices the broker's
``run_id`` (new at each start of Redis) is compared with the one this process saw last::

    send (run_id A) --wait 1 s--> no answer, run_id A --wait 1 s--> Redis down: keep waiting
        --wait 1 s--> run_id B, and the task is nowhere in it: lost --> send it again --> its outcome

Sending again is safe because every host task is idempotent (``console.tasks``): the task may
have run before Redis went, its result lost with it, and its second run then changes nothing
and answers what the host shows. After ``RESENDS`` lost sends the caller gets BrokerRestarted.

A worker SIGKILLed between taking a message off the queue (BRPOP) and noting it in kombu's
``unacked`` hash loses it too, Redis or not: ``redelivery`` cannot queue again what is nowhere.
So a task found neither on its queue, nor held, nor answered, twice a slice apart, counts as
lost (``TaskLost``) and is sent again the same way.
"""

from __future__ import annotations

import time

import redis
from celery.exceptions import TimeoutError as TaskTimeout
from django.conf import settings
from django.db import transaction

from runtime.errors import BerthError

from . import tasks
from .celery import host_queue

SLICE = 1.0   # seconds of waiting between two looks at the broker
RESENDS = 2   # times a task lost with a restarted Redis (or with a killed worker) is sent again
LOST_AFTER = 2  # looks in a row, a slice apart, that find the task nowhere before it counts as lost
UNACKED_KEY = "unacked"  # kombu's Redis transport: the hash of the messages workers hold (acks_late)


class BrokerRestarted(BerthError):
    """Redis restarted while the task was queued or running: the task and its result are gone."""


class TaskLost(BrokerRestarted):
    """No result, and the task is neither on its queue nor held by a worker (kombu's unacked hash):
    a worker killed between taking the message off the queue and noting it as held lost it."""


def _client() -> redis.Redis:
    # REDIS_URL is redis-py's name of the broker (CELERY_BROKER_URL may be Celery's redis+socket form of it).
    # A plain client, not one of kombu's connections: those each keep an epoll open in the caller's process.
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)


def run_id() -> str | None:
    """The broker's run id (new at each start of Redis); None while it cannot be reached."""
    client = _client()
    try:
        seen = client.info("server").get("run_id")
    except redis.RedisError:
        return None
    finally:
        client.close()
    global _last_seen
    _last_seen = seen
    return seen


# The run id last seen by this process: the baseline of a call, so that a quick call (nearly all are)
# costs no round trip to Redis. One that is stale (Redis restarted since) only makes a slow call look
# for its task in Redis once (``_wait``).
_last_seen: str | None = None


def _baseline() -> str | None:
    return _last_seen or run_id()


def call(task, host: str, *args, extra_wait: float = 0):
    """``operations.call``: run ``task`` on ``host``'s queue and wait; its result, or its error raised
    again here. If Redis restarted meanwhile the task is sent again (every host task is idempotent:
    a create of the same id, a start after the request, a stop of what is stopped change nothing)."""
    if transaction.get_connection().in_atomic_block and not task.app.conf.task_always_eager:
        raise BerthError("a service was called inside a transaction: the worker could not see its rows")
    timeout = settings.BERTH_TASK_TIMEOUT + extra_wait
    deadline = time.monotonic() + timeout
    for attempt in range(RESENDS + 1):
        broker = None if task.app.conf.task_always_eager else _baseline()
        try:
            # Not run at all once the caller gave up (a task redelivered after its worker died, say).
            result = task.apply_async(args=args, queue=host_queue(host), expires=max(deadline - time.monotonic(), 1))
        except Exception as error:
            raise BerthError(f"could not queue {task.name} for host {host}: {error}") from error
        try:
            outcome = _wait(result, task.name, host, deadline, timeout, broker)
            break
        except BrokerRestarted:  # TaskLost too
            if attempt == RESENDS:
                raise
        finally:
            _forget(result)
    if "error" in outcome:
        raise tasks.error_from_data(outcome)
    return outcome.get("result")


def _forget(result) -> None:
    try:
        result.forget()
    except Exception:
        pass  # Redis is gone or new: nothing of this result is left in it anyway


def _wait(result, name: str, host: str, deadline: float, timeout: float, broker: str | None) -> dict:
    """The task's outcome; BrokerRestarted when Redis came back as a new instance (the task is lost).
    While Redis is unreachable, the wait goes on: it may come back as it was."""
    unseen = 0
    while True:
        try:
            return result.get(timeout=max(min(SLICE, deadline - time.monotonic()), 0.01))
        except TaskTimeout:
            pass
        except Exception as error:
            lost_redis = isinstance(error, (redis.RedisError, ConnectionError, OSError))
            if _failed(result):  # the task's own error, stored as its outcome: not the wait's
                if lost_redis and broker is not None:
                    # It lost Redis midway (publishing its events, say): maybe half done, and idempotent.
                    raise BrokerRestarted(f"{name} lost Redis midway on host {host}: {error}") from error
                raise BerthError(f"{name} failed on host {host}: {error}") from error
            if broker is None or not lost_redis:
                raise BerthError(f"{name} failed on host {host}: {error}") from error
            time.sleep(SLICE / 4)  # Redis is away; the next look tells whether it came back the same
        if time.monotonic() >= deadline:
            raise BerthError(f"the worker of host {host} did not answer within {timeout:g} s") from None
        now = run_id() if broker else None
        if now is not None and now != broker:
            # The baseline may be older than the send (it is remembered, not asked): a task the new Redis
            # still has, queued, held or answered, was sent after the restart and is not lost.
            if _nowhere(result, host):
                raise BrokerRestarted(f"Redis restarted while host {host} had {name}: the task was lost")
            broker = now
        unseen = unseen + 1 if now is not None and _nowhere(result, host) else 0
        if unseen >= LOST_AFTER:
            raise TaskLost(f"{name} was lost on its way to the worker of host {host}")


def _failed(result) -> bool:
    """Did the task itself raise (its failure stored)? False while Redis cannot say."""
    try:
        return result.failed()
    except Exception:
        return False


def _nowhere(result, host: str) -> bool:
    """Neither answered, nor waiting on the host's queue, nor held by a worker (acks_late: a running
    task stays in kombu's unacked hash until it is done, and its result is stored before that)."""
    if result.ready():
        return False
    task_id = result.id.encode()
    client = _client()
    try:
        if any(task_id in message for message in client.lrange(host_queue(host), 0, -1)):
            return False
        if any(task_id in message for message in client.hvals(UNACKED_KEY)):
            return False
    except redis.RedisError:
        return False  # Redis is away: the next look tells
    finally:
        client.close()
    return not result.ready()
