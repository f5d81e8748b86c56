"""Container logs (runtime/logs.py): conmon's k8s-file format, read, followed, rotated."""

import json
import os
import queue
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from runtime import logs
from runtime.errors import InvalidValue
from runtime.logs import (
    LogRecord,
    follow_logs,
    log_files,
    needs_rotation,
    parse_line,
    read_logs,
    rotate,
)

BASE_NS = 1_795_000_000 * 10**9  # 2026-11-18T11:06:40Z
MS = 1_000_000
MiB = 1 << 20


def stamp(time_ns: int, offset_minutes: int = 0) -> bytes:
    """conmon's timestamp: local time with nanoseconds and a numeric offset."""
    seconds, fraction = divmod(time_ns, 10**9)
    local = datetime.fromtimestamp(seconds, timezone(timedelta(minutes=offset_minutes)))
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{local:%Y-%m-%dT%H:%M:%S}.{fraction:09d}{sign}{hours:02d}:{minutes:02d}".encode()


def record_line(time_ns: int, stream: str, text: bytes, partial: bool = False, offset_minutes: int = 0) -> bytes:
    return b"%s %s %s %s\n" % (stamp(time_ns, offset_minutes), stream.encode(), b"P" if partial else b"F", text)


class Conmon:
    """Writes records the way conmon does: O_APPEND, one line per record, reopen on request.

    Times come from a fake clock (start, step) unless real=True.
    """

    def __init__(self, path, start_ns=BASE_NS, step_ns=MS, real=False):
        self.path = path
        self.now = start_ns - step_ns
        self.step = step_ns
        self.real = real
        self.fd = None
        self.reopen()

    def tick(self) -> int:
        self.now = max(self.now + 1, time.time_ns()) if self.real else self.now + self.step
        return self.now

    def write(self, stream: str, text: bytes, partial: bool = False) -> int:
        t = self.tick()
        os.write(self.fd, record_line(t, stream, text, partial))
        return t

    def raw(self, data: bytes) -> None:
        os.write(self.fd, data)

    def reopen(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def close(self) -> None:
        os.close(self.fd)


def data_of(records):
    return [(r.stream, r.data) for r in records]


@pytest.fixture
def log(tmp_path):
    return tmp_path / "ctr.log"


@pytest.fixture
def conmon(log):
    c = Conmon(log)
    yield c
    c.close()


@pytest.fixture
def bytes_read(monkeypatch):
    """Counts every byte the readers read."""
    counter = {"bytes": 0}
    real = logs._pread

    def counting(fd, n, offset):
        data = real(fd, n, offset)
        counter["bytes"] += len(data)
        return data

    monkeypatch.setattr(logs, "_pread", counting)
    return counter


# --- one line --------------------------------------------------------------


def test_it_parses_a_conmon_record():
    line = b"2026-11-30T01:05:49.234139072+00:00 stdout F some text\n"
    time_ns, stream, partial, text = parse_line(line)
    assert time_ns == int(datetime(2026, 11, 30, 1, 5, 49, tzinfo=timezone.utc).timestamp()) * 10**9 + 234139072
    assert (stream, partial, text) == ("stdout", False, b"some text")


@pytest.mark.parametrize(
    "ts",
    [
        b"2026-11-30T03:05:49.234139072+02:00",
        b"2026-11-29T19:35:49.234139072-05:30",
        b"2026-11-30T01:05:49.234139072Z",
        b"2026-11-30T01:05:49.234139072z",
    ],
)
def test_it_parses_any_offset_and_z(ts):
    assert parse_line(ts + b" stderr P x")[0] == parse_line(b"2026-11-30T01:05:49.234139072+00:00 stderr P x")[0]


def test_it_parses_shorter_fractions_and_none():
    base = parse_line(b"2026-11-30T01:05:49Z stdout F x")[0]
    assert base % 10**9 == 0
    assert parse_line(b"2026-11-30T01:05:49.5Z stdout F x")[0] == base + 500_000_000
    assert parse_line(b"2026-11-30T01:05:49.000001+00:00 stdout F x")[0] == base + 1000


def test_it_reads_an_empty_line_and_text_with_spaces():
    assert parse_line(b"2026-11-30T01:05:49.234139072+00:00 stdout F ")[1:] == ("stdout", False, b"")
    assert parse_line(b"2026-11-30T01:05:49.234139072+00:00 stdout F  a  b ")[3] == b" a  b "


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"hello world",
        b"2026-11-30T01:05:49.234139072+00:00",
        b"2026-11-30T01:05:49.234139072+00:00 stdin F x",
        b"2026-11-30T01:05:49.234139072+00:00 stdout X x",
        b"2026-11-30T01:05:49.234139072+00:00 stdout FF x",
        b"2026-13-30T01:05:49.234139072+00:00 stdout F x",
        b"2026-11-30T25:05:49.234139072+00:00 stdout F x",
        b"2026-11-30T01:05:49.2341390x2+00:00 stdout F x",
        b"2026-11-30T01:05:49.234139072+0000 stdout F x",
        b"2026-11-30T01:05:49.234139072 stdout F x",
        b"2026-11-30 01:05:49.234139072+00:00stdout F x",
        b"\xff\xfe\x00 stdout F x",
    ],
)
def test_it_rejects_lines_that_are_not_records(line):
    with pytest.raises(ValueError):
        parse_line(line)


def test_it_formats_times_like_go_rfc3339nano():
    at = int(datetime(2026, 11, 30, 1, 5, 49, tzinfo=timezone.utc).timestamp()) * 10**9
    assert LogRecord.at(at + 234139072, "stdout", b"").rfc3339() == "2026-11-30T01:05:49.234139072Z"
    assert LogRecord.at(at + 230000000, "stdout", b"").rfc3339() == "2026-11-30T01:05:49.23Z"
    assert LogRecord.at(at + 1, "stdout", b"").rfc3339() == "2026-11-30T01:05:49.000000001Z"
    assert LogRecord.at(at, "stdout", b"").rfc3339() == "2026-11-30T01:05:49Z"


def test_it_renders_a_docker_json_file_line():
    at = int(datetime(2026, 11, 30, 1, 5, 49, tzinfo=timezone.utc).timestamp()) * 10**9 + 5
    line = LogRecord.at(at, "stderr", 'hé "x"\n'.encode() + b"\xff").to_docker_json()
    assert line == '{"log":"hé \\"x\\"\\n\ufffd","stream":"stderr","time":"2026-11-30T01:05:49.000000005Z"}'
    assert json.loads(line)["log"] == 'hé "x"\n\ufffd'


def test_a_record_has_a_utc_time_and_exact_nanoseconds(log, conmon):
    t = conmon.write("stdout", b"x")
    (rec,) = read_logs(log)
    assert rec.time_ns == t
    assert rec.time.tzinfo is not None and rec.time.utcoffset() == timedelta(0)
    assert rec.time == datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=t // 1000)
    with pytest.raises(AttributeError):
        rec.data = b"y"


# --- reading ---------------------------------------------------------------


def test_it_reads_lines_with_their_newline(log, conmon):
    conmon.write("stdout", b"one")
    conmon.write("stdout", b"")
    conmon.write("stderr", b"three")
    assert data_of(read_logs(log)) == [("stdout", b"one\n"), ("stdout", b"\n"), ("stderr", b"three\n")]


def test_it_joins_partial_records(log, conmon):
    first = conmon.write("stdout", b"Downloading", partial=True)
    conmon.write("stdout", b"... ", partial=True)
    conmon.write("stdout", b"done")
    conmon.write("stdout", b"next")
    records = list(read_logs(log))
    assert data_of(records) == [("stdout", b"Downloading... done\n"), ("stdout", b"next\n")]
    assert records[0].time_ns == first


def test_it_keeps_a_pending_partial_per_stream(log, conmon):
    out_first = conmon.write("stdout", b"out-a ", partial=True)
    err_first = conmon.write("stderr", b"err-a ", partial=True)
    conmon.write("stdout", b"out-b")
    conmon.write("stderr", b"err-b ", partial=True)
    conmon.write("stderr", b"err-c")
    records = list(read_logs(log))
    assert data_of(records) == [("stdout", b"out-a out-b\n"), ("stderr", b"err-a err-b err-c\n")]
    assert [r.time_ns for r in records] == [out_first, err_first]


def test_a_stream_that_ended_on_a_partial_is_read_without_newline(log, conmon):
    conmon.write("stdout", b"$ ", partial=True)
    conmon.write("stderr", b"warning")
    assert data_of(read_logs(log)) == [("stderr", b"warning\n"), ("stdout", b"$ ")]


def test_it_skips_garbage_and_a_torn_last_line(log, conmon):
    conmon.write("stdout", b"one")
    conmon.raw(b"garbage here\n\n2026-11-30T01:05:49 stdout\n")
    conmon.write("stdout", b"two")
    conmon.raw(stamp(BASE_NS + 10**9) + b" stdout F thr")  # conmon is writing it
    assert data_of(read_logs(log)) == [("stdout", b"one\n"), ("stdout", b"two\n")]
    assert data_of(read_logs(log, tail=1)) == [("stdout", b"two\n")]


def test_it_keeps_bytes_that_are_not_utf8(log, conmon):
    conmon.write("stdout", b"\xff\xfe\x00\r\tx")
    assert data_of(read_logs(log)) == [("stdout", b"\xff\xfe\x00\r\tx\n")]


def test_it_filters_streams(log, conmon):
    conmon.write("stdout", b"o1")
    conmon.write("stderr", b"e1")
    conmon.write("stdout", b"o2")
    assert data_of(read_logs(log, stderr=False)) == [("stdout", b"o1\n"), ("stdout", b"o2\n")]
    assert data_of(read_logs(log, stdout=False)) == [("stderr", b"e1\n")]
    assert list(read_logs(log, stdout=False, stderr=False)) == []


def test_a_missing_log_reads_as_empty(log):
    assert list(read_logs(log)) == []
    assert list(read_logs(log, tail=5)) == []
    assert log_files(log) == []


def test_it_lists_rotated_files_oldest_first(tmp_path, log):
    for name in ["ctr.log", "ctr.log.1", "ctr.log.2", "ctr.log.10", "ctr.log.tmp", "ctr.log.0", "other.log.1"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in log_files(log)] == ["ctr.log.10", "ctr.log.2", "ctr.log.1", "ctr.log"]


def test_it_reads_rotated_files_as_one_stream(log, conmon):
    conmon.write("stdout", b"a")
    rotate(log, 5, conmon.reopen)
    conmon.write("stdout", b"b")
    conmon.write("stdout", b"c", partial=True)
    rotate(log, 5, conmon.reopen)
    conmon.write("stdout", b"d")  # finishes a line begun in the older file
    assert [p.name for p in log_files(log)] == ["ctr.log.2", "ctr.log.1", "ctr.log"]
    assert data_of(read_logs(log)) == [("stdout", b"a\n"), ("stdout", b"b\n"), ("stdout", b"cd\n")]
    assert data_of(read_logs(log, tail=1)) == [("stdout", b"cd\n")]


# --- tail ------------------------------------------------------------------


def test_tail_returns_the_last_records(log, conmon):
    for i in range(10):
        conmon.write("stdout", b"%d" % i)
    assert [r.data for r in read_logs(log, tail=3)] == [b"7\n", b"8\n", b"9\n"]
    assert len(list(read_logs(log, tail=100))) == 10
    assert list(read_logs(log, tail=0)) == []
    assert len(list(read_logs(log, tail=None))) == 10


def test_tail_counts_records_after_stream_filtering(log, conmon):
    for i in range(10):
        conmon.write("stderr" if i % 2 else "stdout", b"%d" % i)
    assert [r.data for r in read_logs(log, tail=2, stdout=False)] == [b"7\n", b"9\n"]
    assert [r.data for r in read_logs(log, tail=2, stderr=False)] == [b"6\n", b"8\n"]


def test_tail_spans_rotated_files(log, conmon):
    for i in range(3):
        conmon.write("stdout", b"old%d" % i)
    rotate(log, 3, conmon.reopen)
    conmon.write("stdout", b"new")
    assert [r.data for r in read_logs(log, tail=3)] == [b"old1\n", b"old2\n", b"new\n"]


def test_tail_joins_a_long_line_split_into_many_chunks(log, conmon):
    conmon.write("stdout", b"before")
    for i in range(50):
        conmon.write("stdout", b"%04d" % i + b"x" * 8000, partial=True)
    conmon.write("stdout", b"end")
    (rec,) = read_logs(log, tail=1)
    assert len(rec.data) == 50 * 8004 + 4 and rec.data.endswith(b"end\n")


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """A 200 MiB stdout log, one second of records per MiB, in time order."""
    path = tmp_path_factory.mktemp("big") / "ctr.log"
    lines = [b"YYYY-MM-DDTHH:MM:SS.%09d+00:00 stdout F %05d %s" % (i * 60_000, i, b"x" * 12) for i in range(16384)]
    template = b"\n".join(lines) + b"\n"
    assert len(template) == MiB
    with open(path, "wb") as f:
        for block in range(200):
            seconds = (BASE_NS // 10**9) + block
            f.write(template.replace(b"YYYY-MM-DDTHH:MM:SS", stamp(seconds * 10**9)[:19]))
    return path


def test_tail_reads_far_less_than_a_large_log(big_log, bytes_read):
    assert os.path.getsize(big_log) == 200 * MiB
    records = list(read_logs(big_log, tail=100))
    assert len(records) == 100
    assert records[-1].data == b"16383 " + b"x" * 12 + b"\n"
    assert records[-1].time_ns == BASE_NS + 199 * 10**9 + 16383 * 60_000
    assert bytes_read["bytes"] < MiB


def test_tail_of_a_stdout_only_log_does_not_read_line_by_line_for_stderr(big_log, monkeypatch):
    # Without a stderr line in the last 256 KiB, its ~4,000 stdout lines were each looked at in
    # Python for one: most of a `docker logs --tail 100`'s server time.
    looked_at = {"lines": 0}
    for name in ("_parse", "_stream_token"):
        real = getattr(logs, name)

        def counting(line, real=real):
            looked_at["lines"] += 1
            return real(line)

        monkeypatch.setattr(logs, name, counting)
    records = list(read_logs(big_log, tail=100))
    assert [r.data[:5] for r in records] == [b"%05d" % i for i in range(16284, 16384)]
    assert looked_at["lines"] < 300


def test_since_on_a_large_log_is_a_binary_search(big_log, bytes_read):
    since = BASE_NS + 123 * 10**9 + 500_000_030  # between records 8333 and 8334 of second 123
    started = time.perf_counter()
    records = read_logs(big_log, since_ns=since)
    first = next(records)
    records.close()
    assert first.time_ns == BASE_NS + 123 * 10**9 + 8334 * 60_000
    assert bytes_read["bytes"] < MiB
    assert time.perf_counter() - started < 0.5


def test_until_stops_reading_after_it(big_log, bytes_read):
    until = BASE_NS + 2 * 10**9
    records = list(read_logs(big_log, until_ns=until))
    assert len(records) == 2 * 16384 + 1 and records[-1].time_ns == until
    assert bytes_read["bytes"] < 4 * MiB


def test_tail_with_until_on_a_large_log_reads_little(big_log, bytes_read):
    until = BASE_NS + 100 * 10**9 + 20 * 60_000
    records = list(read_logs(big_log, tail=10, until_ns=until))
    assert [r.time_ns for r in records] == [until - i * 60_000 for i in range(9, 0, -1)] + [until]
    assert bytes_read["bytes"] < MiB


# --- since and until -------------------------------------------------------


def test_since_starts_at_the_first_record_at_or_after_it(log, conmon):
    times = [conmon.write("stdout", b"%d" % i) for i in range(100)]
    assert [r.data for r in read_logs(log, since_ns=times[40])][:2] == [b"40\n", b"41\n"]
    assert [r.data for r in read_logs(log, since_ns=times[40] - 1)][0] == b"40\n"
    assert [r.data for r in read_logs(log, since_ns=times[40] + 1)][0] == b"41\n"
    assert len(list(read_logs(log, since_ns=times[-1] + 1))) == 0
    assert len(list(read_logs(log, since_ns=0))) == 100


def test_since_leaves_out_a_record_whose_first_chunk_is_earlier(log, conmon):
    conmon.write("stdout", b"half ", partial=True)
    since = conmon.write("stderr", b"e1")
    conmon.write("stdout", b"line")
    conmon.write("stdout", b"after")
    assert data_of(read_logs(log, since_ns=since)) == [("stderr", b"e1\n"), ("stdout", b"after\n")]
    assert data_of(read_logs(log, since_ns=since, tail=5)) == [("stderr", b"e1\n"), ("stdout", b"after\n")]


def test_until_keeps_a_record_that_began_before_it(log, conmon):
    conmon.write("stdout", b"a")
    conmon.write("stdout", b"slow ", partial=True)
    until = conmon.write("stderr", b"e1")
    conmon.write("stderr", b"e2")
    conmon.write("stdout", b"line")
    conmon.write("stdout", b"late")
    expected = [("stdout", b"a\n"), ("stderr", b"e1\n"), ("stdout", b"slow line\n")]
    assert data_of(read_logs(log, until_ns=until)) == expected
    assert data_of(read_logs(log, until_ns=until, tail=2)) == expected[1:]


def test_tail_applies_within_since_and_until(log, conmon):
    times = [conmon.write("stdout", b"%d" % i) for i in range(100)]
    got = [r.data for r in read_logs(log, since_ns=times[10], until_ns=times[20], tail=3)]
    assert got == [b"18\n", b"19\n", b"20\n"]
    got = [r.data for r in read_logs(log, since_ns=times[10], until_ns=times[12], tail=30)]
    assert got == [b"10\n", b"11\n", b"12\n"]


def reference(files):
    """What a reader must give, the simple way: every line, in order, joined per stream.

    Returns (finished records, unfinished ones) as (time_ns, stream, data).
    """
    finished, pending = [], {}
    for path in files:
        with open(path, "rb") as f:
            for line in f.read().split(b"\n")[:-1]:
                try:
                    t, stream, partial, text = parse_line(line)
                except ValueError:
                    continue
                chain = pending.pop(stream, None) or [t, b""]
                chain[1] += text
                if partial:
                    pending[stream] = chain
                else:
                    finished.append((chain[0], stream, chain[1] + b"\n"))
    return finished, [(c[0], s, c[1]) for s, c in pending.items()]


def write_random_log(path, rng):
    """Interleaved streams, partial chains, garbage, equal times and rotations."""
    t, files, out = BASE_NS, [], []
    for _ in range(rng.randrange(1, 300)):
        t += rng.choice([0, 1, 1000, MS])
        roll = rng.random()
        if roll < 0.03:
            out.append(rng.choice([b"garbage", b"", b"2026-11-30 stdout F x", stamp(t) + b" stdio F x"]) + b"\n")
        elif roll < 0.06 and out:
            files.append(b"".join(out))
            out = []
        else:
            text = bytes(rng.choice(b"ab \xff") for _ in range(rng.randrange(0, 6)))
            out.append(record_line(t, rng.choice(["stdout", "stderr"]), text, rng.random() < 0.4))
    files.append(b"".join(out))
    paths = [path.with_name(f"{path.name}.{n}") for n in range(len(files) - 1, 0, -1)] + [path]
    for p, content in zip(paths, files):
        p.write_bytes(content)
    return paths


@pytest.mark.parametrize("seed", range(60))
def test_tail_since_and_until_agree_with_a_full_read(tmp_path, seed):
    rng = random.Random(seed)
    log = tmp_path / "ctr.log"
    finished, unfinished = reference(write_random_log(log, rng))
    everything = finished + unfinished
    times = sorted({t for t, _, _ in everything}) or [BASE_NS]
    for _ in range(8):
        since = rng.choice([None, rng.choice(times), rng.choice(times) + 1])
        until = rng.choice([None, rng.choice(times), rng.choice(times) - 1])
        streams = rng.choice([(True, True), (True, True), (True, False), (False, True)])
        want = {name for name, on in zip(("stdout", "stderr"), streams) if on}

        def keep(rec):
            t, stream, _ = rec
            return stream in want and (since is None or t >= since) and (until is None or t <= until)

        expected = [r for r in everything if keep(r)]
        args = dict(since_ns=since, until_ns=until, stdout=streams[0], stderr=streams[1])
        got = [(r.time_ns, r.stream, r.data) for r in read_logs(log, **args)]
        assert got == expected, args
        for n in (1, 2, 5, 40, 1000):
            got = [(r.time_ns, r.stream, r.data) for r in read_logs(log, tail=n, **args)]
            assert got == expected[-n:], (n, args)
        # following a log whose container is gone: the whole log, or the last
        # n finished records then the unfinished ones
        got = [(r.time_ns, r.stream, r.data) for r in follow_logs(log, is_alive=lambda: False, **args)]
        assert got == expected, args
        n = rng.choice([1, 3, 50])
        got = [(r.time_ns, r.stream, r.data) for r in follow_logs(log, tail=n, is_alive=lambda: False, **args)]
        assert got == [r for r in finished if keep(r)][-n:] + [r for r in unfinished if keep(r)], (n, args)


def test_it_reads_a_million_records_in_seconds(tmp_path):
    log = tmp_path / "ctr.log"
    lines = [b"YYYY-MM-DDTHH:MM:SS.%09d+00:00 %s F line %d of the log" % (i * MS, b"stderr" if i % 7 == 0 else b"stdout", i) for i in range(1000)]
    template = b"\n".join(lines) + b"\n"
    with open(log, "wb") as f:
        for second in range(1000):
            f.write(template.replace(b"YYYY-MM-DDTHH:MM:SS", stamp(BASE_NS + second * 10**9)[:19]))
    started = time.perf_counter()
    count = sum(1 for _ in read_logs(log))
    elapsed = time.perf_counter() - started
    print(f"read 1,000,000 records in {elapsed:.2f} s")
    assert count == 1_000_000
    assert elapsed < 8  # ~2 s on a quiet machine


# --- following -------------------------------------------------------------


class Follower:
    """Runs follow_logs in a thread and hands over what it yields."""

    def __init__(self, path, **kwargs):
        self.alive = True
        self.stop = threading.Event()
        self.records: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        self.error = None
        kwargs.setdefault("is_alive", lambda: self.alive)
        kwargs.setdefault("stop", self.stop)
        self.thread = threading.Thread(target=self._run, args=(path, kwargs), daemon=True)
        self.thread.start()

    def _run(self, path, kwargs):
        try:
            for rec in follow_logs(path, **kwargs):
                self.records.put((time.perf_counter(), rec))
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.ended.set()

    def take(self, n, timeout=5.0):
        return [self.records.get(timeout=timeout)[1] for _ in range(n)]

    def nothing_more(self, wait=0.15):
        time.sleep(wait)
        return self.records.empty()

    def finish(self, timeout=5.0):
        self.alive = False
        assert self.ended.wait(timeout), "follow_logs did not end"
        assert self.error is None
        rest = []
        while not self.records.empty():
            rest.append(self.records.get()[1])
        return rest

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def follower():
    made = []

    def make(path, **kwargs):
        f = Follower(path, **kwargs)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def test_follow_yields_existing_records_then_new_ones(log, conmon, follower):
    conmon.write("stdout", b"old")
    f = follower(log)
    assert data_of(f.take(1)) == [("stdout", b"old\n")]
    assert f.nothing_more()
    conmon.write("stderr", b"new")
    assert data_of(f.take(1)) == [("stderr", b"new\n")]
    conmon.write("stdout", b"last")
    assert data_of(f.finish()) == [("stdout", b"last\n")]


def test_follow_waits_for_the_newline_of_a_torn_line(log, conmon, follower):
    f = follower(log)
    line = record_line(conmon.tick(), "stdout", b"torn in three")
    conmon.raw(line[:20])
    assert f.nothing_more()
    conmon.raw(line[20:40])
    assert f.nothing_more()
    conmon.raw(line[40:])
    assert data_of(f.take(1)) == [("stdout", b"torn in three\n")]


def test_follow_joins_partials_written_live(log, conmon, follower):
    conmon.write("stdout", b"50%", partial=True)
    f = follower(log)
    assert f.nothing_more()
    conmon.write("stderr", b"err")
    assert data_of(f.take(1)) == [("stderr", b"err\n")]
    conmon.write("stdout", b" 100%")
    (rec,) = f.take(1)
    assert rec.data == b"50% 100%\n" and rec.time_ns == BASE_NS


def test_follow_yields_an_unfinished_line_once_the_container_is_gone(log, conmon, follower):
    f = follower(log)
    conmon.write("stdout", b"bye", partial=True)
    assert f.nothing_more()
    assert data_of(f.finish()) == [("stdout", b"bye")]


def test_follow_reads_through_a_rotation(log, conmon, follower):
    f = follower(log)
    expected = []
    for i in range(30):
        conmon.write("stdout", b"%d" % i, partial=(i == 14))
        if i != 14:
            expected.append(b"1415\n" if i == 15 else b"%d\n" % i)
        if i % 10 == 9:
            rotate(log, 5, lambda: None)
            conmon.write("stdout", b"late%d" % i)  # conmon writes to the renamed file until it reopens
            expected.append(b"late%d\n" % i)
            time.sleep(0.03)
            conmon.reopen()
        time.sleep(0.003)
    assert [r.data for r in f.take(len(expected))] == expected
    assert f.finish() == []


def test_follow_catches_up_across_several_rotations(log, conmon):
    conmon.write("stdout", b"first")
    records = follow_logs(log, is_alive=lambda: True)
    assert next(records).data == b"first\n"  # now reading ctr.log, then it falls behind
    for i in range(3):
        conmon.write("stdout", b"%d" % i)
        rotate(log, 3, conmon.reopen)
    conmon.write("stdout", b"last")
    assert [next(records).data for _ in range(4)] == [b"0\n", b"1\n", b"2\n", b"last\n"]
    records.close()


def test_follow_starts_over_when_the_log_is_truncated_in_place(log, conmon, follower):
    f = follower(log)
    conmon.write("stdout", b"a long first line")
    assert [r.data for r in f.take(1)] == [b"a long first line\n"]
    os.truncate(log, 0)
    conmon.write("stdout", b"b")  # O_APPEND: lands at offset 0
    assert [r.data for r in f.take(1)] == [b"b\n"]


def test_follow_ends_when_the_container_is_gone_and_everything_is_read(log, conmon):
    alive = [True]
    writes = 200

    def write():
        for i in range(writes):
            conmon.write("stdout", b"%d" % i)
        alive[0] = False  # the last lines were written just before it died

    writer = threading.Thread(target=write)
    writer.start()
    got = list(follow_logs(log, is_alive=lambda: alive[0], poll_interval=0.001))
    writer.join()
    assert [r.data for r in got] == [b"%d\n" % i for i in range(writes)]


def test_follow_ends_when_stop_is_set(log, conmon, follower):
    f = follower(log)
    conmon.write("stdout", b"x")
    f.take(1)
    f.stop.set()
    assert f.ended.wait(2)


def test_follow_ends_at_once_when_stop_is_already_set(log, conmon):
    conmon.write("stdout", b"x")
    stop = threading.Event()
    stop.set()
    assert list(follow_logs(log, is_alive=lambda: True, stop=stop)) == []


def test_follow_stops_after_until(log):
    conmon = Conmon(log, start_ns=time.time_ns() + 3600 * 10**9)  # until is still ahead
    conmon.write("stdout", b"before")
    until = conmon.now + 5 * MS
    records = follow_logs(log, until_ns=until, is_alive=lambda: True)
    assert next(records).data == b"before\n"
    conmon.write("stdout", b"in time")
    assert next(records).data == b"in time\n"
    conmon.now = until
    conmon.write("stdout", b"after")
    assert list(records) == []
    conmon.close()


def test_follow_with_until_in_the_past_ends_once_read(tmp_path):
    log = tmp_path / "ctr.log"
    c = Conmon(log, real=True)
    c.write("stdout", b"a")
    until = c.write("stdout", b"b")
    got = list(follow_logs(log, until_ns=until, is_alive=lambda: True))
    c.close()
    assert [r.data for r in got] == [b"a\n", b"b\n"]


def test_follow_respects_tail_and_since(log, conmon, follower):
    times = [conmon.write("stdout", b"%d" % i) for i in range(10)]
    f = follower(log, tail=2)
    assert [r.data for r in f.take(2)] == [b"8\n", b"9\n"]
    g = follower(log, since_ns=times[7])
    assert [r.data for r in g.take(3)] == [b"7\n", b"8\n", b"9\n"]
    h = follower(log, tail=0)
    assert h.nothing_more()  # all three are following now
    conmon.write("stdout", b"new")
    for each in (f, g, h):
        assert [r.data for r in each.take(1)] == [b"new\n"]
        assert each.finish() == []


def test_follow_waits_for_the_log_to_appear(log, follower):
    f = follower(log)
    assert f.nothing_more()
    c = Conmon(log)
    c.write("stdout", b"hello")
    assert data_of(f.take(1)) == [("stdout", b"hello\n")]
    c.close()


def test_follow_yields_new_records_within_milliseconds(log, conmon, follower):
    f = follower(log)
    delays = []
    for i in range(20):
        time.sleep(0.013)
        written = time.perf_counter()
        conmon.write("stdout", b"%d" % i)
        at, rec = f.records.get(timeout=2)
        assert rec.data == b"%d\n" % i
        delays.append(at - written)
    delays.sort()
    print(f"follow latency: median {delays[10] * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms")
    assert delays[10] < 0.03


# --- rotation --------------------------------------------------------------


def test_rotate_renames_the_chain_and_reopens(log, conmon):
    reopened = []

    def reopen():
        reopened.append(True)
        conmon.reopen()

    conmon.write("stdout", b"1")
    assert rotate(log, 3, reopen)
    conmon.write("stdout", b"2")
    assert rotate(log, 3, reopen)
    conmon.write("stdout", b"3")
    assert len(reopened) == 2
    assert [p.name for p in log_files(log)] == ["ctr.log.2", "ctr.log.1", "ctr.log"]
    assert [p.read_bytes()[-2:] for p in log_files(log)] == [b"1\n", b"2\n", b"3\n"]


def test_rotate_keeps_at_most_max_files(log, conmon):
    for i in range(6):
        conmon.write("stdout", b"%d" % i)
        rotate(log, 3, conmon.reopen)
    conmon.write("stdout", b"6")
    assert [p.name for p in log_files(log)] == ["ctr.log.2", "ctr.log.1", "ctr.log"]
    assert [r.data for r in read_logs(log)] == [b"4\n", b"5\n", b"6\n"]
    rotate(log, 2, conmon.reopen)  # a smaller max_files drops the extra files too
    assert [p.name for p in log_files(log)] == ["ctr.log.1", "ctr.log"]


def test_rotate_with_one_file_keeps_no_history(log, conmon):
    conmon.write("stdout", b"gone")
    assert rotate(log, 1, conmon.reopen)
    conmon.write("stdout", b"kept")
    assert [p.name for p in log_files(log)] == ["ctr.log"]
    assert [r.data for r in read_logs(log)] == [b"kept\n"]
    with pytest.raises(InvalidValue):
        rotate(log, 0, conmon.reopen)


def test_rotate_does_nothing_for_a_missing_or_empty_log(log):
    calls = []
    assert not rotate(log, 3, lambda: calls.append(1))
    log.write_bytes(b"")
    assert not rotate(log, 3, lambda: calls.append(1))
    assert calls == [] and log_files(log) == [log]


def test_needs_rotation_compares_the_size(log):
    assert not needs_rotation(log, 10)
    log.write_bytes(b"x" * 9)
    assert not needs_rotation(log, 10)
    log.write_bytes(b"x" * 10)
    assert needs_rotation(log, 10)
    assert not needs_rotation(log, 0) and not needs_rotation(log, -1)
