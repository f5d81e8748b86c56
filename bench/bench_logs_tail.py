"""`docker logs --tail 100` of a large log, on each engine.

The log is made for real: a busybox container prints ``yes`` of a 1,000-character line through
``head -c SIZE``, and exits; each engine writes it in its own format (Berth: conmon's k8s-file;
Docker: json-file). Then ``docker logs --tail 100`` with the same CLI, alternating engine by
engine, the whole CLI process timed, after checking once that it prints the last 100 lines; and
the two requests that command makes (inspect, logs), sent alone: the engine's share of it.

    .venv/bin/python -m bench.bench_logs_tail [--log-size 1G] [--runs 10]     (as root)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from .common import RESULTS
from .engines import Berth, Engine, measured_on_both

LINE = "x" * 999  # with its newline, 1,000 bytes
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def log_file(engine: Engine, container_id: str) -> Path:
    if isinstance(engine, Berth):
        return engine.stack.runtime().log_path(container_id)
    return engine.root / "data" / "containers" / container_id / f"{container_id}-json.log"


def make_log(engine: Engine, size: int) -> dict:
    """A container that printed ``size`` bytes and exited: its id, how long it took, the log file's size."""
    began = time.perf_counter()
    container_id = engine.docker("run", "-d", "busybox", "sh", "-c", f"yes {LINE} | head -c {size}").stdout.strip()
    code = engine.docker("wait", container_id, timeout=900).stdout.strip()
    took = time.perf_counter() - began
    if code != "0":
        raise RuntimeError(f"{engine.name}: the printer exited with {code}")
    return {"id": container_id, "write_s": took, "file_bytes": log_file(engine, container_id).stat().st_size}


def check_tail(engine: Engine, container_id: str) -> None:
    lines = engine.docker("logs", "--tail", "100", container_id).stdout.splitlines()
    if len(lines) != 100 or any(line != LINE for line in lines):
        raise RuntimeError(f"{engine.name}: docker logs --tail 100 printed {len(lines)} lines, not the last 100")


def measure(engines: list[Engine], size: int, runs: int) -> dict:
    size -= size % (len(LINE) + 1)  # whole lines only: the last 100 are then all alike
    made = {engine.name: make_log(engine, size) for engine in engines}
    try:
        for engine in engines:
            check_tail(engine, made[engine.name]["id"])
        timings: dict[str, list[float]] = {engine.name: [] for engine in engines}
        requests: dict[str, list[float]] = {engine.name: [] for engine in engines}
        for _ in range(runs):
            for engine in engines:
                container_id = made[engine.name]["id"]
                timings[engine.name].append(engine.timed("logs", "--tail", "100", container_id))
                requests[engine.name].append(engine.timed_requests(*cli_requests(container_id)))
    finally:
        for engine in engines:
            engine.docker("rm", "-f", made[engine.name]["id"], check=False)
    return {"payload_bytes": size, "runs": runs,
            **{name: {"median_s": statistics.median(values), "requests_median_s": statistics.median(requests[name]),
                      "write_s": made[name]["write_s"], "file_bytes": made[name]["file_bytes"]}
               for name, values in timings.items()}}


def cli_requests(container_id: str) -> list[str]:
    """What `docker logs --tail 100` asks of the engine: the container's inspect, then its logs."""
    return [f"/containers/{container_id}/json",
            f"/containers/{container_id}/logs?stdout=1&stderr=1&tail=100"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-size", default="1G", help="bytes the container prints (1G, 200M, ...)")
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    result = measured_on_both(measure, parse_size(options.log_size), options.runs)
    for name in ("Berth", "Docker"):
        if name in result:
            figures = result[name]
            print(f"{name:7} logs --tail 100 of {figures['file_bytes'] / 2**20:,.0f} MB on disk: "
                  f"{figures['median_s'] * 1000:.1f} ms, its two requests alone "
                  f"{figures['requests_median_s'] * 1000:.1f} ms (made in {figures['write_s']:.1f} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "logs_tail.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
