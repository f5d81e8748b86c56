"""Container logs: conmon's k8s-file logs, read, followed and rotated.

conmon keeps PID 1's stdout and stderr and writes one record per line::

    2026-11-30T01:05:49.234139072+00:00 stdout F some text
    `-- RFC 3339, any offset or Z ---' `-----' | `-- text up to the "\\n"
                                        stream  tag: F or P

``F`` ends a line: the program wrote "some text\\n" (that "\\n" is not in the
file). ``P`` is a chunk without a newline (conmon read it from the pipe, or
split a long line); the next records *of the same stream* continue it, up to
an ``F``. conmon adds a "\\n" after a ``P`` chunk, so every record is one line.
Stdout and stderr interleave freely, each with its own unfinished chunks.

Rotation keeps the older parts beside the current file, oldest first::

    ctr.log.3  ctr.log.2  ctr.log.1  ctr.log   <- conmon appends here
    oldest --------------------------------->  newest

Readers open them all and read them as one byte sequence (``_LogSet``).
Records are in time order within and across files, which makes ``since``
and ``until`` a binary search over byte offsets; ``tail`` reads blocks from
the end backwards.

What the readers give back (``LogRecord``), and in what order:

- Chunks are joined per stream into one record, timed by its first chunk.
- Records come in the order they were *finished* (their ``F`` record), so
  with unfinished chunks around, times across the two streams may not be
  sorted. ``read_logs`` yields a stream's unfinished line at the very end,
  without "\\n"; ``follow_logs`` waits for the rest of it, and yields it
  unfinished only once the container is gone.
- ``since`` / ``until`` keep the records whose (first chunk's) time is in
  range, ``tail=N`` the last N of those: ``read_logs(tail=N)`` is the last N
  of ``read_logs()``, given the same since/until and streams.
- A torn last line (conmon is writing it) is not there yet; lines that do not
  parse are skipped.
- A record cut short by a full disk (conmon's writev wrote what fitted and
  dropped the rest) has no newline, so the record conmon writes once space
  returns is glued to it. The glued record is read and the cut one dropped:
  a line holding a header of conmon's own form (nanoseconds, a time not
  before the line's own) after the start of its text is read from that
  header on. A program that prints such a header inside a line is shown from
  there on: the price of never losing the record after a full disk.

One bound keeps tail and since cheap when a line is finished much later than
it started: looking backwards for the earlier chunks of a stream, a reader
gives up after ``GAP`` bytes without a record of that stream. So a chunk
whose continuation came more than 256 KiB of other output later may be shown
on its own by tail and since (a full read always joins it). The same bound
holds for the unfinished last line of a stream: tail only finds it within
the last ``GAP`` bytes.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time as _time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from .errors import InvalidValue

BLOCK = 64 * 1024  # backward reads (tail, look-back)
FORWARD_BLOCK = 1 << 20  # forward reads
PROBE_BLOCK = 4096  # binary search probes
GAP = 256 * 1024  # see the module docstring
UNTIL_GRACE_NS = 100_000_000  # follow: wait this long past `until` for lines written just before it

# Every read of a log goes through here; tests count the bytes with it.
_pread = os.pread

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_STREAM_NAMES = {b"stdout": "stdout", b"stderr": "stderr"}
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LogRecord:
    time: datetime  # UTC, to the microsecond; time_ns is exact
    time_ns: int  # nanoseconds since the epoch
    stream: str  # "stdout" | "stderr"
    data: bytes  # ends with b"\n" unless the stream ended on an unfinished line

    @classmethod
    def at(cls, time_ns: int, stream: str, data: bytes) -> "LogRecord":
        return cls(_EPOCH + timedelta(microseconds=time_ns // 1000), time_ns, stream, data)

    def rfc3339(self) -> str:
        """Docker's time format: RFC 3339 in UTC, nanoseconds without trailing zeros."""
        return format_rfc3339(self.time_ns)

    def to_docker_json(self) -> str:
        """One line of Docker's json-file log, without its trailing newline."""
        return json.dumps(
            {"log": self.data.decode("utf-8", "replace"), "stream": self.stream, "time": self.rfc3339()},
            ensure_ascii=False,
            separators=(",", ":"),
        )


def format_rfc3339(time_ns: int) -> str:
    """Go's RFC3339Nano in UTC: 2026-11-30T01:05:49.23413907Z."""
    seconds, fraction = divmod(time_ns, _NS)
    t = _EPOCH + timedelta(seconds=seconds)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


# --- one line --------------------------------------------------------------


def parse_line(line: bytes) -> tuple[int, str, bool, bytes]:
    """(time_ns, stream, partial, text) of one record; ValueError if it is not one.

    A trailing b"\\n" is ignored.
    """
    if line.endswith(b"\n"):
        line = line[:-1]
    parsed = _parse(line)
    if parsed is None:
        raise ValueError(f"not a k8s-file log record: {line[:80]!r}")
    time_ns, stream, partial, text = parsed
    return time_ns, _STREAM_NAMES[stream], partial, text


# conmon's record header, as it begins a record glued to one that a full disk cut short.
_CONMON_HEADER = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d std(?:out|err) [FP] ")
# Past where a record's own " stdout "/" stderr " sits: finding " std" from here is the cheap test
# that lets every other line skip the search for a glued record.
_GLUE_FROM = 36


def _unglued(line: bytes) -> bytes:
    """The record glued to a cut one (see the module docstring) from its header on; else ``line``."""
    outer = _parse_plain(line)
    start = len(line) - len(outer[3]) if outer is not None else 1
    match = _CONMON_HEADER.search(line, start)
    if match is None:
        return line
    inner_line = line[match.start() :]
    inner = _parse_plain(inner_line)
    if inner is None or (outer is not None and inner[0] < outer[0]):
        return line  # not what conmon writes next: the program's own text
    return _unglued(inner_line)


def _parse(line: bytes):
    """(time_ns, stream as bytes, partial, text), or None for garbage."""
    if line.find(b" std", _GLUE_FROM) >= 0:
        line = _unglued(line)
    return _parse_plain(line)


def _parse_plain(line: bytes):
    parts = line.split(b" ", 3)
    if len(parts) != 4:
        if len(parts) != 3:
            return None
        parts.append(b"")  # "... stdout F" without the space: an empty line
    ts, stream, tag, text = parts
    if stream not in _STREAM_NAMES:
        return None
    if tag == b"F":
        partial = False
    elif tag == b"P":
        partial = True
    else:
        return None
    time_ns = _parse_time(ts)
    if time_ns is None:
        return None
    return time_ns, stream, partial, text


# Parsing a timestamp is two dict lookups in the common case: conmon writes
# many records per second and one offset, so the seconds (up to the ".") and
# the offset are parsed once each and cached.
_seconds_cache: dict[bytes, int] = {}
_offset_cache: dict[bytes, int] = {b"Z": 0, b"z": 0}
_CACHE_LIMIT = 100_000


def _parse_time(ts: bytes) -> Optional[int]:
    """Nanoseconds since the epoch of an RFC 3339 timestamp, or None."""
    if len(ts) == 35 and ts[19] == 46:  # conmon: 9 digits and a +HH:MM offset
        fraction = ts[20:29]
        zone = ts[29:]
    else:
        if ts[-1:] in (b"Z", b"z"):
            zone, body = ts[-1:], ts[:-1]
        else:
            zone, body = ts[-6:], ts[:-6]
        if len(body) == 19:
            fraction = b"0"
        elif len(body) > 20 and body[19] == 46:
            fraction = body[20:29].ljust(9, b"0")
        else:
            return None
    offset = _offset_cache.get(zone)
    if offset is None:
        offset = _parse_offset(zone)
        if offset is None:
            return None
    key = ts[:19]
    seconds = _seconds_cache.get(key)
    if seconds is None:
        seconds = _parse_seconds(key)
        if seconds is None:
            return None
        if len(_seconds_cache) > _CACHE_LIMIT:
            _seconds_cache.clear()
        _seconds_cache[key] = seconds
    if not fraction.isdigit():
        return None
    return (seconds - offset) * _NS + int(fraction)


def _parse_offset(zone: bytes) -> Optional[int]:
    if len(zone) != 6 or zone[0] not in b"+-" or zone[3] != 58 or not (zone[1:3] + zone[4:]).isdigit():
        return None
    minutes = int(zone[1:3]) * 60 + int(zone[4:])
    offset = (minutes if zone[0] == 43 else -minutes) * 60
    if len(_offset_cache) < 1000:
        _offset_cache[zone] = offset
    return offset


def _parse_seconds(s: bytes) -> Optional[int]:
    """Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS" read as UTC."""
    if len(s) != 19 or s[4] != 45 or s[7] != 45 or s[10] not in b"Tt " or s[13] != 58 or s[16] != 58:
        return None
    if not (s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]).isdigit():
        return None
    hour, minute, second = int(s[11:13]), int(s[14:16]), int(s[17:19])
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        days = date(int(s[0:4]), int(s[5:7]), int(s[8:10])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    return days * 86400 + hour * 3600 + minute * 60 + second


def _record(time_ns: int, stream: bytes, data: bytes) -> LogRecord:
    seconds, ns = divmod(time_ns, _NS)
    fields = _utc_fields.get(seconds)
    if fields is None:
        if len(_utc_fields) > _CACHE_LIMIT:
            _utc_fields.clear()
        t = _EPOCH + timedelta(seconds=seconds)
        fields = _utc_fields[seconds] = (t.year, t.month, t.day, t.hour, t.minute, t.second)
    year, month, day, hour, minute, second = fields
    # A million records must read in a second or two: fill the slots directly,
    # as the frozen dataclass's __init__ would, at half its cost.
    record = _new(LogRecord)
    _set_time(record, datetime(year, month, day, hour, minute, second, ns // 1000, timezone.utc))
    _set_time_ns(record, time_ns)
    _set_stream(record, _STREAM_NAMES[stream])
    _set_data(record, data)
    return record


_utc_fields: dict[int, tuple] = {}
_new = object.__new__
_set_time, _set_time_ns, _set_stream, _set_data = (
    LogRecord.__dict__[name].__set__ for name in ("time", "time_ns", "stream", "data")
)


# --- files -----------------------------------------------------------------

# Logs live apart from the container's directory (rootfs, bundle, record), so the web process can
# be let read them and nothing else: ``<root>/container-logs`` is made by the set-up with the group of the
# web's user and the set-gid bit; every directory and file below inherits that group, made
# 0750/0640 here and by conmon. Without the set-up it is root's alone (0700).
LOGS_DIR = "container-logs"
LOG_NAME = "ctr.log"
LOG_DIR_MODE = 0o750
LOG_FILE_MODE = 0o640


def logs_root(root: Path) -> Path:
    return Path(root) / LOGS_DIR


def container_log_path(root: Path, container_id: str) -> Path:
    """Where conmon writes the log of ``container_id`` under the state root ``root``.

    A container made before logs moved out of its directory keeps its log there (out of the web's reach).
    """
    legacy = Path(root) / "containers" / container_id / LOG_NAME
    # os.path.exists: False, not PermissionError, where the caller may not look (the web's user)
    return legacy if os.path.exists(legacy) else logs_root(root) / container_id / LOG_NAME


def prepare_log(path: Path) -> None:
    """Make the log's directory and an empty log file, readable by the logs folder's group, before conmon
    opens it (conmon appends to a file that exists, keeping its owner and mode). Idempotent."""
    path = Path(path)
    path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=LOG_DIR_MODE, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, LOG_FILE_MODE))


def log_files(path: Path) -> list[Path]:
    """The existing parts of a log: rotated ones oldest first (ctr.log.3, .2, .1), then ctr.log."""
    path = Path(path)
    prefix = path.name + "."
    rotated = []
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    for name in names:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isdigit() and suffix.isascii() and int(suffix) > 0:
            rotated.append((int(suffix), path.parent / name))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if path.name in names:
        files.append(path)
    return files


def needs_rotation(path: Path, max_size: int) -> bool:
    """Whether the current file has reached max_size bytes (max_size <= 0: never)."""
    if max_size <= 0:
        return False
    try:
        return os.stat(path).st_size >= max_size
    except FileNotFoundError:
        return False


def rotate(path: Path, max_files: int, reopen: Callable[[], None]) -> bool:
    """Rename ctr.log to ctr.log.1 (shifting the older ones), then have conmon reopen the path.

    Keeps max_files files in all: the current one and max_files - 1 rotated
    ones (max_files=1 keeps none). conmon still writes to the renamed file
    until ``reopen`` makes it open ``path`` again; readers that follow the
    log finish the renamed file first. Returns False, doing nothing, when
    the log is missing or empty. If ``reopen`` raises, the files are already
    renamed and conmon goes on writing to ctr.log.1. One caller at a time
    per log.
    """
    if max_files < 1:
        raise InvalidValue("max-file", "must be at least 1")
    path = Path(path)
    try:
        if os.stat(path).st_size == 0:
            return False
    except FileNotFoundError:
        return False
    if _out_of_inodes(path.parent):
        return False  # conmon, asked to reopen, could not make the new file and would exit: later, once there is room
    keep = max_files - 1
    for p in log_files(path):
        if p != path and int(p.name.rsplit(".", 1)[1]) >= max(keep, 1):
            p.unlink(missing_ok=True)  # the oldest, and any left from a larger max_files
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.rename(older, path.with_name(f"{path.name}.{n + 1}"))
    if keep:
        os.rename(path, path.with_name(f"{path.name}.1"))
    else:
        path.unlink()
    prepare_log(path)  # conmon reopens it with its own mode; made first, it keeps the folder's group and 0640
    reopen()
    return True


def _out_of_inodes(folder: Path) -> bool:
    """No file can be made there (filesystems without an inode count, btrfs say, report 0 files in all)."""
    stats = os.statvfs(folder)
    return stats.f_files > 0 and stats.f_favail == 0


class _Segment:
    __slots__ = ("path", "fd", "start", "size")

    def __init__(self, path: Path, fd: int, start: int, size: int):
        self.path, self.fd, self.start, self.size = path, fd, start, size

    @property
    def end(self) -> int:
        return self.start + self.size


class _LogSet:
    """The parts of a log, open, read as one byte sequence.

    Sizes are fixed when opened and cut after the last newline: a torn last
    line (conmon is writing it) is not part of the set. Lines never span two
    files.
    """

    def __init__(self, path: Path):
        self.segments: list[_Segment] = []
        start = 0
        for p, fd in _open_parts(path):
            size = _complete_size(fd, os.fstat(fd).st_size)
            self.segments.append(_Segment(p, fd, start, size))
            start += size
        self.total = start

    def close(self) -> None:
        for seg in self.segments:
            os.close(seg.fd)
        self.segments = []


def _open_parts(path: Path) -> list[tuple[Path, int]]:
    """Open every part of the log; retry when a rotation moves them meanwhile."""
    for attempt in range(5):
        files = log_files(path)
        opened: list[tuple[Path, int]] = []
        stable = True
        for p in files:
            try:
                opened.append((p, os.open(p, os.O_RDONLY | os.O_CLOEXEC)))
            except FileNotFoundError:
                stable = False
        if stable and log_files(path) == files:
            stable = all(_file_id(p) == _fd_id(fd) for p, fd in opened)
        if stable or attempt == 4:
            break
        for _, fd in opened:
            os.close(fd)
    # Whatever happened, never read one file twice.
    seen, parts = set(), []
    for p, fd in opened:
        if _fd_id(fd) in seen:
            os.close(fd)
        else:
            seen.add(_fd_id(fd))
            parts.append((p, fd))
    return parts


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _fd_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _complete_size(fd: int, size: int) -> int:
    """Offset just after the last newline before `size` (0 if none)."""
    hi = size
    while hi > 0:
        lo = max(hi - BLOCK, 0)
        data = _pread(fd, hi - lo, lo)
        i = data.rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        hi = lo
    return 0


def _forward(ls: _LogSet, pos: int, block: int = BLOCK) -> Iterator[tuple[int, list[bytes]]]:
    """Complete lines from logical `pos` (a line start) on, as (position of the first, lines) per read.

    Reads start at `block` bytes and double up to FORWARD_BLOCK: a short
    since..until window costs little, a full read few system calls.
    """
    for seg in ls.segments:
        if pos >= seg.end:
            continue
        off = max(pos - seg.start, 0)
        carry = b""
        while off < seg.size:
            data = _pread(seg.fd, min(block, seg.size - off), off)
            if not data:
                break  # the file shrank under us
            block = min(block * 2, max(block, FORWARD_BLOCK))
            first = seg.start + off - len(carry)
            off += len(data)
            lines = (carry + data).split(b"\n")
            carry = lines.pop()
            if lines:
                yield first, lines


def _backward(ls: _LogSet, end: int) -> Iterator[tuple[int, bytes]]:
    """(position, line) of the complete lines before logical `end` (a line start), last first."""
    for seg in reversed(ls.segments):
        if seg.start >= end:
            continue
        hi = min(end - seg.start, seg.size)  # byte hi - 1 is a newline
        cut: Optional[bytes] = None  # end of a line that began before the block read last
        while hi > 0:
            lo = max(hi - BLOCK, 0)
            data = _pread(seg.fd, hi - lo, lo)
            buf = data if cut is None else data + cut
            pieces = buf.split(b"\n")
            # pieces[1:] are whole lines (the last one is empty when cut is None:
            # nothing follows the final newline); pieces[0] may have begun before lo.
            q = seg.start + lo + len(buf) - len(pieces[-1])
            last = len(pieces) - 1
            for i in range(last, 0, -1):
                if i != last or cut is not None:
                    yield q, pieces[i]
                q -= len(pieces[i - 1]) + 1
            cut = pieces[0]
            hi = lo
        if cut is not None:
            yield seg.start, cut


def _first_at_or_after(ls: _LogSet, pos: int) -> Optional[tuple[int, int]]:
    """(position, time) of the first parseable line starting at or after logical `pos`."""
    for seg in ls.segments:
        if pos >= seg.end:
            continue
        off = max(pos - seg.start, 0)
        if off > 0:  # resync: the line after the next newline at or after off - 1
            off -= 1
            while True:
                if off >= seg.size:
                    break
                data = _pread(seg.fd, min(PROBE_BLOCK, seg.size - off), off)
                i = data.find(b"\n")
                if i >= 0:
                    off += i + 1
                    break
                off += len(data)
            if off >= seg.size:
                continue
        for first, lines in _forward(ls, seg.start + off, PROBE_BLOCK):
            if first >= seg.end:
                break
            for line in lines:
                parsed = _parse(line)
                if parsed is not None:
                    return first, parsed[0]
                first += len(line) + 1
    return None


def _search(ls: _LogSet, time_ns: int, after: bool = False) -> int:
    """Position of the first record with time >= time_ns (> with after=True), or ls.total."""
    lo, hi = 0, ls.total
    while lo < hi:
        mid = (lo + hi) // 2
        found = _first_at_or_after(ls, mid)
        if found is None or (found[1] > time_ns if after else found[1] >= time_ns):
            hi = mid
        else:
            lo = mid + 1
    found = _first_at_or_after(ls, lo)
    return ls.total if found is None else found[0]


def _want(stdout: bool, stderr: bool) -> frozenset[bytes]:
    return frozenset(s for s, on in ((b"stdout", stdout), (b"stderr", stderr)) if on)


# --- joining chunks, forwards ----------------------------------------------


class _Joiner:
    """Joins the chunks of each stream into records, in the order they finish.

    ``pending`` maps a stream to its unfinished line: [time of its first
    chunk, chunks]. It may be seeded with chunks written before the reader's
    start, so their continuation is recognised (and dropped by ``since``).
    ``done`` turns true once a record past ``until`` arrives and no line that
    started before it is still unfinished.
    """

    def __init__(self, want, since_ns=None, until_ns=None, pending=None):
        self.want = want
        self.since = since_ns
        self.until = until_ns
        self.pending: dict[bytes, list] = {}
        for stream, chain in (pending or {}).items():
            if until_ns is None or chain[0] <= until_ns:
                self.pending[stream] = chain
        self.passed = False
        self.done = False

    def keeps(self, time_ns: int) -> bool:
        return (self.since is None or time_ns >= self.since) and (self.until is None or time_ns <= self.until)

    def waiting(self) -> bool:
        """Whether an unfinished line would be yielded once finished."""
        return any(self.keeps(chain[0]) for chain in self.pending.values())

    def feed(self, lines: Iterable[bytes], out: list) -> None:
        want, pending, since, until = self.want, self.pending, self.since, self.until
        parse_time, record = _parse_time, _record
        offsets, seconds_cache, ns_per_s = _offset_cache, _seconds_cache, _NS
        for line in lines:
            if line.find(b" std", _GLUE_FROM) >= 0:
                line = _unglued(line)
            parts = line.split(b" ", 3)
            if len(parts) != 4:
                if len(parts) != 3:
                    continue
                parts.append(b"")
            ts, stream, tag, text = parts
            if stream not in want:
                continue
            if tag == b"F":
                partial = False
            elif tag == b"P":
                partial = True
            else:
                continue
            # _parse_time's common case, inlined
            if len(ts) == 35 and ts[19] == 46:
                offset = offsets.get(ts[29:])
                seconds = seconds_cache.get(ts[:19])
                fraction = ts[20:29]
                if offset is not None and seconds is not None and fraction.isdigit():
                    t = (seconds - offset) * ns_per_s + int(fraction)
                else:
                    t = parse_time(ts)
            else:
                t = parse_time(ts)
            if t is None:
                continue
            chain = pending.get(stream)
            if chain is None:
                if until is not None and t > until:
                    self.passed = True
                    if not self.waiting():
                        self.done = True
                        return
                    continue
                if partial:
                    pending[stream] = [t, [text]]
                elif since is None or t >= since:
                    out.append(record(t, stream, text + b"\n"))
                continue
            chain[1].append(text)
            del pending[stream]
            if partial:
                pending[stream] = chain  # keep the dict in order of the last chunk
                continue
            if self.keeps(chain[0]):
                out.append(record(chain[0], stream, b"".join(chain[1]) + b"\n"))
            if self.passed and not self.waiting():
                self.done = True
                return

    def flush(self) -> list[LogRecord]:
        """The unfinished lines as records without newline (the streams ended there)."""
        out = [_record(c[0], s, b"".join(c[1])) for s, c in self.pending.items() if self.keeps(c[0])]
        self.pending = {}
        return out


def _pending_at(ls: _LogSet, pos: int, want) -> dict[bytes, list]:
    """The unfinished line of each stream just before logical `pos`, as _Joiner.pending."""
    chains: dict[bytes, list] = {}  # stream -> [first time, chunks last first, earliest pos, latest pos]
    resolved: set[bytes] = set()
    for p, line in _backward(ls, pos):
        for s in want - resolved:
            if (chains[s][2] if s in chains else pos) - p > GAP:
                resolved.add(s)
        if len(resolved) == len(want):
            break
        parsed = _parse(line)
        if parsed is None or parsed[1] not in want or parsed[1] in resolved:
            continue
        t, s, partial, text = parsed
        if not partial:
            resolved.add(s)
            continue
        chain = chains.setdefault(s, [t, [], p, p])
        chain[0], chain[2] = t, p
        chain[1].append(text)
    ordered = sorted(chains.items(), key=lambda item: item[1][3])
    return {s: [c[0], c[1][::-1]] for s, c in ordered}


# --- tail, backwards -------------------------------------------------------


class _Chain:
    """A record being assembled backwards, from its last chunk to its first."""

    __slots__ = ("stream", "key", "chunks", "time", "pos", "complete")

    def __init__(self, stream, key, chunks, time, pos, complete):
        self.stream, self.key, self.chunks, self.time, self.pos = stream, key, chunks, time, pos
        self.complete = complete

    def record(self) -> LogRecord:
        data = b"".join(reversed(self.chunks))
        return _record(self.time, self.stream, data + b"\n" if self.complete else data)


def _tail(ls: _LogSet, n: int, want, since_ns, until_ns, include_unfinished: bool) -> list[LogRecord]:
    """The last n records, read from the end backwards.

    A record is found at its last chunk (its key orders records: finished
    ones by the position of their F, then the unfinished ones), then its
    earlier chunks are gathered until the previous record of that stream.
    Reading stops once the last n candidates are whole and nothing later
    can outrank them.
    """
    end = ls.total if until_ns is None else _search(ls, until_ns, after=True)
    chains: list[_Chain] = []  # candidates, open or settled
    open_: dict[bytes, _Chain] = {}
    seen: set[bytes] = set()
    absent: set[bytes] | None = None  # streams known to have no line from here back to GAP before end
    skipping: set[bytes] = set()  # streams whose unfinished line is left out
    below_since = False

    def certain() -> int:
        """Candidates sure to be kept: an open one may still prove to begin before since."""
        return len(chains) - (len(open_) if since_ns is not None else 0)

    def add(chain: _Chain) -> None:
        chains.append(chain)
        open_[chain.stream] = chain

    def settle(stream: bytes) -> None:
        del open_[stream]  # whole: its first chunk is known

    for pos, line in _backward(ls, end):
        for s in [s for s, c in open_.items() if c.pos - pos > GAP]:
            settle(s)
        if absent is None and not open_ and len(chains) >= n and len(seen) < len(want):
            # Only a stream not seen yet can change the answer now; one with no line left in the
            # window is not looked for line by line (a log of stdout alone would have its last
            # 256 KiB split and read for a stderr line).
            absent = _absent_streams(ls, max(end - GAP, 0), pos + len(line) + 1, want - seen)
        if not open_ and (below_since or (len(chains) >= n and (len(seen | (absent or set())) == len(want) or end - pos > GAP))):
            break
        if since_ns is None and not open_ and certain() >= n and _stream_token(line) in seen:
            # Looking back for a stream not seen yet (its unfinished last line would rank first):
            # a line of a stream already seen can change nothing now, so it is not parsed.
            continue
        parsed = _parse(line)
        if parsed is None:
            continue
        t, s, partial, text = parsed
        if since_ns is not None and t < since_ns:
            below_since = True
        if s not in want:
            continue
        first_seen = s not in seen
        seen.add(s)
        chain = open_.get(s)
        if chain is not None:
            if not partial:
                settle(s)  # this F ends the record before it
            elif below_since:
                chains.remove(chain)  # it began before since
                del open_[s]
                continue
            else:
                chain.chunks.append(text)
                chain.time, chain.pos = t, pos
                continue
        elif partial:
            if first_seen and not below_since:
                _add_last_line(ls, end, s, t, pos, text, add, skipping, include_unfinished)
            continue  # otherwise: an earlier chunk of a record left out
        elif s in skipping:
            skipping.discard(s)
        # Records found from here on rank below every candidate so far.
        if below_since or certain() >= n:
            continue
        add(_Chain(s, (0, pos), [text], t, pos, complete=True))
    for s in list(open_):
        settle(s)  # reached the beginning
    chains.sort(key=lambda c: c.key)
    return [c.record() for c in chains[-n:]]


def _absent_streams(ls: _LogSet, lo: int, hi: int, streams) -> set[bytes]:
    """Those of ``streams`` no line of which lies between logical ``lo`` and ``hi``: their field, with
    the spaces around it, is nowhere in those bytes (met inside a line's text, it only costs the shortcut)."""
    window = b"".join(_pread(seg.fd, min(seg.end, hi) - max(seg.start, lo), max(seg.start, lo) - seg.start)
                      for seg in ls.segments if seg.start < hi and seg.end > lo)
    return {s for s in streams if b" " + s + b" " not in window}


def _stream_token(line: bytes) -> bytes:
    """A record's stream field (b"stdout"), the rest of the line unparsed; b"" if there is none."""
    start = line.find(b" ") + 1
    stop = line.find(b" ", start, start + 7) if start else -1
    return line[start:stop] if stop > 0 else b""


def _add_last_line(ls, end, s, t, pos, text, add, skipping, include_unfinished) -> None:
    """A stream's last line before `end` is a chunk: finish it past `end`, or it is unfinished."""
    chunks, key, complete = [text], (1, pos), False
    if end < ls.total:
        after: list[bytes] = []
        for first, lines in _forward(ls, end):
            for line in lines:
                parsed = _parse(line)
                if parsed is not None and parsed[1] == s:
                    after.append(parsed[3])
                    if not parsed[2]:
                        key, complete = (0, first), True
                        break
                    key = (1, first)
                first += len(line) + 1
            if complete:
                break
        chunks = after[::-1] + chunks
    if not complete and not include_unfinished:
        skipping.add(s)
        return
    add(_Chain(s, key, chunks, t, pos, complete))


# --- public readers --------------------------------------------------------


def read_logs(
    path: Path,
    *,
    tail: Optional[int] = None,
    since_ns: Optional[int] = None,
    until_ns: Optional[int] = None,
    stdout: bool = True,
    stderr: bool = True,
) -> Iterator[LogRecord]:
    """The records of a log (rotated parts included), as they are now.

    tail=N: the last N records within since/until (None or negative: all).
    since_ns/until_ns: nanoseconds since the epoch, both inclusive.
    """
    want = _want(stdout, stderr)
    if not want or tail == 0:
        return
    if tail is not None and tail < 0:
        tail = None
    ls = _LogSet(Path(path))
    try:
        if tail is not None:
            yield from _tail(ls, tail, want, since_ns, until_ns, include_unfinished=True)
            return
        start, joiner = _start(ls, want, since_ns, until_ns)
        for _, lines in _forward(ls, start):
            out: list[LogRecord] = []
            joiner.feed(lines, out)
            yield from out
            if joiner.done:
                return
        yield from joiner.flush()
    finally:
        ls.close()


def _start(ls: _LogSet, want, since_ns, until_ns) -> tuple[int, _Joiner]:
    """Where a forward read begins (the first record at or after since), and its joiner."""
    start = 0 if since_ns is None else _search(ls, since_ns)
    return start, _Joiner(want, since_ns, until_ns, _pending_at(ls, start, want) if start else None)


def follow_logs(
    path: Path,
    *,
    tail: Optional[int] = None,
    since_ns: Optional[int] = None,
    until_ns: Optional[int] = None,
    stdout: bool = True,
    stderr: bool = True,
    is_alive: Callable[[], bool],
    poll_interval: float = 0.02,
    stop: Optional[threading.Event] = None,
) -> Iterator[LogRecord]:
    """The records of a log, then those conmon appends, until the container is gone.

    Ends once ``is_alive()`` is false and everything written has been read,
    when ``stop`` is set, or after ``until_ns``. Unfinished lines are yielded
    when finished, or (without newline) when the container is gone. Follows
    rotations: the renamed file is read to its end, then the new one.
    """
    path = Path(path)
    want = _want(stdout, stderr)
    if not want:
        return
    if tail is not None and tail < 0:
        tail = None
    stopped = stop.is_set if stop is not None else (lambda: False)
    ls = _LogSet(path)
    try:
        if tail is not None:
            history = _tail(ls, tail, want, since_ns, until_ns, include_unfinished=False) if tail else []
            joiner = _Joiner(want, since_ns, until_ns, _pending_at(ls, ls.total, want))
            for rec in history:
                if stopped():
                    return
                yield rec
        else:
            start, joiner = _start(ls, want, since_ns, until_ns)
            for _, lines in _forward(ls, start):
                out: list[LogRecord] = []
                joiner.feed(lines, out)
                for rec in out:
                    if stopped():
                        return
                    yield rec
                if joiner.done:
                    return
        if joiner.done:
            return
        last = ls.segments[-1] if ls.segments else None
        cursor = _Cursor(path, os.dup(last.fd) if last else None, last.size if last else 0)
    finally:
        ls.close()
    try:
        yield from _live(cursor, joiner, until_ns, is_alive, poll_interval, stop, stopped)
    finally:
        cursor.close()


class _Cursor:
    """Reads what conmon appends to the log, following renames.

    ``fd`` is the file conmon writes to as far as we know; after a rotation
    conmon keeps writing to the renamed file until it reopens the path, and
    only conmon creates the new file: once ``path`` is another file, the old
    one is complete.
    """

    def __init__(self, path: Path, fd: Optional[int], pos: int):
        self.path, self.fd, self.pos, self.carry = path, fd, pos, b""

    def read(self) -> tuple[bool, list[bytes]]:
        """(whether bytes came, the lines they completed)."""
        if self.fd is None:
            return False, []
        data = _pread(self.fd, FORWARD_BLOCK, self.pos)
        if not data:
            if os.fstat(self.fd).st_size < self.pos:  # truncated in place: start over
                self.pos, self.carry = 0, b""
                return True, []
            return False, []
        self.pos += len(data)
        lines = (self.carry + data).split(b"\n")
        self.carry = lines.pop()
        return True, lines

    def replaced(self) -> bool:
        """Whether the path now names another file than the one we read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return self.fd is None or (st.st_dev, st.st_ino) != _fd_id(self.fd)

    def switch(self) -> None:
        """Go on with the next file, from its start (a torn line left behind is dropped).

        The next file is the one after ours in the rotation chain: when we fell
        behind by more than one rotation, that is a rotated file, not ``path``.
        When ours is gone (deleted as the oldest), every file left is newer:
        the oldest of them is next.
        """
        files = log_files(self.path)
        target = files[0] if files else self.path
        if self.fd is not None:
            mine = _fd_id(self.fd)
            for i, p in enumerate(files[:-1]):
                if _file_id(p) == mine:
                    target = files[i + 1]
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # moved again meanwhile: the next poll tries anew
        self.close()
        self.fd, self.pos, self.carry = fd, 0, b""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _live(cursor: _Cursor, joiner: _Joiner, until_ns, is_alive, poll_interval, stop, stopped):
    finishing = False
    while True:
        if stopped():
            return
        got, lines = cursor.read()
        if got:
            out: list[LogRecord] = []
            joiner.feed(lines, out)
            for rec in out:
                if stopped():
                    return
                yield rec
            if joiner.done:
                return
            continue
        if cursor.replaced():
            # conmon reopened the path: read the rest of the old file, then the new one
            while True:
                got, lines = cursor.read()
                if not got:
                    break
                out = []
                joiner.feed(lines, out)
                yield from out
                if joiner.done:
                    return
            cursor.switch()
            continue
        if until_ns is not None and _time.time_ns() > until_ns + UNTIL_GRACE_NS and not joiner.waiting():
            return
        if finishing:
            yield from joiner.flush()
            return
        if not is_alive():
            finishing = True  # read once more: what was written before it died
            continue
        if stop is not None:
            stop.wait(poll_interval)
        else:
            _time.sleep(poll_interval)


def in_blocks(parts: Iterable[bytes], block_bytes: int) -> Iterator[bytes]:
    """Byte strings joined into blocks of about ``block_bytes``: one write a block, not one a line."""
    block, size = [], 0
    for part in parts:
        block.append(part)
        size += len(part)
        if size >= block_bytes:
            yield b"".join(block)
            block, size = [], 0
    if block:
        yield b"".join(block)
