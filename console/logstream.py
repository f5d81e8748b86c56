"""The log viewer's server side: PID 1's log as lines of HTML, pages of older lines, search, download, follow.

Everything reads conmon's log file through ``runtime.logs`` (tail from the
end, since/until by binary search, follow across rotations); nothing here
reads a whole log into memory. The views and the consumer are in
``console.pages.logs``.

A line on the page::

    <div class="log-line stderr" data-t="1732931149234139072" data-ts="2026-11-30T01:05:49.234139072Z">text</div>

The element's text is the line's alone: the page's CSS shows ``data-ts``
before it when timestamps are on. ``data-t`` (nanoseconds) is what the
browser builds the cursor for older lines from. conmon stamps every line of one read of PID 1's pipe with the
same time, so a time alone cannot say where a page ends: a ``Cursor`` is a
time and how many of the lines at that time are already shown (the first
lines of the page at hand)::

    older than (t, k) = the records with time <= t, without the last k of them

Following (``follow``) runs ``runtime.logs.follow_logs`` in a thread, from
the last lines on, until PID 1 is gone; then it waits for the next run,
which conmon appends to the same file, and follows that from where the
last one ended. The thread sleeps on inotify when it has read everything
(conmon's writes wake it) and hands over batches: what it read before it
found nothing more, at most ``BATCH_LINES`` lines or ``BATCH_SECONDS`` of
them, so a quiet container's line arrives at once and a flood arrives as a
few large messages.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import select
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

from django.utils.safestring import mark_safe

from runtime import logs as runtime_logs

from . import ansi
from .dockerapi.fdio import IN_CREATE, IN_MODIFY, IN_MOVED_TO, Notifier, produce_in_thread
from .runtime_access import log_path

TAIL_LINES = 500  # shown at once, on the page and in the websocket's first message
PAGE_LINES = 500  # older lines per request
SEARCH_LIMIT = 1000  # matches per search, the newest
BATCH_LINES = 5000
BATCH_SECONDS = 0.015  # a message at most this often while lines keep coming
IDLE_WAKE = 0.25  # the follower's sleep when inotify says nothing (a missed event costs at most this)
SEARCH_BLOCK = 1 << 20
DOWNLOAD_CHUNK = 256 * 1024
_NS = 1_000_000_000


# --- lines -------------------------------------------------------------------------------------

_second_text: dict[int, str] = {}


def timestamp_text(time_ns: int) -> str:
    """RFC 3339 in UTC with nine digits (fixed width, so lines align); the seconds are formatted once."""
    seconds, fraction = divmod(time_ns, _NS)
    text = _second_text.get(seconds)
    if text is None:
        if len(_second_text) > 10_000:
            _second_text.clear()
        text = _second_text[seconds] = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{fraction:09d}Z"


def render_line(record: runtime_logs.LogRecord, highlight: str | None = None) -> str:
    """One record as the page's line element; its text escaped, its colours as spans."""
    text = ansi.to_html(record.data.decode("utf-8", "replace"), highlight)
    return (f'<div class="log-line {record.stream}" data-t="{record.time_ns}" '
            f'data-ts="{timestamp_text(record.time_ns)}">{text}</div>')


def render_lines(records, highlight: str | None = None) -> str:
    return "".join(render_line(r, highlight) for r in records)


# --- what the page says of a container's state -----------------------------------------------


def status_text(state: str, exit_code: int, removed: bool = False) -> str:
    """What ``#log-status`` says."""
    if removed:
        return "removed"
    if state in ("exited", "dead"):
        return f"exited with code {exit_code}"
    return state


# --- pages of lines ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where older lines end: the records with time <= time_ns, less the last ``skip`` of them."""

    time_ns: int
    skip: int = 0

    def __str__(self) -> str:
        return f"{self.time_ns}-{self.skip}"

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        """From ``str(cursor)``; ValueError for anything else."""
        time_part, _, skip_part = text.partition("-")
        if not time_part.isdigit() or not skip_part.isdigit():
            raise ValueError(f"not a log cursor: {text!r}")
        return cls(int(time_part), int(skip_part))

    @classmethod
    def before(cls, records: list) -> "Cursor | None":
        """The cursor of the lines older than ``records`` (a page, oldest first)."""
        if not records:
            return None
        first = records[0].time_ns
        same = 0
        for record in records:
            if record.time_ns != first:
                break
            same += 1
        return cls(first, same)


@dataclass
class Page:
    records: list
    older: Cursor | None  # None: nothing older

    @property
    def html(self) -> str:
        return render_lines(self.records)


def page(path: Path, before: Cursor | None = None, count: int = PAGE_LINES) -> Page:
    """The last ``count`` lines, or the ``count`` lines before a cursor (tail from the end, never the whole log)."""
    if before is None:
        records = list(runtime_logs.read_logs(path, tail=count + 1))
    else:
        records = list(runtime_logs.read_logs(path, tail=count + 1 + before.skip, until_ns=before.time_ns))
        records = records[:len(records) - before.skip]
    more = len(records) > count
    records = records[-count:] if more else records
    older = Cursor.before(records) if more else None
    if older is not None and before is not None and older.time_ns == before.time_ns:
        older = Cursor(older.time_ns, older.skip + before.skip)  # the whole page shares the cursor's time
    return Page(records, older)


def log_context(container_id: str, query: str = "", before: Cursor | None = None, timestamps: bool = False) -> dict:
    """What ``_container_logs.html`` shows: the last lines (or those before a cursor), or a search's matches."""
    path = log_path(container_id)
    try:
        return _log_context(path, query, before, timestamps)
    except OSError:  # the state root is out of reach here: the page still works, without lines
        return {"lines": "", "query": query, "older": None, "before": before, "timestamps": timestamps,
                "served": False}


def _log_context(path: Path, query: str, before: Cursor | None, timestamps: bool) -> dict:
    if query:
        found = search(path, query)
        return {"lines": mark_safe(found.html(query)), "query": query, "matches": len(found.records),
                "limited": found.limited, "older": None, "timestamps": timestamps, "served": True}
    shown = page(path, before, TAIL_LINES if before is None else PAGE_LINES)
    return {"lines": mark_safe(shown.html), "query": "", "older": shown.older, "before": before,
            "timestamps": timestamps, "served": True}


# --- search ------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    records: list  # oldest first
    limited: bool  # more matches than shown: these are the newest

    def html(self, term: str) -> str:
        return render_lines(self.records, highlight=term)


def search(path: Path, term: str, limit: int = SEARCH_LIMIT) -> SearchResult:
    """The newest ``limit`` lines whose text contains ``term`` (ignoring ASCII case), over every part of the log.

    Read from the end backwards in large blocks; a block is only split into
    lines where the term occurs, or where conmon split a line in chunks
    (``P`` records, joined here as the other readers join them).
    """
    needle = term.encode("utf-8").lower()
    found: list = []  # newest first
    for part in reversed(runtime_logs.log_files(path)):
        try:
            fd = os.open(part, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # rotated away meanwhile
        try:
            for block in _blocks_backward(fd):
                found.extend(reversed(_matches(block, needle)))
                if len(found) > limit:
                    return SearchResult(found[limit - 1::-1], True)
        finally:
            os.close(fd)
    return SearchResult(found[::-1], False)


_CHAIN_LOOKAHEAD = 1000  # lines searched for the rest of a chunked line


def _matches(block: bytes, needle: bytes) -> list:
    """The records of a block (whole lines, no chunked line across its ends) whose text holds the needle."""
    lowered = block.lower()
    found: list[tuple[int, runtime_logs.LogRecord]] = []  # (where it starts, record)
    chained: set[int] = set()  # starts of the lines that are chunks of a longer line
    at = block.find(b" P ")
    while at >= 0:
        start = block.rfind(b"\n", 0, at) + 1
        if start not in chained and _is_chunk(block[start:at + 3]):
            record, starts = _join_chunks(block, start)
            chained.update(starts)
            if record is not None and needle in record.data.lower():
                found.append((start, record))
        line_end = block.find(b"\n", at)
        at = block.find(b" P ", line_end + 1) if line_end >= 0 else -1
    if needle in lowered:
        for match in _in_text(needle).finditer(lowered):
            start = match.start()
            if start not in chained:
                end = block.find(b"\n", start)
                record = _record_of(block[start:end if end >= 0 else len(block)])
                if record is not None:
                    found.append((start, record))
    found.sort(key=lambda item: item[0])
    return [record for _, record in found]


@functools.lru_cache(maxsize=64)
def _in_text(needle: bytes) -> re.Pattern:
    """Matches from the start of a record whose text (after "<time> <stream> <tag> ") holds the needle."""
    return re.compile(rb"^[^ \n]* [^ \n]* [^ \n]* [^\n]*?" + re.escape(needle), re.M)


def _record_of(line: bytes):
    try:
        time_ns, stream, partial, text = runtime_logs.parse_line(line)
    except ValueError:
        return None
    return runtime_logs.LogRecord.at(time_ns, stream, text if partial else text + b"\n")


def _join_chunks(block: bytes, start: int):
    """The line whose first chunk starts at ``start``: (record, starts of its chunks)."""
    chunks, starts, stream, time_ns, complete = [], [], None, 0, False
    pos = start
    for _ in range(_CHAIN_LOOKAHEAD):
        end = block.find(b"\n", pos)
        end = len(block) if end < 0 else end
        try:
            t, s, partial, text = runtime_logs.parse_line(block[pos:end])
        except ValueError:
            t = s = None
        if s is not None and (stream is None or s == stream):
            if stream is None:
                stream, time_ns = s, t
            chunks.append(text)
            starts.append(pos)
            if not partial:
                complete = True
                break
        if end >= len(block):
            break
        pos = end + 1
    if stream is None:
        return None, starts
    data = b"".join(chunks) + (b"\n" if complete else b"")
    return runtime_logs.LogRecord.at(time_ns, stream, data), starts


def _is_chunk(line: bytes) -> bool:
    return line.split(b" ", 3)[2:3] == [b"P"]


def _blocks_backward(fd: int) -> Iterator[bytes]:
    """The file's whole lines in blocks, last block first; a torn last line (being written) is left out.

    A block ends after a line that is not a chunk (``P``), so a chunked line
    is whole in one block (unless the other stream's chunks interleave it).
    """
    hi = os.fstat(fd).st_size
    head = b""  # the older lines of the block read before, completed by this read
    last = True
    while hi > 0:
        lo = max(hi - SEARCH_BLOCK, 0)
        data = os.pread(fd, hi - lo, lo) + head
        if last:
            data = data[:data.rfind(b"\n") + 1]
            last = False
        head = b""
        if lo > 0:
            cut = data.find(b"\n") + 1  # the line before may have begun before lo: it goes with the older block
            while 0 < cut < len(data):
                end = data.find(b"\n", cut) + 1
                chunk = _is_chunk(data[cut:end])
                cut = end
                if not chunk:
                    break
            head, data = (data[:cut], data[cut:]) if cut else (data, b"")
        if data:
            yield data.rstrip(b"\n")
        hi = lo


# --- download ----------------------------------------------------------------------------------


def download_chunks(path: Path, timestamps: bool = False) -> Iterator[bytes]:
    """The whole log as plain text (rotated parts included), in chunks of about DOWNLOAD_CHUNK bytes."""
    def text(record) -> bytes:
        return (record.rfc3339().encode() + b" " + record.data) if timestamps else record.data

    return runtime_logs.in_blocks(map(text, runtime_logs.read_logs(path)), DOWNLOAD_CHUNK)


async def in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator's items, each read in a worker thread (an ASGI streaming response wants async)."""
    iterator = iter(chunks)
    try:
        while True:
            chunk = await asyncio.to_thread(next, iterator, None)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


# --- follow ------------------------------------------------------------------------------------


def follow(container_id: str, running: threading.Event, tail: int = TAIL_LINES) -> AsyncIterator[list[str]]:
    """The websocket's messages (JSON text): the last ``tail`` lines first ({"reset": true}), then new ones.

    Yields lists of messages as they are ready; leaving the loop stops the
    thread that reads the log. ``running`` is set while PID 1 runs, as the
    container's row says (the web process reads the log file and nothing
    else of the state root). When PID 1 is gone, what it wrote last is sent
    (a last line without newline too); when it runs again, its new lines
    follow.
    """
    path = log_path(container_id)
    running = running.is_set

    def work(put, stop: threading.Event) -> None:
        batcher = _Batcher(put)
        waker = _Waker(path.parent, stop, batcher)
        try:
            where, newest = {"tail": tail}, -1
            while not waker.is_set():
                for record in runtime_logs.follow_logs(path, is_alive=running, poll_interval=IDLE_WAKE, stop=waker,
                                                       **where):
                    batcher.add(record)
                    newest = max(newest, record.time_ns)
                # PID 1 is gone and all it wrote is read: a next run's lines are stamped after the newest one.
                # (Not "after now": the row says PID 1 is gone a little after it is, a restart may be quicker.)
                where = {"since_ns": newest + 1}
                while not waker.is_set() and not running():
                    waker.wait(IDLE_WAKE)  # hands over the batch, sleeps until the directory changes
        finally:
            waker.close()

    return produce_in_thread(work, backlog=4)


class _Batcher:
    """Collects records, renders them and hands one message per batch to the consumer."""

    def __init__(self, put):
        self.put = put
        self.records: list = []
        self.began = 0.0
        self.sent_at = 0.0
        self.first = True
        self.gone = False  # the consumer left

    def add(self, record) -> None:
        if not self.records:
            self.began = time.monotonic()
        self.records.append(record)
        if len(self.records) >= BATCH_LINES or time.monotonic() - self.began >= BATCH_SECONDS:
            self.flush()

    def pending(self) -> bool:
        return bool(self.records) or self.first

    def flush(self) -> None:
        message = {"lines": [render_line(r) for r in self.records]}
        if self.first:
            message["reset"] = True
        self.records = []
        self.first = False
        self.sent_at = time.monotonic()
        if not self.put(json.dumps(message, ensure_ascii=False)):
            self.gone = True


class _Waker(threading.Event):
    """``follow_logs``' stop event. Its ``wait`` is called when the follower has read all there is:
    hand over the batch (or let it grow a little while lines keep coming), then sleep until
    conmon writes to the container's directory again."""

    def __init__(self, directory: Path, stop: threading.Event, batcher: _Batcher):
        super().__init__()
        self.stop = stop
        self.batcher = batcher
        self.notifier = Notifier()
        self.notifier.watch(directory, IN_MODIFY | IN_CREATE | IN_MOVED_TO)

    def is_set(self) -> bool:
        return super().is_set() or self.stop.is_set() or self.batcher.gone

    def wait(self, timeout: float | None = None) -> bool:
        timeout = IDLE_WAKE if timeout is None else timeout
        if self.batcher.pending():
            wait_more = self.batcher.sent_at + BATCH_SECONDS - time.monotonic()
            if wait_more <= 0:
                self.batcher.flush()
            else:
                timeout = wait_more  # lines written meanwhile join this batch
        self._sleep(timeout)
        return self.is_set()

    def _sleep(self, timeout: float) -> None:
        if self.notifier.fd < 0:
            self.stop.wait(min(timeout, Notifier.FALLBACK))
            return
        ready, _, _ = select.select([self.notifier.fd], [], [], timeout)
        if ready:
            try:
                os.read(self.notifier.fd, 65536)
            except OSError:
                pass

    def close(self) -> None:
        self.notifier.close()
