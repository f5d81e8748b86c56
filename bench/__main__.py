"""Berth's benchmark suite, side by side with Docker: one command, as root, under 15 minutes on 2 cores.

    .venv/bin/python -m bench [--quick] [--containers 200] [--log-size 1G] [--no-docker]

It starts its own engines and stops them after (bench/engines.py): a Berth of its own (Redis, a
Celery worker, daphne, the Docker API on a socket of its own, real bridges and nft) and, when
Debian's ``docker.io`` is installed, a dockerd with its own socket, data root, bridge and iptables
chains; the same busybox in both. The engines alternate run by run; medians; ratio Berth/Docker.
The benchmarks that need no Docker (published ports at scale, live logs, the list page) run as
their own modules, one after the other. At the end the host's nftables ruleset must be what it was
at the start. A table is printed; bench/results/suite.json and suite.png are written.

Interrupted (Ctrl-C, SIGTERM), it still stops what it started; whatever a killed run left is
removed when the next run starts (bench/leftovers.py).
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import subprocess
import sys
import time

from . import bench_docker_run, bench_logs_tail, bench_publish
from .bench_logs_tail import parse_size
from .common import INSIDE_SUITE, PROJECT, RESULTS, exclusive
from .engines import Dockerd, start_engines, stop_engines, ruleset_json
from .report import Row, draw_chart, failed, print_table, write_json

CHILD_TIMEOUT_S = 300


def options_from(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer containers and runs, a smaller log (~3 min)")
    parser.add_argument("--containers", type=int, help="containers with a published port (default 200, quick 50)")
    parser.add_argument("--log-size", help="bytes printed for `docker logs --tail` (default 1G, quick 256M)")
    parser.add_argument("--no-docker", action="store_true", help="Berth alone, even where dockerd is installed")
    options = parser.parse_args(argv)
    options.containers = options.containers or (50 if options.quick else 200)
    options.log_size = parse_size(options.log_size or ("256M" if options.quick else "1G"))
    options.runs = 7 if options.quick else 25  # of `docker run --rm`, and of `docker logs --tail` each
    return options


_BEGAN = time.monotonic()


def step(text: str) -> None:
    print(f"\n== [{(time.monotonic() - _BEGAN) / 60:4.1f} min] {text}", flush=True)


# --- the benchmarks that drive both engines through the docker CLI ------------------------------------------


def engine_rows(options, raw: dict) -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = {}
    berth = docker = None
    try:
        step("starting the engines: Berth" + ("" if options.no_docker or not Dockerd.available() else " and dockerd"))
        berth, docker = start_engines(with_docker=not options.no_docker)
        engines = [engine for engine in (berth, docker) if engine]
        step(f"docker run --rm busybox true: {options.runs} runs each, alternating")
        rows["run"] = attempt(lambda: run_true_rows(bench_docker_run.measure(engines, options.runs), raw),
                              "docker run --rm busybox true", "<= 0.25x Docker")
        step(f"{options.containers} x docker run -d -p PORT:80 busybox httpd, memory, docker rm -f of all")
        rows["publish"] = attempt(lambda: publish_rows(bench_publish.measure(engines, options.containers), raw),
                                  f"{options.containers} x run -d -p / rm -f", "<= 0.25x Docker")
        step(f"docker logs --tail 100 of a {options.log_size / 2**20:,.0f} MB log (made by a container on each)")
        rows["logs_tail"] = attempt(
            lambda: logs_tail_rows(bench_logs_tail.measure(engines, options.log_size, options.runs), raw),
            "docker logs --tail 100", "<= 50 ms, <= 0.5x Docker")
    except Exception as error:
        rows.setdefault("run", [failed("engines", "", f"the engines did not start: {error}")])
    finally:
        step("stopping the engines")
        stop_engines(berth, docker)
    return rows


def attempt(build, benchmark: str, target: str) -> list[Row]:
    """The rows ``build`` makes, or one error row: one failing benchmark does not stop the others."""
    try:
        return build()
    except Exception as error:
        print(f"   {benchmark} failed: {error}", flush=True)
        return [failed(benchmark, target, error)]


def _compare(result: dict, key: str) -> tuple[float, float | None, float | None]:
    berth = result["Berth"][key]
    docker = result["Docker"][key] if "Docker" in result else None
    return berth, docker, (berth / docker if docker else None)


def run_true_rows(result: dict, raw: dict) -> list[Row]:
    raw["docker_run"] = result
    berth, docker, ratio = _compare(result, "median_s")
    rows = [Row("docker run --rm busybox true", f"{berth:.3f} s", _seconds(docker, 3), ratio, "<= 0.25x Docker",
                None if ratio is None else ratio / 0.25, values=result)]
    low = result.get("floor")
    if low:
        reachable = "" if docker is None else f"; the target is {0.25 * docker:.3f} s"
        rows.append(Row("  floor: the docker CLI alone + runc run of true", f"{low['sum_s']:.3f} s", "", None,
                        "report", note=f"CLI {low['cli_s'] * 1000:.0f} ms + runc {low['runc_run_s'] * 1000:.0f} ms"
                        f"{reachable}"))
        rows.append(Row("  floor of the design: CLI, conmon + runc, 2 tasks, 4 events", f"{low['design_s']:.3f} s",
                        "", None, "report", note=bench_docker_run.design_parts(low) + reachable))
    return rows


def publish_rows(result: dict, raw: dict) -> list[Row]:
    raw["publish"] = result
    count = result["Berth"]["containers"]
    problems = [f"{name}: {r['running_seen']} of {count} running, {r['left_after_rm']} left after rm"
                for name, r in result.items() if r["running_seen"] != count or r["left_after_rm"]]
    run = _compare(result, "run_s")
    rm = _compare(result, "rm_s")
    rss = _compare(result, "rss_per_container_mb")
    pss = _compare(result, "pss_per_container_mb")
    return [
        Row(f"{count} x docker run -d -p PORT:80 busybox httpd", f"{run[0]:.1f} s", _seconds(run[1], 1), run[2],
            "<= 0.25x Docker", None if run[2] is None else run[2] / 0.25, note="; ".join(problems)),
        Row(f"docker rm -f of the {count}", f"{rm[0]:.1f} s", _seconds(rm[1], 1), rm[2], "<= 0.25x Docker",
            None if rm[2] is None else rm[2] / 0.25),
        Row("host memory per container, one port (RSS)", f"{rss[0]:.2f} MB", _mb(rss[1]), rss[2], "<= 2 MB",
            rss[0] / 2.0, note=f"growth of the engine's processes over {count} running containers"),
        Row("the same, PSS", f"{pss[0]:.2f} MB", _mb(pss[1]), pss[2], "report"),
    ]


def logs_tail_rows(result: dict, raw: dict) -> list[Row]:
    raw["logs_tail"] = result
    berth, docker, ratio = _compare(result, "median_s")
    size = result["Berth"]["file_bytes"] / 2**20
    score = berth / 0.050 if ratio is None else max(berth / 0.050, ratio / 0.5)
    alone = _compare(result, "requests_median_s")
    return [Row(f"docker logs --tail 100 of a {size:,.0f} MB log", f"{berth * 1000:.1f} ms", _ms(docker), ratio,
                "<= 50 ms and <= 0.5x Docker", score,
                note=f"log made by `yes | head -c {result['payload_bytes']:,}` in a container on each engine"),
            Row("  the same, its two requests alone (inspect, logs)", f"{alone[0] * 1000:.1f} ms", _ms(alone[1]),
                alone[2], "report", note="the engine's share, without the docker CLI's own start-up")]


def _seconds(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f} s"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:.1f} ms"


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} MB"


# --- the Berth-only benchmarks, each its own module in a process of its own -------------------------------


def child(module: str, args: list[str], result_file: str) -> dict:
    """Run ``python -m bench.<module>`` (its output shown), then read the JSON it wrote."""
    result = RESULTS / result_file
    result.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", f"bench.{module}", *args], cwd=PROJECT,
                               env={**os.environ, INSIDE_SUITE: "1", "PYTHONPATH": str(PROJECT)})
    try:
        code = process.wait(CHILD_TIMEOUT_S)
    except BaseException:  # interrupted or too slow: let it clean up after itself
        process.terminate()
        process.wait(60)
        raise
    if code != 0:
        raise RuntimeError(f"bench.{module} exited with {code}")
    return json.loads(result.read_text())


def ports_rows(options, raw: dict) -> list[Row]:
    result = raw["ports"] = child("bench_ports", ["--runs", "7" if options.quick else "10"], "ports.json")
    by_level = {int(level): seconds for level, seconds in result["median_s_by_published"].items()}
    shown = " / ".join(f"{by_level[level] * 1000:.0f} ms" for level in sorted(by_level))
    return [Row("create+start, one port, at 1 / 500 / 2,000 published", shown, "not measured", None,
                "2,000/1 <= 1.1", result["ratio"] / 1.1,
                note=f"ratio 2,000/1 = {result['ratio']:.2f}; listening sockets for 2,000 published ports: "
                     f"{result['proxy_listeners']} (Docker: a docker-proxy per port and address family)")]


def live_log_rows(options, raw: dict) -> list[Row]:
    flood = "100000" if options.quick else "300000"
    result = raw["log_latency"] = child("bench_log_latency", ["--no-browser", "--flood", flood], "log_latency.json")
    latency, throughput = result["latency"]["berth"], result["throughput"]["berth"]
    lines_per_s = throughput["lines_per_s"]
    return [
        Row("PID-1 line -> websocket client, p50", f"{latency['p50_ms']:.1f} ms", "(Portainer polls every 3 s)",
            target="report", note=f"{latency['lines']} lines, one every 5 ms"),
        Row("PID-1 line -> websocket client, p95", f"{latency['p95_ms']:.1f} ms", "", target="<= 50 ms",
            score=latency["p95_ms"] / 50),
        Row("log lines/s to one websocket client", f"{lines_per_s:,.0f}", "", target=">= 100,000, none lost",
            score=100_000 / lines_per_s if throughput["lossless"] else float("inf"),
            note=f"seq flood of {throughput['lines']:,} lines, "
                 f"{'none lost' if throughput['lossless'] else 'LINES LOST OR OUT OF ORDER'}"),
    ]


def list_page_rows(options, raw: dict) -> list[Row]:
    result = raw["list_page"] = child("bench_list_page", ["--runs", "10" if options.quick else "15"],
                                      "list_page.json")
    at_2000 = result["2000"]
    worst = max(at_2000.values())
    return [Row("list page server time, 2,000 containers", f"{at_2000['first page']:.1f} ms",
                "(Portainer fails at ~1,400)", target="<= 300 ms", score=worst / 300,
                note="first page; last page {:.1f} ms, name filter {:.1f} ms (50 a page)".format(
                    at_2000["last page"], at_2000["name filter"]))]


# --- the run ---------------------------------------------------------------------------------------------


ORDER = ("run", "publish", "ports", "live_logs_latency", "logs_tail", "list_page", "live_logs_throughput")


def main(argv: list[str] | None = None) -> int:
    options = options_from(argv)
    if os.geteuid() != 0:
        raise SystemExit("The suite runs containers, bridges and nft: run it as root.")
    began, started_at = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    raw: dict = {}
    with exclusive():
        ruleset_before = ruleset_json()
        rows = engine_rows(options, raw)
        step("published ports at scale (bench_ports, Berth only)")
        rows["ports"] = attempt(lambda: ports_rows(options, raw), "create+start at 2,000 published", "<= 1.1")
        step("live logs through daphne: latency and throughput (bench_log_latency)")
        live = attempt(lambda: live_log_rows(options, raw), "live logs", "p95 <= 50 ms")
        rows["live_logs_latency"], rows["live_logs_throughput"] = live[:2], live[2:]
        step("the containers list at 2,000 containers (bench_list_page)")
        rows["list_page"] = attempt(lambda: list_page_rows(options, raw), "list page", "<= 300 ms")
        ruleset_after = ruleset_json()
    elapsed = time.monotonic() - began
    table = [row for key in ORDER for row in rows.get(key, [])]
    docker_ran = "Docker" in raw.get("docker_run", {})
    meta = {"started_at": started_at.isoformat(timespec="seconds"), "elapsed_s": round(elapsed, 1),
            "cores": os.cpu_count(), "quick": options.quick, "containers": options.containers,
            "log_size_bytes": options.log_size, "docker": _docker_version() if docker_ran else None,
            "berth_commit": _commit(), "nft_ruleset_unchanged": ruleset_before == ruleset_after}

    print(f"\nBerth vs {meta['docker'] or 'no Docker (dockerd not installed or --no-docker)'}, "
          f"{meta['cores']} cores, {options.containers} containers with a published port, "
          f"{'quick' if options.quick else 'full'} run")
    print_table(table)
    print(f"\nTook {elapsed / 60:.1f} min.", end=" ")
    if meta["nft_ruleset_unchanged"]:
        print("The host's nftables ruleset is as it was before the run (both engines cleaned up).")
    else:
        print("THE HOST'S NFTABLES RULESET CHANGED during the run:")
        print("\n".join(difflib.unified_diff(ruleset_before.splitlines(), ruleset_after.splitlines(),
                                             "before", "after", lineterm="")))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "suite.json", table, meta, raw)
    draw_chart(RESULTS / "suite.png", table, f"Berth vs {meta['docker'] or 'no Docker'} "
                                               f"({started_at:%Y-%m-%d}, {meta['cores']} cores)")
    print(f"Results: {RESULTS / 'suite.json'}, {RESULTS / 'suite.png'}")
    return 0 if meta["nft_ruleset_unchanged"] and not any(row.error for row in table) else 1


def _docker_version() -> str:
    out = subprocess.run(["dockerd", "--version"], capture_output=True, text=True).stdout.split(",")[0]
    return out.replace("Docker version ", "Docker ").strip()


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
