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

from .bench_runtime import bench_runc_floor
from .common import RESULTS
from .engines import Berth, Engine, measured_on_both

TARGET_RATIO = 0.25


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
    ``docker version``, which Berth's server answers in ~0.2 ms) and ``runc run`` of a bundle made once."""
    cli = statistics.median(berth.timed("version") for _ in range(runs))
    runc = bench_runc_floor(berth.stack.runtime(), runs)["median_s"]
    return {"cli_s": cli, "runc_run_s": runc, "sum_s": cli + runc}


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
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "docker_run.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
