"""The `plainfile` storage backend (backends/plainfile.py).

What these prove: both line formats pass the storage conformance suite;
4 spawned processes x 8 threads racing through dozens of rotations store every
record exactly once, with every field intact, in whole lines, each file
rotated by exactly one process and only when full, and the sequence numbers a
reader shows do not change when old rotated files are deleted (by hand or by
`backups`); damaged lines in the middle are skipped, reported once each, and
cost no other record its number; a partial last line waits until it is
complete, and a writer opening a truncated file does not run into it; any
text, data and data class round-trip through both formats (hypothesis); a
missing directory is a clear error unless create_directory is set; a forked
child writes with its own pid.
"""
import os
import re
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import procs  # noqa: E402
import procs.plain as plainprocs  # noqa: E402

from logkit.backends.plainfile import (  # noqa: E402
    LATE_LINE_ROOM, PlainFileReader, PlainFileStorage, backups, parse_header, parse_line)
from logkit.errors import InvalidArgument, LogkitError, SegmentNotFound  # noqa: E402
from logkit.testing import StorageBackendTests  # noqa: E402

FORMATS = ("text", "json")


class TestPlainFileTextConformance(StorageBackendTests):
    numbers_on_write = False

    def make_storage(self, tmp_path, **o):
        return PlainFileStorage("test", path=str(tmp_path / "app.log"), format="text", **o)


class TestPlainFileJsonConformance(StorageBackendTests):
    numbers_on_write = False

    def make_storage(self, tmp_path, **o):
        return PlainFileStorage("test", path=str(tmp_path / "app.log"), format="json", **o)


@pytest.fixture
def group():
    with procs.Group() as g:
        yield g


def all_lines(path):
    """Every line of the live file and its rotated files, as (file, raw line)."""
    out = []
    for p in [q for _, q in backups(path)] + [path]:
        with open(p, "rb") as f:
            out.extend((p, line) for line in f)
    return out


# ====================================================================== racing writers

RECORD_RE = re.compile(r"p(\d+) t(\d+) i(\d+)")


@pytest.mark.parametrize("fmt", FORMATS)
def test_four_processes_of_eight_threads_racing_through_rotations_store_each_record_once(
        tmp_path, group, fmt):
    path = str(tmp_path / "race.log")
    nproc, threads, per_thread, max_size = 4, 8, 250, 8192
    go = procs.CTX.Event()
    opts = {"format": fmt, "max_size": max_size}
    kids = group.spawn_many(nproc, plainprocs.child_plain_write_threads,
                            lambda p: (path, p, threads, per_thread, go, opts))
    procs.recv_all(kids, "ready")
    go.set()
    done = procs.recv_all(kids, "done")
    for k in kids:
        assert k.join() == 0

    # Whole lines only: every line of every file is a header or a record.
    lines = all_lines(path)
    for p, raw in lines:
        assert raw.endswith(b"\n"), (p, raw)
        if parse_header(raw) is None:
            parse_line(raw)                 # raises on a torn or interleaved line

    r = PlainFileReader(path)
    msgs = list(r)
    assert r.problems == [] and r.damaged == 0
    seqs = [m.sequence for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len(msgs) == nproc * threads * per_thread

    # Every record exactly once, every field as written, each thread's in its order.
    seen = {}
    pids = {p: done[p][0] for p in range(nproc)}
    tids = {p: done[p][1] for p in range(nproc)}
    for m in msgs:
        p, t, i = map(int, RECORD_RE.match(m.text).groups())
        assert (p, t, i) not in seen
        seen[(p, t, i)] = m.sequence
        assert m.text == plainprocs.record_text(p, t, i)
        assert m.severity == plainprocs.record_severity(p, t, i)
        assert bytes(m.data) == plainprocs.record_data(p, t, i)
        assert m.data_class == plainprocs.record_class(p, t, i)
        assert (m.process_id, m.thread_id) == (pids[p], tids[p][t])
    assert len(seen) == nproc * threads * per_thread
    for p in range(nproc):
        for t in range(threads):
            mine = [seen[(p, t, i)] for i in range(per_thread)]
            assert mine == sorted(mine)

    # Exactly one process rotated each file, and only once it was full.
    old = backups(path)
    rotations = sum(d[2]["rotations"] for d in done)
    assert rotations == len(old) >= 20, (rotations, len(old))
    for base, p in old:
        assert os.path.getsize(p) >= max_size
        assert re.fullmatch(r"race\.log\.\d{12}", os.path.basename(p))
        with open(p, "rb") as f:
            assert parse_header(f.readline()) == base
    # Lines that reached a file after its rename (writers past their check)
    # are at most one per writing thread, inside the room left for them.
    for (b1, p1), (b2, _) in zip(old, old[1:]):
        with open(p1, "rb") as f:
            n = f.read().count(b"\n")
        late = (b1 + n - 1) - (b2 - LATE_LINE_ROOM)
        assert late <= nproc * threads, (p1, late)

    # Deleting the older half of the rotated files renumbers nothing.
    for _, p in old[: len(old) // 2]:
        os.unlink(p)
    before = {m.text + f"|{m.process_id}|{m.thread_id}": m.sequence for m in msgs}
    after = list(PlainFileReader(path))
    assert 0 < len(after) < len(msgs)
    assert all(before[m.text + f"|{m.process_id}|{m.thread_id}"] == m.sequence for m in after)

    # ... nor does retention by `backups`.
    s = PlainFileStorage("race", path=path, format=fmt, max_size=max_size, backups=2)
    while s.stats()["rotations"] < 2:
        s.write("x" * 500)
    s.close()
    assert len(backups(path)) == 2
    again = list(PlainFileReader(path))
    kept = [m for m in again if not m.text.startswith("x")]
    assert kept and all(before[m.text + f"|{m.process_id}|{m.thread_id}"] == m.sequence
                        for m in kept)


def test_rotation_names_each_file_after_its_first_sequence_number(tmp_path):
    path = str(tmp_path / "app.log")
    s = PlainFileStorage("t", path=path, max_size=1024)
    for i in range(200):
        s.write(f"record {i}")
    s.close()
    old = backups(path)
    assert len(old) >= 5
    by_file = {}
    for m in PlainFileReader(path):
        by_file.setdefault(m.path, []).append(m.sequence)
    for base, p in old:
        assert by_file[p][0] == base
        assert by_file[p] == list(range(base, base + len(by_file[p])))
    for (b1, p1), (b2, _) in zip(old, old[1:]):
        assert b2 == by_file[p1][-1] + 1 + LATE_LINE_ROOM


def test_seek_by_sequence_and_time_across_rotated_files_and_their_gaps(tmp_path):
    path = str(tmp_path / "app.log")
    s = PlainFileStorage("t", path=path, max_size=2048)
    t0 = 1_700_000_000_000_000_000
    for i in range(400):
        s.write(f"r{i}", 20, time=t0 + i * 1000)
    s.close()
    r = PlainFileReader(path)
    msgs = list(r)
    assert len(backups(path)) >= 10
    assert [m.text for m in r.reverse()] == [m.text for m in msgs][::-1]
    for k in (0, 1, 57, 199, 200, 398, 399):
        assert r.seek(sequence=msgs[k].sequence).text == f"r{k}"
        assert [m.text for m in r][:3] == [f"r{j}" for j in range(k, min(k + 3, 400))]
        assert r.seek(time=t0 + k * 1000 - 1).text == f"r{k}"
    # A number in the gap after a rotated file lands on the next file's first record.
    jumps = [(a, b) for a, b in zip(msgs, msgs[1:]) if b.sequence - a.sequence > 1]
    assert jumps
    a, b = jumps[len(jumps) // 2]
    assert r.seek(sequence=a.sequence + 1).text == b.text
    assert [m.text for m in r][0] == b.text
    r.rewind()
    assert r.count() == 400
    lim = r.limits()
    assert (lim.first_sequence, lim.first_time, lim.last_sequence, lim.last_time) == \
        (1, t0, msgs[-1].sequence, t0 + 399_000)


# ====================================================================== damage

@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_lines_in_the_middle_are_skipped_reported_and_cost_no_other_record(tmp_path, fmt):
    path = str(tmp_path / "app.log")
    s = PlainFileStorage("t", path=path, format=fmt)
    for i in range(40):
        s.write(f"record {i}", 20, b"payload %d" % i, "bin")
    s.close()
    good = {m.text: m.sequence for m in PlainFileReader(path)}
    with open(path, "rb") as f:
        lines = f.readlines()
    # lines[0] is the header; record i is lines[i + 1].
    lines[6] = b"\xff\xfe\x00 binary garbage \x07\n"                 # record 5
    lines[11] = lines[11][: len(lines[11]) // 2] + b"\n"           # record 10, torn
    lines[21] = lines[21].replace(b"record 20", b"record 99")      # record 20, edited
    lines[31] = lines[31][:-1] + b"\x01tail\n"                     # record 30, raw control char
    with open(path, "wb") as f:
        f.writelines(lines)

    r = PlainFileReader(path)
    msgs = list(r)
    lost = {"record 5", "record 10", "record 20", "record 30"}
    assert [m.text for m in msgs] == [f"record {i}" for i in range(40) if f"record {i}" not in lost]
    assert all(good[m.text] == m.sequence for m in msgs)
    assert all(bytes(m.data) == b"payload " + m.text.split()[1].encode() for m in msgs)
    assert r.damaged == 4 and len(r.problems) == 4
    for i, line in zip((5, 10, 20, 30), (6, 11, 21, 31)):
        assert any(f"line {line} (sequence {good[f'record {i}']})" in p for p in r.problems), r.problems
    assert [m.text for m in r.reverse()] == [m.text for m in msgs][::-1]
    assert r.count() == 36 and r.damaged == 4          # each damaged line is reported once
    lim = r.limits()
    assert (lim.first_sequence, lim.last_sequence) == (msgs[0].sequence, msgs[-1].sequence)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_partial_last_line_is_ignored_until_it_is_complete(tmp_path, fmt):
    path = str(tmp_path / "app.log")
    s = PlainFileStorage("t", path=path, format=fmt)
    for i in range(5):
        s.write(f"record {i}")
    with open(path, "rb") as f:
        last = f.readlines()[-1]
    s.close()
    with open(path, "ab") as f:             # a copy of the last record, cut in two
        f.write(last[:10])
    r = PlainFileReader(path)
    assert [m.text for m in r] == [f"record {i}" for i in range(5)] and r.problems == []
    with open(path, "ab") as f:
        f.write(last[10:])
    assert [m.text for m in PlainFileReader(path)] == [f"record {i}" for i in range(5)] + ["record 4"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_writer_opening_a_truncated_file_does_not_run_into_its_partial_line(tmp_path, fmt):
    path = str(tmp_path / "app.log")
    s = PlainFileStorage("t", path=path, format=fmt)
    for i in range(5):
        s.write(f"record {i}")
    s.close()
    os.truncate(path, os.path.getsize(path) - 7)       # record 4 loses its end
    t = PlainFileStorage("t", path=path, format=fmt)
    t.write("after")
    t.close()
    r = PlainFileReader(path)
    assert [m.text for m in r] == ["record 0", "record 1", "record 2", "record 3", "after"]
    assert r.damaged == 1 and "line 5" in r.problems[0]


# ====================================================================== round trips

_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
_records = st.tuples(
    _texts,
    st.binary(max_size=64),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24),
    st.integers(-250, 250),
    st.integers(0, (1 << 64) - 1),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rec=_records, fmt=st.sampled_from(FORMATS))
def test_any_text_data_and_class_round_trip_through_both_formats(tmp_path, rec, fmt):
    text, data, data_class, severity, t = rec
    path = str(tmp_path / f"rt-{time.monotonic_ns()}.log")
    s = PlainFileStorage("t", path=path, format=fmt)
    s.write(text, severity, data, data_class, t)
    s.write("\\n after \\")
    s.close()
    r = PlainFileReader(path)
    a, b = list(r)
    assert (a.text, bytes(a.data), a.data_class, a.severity, a.time) == \
        (text, data, data_class, severity, t)
    assert (a.process_id, b.text) == (os.getpid(), "\\n after \\")
    assert r.problems == []
    with open(path, "rb") as f:
        assert f.read().count(b"\n") == 3        # header and two records: one line each
    os.unlink(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_that_is_not_unicode_and_bad_times_are_refused(tmp_path, fmt):
    s = PlainFileStorage("t", path=str(tmp_path / "a.log"), format=fmt)
    with pytest.raises(InvalidArgument, match="Unicode"):
        s.write("lone \udc80 surrogate")
    with pytest.raises(InvalidArgument, match="time"):
        s.write("x", time=-1)
    with pytest.raises(InvalidArgument, match="time"):
        s.write("x", time=1 << 64)
    s.write("ok")
    assert [m.text for m in s.reader()] == ["ok"]
    s.close()


# ====================================================================== opening

def test_a_missing_directory_is_an_error_naming_it_unless_create_directory(tmp_path):
    missing = tmp_path / "not" / "here"
    with pytest.raises(SegmentNotFound) as e:
        PlainFileStorage("t", path=str(missing / "app.log"))
    assert str(missing) in str(e.value) and "create_directory" in str(e.value)
    assert isinstance(e.value, LogkitError) and not missing.exists()
    s = PlainFileStorage("t", path=str(missing / "app.log"), create_directory=True, mode=0o600)
    s.write("made it")
    s.close()
    assert missing.is_dir()
    assert (os.stat(missing / "app.log").st_mode & 0o777) == 0o600
    assert [m.text for m in PlainFileReader(str(missing / "app.log"))] == ["made it"]


def test_an_empty_file_made_beforehand_gets_a_header_and_is_used(tmp_path):
    path = tmp_path / "app.log"
    path.touch()
    s = PlainFileStorage("t", path=str(path))
    s.write("first")
    s.close()
    with open(path, "rb") as f:
        assert parse_header(f.readline()) == 1
    assert [(m.sequence, m.text) for m in PlainFileReader(str(path))] == [(1, "first")]


def test_a_forked_child_writes_with_its_own_pid(tmp_path):
    path = str(tmp_path / "app.log")
    s = PlainFileStorage("t", path=path, max_size=2048)
    s.write("parent before")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the child: write, report, leave at once
        code = 1
        try:
            for i in range(50):
                s.write(f"child {i}")
            os.write(w, b"ok")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 2) == b"ok" and os.waitstatus_to_exitcode(status) == 0
    os.close(r)
    s.write("parent after")
    s.close()
    msgs = list(PlainFileReader(path))
    assert [m.text for m in msgs] == ["parent before"] + [f"child {i}" for i in range(50)] + ["parent after"]
    assert {m.process_id for m in msgs if m.text.startswith("child")} == {pid}
    assert {m.process_id for m in msgs if m.text.startswith("parent")} == {os.getpid()}


def test_options_are_declared_with_their_kinds_and_defaults():
    got = {o.name: (o.kind, o.default, o.required) for o in PlainFileStorage.options}
    assert got == {
        "path": ("path", None, True),
        "format": ("choice", "text", False),
        "max_size": ("size", "64MiB", False),
        "backups": ("int", None, False),
        "mode": ("mode", 0o640, False),
        "create_directory": ("bool", False, False),
        "sync": ("choice", "close", False),
    }
