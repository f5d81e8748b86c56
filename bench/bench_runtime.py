"""Runtime benchmarks (issue: runtime core). Prints a table; never asserts timings.

1. Host memory per running container: 50 ``sleep`` containers; what Berth keeps
   per container is its conmon (runc exits after start). RSS and PSS (shared
   pages divided among the sharers) of those monitors, per container.
2. create + start + wait of ``true`` in-process, against ``runc run`` of a
   prepared bundle (the floor: no monitor, no overlay, no record). Medians.

Run as root:  .venv/bin/python -m bench.bench_runtime [--containers 50] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from runtime import ContainerSpec, Runtime, StateRoot
from runtime.baseimage import build_busybox
from .common import RESULTS, exclusive, remove_engine


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes from /proc/<pid>/smaps_rollup."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1]) * 1024
    return values["Rss:"], values["Pss:"]


def bench_memory(engine: Runtime, count: int) -> dict:
    made = []
    try:
        for _ in range(count):
            container = engine.create(ContainerSpec(image="busybox", cmd=["sleep", "1000"]))
            made.append(container.id)
            engine.start(container.id)
        monitors = [engine.get(cid).monitor_pid for cid in made]
        rss, pss = zip(*(memory_of(pid) for pid in monitors))
        return {"containers": count, "rss_per_container_mb": sum(rss) / count / 2**20,
                "pss_per_container_mb": sum(pss) / count / 2**20}
    finally:
        for cid in made:
            engine.remove(cid, force=True)


def bench_run_true(engine: Runtime, runs: int) -> dict:
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        container = engine.create(ContainerSpec(image="busybox", cmd=["true"]))
        engine.start(container.id)
        engine.wait(container.id)
        timings.append(time.perf_counter() - began)
        engine.remove(container.id)
    return {"median_s": statistics.median(timings), "runs": runs}


def bench_monitor_floor(engine: Runtime, runs: int) -> dict:
    """Start and wait of a container made once (rootfs, bundle): conmon, ``runc create``, PID 1 exec'd
    through runc's fifo, its exit seen. What every start through conmon and runc costs, no network."""
    container = engine.create(ContainerSpec(image="busybox", cmd=["true"]))
    timings = []
    try:
        for _ in range(runs):
            began = time.perf_counter()
            engine.start(container.id)
            engine.wait(container.id)
            timings.append(time.perf_counter() - began)
    finally:
        engine.remove(container.id, force=True)
    return {"median_s": statistics.median(timings), "runs": runs}


def bench_runc_floor(engine: Runtime, runs: int) -> dict:
    """runc run of a bundle prepared once: rootfs mounted, config written."""
    container = engine.create(ContainerSpec(image="busybox", cmd=["true"]))
    bundle = engine.state.container_dir(container.id)
    runc_root = engine.state.root / "runc-floor"
    timings = []
    try:
        for i in range(runs):
            began = time.perf_counter()
            subprocess.run(["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), f"floor{i}"],
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            timings.append(time.perf_counter() - began)
    finally:
        engine.remove(container.id)
        shutil.rmtree(runc_root, ignore_errors=True)
    return {"median_s": statistics.median(timings), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    state = StateRoot(Path("/tmp") / f"berth-bench-{secrets.token_hex(4)}", f"berth-bench-{secrets.token_hex(4)}")
    with exclusive():
        engine = Runtime(state)
        try:
            build_busybox(engine.images)
            memory = bench_memory(engine, options.containers)
            berth = bench_run_true(engine, options.runs)
            floor = bench_runc_floor(engine, options.runs)
        finally:
            remove_engine(engine)
    results = {
        "memory_per_container": memory | {"target_mb": 2.0, "docker_containerd_shim_mb": 13.2},
        "create_start_wait_true": {"berth_median_s": berth["median_s"], "runc_run_median_s": floor["median_s"],
                                   "ratio_berth_to_runc": berth["median_s"] / floor["median_s"]},
    }
    print(f"{'benchmark':44} {'value':>10}")
    print(f"{'monitor RSS per container (MB)':44} {memory['rss_per_container_mb']:10.2f}")
    print(f"{'monitor PSS per container (MB), target <= 2':44} {memory['pss_per_container_mb']:10.2f}")
    print(f"{'create+start+wait true, Berth (s, median)':44} {berth['median_s']:10.4f}")
    print(f"{'runc run of a prepared bundle (s, median)':44} {floor['median_s']:10.4f}")
    print(f"{'ratio Berth / runc':44} {berth['median_s'] / floor['median_s']:10.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runtime.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
