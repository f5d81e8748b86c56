"""Many containers with a published port: the time to run them, their memory, the time to remove them.

On each engine in turn (Berth, then Docker): one warm-up container, then N times
``docker run -d -p PORT:80 busybox httpd -f -p 80`` with the same docker CLI (timed as a whole),
the host memory of the engine's processes before and with the N containers running (Berth: worker
and its pool, web, API, Redis, the conmons; Docker: dockerd, containerd, the containerd-shims and
docker-proxies; never the containers' own processes), then one ``docker rm -f`` of all (timed).
Memory per container is the growth divided by N, as RSS and as PSS (shared pages split among the
processes sharing them).

    .venv/bin/python -m bench.bench_publish [--containers 200]     (as root)
"""

from __future__ import annotations

import argparse
import json
import time

from . import hostnet
from .common import RESULTS
from .engines import Engine, measured_on_both

FIRST_PORT = {"Berth": 30100, "Docker": 30500}  # apart, both engines being up at once
SETTLE_S = 2.0  # lets the engines finish what follows a start (events, records) before memory is read


def run_httpd(engine: Engine, port: int) -> str:
    return engine.docker("run", "-d", "-p", f"{port}:80", "busybox", "httpd", "-f", "-p", "80").stdout.strip()


def measure_engine(engine: Engine, count: int) -> dict:
    first = FIRST_PORT[engine.name]
    engine.docker("rm", "-f", run_httpd(engine, first + count))  # warm-up: first use pays for imports, caches
    time.sleep(SETTLE_S)
    before = hostnet.memory_kb(engine.process_ids())
    ids = []
    try:
        began = time.perf_counter()
        for n in range(count):
            ids.append(run_httpd(engine, first + n))
        run_s = time.perf_counter() - began
        running = engine.docker("ps", "-q", "--filter", "status=running").stdout.split()
        time.sleep(SETTLE_S)
        during = hostnet.memory_kb(engine.process_ids())
        began = time.perf_counter()
        engine.docker("rm", "-f", *ids)
        rm_s = time.perf_counter() - began
        ids = []
    finally:
        if ids:
            engine.docker("rm", "-f", *ids, check=False)
    left = engine.docker("ps", "-aq").stdout.split()
    return {"containers": count, "running_seen": len(running), "left_after_rm": len(left),
            "run_s": run_s, "rm_s": rm_s,
            "rss_per_container_mb": (during["rss_kb"] - before["rss_kb"]) / count / 1024,
            "pss_per_container_mb": (during["pss_kb"] - before["pss_kb"]) / count / 1024,
            "processes_before": before["processes"], "processes_during": during["processes"]}


def measure(engines: list[Engine], count: int) -> dict:
    return {engine.name: measure_engine(engine, count) for engine in engines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    options = parser.parse_args()
    result = measured_on_both(measure, options.containers)
    for name, figures in result.items():
        print(f"{name:7} {figures['containers']} x run -d -p: {figures['run_s']:.1f} s, rm -f of all: "
              f"{figures['rm_s']:.1f} s, per container RSS {figures['rss_per_container_mb']:.2f} MB, "
              f"PSS {figures['pss_per_container_mb']:.2f} MB")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "publish.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
