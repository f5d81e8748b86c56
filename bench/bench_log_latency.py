"""The log viewer: PID-1 line -> websocket client latency, and throughput to one client, through daphne.

A real web process (daphne serving ``console.asgi``, Redis as the Channels
layer, a SQLite file) and real containers (runc + conmon). This script is the
browser: it logs in (a session in the database), opens
``/ws/containers/<id>/logs/`` with a small websocket client of its own, and
notes when each line arrives.

1. Latency: a container prints a numbered line every ``--interval-ms``
   (1,000 lines). A line's start is conmon's timestamp of it (taken when it
   read the line from PID 1's pipe, microseconds after the write: busybox's
   ``date`` has no nanoseconds); its end is the arrival of the websocket
   message carrying it. p50/p95/max.
2. Throughput: a container prints ``seq 1 N`` as fast as it can (about two
   million lines a second); lines/s from conmon's time of the first line to
   the arrival of the last, checking that every number came, once, in order.

3. The browser page: headless Chromium (Debian's, never a download) on the
   container page while PID 1 prints ``seq 1 1000000``; once the last line
   is in the page, Chromium's own metrics (JS heap, DOM nodes) and the time
   the million lines took to reach the page. Skipped without Chromium.

The reference (the floor) reads the same log file in this process, woken by
inotify on the container's directory, as the web process does, but without
the server, Redis, the websocket and the browser side: what any viewer built
on the log file could at best do.

Run as root:  .venv/bin/python -m bench.bench_log_latency [--lines 1000] [--interval-ms 5] [--flood 300000]
              [--page-lines 1000000 | --no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .common import RESULTS, exclusive, remove_engine

PROJECT = Path(__file__).resolve().parent.parent
LINE = re.compile(r'data-t="(\d+)" data-ts="[^"]*">([^<]*)</div>')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """Redis, a migrated SQLite file, a state root with busybox, daphne; all under one folder."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="berth-bench-logs-"))
        self.redis_port, self.web_port = free_port(), free_port()
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings",
                    "DATABASE_URL": f"sqlite:///{self.directory / 'berth.sqlite3'}",
                    "BERTH_ROOT": str(self.directory), "BERTH_CGROUP_PARENT": "berth-bench-logs-" + secrets.token_hex(3),
                    "BERTH_HOST": "bench", "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "BERTH_CHANNELS_PREFIX": "bench-logs", "PYTHONPATH": str(PROJECT)}
        self.processes: list[subprocess.Popen] = []
        self.engine = None

    def start(self) -> "Stack":
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        from runtime import Runtime, StateRoot
        from runtime.baseimage import build_busybox

        call_command("migrate", verbosity=0)
        self.engine = Runtime(StateRoot(self.directory, self.env["BERTH_CGROUP_PARENT"]))
        build_busybox(self.engine.images)
        redis = self._spawn(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(self.directory)])
        wait_for_port(self.redis_port, redis)
        web = self._spawn([str(Path(sys.executable).with_name("daphne")), "-b", "127.0.0.1", "-p", str(self.web_port),
                           "console.asgi:application"])
        wait_for_port(self.web_port, web)
        return self

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        log = open(self.directory / f"{Path(argv[0]).name}-{len(self.processes)}.log", "wb")
        process = subprocess.Popen(argv, env=self.env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def session_cookie(self) -> str:
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.test import Client

        client = Client()
        client.force_login(User.objects.create_user("bench-viewer", password=secrets.token_hex(8)))
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    def container(self, cmd: list[str]) -> str:
        """A created container with its row (no worker: the bench starts it through the runtime)."""
        from django.utils import timezone

        from console.models import Container
        from runtime import ContainerSpec

        created = self.engine.create(ContainerSpec(image="busybox", cmd=cmd))
        Container.objects.create(id=created.id, name=f"bench-{created.id[:12]}", host="bench", image_ref="busybox",
                                 state="running", path=cmd[0], args=cmd[1:], created=timezone.now())
        return created.id

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.engine is not None:
            remove_engine(self.engine)
        shutil.rmtree(self.directory, ignore_errors=True)


# --- a websocket client, just enough of RFC 6455 -----------------------------------------------------


class Websocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str) -> "Websocket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n").encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in answer.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"websocket refused: {answer[:200]!r}")
        return cls(reader, writer)

    async def messages(self):
        """(text, arrival time in ns) of each message until the server closes."""
        message = bytearray()
        while True:
            head = await self.reader.readexactly(2)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length >= 126:
                length = int.from_bytes(await self.reader.readexactly(2 if length == 126 else 8), "big")
            payload = await self.reader.readexactly(length)
            if opcode == 8:
                return
            if opcode == 9:
                self._send(10, payload)  # pong, or daphne closes the socket
                continue
            message += payload
            if head[0] & 0x80:
                yield message.decode(), time.time_ns()
                message = bytearray()

    def send_text(self, text: str) -> None:
        self._send(1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        self.writer.close()


# --- the reference: the log file read directly, woken by inotify -------------------------------------


class DirectReader(threading.Thread):
    """Reads what conmon appends to the log, as soon as inotify says the container's directory changed."""

    def __init__(self, log_path: Path, want: int):
        super().__init__(daemon=True)
        self.log_path, self.want = log_path, want
        self.arrivals: list[tuple[int, bytes, int]] = []  # (conmon time, text, arrival)
        self.stop = threading.Event()

    def run(self) -> None:
        from console.dockerapi.fdio import IN_CREATE, IN_MODIFY, Notifier
        from runtime.logs import parse_line

        notifier = Notifier()
        notifier.watch(self.log_path.parent, IN_MODIFY | IN_CREATE)
        pos, carry, fd = 0, b"", None
        try:
            while not self.stop.is_set() and len(self.arrivals) < self.want:
                select.select([notifier.fd], [], [], 0.1)
                try:
                    os.read(notifier.fd, 65536)
                except BlockingIOError:
                    pass
                if fd is None:
                    try:
                        fd = os.open(self.log_path, os.O_RDONLY)
                    except FileNotFoundError:
                        continue
                while True:
                    data = os.pread(fd, 1 << 20, pos)
                    if not data:
                        break
                    now = time.time_ns()
                    pos += len(data)
                    lines = (carry + data).split(b"\n")
                    carry = lines.pop()
                    for line in lines:
                        time_ns, _, partial, text = parse_line(line)
                        if not partial:  # a chunk of a line conmon split: counted once, at its end
                            self.arrivals.append((time_ns, text, now))
        finally:
            notifier.close()
            if fd is not None:
                os.close(fd)


# --- the two measurements -----------------------------------------------------------------------------


async def follow(stack: Stack, cookie: str, container_id: str, want: int, until_text: str, timeout: float):
    """Connect, wait for the first message, start the container, gather (conmon time, text, arrival) of live lines."""
    socket_ = await Websocket.connect(stack.web_port, f"/ws/containers/{container_id}/logs/", cookie)
    arrivals: list[tuple[int, str, int]] = []
    messages = 0
    started = False
    reader = DirectReader(stack.engine.log_path(container_id), want)
    try:
        async with asyncio.timeout(timeout):
            async for text, arrived in socket_.messages():
                message = json.loads(text)
                if message.get("reset") and not started:
                    socket_.send_text('{"ack": 1}')
                    reader.start()
                    await asyncio.to_thread(stack.engine.start, container_id)
                    started = True
                    continue
                if "lines" not in message:
                    continue
                socket_.send_text('{"ack": 1}')
                messages += 1
                for match in LINE.finditer("".join(message["lines"])):
                    arrivals.append((int(match.group(1)), match.group(2), arrived))
                if arrivals and arrivals[-1][1] == until_text:
                    break
    finally:
        socket_.close()
        reader.join(timeout)
        reader.stop.set()
    return arrivals, messages, reader.arrivals


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def latency_figures(arrivals) -> dict:
    ms = [(arrived - written) / 1e6 for written, _, arrived in arrivals]
    return {"lines": len(ms), "p50_ms": statistics.median(ms), "p95_ms": percentile(ms, 0.95), "max_ms": max(ms)}


def bench_latency(stack: Stack, cookie: str, lines: int, interval_ms: int) -> dict:
    script = (f"i=1; while [ $i -le {lines} ]; do echo line $i; i=$((i+1)); usleep {interval_ms * 1000}; done;"
              " sleep 1000")
    container_id = stack.container(["sh", "-c", script])
    try:
        arrivals, messages, direct = asyncio.run(follow(stack, cookie, container_id, lines, f"line {lines}", 120))
    finally:
        stack.engine.remove(container_id, force=True)
    assert [text for _, text, _ in arrivals] == [f"line {n}" for n in range(1, lines + 1)], "lines lost or repeated"
    return {"berth": {**latency_figures(arrivals), "messages": messages}, "direct": latency_figures(direct)}


def throughput(arrivals) -> float:
    return len(arrivals) / ((arrivals[-1][2] - arrivals[0][0]) / 1e9)


def bench_throughput(stack: Stack, cookie: str, count: int) -> dict:
    container_id = stack.container(["sh", "-c", f"seq 1 {count}; sleep 1000"])
    try:
        arrivals, messages, direct = asyncio.run(follow(stack, cookie, container_id, count, str(count), 300))
    finally:
        stack.engine.remove(container_id, force=True)
    texts = [text for _, text, _ in arrivals]
    lossless = texts == [str(n) for n in range(1, count + 1)]
    return {"berth": {"lines": len(arrivals), "lines_per_s": throughput(arrivals), "messages": messages,
                      "lossless": lossless},
            "direct": {"lines": len(direct), "lines_per_s": throughput(direct)}}


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--js-flags=--expose-gc",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def bench_page(stack: Stack, cookie: str, count: int) -> dict | None:
    """Chromium's metrics of the container page once ``count`` lines went through it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.exists():
        return None
    container_id = stack.container(["sh", "-c", f"seq 1 {count}; sleep 1000"])
    name, value = cookie.split("=", 1)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                context.add_cookies([{"name": name, "value": value, "url": f"http://127.0.0.1:{stack.web_port}"}])
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{stack.web_port}/containers/{container_id}/")
                page.wait_for_function("document.getElementById('log-status').textContent.length > 0")
                time.sleep(0.5)  # the websocket's first message
                began = time.monotonic()
                stack.engine.start(container_id)
                page.wait_for_function(
                    f"(document.querySelector('#log-lines .log-line:last-child') || {{}}).textContent === '{count}'",
                    timeout=600_000, polling=100)
                took = time.monotonic() - began
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.evaluate("window.gc && window.gc()")
                metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                shown = page.evaluate("document.querySelectorAll('#log-lines .log-line').length")
            finally:
                browser.close()
    finally:
        stack.engine.remove(container_id, force=True)
    return {"lines": count, "seconds": took, "lines_per_s": count / took, "lines_in_dom": shown,
            "js_heap_used_mb": metrics["JSHeapUsedSize"] / 2**20, "js_heap_total_mb": metrics["JSHeapTotalSize"] / 2**20,
            "dom_nodes": int(metrics["Nodes"])}


def print_table(latency: dict, flood: dict, page: dict | None) -> None:
    berth, direct = latency["berth"], latency["direct"]
    rows = [
        ("PID-1 line -> client, p50", f"{berth['p50_ms']:.1f} ms", f"{direct['p50_ms']:.2f} ms", "report"),
        ("PID-1 line -> client, p95", f"{berth['p95_ms']:.1f} ms", f"{direct['p95_ms']:.2f} ms", "<= 50 ms"),
        ("PID-1 line -> client, max", f"{berth['max_ms']:.1f} ms", f"{direct['max_ms']:.2f} ms", "report"),
        ("lines/s to one client (seq flood)", f"{flood['berth']['lines_per_s']:,.0f}",
         f"{flood['direct']['lines_per_s']:,.0f}", ">= 100,000"),
    ]
    if page is not None:
        rows += [
            (f"page after {page['lines']:,} lines: JS heap", f"{page['js_heap_used_mb']:.1f} MB "
             f"({page['dom_nodes']:,} nodes)", "", "< 200 MB"),
            (f"{page['lines']:,} lines into the page", f"{page['lines_per_s']:,.0f} lines/s", "", "report"),
        ]
    print(f"\nlatency over {berth['lines']} lines in {berth['messages']} messages; flood of "
          f"{flood['berth']['lines']:,} lines in {flood['berth']['messages']} messages, "
          f"{'none lost' if flood['berth']['lossless'] else 'LINES LOST'}\n")
    print(f"| {'benchmark':<36} | {'Berth (daphne, websocket)':>26} | {'reference: file + inotify':>26} | target |")
    print(f"|{'-' * 38}|{'-' * 28}|{'-' * 28}|--------|")
    for name, ours, reference, target in rows:
        print(f"| {name:<36} | {ours:>26} | {reference:>26} | {target} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--interval-ms", type=int, default=5)
    parser.add_argument("--flood", type=int, default=300_000)
    parser.add_argument("--page-lines", type=int, default=1_000_000)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with exclusive():
        stack = Stack().start()
        try:
            cookie = stack.session_cookie()
            latency = bench_latency(stack, cookie, args.lines, args.interval_ms)
            flood = bench_throughput(stack, cookie, args.flood)
            page = None if args.no_browser else bench_page(stack, cookie, args.page_lines)
        finally:
            stack.stop()
    print_table(latency, flood, page)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "log_latency.json").write_text(json.dumps({"latency": latency, "throughput": flood, "page": page},
                                                         indent=2))


if __name__ == "__main__":
    main()
