"""Hostile cases for the partition backend (issue 13): stalled and killed
swappers and drainers at named injection points, damaged counters, planted
links.  Each test names the defect it pins down."""
from __future__ import annotations

import os
import time

import pytest

from procs import process_state
from procs.hostile_part import Child
from waiting import wait_until
from logkit.backends import partition as part
from logkit.backends.partition import PartitionStorage
from logkit.errors import UnsafePath


# ------------------------------------------------------------ #17 planted links

def test_dangling_symlink_as_partition_path_is_refused_at_once_naming_it(tmp_path):
    path = tmp_path / "app.part"
    os.symlink(tmp_path / "nowhere" / "target", path)
    t0 = time.monotonic()
    with pytest.raises(UnsafePath, match="app.part"):
        PartitionStorage("t", path=str(path), size="8KiB")
    assert time.monotonic() - t0 < 5
    assert sorted(os.listdir(tmp_path)) == ["app.part"]      # no temporary left behind


def test_symlink_to_a_real_partition_is_not_followed(tmp_path):
    real = tmp_path / "real.part"
    PartitionStorage("t", path=str(real), size="8KiB").close()
    link = tmp_path / "link.part"
    os.symlink(real, link)
    with pytest.raises(UnsafePath, match="link.part"):
        PartitionStorage("t", path=str(link), size="8KiB")


# ------------------------------------------------------------ #9, #16 settling by walking

def _family_into(tmp_path):
    from logkit.backends.family import FamilyStorage
    return FamilyStorage("t", directory=str(tmp_path / "fam"), family="t", create_directory=True,
                         segment_size="64KiB")


def _family_texts(tmp_path):
    from logkit.family import open_reader
    return [m.text for m in open_reader(str(tmp_path / "fam"), "t")]


def test_writer_killed_between_commit_and_written_counter_does_not_stall_the_drain(tmp_path):
    """#9: the commit CAS done, the written counter not yet: reserved stays
    above written + abandoned for ever; the drain must not wait it out."""
    path = str(tmp_path / "p.part")
    PartitionStorage("t", path=path, size="64KiB").close()
    c = Child(tmp_path, f"""
        from logkit import inject
        from logkit.backends.partition import PartitionStorage
        s = PartitionStorage("t", path={path!r})
        for i in range(3):
            s.write(f"m{{i}}")
        p = s.partition
        inject.write_stepwise(p.halves[p.current_index()], "m3", stop_at="committed", action="kill")
    """)
    c.proc.wait(60)
    c.kill()
    s = PartitionStorage("t", path=path)
    try:
        st = s.stats()       # (opening swapped: the half written is now the full one)
        assert any(st[f"half{i}_reserved"] == 4 and st[f"half{i}_written"] == 3 for i in (0, 1)), st
        into = _family_into(tmp_path)
        t0 = time.monotonic()
        n = s.drain(into=into, everything=True)
        took = time.monotonic() - t0
        into.close()
        assert n == 4 and took < 3.0, (n, took)
        assert _family_texts(tmp_path) == ["m0", "m1", "m2", "m3"]
        assert s.stats()["settle_timeouts"] == 0
    finally:
        s.close()


def test_damaged_count_in_a_full_half_is_reported_not_waited_out(tmp_path):
    """#16: salvage never lowers COUNT; a half whose COUNT was scribbled
    upwards used to cost every drain SETTLE_TIMEOUT (30 s) of silence."""
    from logkit._segment import load_word, store_word
    path = str(tmp_path / "p.part")
    s = PartitionStorage("t", path=path, size="64KiB")
    try:
        for i in range(5):
            s.write(f"m{i}")
        full = s.partition.current_index()
        assert s.swap()
        p = s.partition
        w = load_word(p.mm, p.offsets[full] + 512)
        store_word(p.mm, p.offsets[full] + 512, w + (1000 << 32))     # COUNT += 1000
        into = _family_into(tmp_path)
        t0 = time.monotonic()
        n = s.drain(into=into)
        took = time.monotonic() - t0
        into.close()
        assert n == 5 and took < 3.0, (n, took)
        assert _family_texts(tmp_path) == [f"m{i}" for i in range(5)]
        st = s.stats()
        assert st["count_mismatches"] == 1 and st["settle_timeouts"] == 0
        assert any("COUNT is damaged" in x and f"half {full}" in x for x in s.problems), s.problems
    finally:
        s.close()


# ------------------------------------------------------------ #8 taking over a reuse

@pytest.mark.parametrize("sealed", [False, True])
@pytest.mark.parametrize("point", ["partition.swap.formatted@2",    # the 1st swap reuses the empty half
                                   "partition.swap.reported@1"])
def test_swapper_killed_after_formatting_a_reused_half_has_its_loss_recorded_by_the_taker(tmp_path, point, sealed):
    """#8: a swapper killed between Segment.format of the reused half and its
    loss bookkeeping: the process that finishes the swap records the loss
    (lost, loss events, one report) and clears intent."""
    key = None
    if sealed:
        from logkit.crypto import generate_key_file
        key = str(tmp_path / "log.keys")
        generate_key_file(key)
    path = str(tmp_path / "p.part")
    PartitionStorage("t", path=path, size="8KiB", key_file=key).close()
    c = Child(tmp_path, f"""
        from logkit.backends.partition import PartitionStorage
        s = PartitionStorage("t", path={path!r}, key_file={key!r})
        for i in range(400):
            s.write(f"message {{i:04d}} " + "x" * 60)
        raise SystemExit("never reused a half")
    """, points=point.replace("@", "=kill@"))
    c.wait_point(point.split("@")[0])
    c.kill()
    p = part.Partition(path, create=False, readonly=True, key_file=key)
    assert p.intent_half() is not None                 # the window held: killed mid-reuse
    p.close()
    s = PartitionStorage("t", path=path, key_file=key)
    try:
        st = s.stats()
        assert s.partition.intent_half() is None
        msgs = list(s.reader())
        reports = [m for m in msgs if m.severity == part.LOSS_SEVERITY]
        texts = [m.text for m in msgs if m.severity != part.LOSS_SEVERITY]
        assert len(reports) == 1, [m.text for m in reports]
        first_kept = int(texts[0].split()[1])
        info = __import__("json").loads(reports[0].data)
        assert st["lost"] == info["lost"] == first_kept > 0, (st, info, texts[:2])
        assert st["loss_events"] == 1
        assert (info["first_sequence"], info["last_sequence"]) == (1, first_kept)
        assert texts == [f"message {i:04d} " + "x" * 60 for i in range(first_kept, first_kept + len(texts))]
    finally:
        s.close()


# ------------------------------------------------------------ #10 a swapper that lost its claim

def test_swapper_stalled_past_live_stall_never_puts_the_taken_over_half_back_in_service(tmp_path):
    """#10: swap() elected (half out of service), then stalled past
    LIVE_STALL; another process took the swap over and made the other half
    current.  The resumed swapper must not give its half back: it is full
    now, and writers in both halves would get duplicate sequences."""
    path = str(tmp_path / "p.part")
    PartitionStorage("t", path=path, size="64KiB").close()
    c = Child(tmp_path, f"""
        from logkit import inject
        from logkit.backends.partition import PartitionStorage
        s = PartitionStorage("t", path={path!r})
        for i in range(3):
            s.write(f"m{{i}}")
        print("swapped:", s.swap())
        s.close()
    """, points="partition.swap.out-of-service=wait")
    c.wait_point("partition.swap.out-of-service")
    p = part.Partition(path, create=False)
    old = next(i for i in (0, 1) if p.halves[i].stats()["written"] == 3)
    oos = p.halves[old].out_of_service_time
    assert oos is not None and p.current_index() is None
    wait_until(lambda: time.time_ns() - oos >= part.LIVE_STALL * 1e9, "LIVE_STALL to pass")
    p.close()
    s = PartitionStorage("t", path=path)           # opening takes the stalled swap over
    try:
        assert s.takeovers == 1
        for i in range(3, 6):
            s.write(f"m{i}")
        c.go()
        out = c.finish()
        assert "swapped: False" in out, out
        p = s.partition
        assert not p.halves[old].in_service and p.phase(old) == part.FULL
        assert p.current_index() == 1 - old
        s.write("m6")
        seqs = [m.sequence for m in s.reader()]
        assert [m.text for m in s.reader()] == [f"m{i}" for i in range(7)]
        assert seqs == sorted(set(seqs))
    finally:
        s.close()


# ------------------------------------------------------------ #1 a drain or a reader racing a reuse

def _fill_full_half(s, prefix, n):
    """Write n messages, then swap them out: that half is FULL, the other current."""
    seqs = {}
    for i in range(n):
        t = f"{prefix} {i:04d} " + "y" * 40
        seqs[s.write(t)] = t
    assert s.swap()
    return seqs


def _overflow_until_reused(s, prefix, written):
    """Write until a full half is reused (loss_events rises), then 5 more."""
    i = 0
    events = s.stats()["loss_events"]
    while s.stats()["loss_events"] == events:
        t = f"{prefix} {i:04d} " + "z" * 40
        written[s.write(t)] = t
        i += 1
        assert i < 10000
    for _ in range(5):
        t = f"{prefix} {i:04d} " + "z" * 40
        written[s.write(t)] = t
        i += 1


@pytest.mark.parametrize("where,copied", [("partition.drain.copied", 2),      # proved copy not yet claimed
                                          ("partition.drain.appended", 3)])   # in flight (COPYING)
def test_drain_stalled_while_its_half_is_reused_copies_only_proved_messages_and_counts_exactly(
        tmp_path, monkeypatch, where, copied):
    """#1: a drain that ran past DRAIN_WAIT has its half reformatted under it.
    It must never append a message read from the reformatted bytes, never
    record a progress taken from them, and every message of the old half is
    either copied or counted lost -- exactly one of the two."""
    monkeypatch.setattr(part, "DRAIN_WAIT", 0.2)
    path = str(tmp_path / "p.part")
    s = PartitionStorage("t", path=path, size="16KiB")
    try:
        old = _fill_full_half(s, "old", 40)
        c = Child(tmp_path, f"""
            from logkit.backends.partition import PartitionStorage
            from logkit.backends.family import FamilyStorage
            s = PartitionStorage("t", path={path!r})
            fam = FamilyStorage("t", directory={str(tmp_path / "fam")!r}, family="t",
                                create_directory=True, segment_size="64KiB")
            print("drained", s.drain(into=fam))
            fam.close()
            s.close()
        """, points=f"{where}=wait@3")
        c.wait_point(where)
        new = {}
        _overflow_until_reused(s, "new", new)       # reuses the half the drain is in
        c.go()
        out = c.finish()
        got = _family_texts(tmp_path)
        old_texts = [old[k] for k in sorted(old)]
        # The old half's proved prefix, then (the drain goes on to the other
        # half, full by now) messages of the new generation, each once, in order.
        assert [t for t in got if t.startswith("old")] == old_texts[:copied], (out, got[:5])
        seq_of = {t: q for q, t in {**old, **new}.items()}
        assert all(t in seq_of for t in got), [t for t in got if t not in seq_of][:3]
        copied_seqs = [seq_of[t] for t in got]
        assert copied_seqs == sorted(set(copied_seqs))
        st = s.stats()
        assert st["lost"] == len(old) - copied, st                     # exactly: copied or lost, never both
        assert st["drained"] == len(got), st
        assert st["drain_progress"] == copied_seqs[-1], st             # a sequence it copied, never re-read
        msgs = {m.sequence: m.text for m in s.reader()}
        assert all(new[q] == t for q, t in msgs.items() if q in new)
    finally:
        s.close()


def test_reader_racing_a_reuse_never_pairs_a_sequence_with_another_message(tmp_path):
    """#1 (reader side): PartitionReader copied lazily from a half that a
    swapper reformatted under it: a sequence of the old half came back with
    the bytes of the new one.  Copies are now kept only if the half was not
    reformatted meanwhile, and checksum_ok() really checks."""
    import threading
    from logkit import inject
    path = str(tmp_path / "p.part")
    s = PartitionStorage("t", path=path, size="16KiB")
    try:
        written = _fill_full_half(s, "old", 40)
        notify = str(tmp_path / "reader.notify")
        inject.arm("partition.read.message", "wait", 5, notify=notify)
        result = []
        t = threading.Thread(target=lambda: result.append(list(s.reader())))
        t.start()
        try:
            inject.wait_for_point(notify, "partition.read.message", 30)
            inject.disarm("partition.read.message")
            _overflow_until_reused(s, "new", written)
        finally:
            open(notify + ".go", "w").close()
            t.join(30)
        assert result, "the reader did not finish"
        msgs = result[0]
        assert msgs and all(m.checksum_ok() for m in msgs)
        bad = [(m.sequence, m.text[:12]) for m in msgs
               if m.severity != part.LOSS_SEVERITY and written.get(m.sequence) != m.text]
        assert bad == []
        m = msgs[-1]
        m.text = "forged"
        assert not m.checksum_ok()
    finally:
        inject.disarm()
        s.close()


# ------------------------------------------------------------ #11 resuming by identity

@pytest.mark.parametrize("dest", ["plainfile", "family"])
def test_drain_interrupted_before_an_identical_message_resumes_without_losing_it(tmp_path, dest):
    """#11: two identical messages (same time, pid, tid, severity, text,
    data); the drain stops after copying the first and before the second.
    Matching by content made the resume count the second as copied (with a
    plain file, any identical message of the batch did): it was lost."""
    from logkit import inject
    s = PartitionStorage("t", path=str(tmp_path / "p.part"), size="64KiB")
    if dest == "plainfile":
        from logkit.backends.plainfile import PlainFileStorage
        out = PlainFileStorage("t", path=str(tmp_path / "out.log"))
    else:
        out = _family_into(tmp_path)
    try:
        t = time.time_ns()
        texts = ["a", "same", "same", "b"]
        for x in texts:
            s.write(x, time=t)
        inject.arm("partition.drain.copied", "raise", 3)     # before the 3rd message is appended
        with pytest.raises(inject.Injected):
            s.drain(out, everything=True)
        inject.disarm()
        assert [m.text for m in out.reader()] == ["a", "same"]
        assert s.drain(out, everything=True) == 2
        assert [m.text for m in out.reader()] == texts
        st = s.stats()
        assert st["drained"] == 4 and st["lost"] == 0
    finally:
        inject.disarm()
        out.close()
        s.close()


# ------------------------------------------------------------ #6 a writer stopped while its half is reused

@pytest.mark.parametrize("step", ["claimed", "stub", "copied"])
def test_writer_stopped_mid_write_while_its_half_is_reused_overwrites_nothing(tmp_path, monkeypatch, step):
    """#6: a writer SIGSTOPped inside a write (space claimed; stub published;
    payload copied) past every grace; its half is taken out of service, its
    reservation abandoned, the half reformatted (new UUID) and refilled.  On
    SIGCONT it must not write through its old offset: no message of the new
    half is overwritten and nothing torn or stale is published."""
    monkeypatch.setattr(part, "RESERVATION_GRACE", 0.3)
    path = str(tmp_path / "p.part")
    PartitionStorage("t", path=path, size="16KiB").close()
    notify = str(tmp_path / "w.notify")
    c = Child(tmp_path, f"""
        from logkit import inject
        from logkit.backends.partition import PartitionStorage
        from logkit.errors import LogkitError
        s = PartitionStorage("t", path={path!r})
        p = s.partition
        h = p.halves[p.current_index()]
        try:
            seq = inject.write_stepwise(h, "STALE " + "s" * 300, stop_at={step!r}, action="stop",
                                          notify={notify!r})
            print("write returned", seq)
        except LogkitError as e:
            print("refused:", type(e).__name__, e)
    """)
    inject_name = f"core.write.{step}"
    from logkit import inject
    inject.wait_for_point(notify, inject_name, 60, proc=c.proc)
    wait_until(lambda: process_state(c.pid) == "T", "the writer to stop")
    s = PartitionStorage("t", path=path)
    try:
        written = {}
        _overflow_until_reused(s, "new", written)       # fills the writer's half, swaps, reuses it
        for i in range(40):                              # refill well past the stale offset
            t = f"after {i:03d} " + "w" * 30
            written[s.write(t)] = t
        c.cont()
        out = c.finish()
        msgs = list(s.reader())
        assert not [m for m in msgs if "STALE" in m.text], out
        assert all(m.checksum_ok() for m in msgs)
        for m in msgs:
            if m.severity != part.LOSS_SEVERITY:
                assert written[m.sequence] == m.text, (m.sequence, m.text[:20], out)
        kept = {m.sequence for m in msgs}
        assert {q for q, t in written.items() if t.startswith("after")} <= kept
        for i in (0, 1):
            kinds = {r.kind for r in s.partition.halves[i].records()}
            assert kinds <= {"committed", "abandoned", "filler"}, (i, kinds, out)
    finally:
        s.close()


# ------------------------------------------------------------ liveness by pid and start time

def test_a_token_whose_pid_now_names_another_process_is_taken_over_at_once(tmp_path):
    """Issue 13 #13 (partition tokens): a drainer died and its pid now names
    another live process (pid reuse, or a pid of another namespace).  The
    holder word records the claimer's start time, so the token is judged
    abandoned at once instead of waiting for a process that will never
    finish it."""
    import subprocess
    import sys
    from logkit.salvager import process_identity
    s = PartitionStorage("t", path=str(tmp_path / "p.part"), size="64KiB")
    # A live process whose pid the token will name (it only has to be alive
    # while the test runs: its sleep is not a synchronisation).
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for i in range(5):
            s.write(f"m{i}")
        full = s.partition.current_index()
        assert s.swap()
        p = s.partition
        pid, start = process_identity(other.pid)
        assert start
        tok = part.make_token(part.DRAINING, 1, pid)
        assert p.halves[full].claim_token(p.token(full), tok)
        p.set_header_word(part.H_HOLDER[full], (pid << 32) | ((start + 12345) & 0xFFFFFFFF))   # "its" start: another one
        into = _family_into(tmp_path)
        try:
            assert s.drain(into=into) == 5
        finally:
            into.close()
        assert p.phase(full) == part.EMPTY
        # The same token with the true start time is a live holder: left alone.
        for i in range(5):
            s.write(f"n{i}")
        cur = p.current_index()
        assert s.swap()
        assert p.halves[cur].claim_token(p.token(cur), tok)
        p.set_header_word(part.H_HOLDER[cur], (pid << 32) | start)
        into = _family_into(tmp_path)
        try:
            assert s.drain(into=into) == 0
        finally:
            into.close()
        assert p.phase(cur) == part.DRAINING
    finally:
        other.kill()
        other.wait()
        s.close()


@pytest.mark.parametrize("where", ["partition.drain.copied", "partition.drain.appended"])
def test_drainer_killed_around_an_append_resumes_exactly_once(tmp_path, where):
    """A drainer SIGKILLed with a proved copy not yet claimed (copied) or with
    the message in flight in the destination (appended, token COPYING): the
    next drain copies every message exactly once (the resume check is made
    only for the in-flight one)."""
    path = str(tmp_path / "p.part")
    s = PartitionStorage("t", path=path, size="64KiB")
    try:
        texts = [f"m{i:02d}" for i in range(10)]
        for t in texts:
            s.write(t)
        assert s.swap()
        c = Child(tmp_path, f"""
            from logkit.backends.partition import PartitionStorage
            from logkit.backends.family import FamilyStorage
            s = PartitionStorage("t", path={path!r})
            fam = FamilyStorage("t", directory={str(tmp_path / "fam")!r}, family="t",
                                create_directory=True, segment_size="64KiB")
            s.drain(into=fam)
        """, points=f"{where}=kill@4")
        c.wait_point(where)
        c.kill()
        into = _family_into(tmp_path)
        try:
            s.drain(into=into)
        finally:
            into.close()
        assert _family_texts(tmp_path) == texts
        st = s.stats()
        assert st["drained"] == 10 and st["lost"] == 0
    finally:
        s.close()
