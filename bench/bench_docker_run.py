"""`docker run --rm busybox true` through Berth's socket, against Docker's when a daemon is at hand.

The same docker CLI drives both, alternating run by run, and the whole CLI process is timed (what
a user waits for). Both engines are started here (bench/engines.py): a Berth of its own with real
networking, and, when Debian's `docker.io` is installed, a dockerd with a bridge and iptables of
its own, the same busybox layer imported into it.

    .venv/bin/python -m bench.bench_docker_run [--runs 15]     (as root)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from .bench_runtime import bench_monitor_floor, bench_runc_floor
from .common import PROJECT, RESULTS
from .engines import Berth, Engine, measured_on_both

TARGET_RATIO = 0.25
TASKS_PER_RUN = 2   # create, start
EVENTS_PER_RUN = 4  # created, running, exited, removed


def measure(engines: list[Engine], runs: int) -> dict:
    """Median seconds per engine name, after one warm-up run each (first runs pay for cold caches)."""
    timings: dict[str, list[float]] = {engine.name: [] for engine in engines}
    for engine in engines:
        engine.timed("run", "--rm", "busybox", "true")
    for _ in range(runs):
        for engine in engines:
            timings[engine.name].append(engine.timed("run", "--rm", "busybox", "true"))
    result = {"runs": runs, **{name: {"median_s": statistics.median(values)} for name, values in timings.items()}}
    berth = next((engine for engine in engines if isinstance(engine, Berth)), None)
    if berth is not None:
        result["floor"] = floor(berth, runs)
    return result


def floor(berth: Berth, runs: int) -> dict:
    """What no engine built on the docker CLI, conmon and runc can go below: the CLI's own cost (a
    ``docker version``, which Berth's server answers in ~0.2 ms) and ``runc run`` of a bundle made once.
    Then the design's floor: the CLI, a start and wait through conmon and runc of a container made once,
    and what the processes' hand-offs cost with no work in them (``fixed_costs``): a ``run --rm`` is two
    host tasks (create, start) and four events (created, running, exited, removed)."""
    cli = statistics.median(berth.timed("version") for _ in range(runs))
    engine = berth.stack.runtime()
    runc = bench_runc_floor(engine, runs)["median_s"]
    monitor = bench_monitor_floor(engine, runs)["median_s"]
    fixed = fixed_costs(berth, runs)
    design = cli + monitor + TASKS_PER_RUN * fixed["task_round_trip_s"] + EVENTS_PER_RUN * fixed["event_s"]
    return {"cli_s": cli, "runc_run_s": runc, "sum_s": cli + runc, "conmon_runc_start_wait_s": monitor,
            **fixed, "design_s": design}


def fixed_costs(berth: Berth, runs: int) -> dict:
    """bench.fixed_costs in a process of its own, joined to the Berth's stack (its Redis, worker, database)."""
    answer = subprocess.run([sys.executable, "-m", "bench.fixed_costs", "--runs", str(runs)], env=berth.stack.env,
                            cwd=PROJECT, capture_output=True, text=True, timeout=300)
    if answer.returncode != 0:
        raise RuntimeError(f"bench.fixed_costs exited with {answer.returncode}: {answer.stderr.strip()[-2000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def design_parts(low: dict) -> str:
    return (f"CLI {low['cli_s'] * 1000:.0f} ms + conmon and runc {low['conmon_runc_start_wait_s'] * 1000:.0f} ms"
            f" + {TASKS_PER_RUN} tasks x {low['task_round_trip_s'] * 1000:.1f} ms"
            f" + {EVENTS_PER_RUN} events x {low['event_s'] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    result = measured_on_both(measure, options.runs)
    print(f"docker run --rm busybox true, median of {options.runs}")
    print(f"  Berth   {result['Berth']['median_s']:.3f} s")
    if "Docker" in result:
        ratio = result["Berth"]["median_s"] / result["Docker"]["median_s"]
        print(f"  Docker  {result['Docker']['median_s']:.3f} s")
        print(f"  ratio   {ratio:.2f}  (target <= {TARGET_RATIO}: {TARGET_RATIO * result['Docker']['median_s']:.3f} s)")
    else:
        print("  Docker  not measured: no dockerd here (apt-get install docker.io to add the yardstick)")
    low = result["floor"]
    print(f"  floor   {low['sum_s']:.3f} s: the docker CLI {low['cli_s']:.3f} s + runc run {low['runc_run_s']:.3f} s")
    print(f"  design  {low['design_s']:.3f} s: {design_parts(low)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "docker_run.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
