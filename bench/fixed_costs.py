"""What the design's fixed parts cost with no work in them, on a running Berth's own Redis and worker.

- a host task's round trip: ``operations.call`` (what the API does for a create and for a
  start) of ``tasks.ping``, which does nothing: Celery's publish, the worker's hand-off to its pool
  process, the result's way back;
- an event: ``events.container_changed`` to the container's group and the list group (each state a
  ``docker run --rm`` passes through publishes one: created, running, exited, removed).

Run by ``bench_docker_run`` with a live stack's environment (DJANGO_SETTINGS_MODULE, REDIS_URL,
DATABASE_URL, BERTH_HOST...); prints the medians in seconds as JSON:

    python -m bench.fixed_costs [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

NO_SUCH_CONTAINER = "f" * 64  # a well-formed id no page or waiter follows


def task_round_trip_s(runs: int) -> float:
    from django.conf import settings

    from console import tasks
    from console.operations import call

    timings = []
    for _ in range(runs + 1):  # the first pays for the broker's connection
        began = time.perf_counter()
        call(tasks.ping, settings.BERTH_HOST)
        timings.append(time.perf_counter() - began)
    return statistics.median(timings[1:])


def event_s(runs: int) -> float:
    from console import events

    timings = []
    for _ in range(runs + 1):  # the first starts the process's publishing loop and its connection
        began = time.perf_counter()
        events.container_changed(NO_SUCH_CONTAINER, "running")
        timings.append(time.perf_counter() - began)
    return statistics.median(timings[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    import django

    django.setup()
    print(json.dumps({"task_round_trip_s": task_round_trip_s(options.runs), "event_s": event_s(options.runs)}))


if __name__ == "__main__":
    main()
