"""Memory of the browser page that follows a container printing 1,000,000 lines (target: under 200 MB).

A live stack of its own (Redis, a worker, runc: tests/live.py), daphne, and Debian's headless
Chromium driven by Playwright (never a browser download). The admin logs in, runs a busybox
container from the run form that prints --lines lines with ``seq``, --rate a second in bursts
of a tenth of a second, and the container page follows its log to the end. Every few seconds,
and once the last line is on screen, it reads Chromium's own figures (CDP Performance.getMetrics:
JSHeapUsedSize, Nodes) and the memory of the page's renderer process from /proc (smaps_rollup).
The target is read on the renderer's private memory (Chromium's "memory footprint"): its RSS
also counts Chromium's code shared with every other process, about 120 MB before any page. The
reference is the same page, following, before the first line: the ratio says what the lines cost.
Results also go to bench/results/browser_logs.json.

Run (as root):  .venv/bin/python -m bench.bench_browser_logs [--lines 1000000] [--rate 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

MB = 1024 * 1024
TARGET_MB = 200
SAMPLE_EVERY = 5.0  # seconds
RESULTS = Path(__file__).resolve().parent / "results"


def printer(lines: int, rate: int) -> str:
    """A shell loop printing 1..lines with seq, rate/10 lines every 0.1 s (seq's own time comes on top),
    after two quiet seconds in which the page is measured at rest (the reference)."""
    burst = max(1, rate // 10)
    bursts = -(-lines // burst)
    return (f"sh -c 'sleep 2; i=0; while [ $i -lt {bursts} ]; do "
            f"seq $((i*{burst}+1)) $(( (i+1)*{burst} < {lines} ? (i+1)*{burst} : {lines} )); "
            f"i=$((i+1)); sleep 0.1; done'")


# --- what the page costs ---------------------------------------------------------------------


def page_metrics(cdp) -> dict:
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {"js_heap_used_mb": metrics["JSHeapUsedSize"] / MB, "js_heap_total_mb": metrics["JSHeapTotalSize"] / MB,
            "dom_nodes": int(metrics["Nodes"])}


def renderer_pids(browser_pid: int) -> list[int]:
    """Chromium's renderer processes under the browser process (children of its zygote)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [browser_pid]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            if b"--type=renderer" in _cmdline(child):
                found.append(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def memory_mb(pid: int) -> dict:
    """RSS, and the private part of it (what the page alone holds: Chromium's "memory footprint")."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {"rss": 0.0, "private": 0.0}
    kb = {name: int(value) for name, value in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    return {"rss": kb["Rss"] / 1024, "private": (kb["Private_Clean"] + kb["Private_Dirty"] + kb["Swap"]) / 1024}


def browser_pid(marker: str) -> int:
    """The browser process: the one whose command line holds the unique user-data-dir we gave it."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if marker.encode() in text and b"--type=" not in text:
            return int(cmdline.parent.name)
    raise RuntimeError("the Chromium browser process was not found")


def measure(cdp, browser: int, collect_garbage: bool = False) -> dict:
    if collect_garbage:
        cdp.send("HeapProfiler.collectGarbage")
    figures = page_metrics(cdp)
    renderers = [memory_mb(pid) for pid in renderer_pids(browser)]
    page = max(renderers, key=lambda memory: memory["private"], default={"rss": 0.0, "private": 0.0})
    figures["renderer_rss_mb"], figures["renderer_private_mb"] = page["rss"], page["private"]
    return {key: round(value, 1) for key, value in figures.items()}


# --- the run ---------------------------------------------------------------------------------------


SHOWN_LINES = """
() => { const lines = document.querySelectorAll("#log-lines .log-line");
        const last = lines[lines.length - 1];
        return {count: lines.length, last: last ? last.innerText.trim() : ""}; }
"""


def follow_a_million(page, cdp, browser: int, lines: int, rate: int) -> dict:
    page.goto("/run/")
    busybox = page.locator("#run-form select[name=image] option", has_text="busybox").first
    page.locator("#run-form select[name=image]").select_option(busybox.get_attribute("value"))
    page.fill("#run-form [name=command]", printer(lines, rate))
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/containers/[0-9a-f]{64}/$"))
    page.locator("#log-status").filter(has_text="running").wait_for()
    before = measure(cdp, browser, collect_garbage=True)  # the reference: the page following, no line yet

    began = time.monotonic()
    samples, peak = [], dict(before)
    while True:
        shown = page.evaluate(SHOWN_LINES)
        if shown["last"] == str(lines):
            break
        status = page.locator("#log-status").inner_text()
        if "exited with code" in status and not status.endswith("code 0"):
            raise RuntimeError(f"the printer failed: {status}")
        if time.monotonic() - began > lines / rate * 3 + 120:
            raise RuntimeError(f"the page did not reach line {lines}: it shows {shown}")
        sample = measure(cdp, browser)
        sample["seconds"] = round(time.monotonic() - began, 1)
        sample["last_line"] = shown["last"]
        samples.append(sample)
        peak = {key: max(peak[key], sample[key]) for key in before}
        print(f"  {sample['seconds']:>6.1f}s line {sample['last_line']:>8}  heap {sample['js_heap_used_mb']:6.1f} MB"
              f"  renderer private {sample['renderer_private_mb']:6.1f} MB, RSS {sample['renderer_rss_mb']:6.1f} MB"
              f"  nodes {sample['dom_nodes']}", flush=True)
        time.sleep(SAMPLE_EVERY)
    followed_for = time.monotonic() - began
    page.locator("#log-status").filter(has_text="exited with code 0").wait_for(timeout=30_000)
    after = measure(cdp, browser)
    peak = {key: max(peak[key], after[key]) for key in before}
    after_gc = measure(cdp, browser, collect_garbage=True)
    return {"lines": lines, "rate_asked": rate, "seconds_to_last_line": round(followed_for, 1),
            "before": before, "peak": peak, "after": after, "after_gc": after_gc,
            "shown_line_elements": page.evaluate(SHOWN_LINES)["count"], "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=10_000, help="lines a second the container is asked to print")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("Berth runs containers: run this as root.")

    from playwright.sync_api import sync_playwright

    from tests.browser.web import (ADMIN, CHROMIUM, MISSING_CHROMIUM, chromium_options, create_admin, log_in,
                                   start_web_server, stop_server)
    from tests.conftest import RUN_ID, _hold_run_lock, _lock_path
    from tests.live import LiveStack, _tail

    if not CHROMIUM.exists():
        raise SystemExit(MISSING_CHROMIUM)
    # The stack is named like a test run's: hold that run's lock as a pytest session does, or a
    # test session starting meanwhile takes it for a killed run's and removes it.
    run_lock = _hold_run_lock()
    stack = LiveStack()
    web = None
    try:
        stack.start()
        password = create_admin(stack)
        web, url = start_web_server(stack)
        profile = stack.root / "chromium-profile"
        with sync_playwright() as playwright:
            # A profile folder of our own: it names the browser process among the machine's.
            context = playwright.chromium.launch_persistent_context(profile, base_url=url, **chromium_options())
            try:
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                log_in(page, ADMIN, password)
                result = follow_a_million(page, cdp, browser_pid(str(profile)), args.lines, args.rate)
            except Exception:
                print(f"web.log:\n{_tail(stack.logs / 'web.log')}\nworker.log:\n{_tail(stack.logs / 'worker.log')}")
                raise
            finally:
                context.close()
    finally:
        try:
            if web is not None:
                stop_server(web)
            stack.stop()
        finally:
            run_lock.close()
            _lock_path(RUN_ID).unlink(missing_ok=True)
    report(result)


def report(result: dict) -> None:
    print(f"\n{'page':<26}{'JS heap used':>14}{'renderer private':>18}{'renderer RSS':>14}{'DOM nodes':>11}")
    for label, key in (("no line yet (reference)", "before"), ("peak while following", "peak"),
                       ("at the last line", "after"), ("at the last line, GC'd", "after_gc")):
        figures = result[key]
        print(f"{label:<26}{figures['js_heap_used_mb']:>11.1f} MB{figures['renderer_private_mb']:>15.1f} MB"
              f"{figures['renderer_rss_mb']:>11.1f} MB{figures['dom_nodes']:>11}")
    peak, before = result["peak"]["renderer_private_mb"], result["before"]["renderer_private_mb"]
    verdict = "under" if peak < TARGET_MB else "OVER"
    print(f"{result['lines']:,} lines reached the page in {result['seconds_to_last_line']} s; peak private memory "
          f"of the page's renderer {peak:.1f} MB ({peak / max(before, 1e-9):.2f}x the reference), {verdict} the "
          f"{TARGET_MB} MB target; {result['shown_line_elements']} line elements left in the DOM")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "browser_logs.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
