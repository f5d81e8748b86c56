"""The resource collector: CPU % and memory of every running container of this host, every 2 s.

One collector per host, a daemon thread in the worker's main process (started
beside the exit watcher), however many pages are open::

    every 2 s:  rows running on this host --> cgroup of each (runtime.cgroups) --> CPU % from the
                previous reading, memory and its limit
                    |--> Redis: the last HISTORY samples of each container (pages opened now draw them)
                    +--> ONE channel-layer message to the ``stats`` group with every container's figures

CPU % is Docker's: the container's CPU time over the host's between two
readings, times the online CPUs. A container's first reading has no CPU %
yet (None). A container that stops leaves the figures and its history goes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections

from runtime import cgroups

from . import groups
from .models import Container

log = logging.getLogger(__name__)

INTERVAL = 2.0   # seconds between ticks
HISTORY = 60     # samples kept per container: two minutes
STALE = 5 * INTERVAL  # a newest sample older than this means no collector runs: no figures shown
_KEY_TTL = int(HISTORY * INTERVAL)
_RUNNING_STATES = (Container.STATE_RUNNING, Container.STATE_PAUSED, Container.STATE_RESTARTING)


@dataclass(frozen=True)
class Sample:
    time: float         # unix time of the reading
    cpu: float | None   # percent of one CPU (200 = two whole CPUs); None on a container's first reading
    memory: int         # bytes in use
    limit: int          # bytes it may use (the host's memory when unlimited)

    def encode(self) -> str:
        """JSON, written out by hand: thousands of these per tick."""
        cpu = "null" if self.cpu is None else repr(float(self.cpu))
        return f"[{self.time!r},{cpu},{self.memory},{self.limit}]"

    @classmethod
    def decode(cls, raw: bytes | str) -> "Sample":
        when, cpu, memory, limit = json.loads(raw)
        return cls(when, cpu, memory, limit)

    def figures(self) -> list:
        """The compact form of the channel message: [cpu, memory, limit]."""
        return [self.cpu, self.memory, self.limit]


# --- the samples in Redis -----------------------------------------------------------------

_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=5)
    return _clients[url]


def _key(container_id: str) -> str:
    return f"berth-stats:{container_id}"


# One call per tick whatever the number of containers: the appends happen inside Redis.
_APPEND = """
local keep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('RPUSH', key, ARGV[i + 2])
  redis.call('LTRIM', key, -keep, -1)
  redis.call('EXPIRE', key, ttl)
end
"""


def store(samples: dict[str, Sample], gone: set[str]) -> None:
    """Append each container's sample to its list (capped at HISTORY); forget stopped containers.

    Each list expires two minutes after its last sample, so a host whose collector stopped leaves nothing.
    """
    client = _redis()
    if samples:
        client.register_script(_APPEND)(keys=[_key(container_id) for container_id in samples],
                                        args=[HISTORY, _KEY_TTL, *(sample.encode() for sample in samples.values())])
    if gone:
        client.delete(*(_key(container_id) for container_id in gone))


def history(container_id: str) -> list[Sample]:
    """The container's recent samples, oldest first; [] when none is fresh (not running, no collector)."""
    try:
        samples = [Sample.decode(raw) for raw in _redis().lrange(_key(container_id), 0, -1)]
    except redis.RedisError:
        log.warning("no resource history: Redis does not answer", exc_info=True)
        return []
    return samples if samples and _fresh(samples[-1]) else []


def latest(container_ids: list[str]) -> dict[str, Sample]:
    """The newest fresh sample of each of these containers that has one, in one round trip."""
    if not container_ids:
        return {}
    pipe = _redis().pipeline(transaction=False)
    for container_id in container_ids:
        pipe.lindex(_key(container_id), -1)
    try:
        raws = pipe.execute()
    except redis.RedisError:
        log.warning("no resource figures: Redis does not answer", exc_info=True)
        return {}
    found = {cid: Sample.decode(raw) for cid, raw in zip(container_ids, raws) if raw is not None}
    return {cid: sample for cid, sample in found.items() if _fresh(sample)}


def _fresh(sample: Sample) -> bool:
    return time.time() - sample.time <= STALE


# --- the collector ---------------------------------------------------------------------------


class Collector:
    def __init__(self, host: str, cgroup_parent: str):
        self.host = host
        self.cgroup_parent = cgroup_parent
        self.reader = cgroups.UsageReader(cgroup_parent)
        self.previous: dict[str, cgroups.Usage] = {}
        self.host_before: cgroups.HostCPU | None = None
        self.stopping = threading.Event()

    def tick(self) -> dict[str, Sample]:
        """Read every running container once, keep and publish the figures; what was read."""
        read_before = set(self.previous)
        samples = self.read(self.running_ids())
        gone = read_before - set(samples)
        try:
            store(samples, gone)
        except redis.RedisError:
            log.warning("resource collector: could not store the samples", exc_info=True)
        self.publish(samples)
        return samples

    def running_ids(self) -> list[str]:
        return list(Container.objects.filter(host=self.host, state__in=_RUNNING_STATES)
                    .values_list("id", flat=True))

    def read(self, container_ids: list[str]) -> dict[str, Sample]:
        now, host_now, memory_total = round(time.time(), 3), cgroups.host_cpu(), cgroups.host_memory()
        readings, samples = {}, {}
        for container_id in container_ids:
            usage = self.reader.usage(container_id, memory_total)
            if usage is None:
                continue  # stopped meanwhile: its cgroup is gone
            before = self.previous.get(container_id)
            cpu = None
            if before is not None and self.host_before is not None:
                cpu = round(cgroups.cpu_percent(before, usage, self.host_before, host_now), 2)
            readings[container_id] = usage
            samples[container_id] = Sample(now, cpu, usage.memory, usage.memory_limit)
        self.previous, self.host_before = readings, host_now
        self.reader.keep_only(readings)
        return samples

    def publish(self, samples: dict[str, Sample]) -> None:
        message = {"type": "stats.tick", "host": self.host, "time": time.time(),
                   "figures": {container_id: sample.figures() for container_id, sample in samples.items()}}
        try:
            async_to_sync(_send)(message)
        except Exception:
            # The next tick brings fresh figures anyway.
            log.warning("resource collector: could not publish the figures", exc_info=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("resource collector: tick failed")
            finally:
                close_old_connections()
            self.stopping.wait(max(0.0, INTERVAL - (time.monotonic() - started)))
        self.close()

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        self.reader.close()


async def _send(message: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(groups.STATS, message)


_collector: Collector | None = None


def start(host: str) -> Collector:
    """Start this host's collector thread (the worker calls this once it is ready)."""
    global _collector
    _collector = Collector(host, settings.BERTH_CGROUP_PARENT)
    threading.Thread(target=_collector.run, name="berth-resource-collector", daemon=True).start()
    return _collector


def stop() -> None:
    if _collector is not None:
        _collector.stop()
