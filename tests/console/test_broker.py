"""How a caller reads a host task's outcome while Redis goes away (console.broker._wait).

The fault test (test_faults.py) drives the real thing; here the result is a stand-in, so each
case is exact: an error the task raised and stored is its outcome, not a broker that is away.
"""

from __future__ import annotations

import time

import pytest
import redis

from console import services  # noqa: F401  (first, as the app loads them: broker and the services import each other)
from console import broker
from runtime.errors import BerthError

BASELINE = "run-id-A"


class StoredFailure:
    """A task that raised ``error`` and whose failure Redis holds."""

    id = "0f7c2a9e-task"

    def __init__(self, error: Exception):
        self.error = error

    def get(self, timeout):
        raise self.error

    def failed(self):
        return True


class RedisAway:
    """Redis does not answer for ``away`` seconds, then the task's result is there."""

    id = "5b1d0c3e-task"

    def __init__(self, away: float, answer: dict):
        self.back_at = time.monotonic() + away
        self.answer = answer

    def get(self, timeout):
        if time.monotonic() < self.back_at:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return self.answer

    def failed(self):
        if time.monotonic() < self.back_at:
            raise redis.ConnectionError("Connection refused.")
        return False


def wait(result, seconds: float = 30.0):
    began = time.monotonic()
    try:
        return broker._wait(result, "console.tasks.remove_container", "h1", began + seconds, seconds, BASELINE)
    finally:
        wait.took = time.monotonic() - began


def test_a_task_that_lost_redis_midway_is_sent_again_at_once(monkeypatch):
    # The worker's remove lost Redis while it published its events; its stored failure is a connection
    # error. Taken for Redis being away, the caller waited its whole timeout (seen in the fault test).
    monkeypatch.setattr(broker, "run_id", lambda: BASELINE)
    with pytest.raises(broker.BrokerRestarted, match="lost Redis midway"):
        wait(StoredFailure(ConnectionError("Connection closed by server.")))
    assert wait.took < 1.0


def test_any_other_error_the_task_raised_is_the_callers_error():
    with pytest.raises(BerthError, match="remove_container failed on host h1: the disk said no") as caught:
        wait(StoredFailure(RuntimeError("the disk said no")))
    assert not isinstance(caught.value, broker.BrokerRestarted)


def test_while_redis_is_away_the_caller_keeps_waiting_for_the_same_task(monkeypatch):
    monkeypatch.setattr(broker, "run_id", lambda: None)  # unreachable, as Redis is
    monkeypatch.setattr(broker, "SLICE", 0.2)
    assert wait(RedisAway(0.6, {"result": "removed"})) == {"result": "removed"}
    assert wait.took >= 0.6
