"""The partition storage backend (backends/partition.py): conformance,
overflow accounting, drain resumption after SIGKILL, many writer processes
with a concurrent drainer, damage, and crash of a swapper."""
from __future__ import annotations

import json
import os

import pytest

import procs
import procs.part as partprocs
from logkit.backends import partition as part
from logkit.backends.family import FamilyStorage
from logkit.backends.partition import PartitionStorage
from logkit.errors import SegmentDamaged
from logkit.testing import StorageBackendTests

TIMEOUT = procs.TIMEOUT


class TestPartitionConformance(StorageBackendTests):
    too_big = (1 << 20) + 1                      # above the default half size: can never fit

    def make_storage(self, tmp_path, **o):
        return PartitionStorage("test", path=str(tmp_path / "test.part"), **o)


class TestPartitionConformanceSwapping(StorageBackendTests):
    """Halves small enough that the many-threads test swaps while eight
    threads write (and large enough that nothing overflows)."""
    too_big = (128 << 10) + 1

    def make_storage(self, tmp_path, **o):
        return PartitionStorage("test", path=str(tmp_path / "test.part"), size="128KiB", **o)

    def test_the_many_threads_test_really_swaps(self, tmp_path):
        self.test_many_threads_each_message_once(tmp_path)
        s = self._opened[-1]
        assert s.stats()["swaps"] >= 1 and s.stats()["lost"] == 0


def _family(tmp_path, name="dest"):
    return FamilyStorage("test", directory=str(tmp_path / "family"), family=name,
                         create_directory=True, segment_size="64KiB")


def _loss_reports(msgs):
    return [m for m in msgs if m.data_class == "json" and m.severity == part.LOSS_SEVERITY
            and "lost" in m.text]


def _parsed(msgs):
    """(writer, counter) of every test message, loss reports left out."""
    out = []
    for m in msgs:
        wi = procs.parse_text(m.text)
        if wi is not None:
            out.append(wi)
    return out


# ---------------------------------------------------------------- issue test 4

def test_overflow_counts_every_lost_message_and_writes_the_exact_loss_report(tmp_path):
    s = PartitionStorage("test", path=str(tmp_path / "p.part"), size="16KiB")
    written = {}                                 # sequence -> counter
    deltas = []                                  # messages lost by each reuse
    i = 0
    while len(deltas) < 3:                       # both halves filled, three times over
        before = s.stats()["lost"]
        written[s.write(procs.message_text(0, i), 20)] = i
        i += 1
        after = s.stats()
        if after["lost"] != before:
            deltas.append(after["lost"] - before)
            assert after["loss_events"] == len(deltas)
            # Every sequence number so far belongs to a finished message (a test
            # message or a loss report, which can itself be lost later): the
            # lost count is exactly the sequences the partition no longer holds.
            seqs = [m.sequence for m in s.reader()]
            assert after["lost"] == seqs[-1] - len(seqs), "the lost count is exact"
    st = s.stats()
    msgs = list(s.reader())
    reports = _loss_reports(msgs)
    # The two undrained halves each start with the report of the reuse that emptied them.
    assert [json.loads(bytes(r.data))["lost"] for r in reports] == deltas[-2:]
    for r in reports:
        assert f"{json.loads(bytes(r.data))['lost']} messages lost" in r.text
        half = next(h for h in s.partition.halves if h.sequence_base == r.sequence)
        assert next(iter(half)).sequence == r.sequence, "the loss report is its half's first message"
    survivors = {c for _, c in _parsed(msgs)}
    lost = set(written.values()) - survivors
    lost_reports = len(deltas) - len(reports)
    assert st["lost"] == len(lost) + lost_reports == sum(deltas)
    assert max(lost) < min(survivors), "what was lost is the oldest messages"
    fam = _family(tmp_path)
    copied = s.drain(fam, everything=True)
    assert copied == len(msgs)
    got = list(fam.reader())
    assert [(m.text, m.severity, m.time) for m in got] == [(m.text, m.severity, m.time) for m in msgs]
    assert [c for _, c in _parsed(got)] == sorted(survivors)
    assert list(s.reader()) == []
    assert s.stats()["drained"] == copied
    s.close()
    fam.close()


def test_every_loss_report_together_accounts_for_every_lost_message(tmp_path):
    s = PartitionStorage("test", path=str(tmp_path / "p.part"), size="16KiB")
    fam = _family(tmp_path)
    written = 0
    reports = []
    for round_ in range(6):
        while s.stats()["loss_events"] < round_ + 1:
            s.write(procs.message_text(1, written), 20)
            written += 1
        # drain after each overflow: the reports reach the family
        s.drain(fam, everything=True)
    got = list(fam.reader())
    reports = _loss_reports(got)
    assert len(reports) == 6
    total = sum(json.loads(bytes(r.data))["lost"] for r in reports)
    survivors = [c for _, c in _parsed(got)]
    assert len(survivors) == len(set(survivors)), "a message was copied twice"
    assert survivors == sorted(survivors)
    assert total == s.stats()["lost"] == written - len(survivors)
    s.close()
    fam.close()


def test_periodic_open_and_close_swaps_never_lose_a_message(tmp_path):
    path = str(tmp_path / "p.part")
    s = PartitionStorage("test", path=path, size="16KiB", swap_interval=0.001)
    seqs = [s.write(f"m{i}") for i in range(5)]
    assert s.stats()["swaps"] == 0 or s.stats()["lost"] == 0
    s.close()                                    # swap on close: the other half was empty
    t = PartitionStorage("test", path=path, size="16KiB", swap_interval=0.001)
    st = t.stats()
    assert st["swaps"] >= 1 and st["lost"] == 0
    # the other half is full now: no periodic swap may reuse it, however long we write
    for i in range(5, 60):
        seqs.append(t.write(f"m{i}"))
    assert t.stats()["lost"] == 0
    assert [m.sequence for m in t.reader()] == seqs
    fam = _family(tmp_path)
    assert t.drain(fam, everything=True) == 60
    assert [m.text for m in fam.reader()] == [f"m{i}" for i in range(60)]
    t.close()
    fam.close()


def test_sequence_numbers_keep_increasing_across_halves(tmp_path):
    s = PartitionStorage("test", path=str(tmp_path / "p.part"), size="16KiB")
    fam = _family(tmp_path)
    seqs = []
    for i in range(1000):
        seqs.append(s.write(f"message {i}"))
        if i % 150 == 149:
            s.drain(fam)
    s.drain(fam, everything=True)
    assert seqs == list(range(1, 1001))
    assert s.stats()["lost"] == 0 and s.stats()["swaps"] >= 5
    assert [m.text for m in fam.reader()] == [f"message {i}" for i in range(1000)]
    s.close()
    fam.close()


# ---------------------------------------------------------------- drain resumption

def _fill_for_drain(path, n):
    """A partition with one full half and some messages in the current one."""
    s = PartitionStorage("test", path=path, size="64KiB")
    i = 0
    while s.stats()["swaps"] == 0 or i < n:
        partprocs.write_record(s, 3, i)
        i += 1
    assert s.stats()["lost"] == 0
    expected = [(m.text, m.time) for m in s.reader()]
    s.partition.close()                          # no swap on close: leave it as a crash would
    return expected


@pytest.mark.parametrize("where", ["before", "after"])
def test_drainer_killed_mid_copy_resumes_with_every_message_once(tmp_path, where):
    path = str(tmp_path / "p.part")
    expected = _fill_for_drain(path, 700)
    with procs.Group() as g:
        c = g.spawn(partprocs.child_partition_drain_stalling, path, str(tmp_path / "family"), "dest",
                    250, where)
        (n,) = c.expect("stalled")
        c.kill()
    s = PartitionStorage("test", path=path)
    fam = _family(tmp_path)
    assert len(list(fam.reader())) == (250 if where == "after" else 249)
    copied = s.drain(fam, everything=True)
    got = [(m.text, m.time) for m in fam.reader()]
    assert got == expected, "every message exactly once, in order"
    assert copied == len(expected) - len(got[:250 if where == "after" else 249])
    assert s.stats()["drained"] == len(expected)
    s.close()
    fam.close()


# ---------------------------------------------------------------- many processes

def test_four_writer_processes_and_a_concurrent_drainer_lose_only_what_is_counted(tmp_path):
    path = str(tmp_path / "p.part")
    size = "64KiB"
    count = 1500
    PartitionStorage("test", path=path, size=size).close()
    fam = _family(tmp_path)
    with procs.Group() as g:
        go = procs.CTX.Event()
        kids = g.spawn_many(4, partprocs.child_partition_write, lambda w: (path, size, w, count, go, 0.002))
        procs.recv_all(kids, "ready")
        s = PartitionStorage("test", path=path)
        go.set()
        done = set()
        drained = 0
        while len(done) < len(kids):
            drained += s.drain(fam)
            # a drainer's pace: drain again as soon as a writer reports, or every 10 ms
            for k in [k for k in kids if k not in done]:
                if k.conn.poll(0.01 / len(kids)):
                    k.expect("done")
                    done.add(k)
        for k in kids:
            assert k.join() == 0
    s.drain(fam, everything=True)
    st = s.stats()
    got = list(fam.reader())
    pairs = _parsed(got)
    assert len(pairs) == len(set(pairs)), "a message was copied twice"
    for w in range(4):
        for parity in (0, 1):                   # each writer thread's own messages stay in order
            mine = [c for ww, c in pairs if ww == w and c % 2 == parity]
            assert mine == sorted(mine), f"writer {w} thread {parity}: messages out of order"
    for m in got:
        wi = procs.parse_text(m.text)
        if wi is not None:
            assert m.severity == procs.message_severity(*wi)
            assert bytes(m.data) == procs.message_data(*wi)
    reports = _loss_reports(got)
    assert len(pairs) + len(reports) == len(got)
    # Every message finished (the writers' and one report per reuse) was
    # either copied or counted lost, exactly; a report can itself be lost.
    assert st["lost"] == 4 * count + st["loss_events"] - len(got)
    assert st["lost"] >= sum(json.loads(bytes(r.data))["lost"] for r in reports)
    assert drained > 0, "the drainer copied nothing while the writers ran"
    assert list(s.reader()) == []
    s.close()
    fam.close()


# ---------------------------------------------------------------- crashes and damage

@pytest.mark.parametrize("stage", ["reuse", "publish"])
def test_swapper_killed_mid_swap_is_taken_over_and_nothing_is_lost(tmp_path, stage):
    path = str(tmp_path / "p.part")
    with procs.Group() as g:
        c = g.spawn(partprocs.child_partition_swap_stalling, path, "16KiB", 40, stage)
        (seqs,) = c.expect("stalled")
        c.kill()
    s = PartitionStorage("test", path=path)
    more = [partprocs.write_record(s, 0, i) for i in range(40, 80)]
    st = s.stats()
    assert st["lost"] == 0 and st["current"] in (0, 1)
    msgs = list(s.reader())
    assert [m.sequence for m in msgs] == seqs + more
    assert [procs.parse_text(m.text) for m in msgs] == [(0, i) for i in range(80)]
    fam = _family(tmp_path)
    assert s.drain(fam, everything=True) == 80
    s.close()
    fam.close()


def test_damaged_partition_header_is_refused_naming_file_and_offset(tmp_path):
    path = str(tmp_path / "p.part")
    s = PartitionStorage("test", path=path, size="16KiB")
    s.write("hello")
    r = s.reader()
    with open(path, "r+b") as f:
        f.seek(20)                                 # inside the half size field
        f.write(b"\xff")
    with pytest.raises(SegmentDamaged, match=r"p\.part.*offset 112"):
        list(r)
    s.partition.close()
    with pytest.raises(SegmentDamaged, match=r"p\.part.*offset"):
        PartitionStorage("test", path=path)
    with open(path, "r+b") as f:
        f.write(b"garbage!")
    with pytest.raises(SegmentDamaged, match=r"p\.part.*magic.*offset 0"):
        part.open_reader(path)
    os.truncate(path, 100)
    with pytest.raises(SegmentDamaged, match=r"p\.part.*shorter"):
        part.open_reader(path)


def test_damaged_half_is_reported_naming_its_offset(tmp_path):
    path = str(tmp_path / "p.part")
    s = PartitionStorage("test", path=path, size="16KiB")
    s.write("hello")
    with open(path, "r+b") as f:
        f.seek(part.HEADER_SIZE + 64)               # half 0's segment header: its family name
        f.write(b"X")
    with pytest.raises(SegmentDamaged, match=rf"p\.part: half 0 at offset {part.HEADER_SIZE}"):
        list(s.reader())
    s.partition.close()


def test_readers_see_a_half_being_reformatted_as_empty(tmp_path):
    path = str(tmp_path / "p.part")
    s = PartitionStorage("test", path=path, size="16KiB")
    s.write("kept")
    s.swap()
    s.write("also kept")
    p = s.partition
    # as a swapper killed while formatting half 0 for reuse would leave it
    p.set_header_word(part.H_INTENT, 1)
    p.mm[part.HEADER_SIZE + 64:part.HEADER_SIZE + 72] = b"\xee" * 8
    r = part.open_reader(path)
    assert [m.text for m in r] == ["also kept"]
    assert r.problems and "being formatted" in r.problems[0]
    s.partition.close()


def test_open_drain_target_builds_the_family_from_the_options(tmp_path):
    s = PartitionStorage("app", path=str(tmp_path / "p.part"), size="16KiB",
                         directory=str(tmp_path / "fam"), segment_size="64KiB")
    for i in range(10):
        s.write(f"m{i}")
    assert s.drain(everything=True) == 10
    t = s.open_drain_target()
    assert isinstance(t, FamilyStorage) and t.family == "app"
    assert [m.text for m in t.reader()] == [f"m{i}" for i in range(10)]
    assert "p.part" in s.describe()
    t.close()
    s.close()
    with pytest.raises(Exception, match="directory"):
        PartitionStorage("x", path=str(tmp_path / "q.part")).open_drain_target()


def test_a_drain_into_a_storage_without_sequence_numbers_resumes_exactly_once(tmp_path):
    """A plain file's append returns no sequence: the mark taken from its
    reader before the copy bounds the resume check.  (The 'kill' is an
    exception just after a message is stored, before its progress is
    recorded: the header is left as a SIGKILL there leaves it.)"""
    from logkit.backends.plainfile import PlainFileStorage
    s = PartitionStorage("app", path=str(tmp_path / "buf.part"), size="64KiB")
    texts = [f"message {i:03d}" for i in range(30)]
    for t in texts:
        s.write(t)
    out = PlainFileStorage("app", path=str(tmp_path / "out.log"))
    procs.stop_after_appends(out, 12)
    with pytest.raises(KeyboardInterrupt):
        s.drain(out, everything=True)
    del out.append
    s.drain(out, everything=True)
    try:
        assert [m.text for m in out.reader()] == texts
    finally:
        out.close()
        s.close()
