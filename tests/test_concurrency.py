"""Many processes writing into one segment at once (spawned children: procs/common.py).

What these prove: the lock-free reservation gives every message its own
bytes and its own sequence number, in offset order, with nothing lost or
duplicated, whether the segment has room for everything or writers race for
its last bytes; and a message is in the shared mapping, readable by another
process, as soon as write() returns, with no close or sync.
"""
import os
import sys

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import procs  # noqa: E402

from logkit import HEADER_SIZE, Segment  # noqa: E402

PROCS_FILE = os.path.abspath(procs.common.__file__)
SMALLEST_MESSAGE = 64


@pytest.fixture
def group():
    with procs.Group() as g:
        yield g


def _assert_children_imported_procs(children):
    for c in children:
        assert c.module_file == PROCS_FILE, f"{c.name} imported procs from {c.module_file}"


@pytest.mark.parametrize("nproc", [2, 4, 8])
def test_concurrent_writers_lose_nothing_duplicate_nothing_and_number_in_offset_order(tmp_path, group, nproc):
    count = 50_000
    path = str(tmp_path / "many.seg")
    Segment.create(path, size=64 << 20, family="app").close()
    go = procs.CTX.Event()
    kids = group.spawn_many(nproc, procs.child_write_many, lambda w: (path, w, count, go))
    procs.recv_all(kids, "ready")           # every writer has the segment open ...
    _assert_children_imported_procs(kids)
    go.set()                                # ... and all start at once
    assert procs.recv_all(kids, "done") == [(count,)] * nproc
    assert [k.join() for k in kids] == [0] * nproc
    pid_of = {w: k.pid for w, k in enumerate(kids)}
    total = nproc * count

    seg = Segment.open(path, readonly=True)
    base = seg.sequence_base
    it = seg.messages()
    next_counter = [0] * nproc              # per writer: counters must come 0, 1, 2, ... in offset order
    expected_seq = base                     # sequences: base, base+1, ... in offset order, no hole
    end = HEADER_SIZE                       # messages are packed back to back
    problems = []
    n = 0
    switches, prev_w = 0, None              # how often consecutive messages come from different writers
    for m in it:
        n += 1
        seq, off, size = m.sequence, m.offset, m.size
        if seq != expected_seq:
            problems.append(f"sequence {seq} at offset {off}, expected {expected_seq}")
        expected_seq = seq + 1
        if off != end:
            problems.append(f"message at {off}, previous one ended at {end}")
        end = off + size
        wi = procs.parse_text(m.text)
        if wi is None:
            problems.append(f"unparseable text {m.text!r} at {off}")
            continue
        w, i = wi
        switches += w != prev_w
        prev_w = w
        if i != next_counter[w]:
            problems.append(f"writer {w}: counter {i} where {next_counter[w]} was due (offset {off})")
        next_counter[w] = i + 1
        if m.process_id != pid_of[w]:
            problems.append(f"writer {w} message {i}: process_id {m.process_id}, writer pid {pid_of[w]}")
        if not m.checksum_ok():
            problems.append(f"writer {w} message {i}: bad checksum")
        if m.severity != procs.message_severity(w, i):
            problems.append(f"writer {w} message {i}: severity {m.severity}")
        if procs.message_has_data(w, i) and (bytes(m.data) != procs.message_data(w, i)
                                             or m.data_class != "pair"):
            problems.append(f"writer {w} message {i}: data or data class wrong")
        if len(problems) > 20:
            break
    assert problems == []
    assert n == total
    assert next_counter == [count] * nproc          # with the in-order check: each exactly once
    assert expected_seq == base + total
    assert (it.open_reservations, it.gaps, it.damaged) == ([], [], [])
    assert switches > 10 * nproc, "the writers did not run at the same time: the test proved nothing"

    st = seg.stats()
    assert st["written"] == st["reserved"] == total
    assert (st["refused_full"], st["refused_too_big"], st["refused_out_of_service"], st["abandoned"]) == (0, 0, 0, 0)
    assert st["bytes_used"] == end
    assert seg.limits()[::2] == (base, base + total - 1)
    seg.close()


def test_writers_racing_for_the_end_of_a_small_segment_never_overlap_and_are_refused_only_as_full(tmp_path, group):
    nproc, threads, rounds = 8, 2, 6
    size = 64 << 10
    paths = []
    for k in range(rounds):
        p = str(tmp_path / f"small{k}.seg")
        Segment.create(p, size=size, family="app").close()
        paths.append(p)
    barrier = procs.CTX.Barrier(nproc)      # each round starts with all writers at the line
    kids = group.spawn_many(nproc, procs.child_fill_to_the_end,
                            lambda w: (paths, w, threads, barrier, 7919 + w))
    for k, path in enumerate(paths):
        results = []                                    # (writer index, per-thread results)
        for w, kid in enumerate(kids):
            kk, out = kid.expect("round")
            assert kk == k
            results.append((w, out))
        _assert_children_imported_procs(kids)

        errors = [(w, t, e) for w, out in results for t, r in enumerate(out) for e in r["errors"]]
        assert errors == [], "writers got refusals other than SegmentFull"
        reported = {}                                   # sequence -> (text, severity, pid, tid)
        for w, out in results:
            for r in out:
                for seq, text, sev in r["written"]:
                    assert seq not in reported, f"sequence {seq} returned to two writers"
                    reported[seq] = (text, sev, kids[w].pid, r["tid"])
        refusals = sum(r["refusals"] for _, out in results for r in out)
        assert refusals >= nproc * threads              # every thread ended on a refusal

        seg = Segment.open(path, readonly=True)
        it = seg.messages()
        msgs = [(m.offset, m.size, m.sequence, m.text, m.severity, m.process_id, m.thread_id, m.checksum_ok())
                for m in it]
        assert (it.open_reservations, it.gaps, it.damaged) == ([], [], [])
        assert [r.kind for r in seg.records()] == ["committed"] * len(msgs)
        st = seg.stats()
        assert len(msgs) == len(reported) == st["written"] == st["reserved"]
        assert st["refused_full"] == refusals
        assert (st["refused_too_big"], st["refused_out_of_service"]) == (0, 0)

        end = HEADER_SIZE
        for off, sz, seq, text, sev, pid, tid, ok in msgs:       # offset order
            assert off == end, f"message at {off} overlaps or leaves a hole after {end}"
            assert off + sz <= size, f"message at {off} of {sz} bytes runs past the {size}-byte segment"
            end = off + sz
            assert ok
            assert reported[seq] == (text, sev, pid, tid), f"sequence {seq} is not what its writer wrote"
        assert [m[2] for m in msgs] == sorted(reported)          # sequences increase with offset
        assert end == st["bytes_used"] <= size
        assert size - end < SMALLEST_MESSAGE, "writers stopped although a 64-byte message still fit"
        seg.close()
    assert [k.join() for k in kids] == [0] * nproc


def test_messages_of_a_writer_that_exits_without_close_or_sync_are_readable_by_a_fresh_process(tmp_path, group):
    path = str(tmp_path / "vanish.seg")
    Segment.create(path, size=1 << 20, family="app").close()
    count, writer = 2000, 3
    w = group.spawn(procs.child_write_and_vanish, path, writer, count)
    (seqs,) = w.expect("written")
    assert w.join() == 0                    # os._exit(0): no close, no msync, no finalisers
    r = group.spawn(procs.child_read_all, path)
    msgs, open_res, gaps, damaged, stats = r.expect("read")
    assert r.join() == 0
    _assert_children_imported_procs([w, r])

    assert len(seqs) == count
    assert [m[0] for m in msgs] == seqs
    for i, (seq, off, text, sev, pid, cls, data, ok) in enumerate(msgs):
        assert text == procs.message_text(writer, i)
        assert sev == procs.message_severity(writer, i)
        assert (cls, data) == (procs.message_class(writer, i), procs.message_data(writer, i))
        assert pid == w.pid
        assert ok
    assert (open_res, gaps, damaged) == ([], [], [])
    assert stats["written"] == stats["reserved"] == count
