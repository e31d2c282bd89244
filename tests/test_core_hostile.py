"""Issue #13, the core's part: a writer judged by the process that holds its
reservation (pid AND start time), ownership re-proved after every pause,
every cipher input from the writer's own claim, no plaintext left behind a
lost claim, counters that heal, a damaged reservation word that rotates, and
salvage that never rebuilds a live segment's identity.

Pauses are made deterministic with logkit.inject.write_stepwise (the same inline C
writer, stopped at a named step) and logkit.inject points; nothing here
sleeps to order events.
"""
from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import subprocess
import sys

import pytest

from procs import process_state
from procs.core import EXIT_LOST, start_stepwise_writer
from waiting import wait_until
from logkit import Segment, inject
from logkit._segment import SegmentRepair
from logkit.errors import MessageLost, OutOfService, ReservationWordDamaged, SegmentDamaged
from logkit.salvager import identity_alive, process_identity, salvage, settle_counts

HEADER = 4096
WORD = 512                    # the reservation word
LISTENERS = 2112              # the listener table: 25 slots of 64 bytes
KEY = (7, bytes(range(32)))
TIMEOUT = 60


def _dead_pid() -> int:
    """A pid whose process has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _wait_stopped(proc, notify, name):
    """The child reached `name` and stopped itself there (SIGSTOP)."""
    inject.wait_for_point(notify, name, timeout=TIMEOUT, proc=proc)
    # The point is reported before the stop; wait for the stop itself.
    wait_until(lambda: process_state(proc.pid) == "T", f"child {proc.pid} to stop at {name}", TIMEOUT)


def _finish(proc):
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out.decode(), err.decode()


def _stub_offset(seg):
    (rec,) = [r for r in seg.records() if r.kind == "reserved"]
    return rec.offset


# ---------------------------------------------------------------- #2 liveness from the holder

def test_copy_in_flight_is_judged_by_its_holder_not_by_the_original_writers_pid(tmp_path):
    """A drain's copy (write_as with a long-dead original pid and an old
    time) paused mid-write: salvage and reservation_alive see the copier,
    alive, and leave it; resumed, it commits with the original's pid and time."""
    path = str(tmp_path / "s")
    Segment.create(path, size=65536).close()
    dead = _dead_pid()
    notify = str(tmp_path / "notify")
    proc = start_stepwise_writer({"path": path, "text": "copied message", "stop_at": "copied",
                                  "action": "stop", "notify": notify, "process_id": dead,
                                  "thread_id": 77, "time": 5_000})
    try:
        _wait_stopped(proc, notify, "core.write.copied")
        with Segment.open(path) as seg:
            off = _stub_offset(seg)
            pid, start, reserved_ns = seg.reservation_holder(off)
            assert (pid, start) == process_identity(proc.pid)
            assert reserved_ns > 5_000
            assert seg.reservation_alive(off) and seg.reservation_alive(off, grace=60)
            rep = salvage(seg, grace=60, settle=0)
            assert rep.abandoned == 0 and [o for o, _, _ in rep.open] == [off]
    finally:
        code, out, err = _finish(proc)
    assert code == 0, err
    with Segment.open(path) as seg:
        (m,) = list(seg)
        assert (m.text, m.process_id, m.thread_id, m.time) == ("copied message", dead, 77, 5_000)
        assert m.checksum_ok()


# ---------------------------------------------------------------- #13 pid reuse

def test_a_live_pid_with_another_start_time_is_not_the_holder(tmp_path):
    """A stub whose pid now names another process (pid reuse, another pid
    namespace): the recorded start time does not match, so the holder is gone
    and salvage abandons the stub."""
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        r = seg.reserve(4)
        pid, start = process_identity()
        with open(path, "r+b") as f:
            f.seek(r.offset + 60)
            f.write(struct.pack("<I", (start + 1) & 0xFFFFFFFF or 2))
        assert not seg.reservation_alive(r.offset)
        rep = salvage(seg, grace=3600, settle=0)
        assert rep.abandoned == 1 and not rep.open
        with pytest.raises(MessageLost):
            r.finish()


def test_identity_alive_checks_the_start_time():
    pid, start = process_identity()
    assert identity_alive(pid, start)
    assert identity_alive(pid, 0)                 # not recorded: the pid alone
    assert not identity_alive(pid, (start + 1) & 0xFFFFFFFF or 2)
    assert not identity_alive(_dead_pid(), 0)
    init_pid, init_start = process_identity(1)
    if init_start:
        assert not identity_alive(1, init_start + 1)


def test_listener_slots_held_by_reused_pids_are_reclaimed(tmp_path):
    """Every listener slot names a live pid whose start time is not the
    recorded one (the owners died and their pids were reused): listen()
    reclaims one instead of finding the table full."""
    path = str(tmp_path / "s")
    Segment.create(path, size=65536).close()
    live = os.getppid()
    _, live_start = process_identity(live)
    assert live_start, "needs /proc"
    with open(path, "r+b") as f:
        for i in range(25):
            f.seek(LISTENERS + 64 * i)
            f.write(struct.pack("<II", live, 0))
            f.seek(LISTENERS + 64 * i + 24)
            f.write(struct.pack("<I", (live_start + 1) & 0xFFFFFFFF or 2))
    with Segment.open(path) as seg:
        assert seg.listen() is not None and seg.listener_slot is not None
        slots = seg.header()["listeners"]
        assert any(s["pid"] == os.getpid() for s in slots)


def test_a_listener_slot_of_a_live_owner_is_kept(tmp_path):
    path = str(tmp_path / "s")
    Segment.create(path, size=65536).close()
    live = os.getppid()
    _, live_start = process_identity(live)
    with open(path, "r+b") as f:
        for i in range(25):
            f.seek(LISTENERS + 64 * i)
            f.write(struct.pack("<II", live, 0))
            f.seek(LISTENERS + 64 * i + 24)
            f.write(struct.pack("<I", live_start))
    with Segment.open(path) as seg:
        seg.listen()
        assert seg.listener_slot is None      # the table is full of live owners


# ---------------------------------------------------------------- #3 plaintext after abandonment

def test_plaintext_copied_after_the_abandon_is_wiped_by_finish(tmp_path):
    """Sealed: salvage abandons a reservation, then its writer copies its
    plaintext in and finishes: MessageLost, and the plaintext is not in the file."""
    path = str(tmp_path / "s")
    secret = b"SECRET-" + os.urandom(8).hex().encode()
    with Segment.create(path, size=65536, key=KEY) as seg:
        r = seg.reserve(len(secret), len(secret))
        rep = salvage(seg, grace=0, settle=0)           # grace 0: abandon even a live holder
        assert rep.abandoned == 1
        r.text[:] = secret
        r.data[:] = secret
        with pytest.raises(MessageLost):
            r.finish()
    assert secret not in open(path, "rb").read()


def test_a_sealed_copy_stopped_before_its_copy_never_writes_plaintext_after_the_abandon(tmp_path):
    path = str(tmp_path / "s")
    secret = "SECRET-" + os.urandom(8).hex()
    Segment.create(path, size=65536, key=KEY).close()
    notify = str(tmp_path / "notify")
    proc = start_stepwise_writer({"path": path, "key": [KEY[0], KEY[1].hex()], "text": secret,
                                  "stop_at": "stub", "action": "stop", "notify": notify})
    try:
        _wait_stopped(proc, notify, "core.write.stub")
        with Segment.open(path, key=KEY) as seg:
            assert salvage(seg, grace=0, settle=0).abandoned == 1
    finally:
        code, _, err = _finish(proc)
    assert code == EXIT_LOST, err
    assert secret.encode() not in open(path, "rb").read()


def test_abandoning_a_sealed_reservation_leaves_no_plaintext(tmp_path):
    path = str(tmp_path / "s")
    secret = b"SECRET-" + os.urandom(8).hex().encode()
    with Segment.create(path, size=65536, key=KEY) as seg:
        r = seg.reserve(len(secret))
        r.text[:] = secret
        r.abandon()
    assert secret not in open(path, "rb").read()


# ---------------------------------------------------------------- #4 cipher inputs from the claim

def test_a_rewritten_stub_sequence_does_not_change_the_nonce(tmp_path):
    """A keyless co-writer rewrites an open sealed stub's sequence to one
    already used and its text length to 0: the writer seals with its own
    sequence and lengths, stores its own header, and the message reads back
    as written; no plaintext stays in the file."""
    path = str(tmp_path / "s")
    secret = b"SECRET-" + os.urandom(8).hex().encode()
    with Segment.create(path, size=65536, key=KEY) as seg:
        first = seg.write("first")
        r = seg.reserve(len(secret))
        with open(path, "r+b") as f:
            f.seek(r.offset + 16)
            f.write(struct.pack("<Q", first))           # a used sequence: the nonce of "first"
            f.seek(r.offset + 40)
            f.write(struct.pack("<I", 0))               # text length 0: nothing would be encrypted
        r.text[:] = secret
        assert r.finish() == r.sequence == first + 1
        msgs = [(m.sequence, m.text) for m in seg]
        assert msgs == [(first, "first"), (first + 1, secret.decode())]
    assert secret not in open(path, "rb").read()


# ---------------------------------------------------------------- #5 salvage and a live segment

def test_salvage_takes_a_segment_out_of_service_before_rebuilding_its_identity(tmp_path):
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        seg.write("one")
        with open(path, "r+b") as f:
            f.seek(64)
            f.write(b"\xff")                           # family name byte: identity CRC now wrong
        assert seg.header_problem() is not None and seg.in_service
        inject.arm("salvage.header.rebuilding", "raise")
        try:
            with pytest.raises(inject.Injected):
                salvage(seg, settle=0)
        finally:
            inject.disarm("salvage.header.rebuilding")
        assert not seg.in_service                      # nobody can reserve while it is rebuilt
        with pytest.raises(OutOfService):
            seg.write("two")


# ---------------------------------------------------------------- #6 stalled writers

@pytest.mark.parametrize("step", ["stub", "copied"])
def test_a_stalled_writer_resuming_after_reuse_writes_nothing(tmp_path, step):
    """A writer stopped inside write() while its region (a partition half) is
    abandoned, formatted again and written: on resuming it re-proves its
    claim, finds a new format, and writes nothing -- the new messages at
    its old offset stay intact."""
    path = str(tmp_path / "p")
    with open(path, "wb") as f:
        f.truncate(2 * 65536)
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
    Segment.format(mm, 0, 65536, sequence_base=1).close()
    notify = str(tmp_path / "notify")
    proc = start_stepwise_writer({"path": path, "offset": 0, "length": 65536, "text": "X" * 200,
                                  "stop_at": step, "action": "stop", "notify": notify})
    try:
        _wait_stopped(proc, notify, f"core.write.{step}")
        seg = Segment.from_buffer(mm, 0, 65536)
        assert salvage(seg, grace=0, settle=0).abandoned == 1
        seg.close()
        seg = Segment.format(mm, 0, 65536, sequence_base=100)
        seg.write("new half " * 30)                      # at the stalled writer's offset
        r = seg.reserve(8)                               # and an open stub after it
    finally:
        code, _, err = _finish(proc)
    assert code == EXIT_LOST, err
    assert seg.records()[1].kind == "reserved"          # not turned into a torn committed message
    r.text[:] = b"finished"
    r.finish()
    assert [(m.sequence, m.text) for m in seg] == [(100, "new half " * 30), (101, "finished")]
    assert all(m.checksum_ok() for m in seg)
    seg.close()
    mm.close()


def test_a_stalled_reservation_finish_does_not_commit_someone_elses_stub(tmp_path):
    """Unsealed Reservation.finish after the region was reused: MessageLost,
    and the new owner's open stub at that offset stays open."""
    path = str(tmp_path / "p")
    with open(path, "wb") as f:
        f.truncate(65536)
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
    old = Segment.format(mm, 0, 65536, sequence_base=1)
    r = old.reserve(16)
    assert salvage(old, grace=0, settle=0).abandoned == 1
    new = Segment.format(mm, 0, 65536, sequence_base=50)
    other = new.reserve(16)
    assert other.offset == r.offset
    with pytest.raises(MessageLost):
        r.finish()
    assert new.records()[0].kind == "reserved"
    other.text[:] = b"0123456789abcdef"
    other.finish()
    assert [(m.sequence, m.text) for m in new] == [(50, "0123456789abcdef")]
    for s in (old, new):
        s.close()
    mm.close()


def test_a_writer_paused_before_its_stub_does_not_overwrite_salvages_filler(tmp_path):
    """Stopped between its claim and its stub for longer than salvage's
    settle time: salvage writes a filler over the claim; the writer resumes,
    finds the filler and stores nothing (the filler stays valid)."""
    path = str(tmp_path / "s")
    Segment.create(path, size=65536).close()
    notify = str(tmp_path / "notify")
    proc = start_stepwise_writer({"path": path, "text": "late", "stop_at": "claimed",
                                  "action": "stop", "notify": notify})
    try:
        _wait_stopped(proc, notify, "core.write.claimed")
        with Segment.open(path) as seg:
            seg.take_out_of_service()
            rep = salvage(seg, settle=0)
            assert [n for _, _, n in rep.filled] == [1]
    finally:
        code, _, err = _finish(proc)
    assert code == EXIT_LOST, err
    with Segment.open(path) as seg:
        recs = seg.records()
        assert [(r.kind, r.span) for r in recs] == [("abandoned", 1)]
        assert salvage(seg, settle=0).clean


# ---------------------------------------------------------------- #9 counters that heal

def test_a_writer_killed_between_commit_and_counter_settles_by_walk(tmp_path):
    path = str(tmp_path / "s")
    Segment.create(path, size=65536).close()
    notify = str(tmp_path / "notify")
    proc = start_stepwise_writer({"path": path, "text": "committed", "stop_at": "committed",
                                  "action": "kill", "notify": notify})
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    with Segment.open(path) as seg:
        st = seg.stats()
        assert (st["reserved"], st["written"], st["abandoned"]) == (1, 0, 0)   # the window
        assert seg.unfinished_claims() == []
        assert settle_counts(seg)                    # settled by the walk, whatever the counters say
        seg.take_out_of_service()
        assert settle_counts(seg)
        st = seg.stats()
        assert st["reserved"] == st["written"] + st["abandoned"] == 1
        assert [m.text for m in seg] == ["committed"]


def test_salvage_recounts_the_written_counter(tmp_path):
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        for i in range(5):
            seg.write(f"m{i}")
        SegmentRepair(seg).set_written_count(3)                    # as if two writers died after [W2]
        seg.take_out_of_service()
    rep = salvage(path, settle=0)
    assert rep.kept == 5
    with Segment.open(path) as seg:
        assert seg.stats()["written"] == 5


def test_unfinished_claims_lists_open_stubs_and_gaps(tmp_path):
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        seg.write("a")
        r = seg.reserve(3)
        assert seg.unfinished_claims() == [(r.offset, r.offset + 72, "reserved")]
        assert not settle_counts(seg)
        r.text[:] = b"abc"
        r.finish()
        assert seg.unfinished_claims() == []


# ---------------------------------------------------------------- #12 a damaged reservation word

def test_a_scribbled_reservation_word_takes_the_segment_out_of_service(tmp_path):
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        seg.write("a")
        with open(path, "r+b") as f:
            f.seek(WORD)
            w = struct.unpack("<Q", f.read(8))[0]
            f.seek(WORD)
            f.write(struct.pack("<Q", (w & ~0xFFFFFFFF) | 3))      # NEXT inside the header
        with pytest.raises(ReservationWordDamaged) as e:
            seg.write("b")
        assert isinstance(e.value, SegmentDamaged) and isinstance(e.value, OutOfService)
        assert not seg.in_service and seg.out_of_service_time is not None
        with pytest.raises(OutOfService):
            seg.write("c")
        assert [m.text for m in seg] == ["a"]


def test_fix_word_saturates_count_instead_of_wrapping(tmp_path):
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        seg.write("a")
        assert SegmentRepair(seg).raise_word(HEADER, (1 << 31) + 5, False)
        st = seg.stats()
        assert st["reserved"] == (1 << 31) - 1
        assert not seg.in_service                    # no sequence number left: out of service


# ---------------------------------------------------------------- the test hook itself

def test_write_stepwise_reaches_every_step_and_writes_as_write_does(tmp_path):
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        for step in ("claimed", "stub", "copied", "committed"):
            inject.arm(f"core.write.{step}", "raise")
            try:
                with pytest.raises(inject.Injected):
                    inject.write_stepwise(seg, step)
            finally:
                inject.disarm(f"core.write.{step}")
        assert inject.write_stepwise(seg, "plain", severity=30, data=b"d", data_class="json") == 5
        with pytest.raises(Exception, match="stop_at"):
            inject.write_stepwise(seg, "x", stop_at="nowhere")
        assert [m.text for m in seg] == ["claimed", "stub", "copied", "committed", "plain"]


def test_fillable_tells_a_claims_holder_start_from_a_finished_messages_checksum(tmp_path):
    """+60 of a claim holds its holder's start time: a claim whose state word
    was never published is still fillable, a finished empty message whose
    state word was zeroed (its checksum at +60 valid) is not."""
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        seg.write("")
        r = seg.reserve(0)
        with open(path, "r+b") as f:
            for off in (HEADER, r.offset):
                f.seek(off)
                f.write(bytes(8))                          # state words zeroed
        assert SegmentRepair(seg).word_at(r.offset + 56) >> 32 != 0      # the holder's start is there
        assert not SegmentRepair(seg).fillable(HEADER, HEADER + 64)
        assert SegmentRepair(seg).fillable(r.offset, r.offset + 64)


def test_a_dropped_sealed_reservation_leaves_no_plaintext(tmp_path):
    """A sealed Reservation dropped without finish() or abandon() is given up
    when it is collected, and its plaintext wiped."""
    path = str(tmp_path / "s")
    secret = b"SECRET-" + os.urandom(8).hex().encode()
    with Segment.create(path, size=65536, key=KEY) as seg:
        r = seg.reserve(len(secret))
        r.text[:] = secret
        off = r.offset
        del r
        assert [x.kind for x in seg.records()] == ["abandoned"] and seg.records()[0].offset == off
    assert secret not in open(path, "rb").read()


def test_a_family_rotates_past_a_scribbled_reservation_word(tmp_path):
    """#12 end to end: the live segment's reservation word is scribbled; the
    next write goes to a new segment instead of failing until salvage."""
    from logkit.family import open_reader, open_writer
    w = open_writer(str(tmp_path), "app", segment_size="64KiB")
    try:
        w.write("before")
        (live,) = [p for p in os.listdir(tmp_path) if p.endswith(".seg") or "app" in p]
        path = os.path.join(tmp_path, live)
        with open(path, "r+b") as f:
            f.seek(WORD)
            v = struct.unpack("<Q", f.read(8))[0]
            f.seek(WORD)
            f.write(struct.pack("<Q", (v & ~0xFFFFFFFF) | 1))     # NEXT inside the header
        w.write("after")
    finally:
        w.close()
    assert [m.text for m in open_reader(str(tmp_path), "app")] == ["before", "after"]


# ---------------------------------------------------------------- verify and claims in flight

def test_verify_calls_a_live_writers_claim_in_flight_a_gap_and_a_lost_page_damage(tmp_path):
    """verify judges zeros at a record's place against the counters: a claim
    whose writer is stopped before its stub (reserved, not yet written) is a
    gap (a note, exit 0); zeroing a finished message's page is damage."""
    path = str(tmp_path / "s")
    with Segment.create(path, size=65536) as seg:
        for i in range(3):
            seg.write(f"finished {i}")
    notify = str(tmp_path / "notify")
    proc = start_stepwise_writer({"path": path, "text": "in flight", "stop_at": "claimed",
                                  "action": "stop", "notify": notify})
    try:
        _wait_stopped(proc, notify, "core.write.claimed")
        v = subprocess.run([sys.executable, "-m", "logkit", "verify", "--single", path],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert v.returncode == 0 and "gap of" in v.stdout and "damaged" not in v.stdout, v.stdout + v.stderr
    finally:
        code, _, err = _finish(proc)
    assert code == 0, err
    with Segment.open(path, readonly=True) as seg:
        first = [r for r in seg.records() if r.kind == "committed"][1]
    with open(path, "r+b") as f:                       # the second message's bytes lost
        f.seek(first.offset)
        f.write(bytes(first.length))
    v = subprocess.run([sys.executable, "-m", "logkit", "verify", "--single", path],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert v.returncode == 1 and f"damaged bytes ({first.offset}..{first.offset + first.length})" in v.stdout, \
        v.stdout
