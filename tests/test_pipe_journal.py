"""The pipe reader's journal (backends/pipejournal.py): a reader killed at
each point of its cycle (journaled, consumed, stored) and started again
stores every record exactly once; fragments survive the kill; a damaged or
locked journal is a clear error."""
from __future__ import annotations

import os
import threading
import time

import pytest

import procs
import procs.part as partprocs
from waiting import wait_until
from logkit.backends.family import FamilyStorage
from logkit.backends.pipe import CHUNK, PIPE_BUF, drain_pipe, encode_frames, encode_record
from logkit.backends.pipejournal import (HEADER_SIZE, JournalDamaged, PipeJournal, _tee,
                                         read_journal_header)
from logkit.crypto import generate_key_file
from logkit.errors import DiskFull, LogkitError

pytestmark = pytest.mark.skipif(_tee is None, reason="tee(2) is Linux's: without it the journal "
                                                     "falls back to read-then-journal")


def record(i: int) -> bytes:
    return encode_record(f"record {i:05d}".encode(), 20, b"", b"", 1_700_000_000_000_000_000 + i,
                         4242, 7)


def big_record_frames(i: int, size: int = 3 * CHUNK + 100) -> list[bytes]:
    """A record larger than PIPE_BUF, as its fragment frames (this process's
    pid: the reader drops sets of dead writers)."""
    text = (f"big {i:05d} " + "x" * size).encode()
    rec = encode_record(text, 30, b"", b"", 1_700_000_000_000_000_000 + i, os.getpid(), 9)
    frames = encode_frames(rec, os.getpid(), 9, i)
    assert len(frames) > 2
    return frames


class Fifo:
    """A FIFO this test holds open read-write: the pipe and what it holds
    live on while readers come and go, as they do while a logging process
    holds it."""

    def __init__(self, tmp_path):
        self.path = str(tmp_path / "p.fifo")
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def send(self, frames):
        for f in frames:
            assert len(f) <= PIPE_BUF
            assert os.write(self.fd, f) == len(f)

    def close(self):
        os.close(self.fd)


def flocked_here(path) -> bool:
    """This process holds a flock on the file at `path` (/proc/locks names
    the holder's pid and the file's inode); False while there is no file."""
    try:
        ino = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks") as f:
        for line in f:
            w = line.split()
            if len(w) >= 6 and w[1] == "FLOCK" and w[4] == str(os.getpid()) and w[5].endswith(f":{ino}"):
                return True
    return False


def family(tmp_path, **kw):
    return FamilyStorage("p", directory=str(tmp_path / "fam"), family="p", create_directory=True, **kw)


def texts(tmp_path, **kw):
    s = family(tmp_path, **kw)
    try:
        return [m.text for m in s.reader()]
    finally:
        s.close()


def kill_reader_at(tmp_path, fifo, point, nth, meanwhile=None):
    with procs.Group() as g:
        c = g.spawn(partprocs.child_pipe_drain_killed_at, fifo.path, str(tmp_path / "fam"), "p", point, nth)
        c.expect("ready")
        if meanwhile is not None:
            meanwhile()
        c.process.join(procs.TIMEOUT)
        assert c.process.exitcode == -9, f"the reader was not killed at {point} (exit {c.process.exitcode})"


def drain_rest(tmp_path, fifo, **kw):
    s = family(tmp_path, **kw.pop("storage_kw", {}))
    stats: dict = {}
    try:
        n = drain_pipe(fifo.path, s, spill=False, idle_timeout=0.3, stats=stats, **kw)
    finally:
        s.close()
    return n, stats


@pytest.mark.parametrize("point,nth,counter", [
    ("journaled", 1, "reconsumed"),   # in the journal, still in the FIFO: consumed, not journaled twice
    ("consumed", 1, None),            # out of the FIFO, batch unconfirmed: the FIFO's head is new bytes
    ("stored", 1, "reconciled"),      # the first record stored, its progress not recorded
    ("stored", 37, "reconciled"),     # in the middle of a batch
])
def test_a_reader_killed_at_each_point_stores_every_record_once(tmp_path, point, nth, counter):
    fifo = Fifo(tmp_path)
    try:
        fifo.send([record(i) for i in range(100)])
        kill_reader_at(tmp_path, fifo, point, nth)
        head = read_journal_header(fifo.path + ".journal")
        assert head["end"] > 0, "the batch was journaled before the kill"
        fifo.send([record(i) for i in range(100, 150)])   # and more arrive meanwhile
        n, stats = drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    assert texts(tmp_path) == [f"record {i:05d}" for i in range(150)]
    head = read_journal_header(fifo.path + ".journal")
    for c in ("reconsumed", "reconciled"):
        assert head[c] == (1 if c == counter else 0), (c, head)
    assert stats["journal_stored"] == 150 - (1 if counter == "reconciled" else 0)
    assert head["pending_bytes"] == 0 and head["base"] == head["end"]


@pytest.mark.parametrize("point,nth", [
    ("stored", 3),        # killed in the batch that brought the first fragments
    ("journaled", 2),     # killed in the next batch, after the first was settled with the set pending
])
def test_fragments_journaled_before_a_kill_complete_after_it(tmp_path, point, nth):
    fifo = Fifo(tmp_path)
    frames = big_record_frames(500)
    first = ["record 00000", "record 00001", "record 00002"]

    def then_the_rest():
        # The first batch settled with the set pending: its settle is the one
        # store that moves the journal's resolve word (up to the first
        # fragment), after the batch's three records are stored.
        journal = fifo.path + ".journal"
        wait_until(lambda: os.path.exists(journal) and read_journal_header(journal)["resolve"] > 0,
                   "the first batch to settle with the fragment set pending (resolve > 0)",
                   detail=lambda: f"stored {texts(tmp_path)}")
        fifo.send(frames[2:] + [record(3)])

    try:
        # The first two fragments, interleaved with whole records: the reader
        # stores the records with the set still incomplete.
        fifo.send([record(0), frames[0], record(1), frames[1], record(2)])
        if point == "stored":
            kill_reader_at(tmp_path, fifo, point, nth)
            assert texts(tmp_path) == first
            fifo.send(frames[2:] + [record(3)])
        else:
            kill_reader_at(tmp_path, fifo, point, nth, meanwhile=then_the_rest)
            assert texts(tmp_path) == first
        head = read_journal_header(fifo.path + ".journal")
        assert head["resolve"] < head["applied"], "the pending set's frames are still needed"
        n, stats = drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    got = texts(tmp_path)
    assert got[:3] == first
    assert got[3].startswith("big 00500 ") and len(got[3]) == len("big 00500 ") + 3 * CHUNK + 100
    assert got[4:] == ["record 00003"]
    assert stats["damaged"] == 0 and stats["incomplete"] == 0
    head = read_journal_header(fifo.path + ".journal")
    if point == "stored":
        assert head["reconciled"] == 1           # record 2 was stored at the kill
    else:
        assert head["reconsumed"] == 1           # the second batch was still in the FIFO


def test_the_journal_lets_its_bytes_go_and_a_sealed_log_keeps_no_plain_text(tmp_path):
    key = str(tmp_path / "k.key")
    generate_key_file(key)
    fifo = Fifo(tmp_path)
    stop = threading.Event()
    s = family(tmp_path, key_file=key)
    t = threading.Thread(target=drain_pipe, args=(fifo.path, s), kwargs={"spill": False, "stop": stop})
    t.start()
    try:
        for burst in range(20):
            fifo.send([record(burst * 100 + i) for i in range(100)])
            time.sleep(0.01)            # the writers' pace: bursts, not one batch (not a synchronisation)
        wait_until(lambda: s.reader().count() >= 2000, "the reader to store all 2000 records", interval=0.01)
    finally:
        stop.set()
        t.join(procs.TIMEOUT)
        s.close()
        fifo.close()
    assert texts(tmp_path, key_file=key) == [f"record {i:05d}" for i in range(2000)]
    path = fifo.path + ".journal"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.path.getsize(path) == HEADER_SIZE, "stored records left in the journal of a sealed log"
    head = read_journal_header(path)
    assert head["end"] > 2000 * 50 and head["base"] == head["end"]


def test_one_reader_per_fifo(tmp_path):
    fifo = Fifo(tmp_path)
    stop = threading.Event()
    s = family(tmp_path)
    t = threading.Thread(target=drain_pipe, args=(fifo.path, s), kwargs={"spill": False, "stop": stop})
    t.start()
    try:
        # The reader holds the journal's flock: what a second reader is refused on.
        wait_until(lambda: flocked_here(fifo.path + ".journal"), "the first reader to lock its journal")
        with pytest.raises(LogkitError, match="another process is reading this FIFO: its journal .* is locked"):
            drain_pipe(fifo.path, family(tmp_path), spill=False, idle_timeout=0)
    finally:
        stop.set()
        t.join(procs.TIMEOUT)
        s.close()
        fifo.close()


@pytest.mark.parametrize("damage,match", [
    (lambda b: b"XXXX" + b[4:], "is not a logkit pipe journal"),
    (lambda b: b[:4] + (9).to_bytes(4, "little") + b[8:], "has version 9"),
    (lambda b: b[:16] + (10 ** 6).to_bytes(8, "little") + b[24:], r"is damaged: base 1000000, batch"),
    (lambda b: b[:24] + (1 << 40).to_bytes(8, "little") + b[32:], r"is damaged: word end at offset 24 is "
                                                                  r"1099511627776: \d+ bytes after base"),
    (lambda b: b[:100], "shorter than its 4096-byte header"),
])
def test_a_damaged_journal_is_a_clear_error_that_names_it(tmp_path, damage, match):
    fifo = Fifo(tmp_path)
    try:
        fifo.send([record(i) for i in range(10)])
        drain_rest(tmp_path, fifo)
        path = fifo.path + ".journal"
        with open(path, "rb") as f:
            good = f.read()
        with open(path, "wb") as f:
            f.write(damage(good))
        fifo.send([record(10)])
        with pytest.raises(JournalDamaged, match=match) as e:
            drain_rest(tmp_path, fifo)
        assert path in str(e.value)
        # What was stored stays; the record in the FIFO waits there for a
        # reader with a sound journal.
        os.rename(path, path + ".bad")
        drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    assert texts(tmp_path) == [f"record {i:05d}" for i in range(11)]


def test_garbage_in_the_fifo_is_skipped_and_resolved(tmp_path):
    fifo = Fifo(tmp_path)
    try:
        fifo.send([record(0), b"garbage without a magic", record(1), b"LKPF" + b"\0" * 30, record(2)])
        n, stats = drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    assert texts(tmp_path) == ["record 00000", "record 00001", "record 00002"]
    assert stats["skipped_bytes"] > 0 or stats["damaged"] > 0
    head = read_journal_header(fifo.path + ".journal")
    assert head["resolve"] == head["end"] == head["base"]


def test_journal_class_refuses_a_second_open_in_the_same_process(tmp_path):
    fifo = Fifo(tmp_path)
    path = str(tmp_path / "j")
    from logkit.backends.pipe import FrameDecoder
    a = PipeJournal(path, fifo.fd, None, FrameDecoder())
    try:
        with pytest.raises(LogkitError, match="is locked"):
            PipeJournal(path, fifo.fd, None, FrameDecoder())
    finally:
        a.close()
        fifo.close()


def test_logkit_stats_shows_the_readers_journal(tmp_path):
    import json
    import subprocess
    import sys
    fifo = Fifo(tmp_path)
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.p]\nstorage = "family"\ndirectory = "{tmp_path / "fam"}"\nfamily = "p"\n'
                   f'create_directory = true\ntransport = "pipe"\nfifo = "{fifo.path}"\n')

    def stats(*extra):
        r = subprocess.run([sys.executable, "-m", "logkit", "stats", "p", "-c", str(cfg), *extra],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    try:
        fifo.send([record(i) for i in range(3)])
        drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    os.rename(fifo.path + ".journal", fifo.path + ".aside")
    assert f"reader's journal {fifo.path}.journal: none yet (no reader has run)" in stats()
    with open(fifo.path + ".journal", "wb") as f:
        f.write(b"not a journal" * 400)
    assert f"reader's journal {fifo.path}.journal: {fifo.path}.journal is not a logkit pipe journal" in stats()
    os.replace(fifo.path + ".aside", fifo.path + ".journal")
    assert (f"reader's journal {fifo.path}.journal: 0 bytes pending, 3 records stored, "
            "0 batches reconsumed and 0 records reconciled after a restart") in stats()
    j = json.loads(stats("--json"))[0]["journal"]
    assert j["stored"] == 3 and j["version"] == 1 and j["end"] == j["base"] > 0


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path, monkeypatch):
    import errno

    from logkit.backends import pipejournal
    fifo = Fifo(tmp_path)
    try:
        fifo.send([record(i) for i in range(20)])
        real = os.pwrite

        def full(fd, data, offset):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(pipejournal.os, "pwrite", full)
        with pytest.raises(DiskFull, match=r"cannot create the pipe journal .*p\.fifo\.journal: "
                                           r"no space left on the device; nothing was lost"):
            drain_rest(tmp_path, fifo)            # a new journal: its header page cannot be written
        monkeypatch.setattr(pipejournal.os, "pwrite", real)
        drain_rest(tmp_path, fifo)
        fifo.send([record(i) for i in range(20, 25)])
        monkeypatch.setattr(pipejournal.os, "pwrite", full)
        with pytest.raises(DiskFull, match=r"cannot write the pipe journal .*p\.fifo\.journal: "
                                           r"no space left on the device \(they are still in the FIFO"):
            drain_rest(tmp_path, fifo)
        monkeypatch.setattr(pipejournal.os, "pwrite", real)
        fifo.send([record(i) for i in range(25, 30)])
        drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    assert texts(tmp_path) == [f"record {i:05d}" for i in range(30)]


def test_an_abandoned_fragment_set_does_not_hold_the_journal_for_long(tmp_path, monkeypatch):
    """A set whose writer gave up half-way (and spilled the record) keeps
    the journal from letting bytes go; past LAG_LIMIT bytes, a set older
    than STALE_SET_AGE is dropped and the journal shrinks again."""
    from logkit.backends import pipejournal
    from logkit.backends.pipe import FrameDecoder
    monkeypatch.setattr(pipejournal, "LAG_LIMIT", 20_000)
    fifo = Fifo(tmp_path)
    s = family(tmp_path)
    dec = FrameDecoder()
    jr = PipeJournal(fifo.path + ".journal", fifo.fd, s, dec)
    try:
        jr.recover()
        fifo.send(big_record_frames(1)[:2] + [record(0)])
        while jr.pump():
            pass
        jr.expire(now_=True)
        held = read_journal_header(jr.path)
        assert held["pending_bytes"] > 2 * CHUNK, "the set's fragments are kept"
        for st in dec.partial.values():
            st.since -= 0.5                  # younger than STALE_SET_AGE: kept
        for i in range(1, 400):
            fifo.send([record(i)])
        while jr.pump():
            pass
        jr.expire(now_=True)
        assert read_journal_header(jr.path)["pending_bytes"] > 20_000 and dec.partial
        for st in dec.partial.values():
            st.since -= 1.0                  # now older
        jr.expire()
        head = read_journal_header(jr.path)
        assert not dec.partial and dec.incomplete == 1
        assert head["pending_bytes"] == 0 and head["base"] == head["end"]
    finally:
        jr.close()
        s.close()
        fifo.close()
    assert texts(tmp_path) == [f"record {i:05d}" for i in range(400)]


def test_a_storage_without_sequence_numbers_is_reconciled_too(tmp_path):
    """A plain file's append returns no sequence: the mark taken from its
    reader at the start of the session still bounds the search, batch after
    batch.  (The 'kill' is an exception raised just after the record is
    stored: the journal is left exactly as a SIGKILL there leaves it.)"""
    from logkit.backends.pipe import FrameDecoder
    from logkit.backends.plainfile import PlainFileStorage
    fifo = Fifo(tmp_path)
    out = str(tmp_path / "out.log")
    s = PlainFileStorage("p", path=out)
    procs.stop_after_appends(s, 15)
    jr = PipeJournal(fifo.path + ".journal", fifo.fd, s, FrameDecoder())
    try:
        jr.recover()
        fifo.send([record(i) for i in range(10)])
        jr.pump()                                  # batch 1: records 0..9
        fifo.send([record(i) for i in range(10, 20)])
        with pytest.raises(KeyboardInterrupt):
            jr.pump()                              # batch 2: 'killed' after storing record 14
    finally:
        jr.close()
        s.close()
    assert read_journal_header(fifo.path + ".journal")["mark"] > 0
    s = PlainFileStorage("p", path=out)
    jr = PipeJournal(fifo.path + ".journal", fifo.fd, s, FrameDecoder())
    try:
        assert jr.recover() == 5                   # 15..19; 14 found already there
    finally:
        jr.close()
        fifo.close()
    try:
        assert [m.text for m in s.reader()] == [f"record {i:05d}" for i in range(20)]
    finally:
        s.close()
    assert read_journal_header(fifo.path + ".journal")["reconciled"] == 1


def test_a_journal_torn_by_a_crash_is_read_as_far_as_it_goes(tmp_path):
    """A machine crash can leave the header page on disk without all the
    data after it: the missing bytes read as zeros, the records in what is
    there are stored, and the reader goes on."""
    fifo = Fifo(tmp_path)
    try:
        fifo.send([record(i) for i in range(100)])
        kill_reader_at(tmp_path, fifo, "stored", 10)        # 10 stored, 9 of them recorded
        path = fifo.path + ".journal"
        head = read_journal_header(path)
        assert head["applied"] == 9 * len(record(0))
        keep = head["applied"] + 20 * len(record(0)) + 5     # records 9..28 whole, 29 cut
        os.truncate(path, HEADER_SIZE + keep - head["base"])
        n, stats = drain_rest(tmp_path, fifo)
        fifo.send([record(100)])
        drain_rest(tmp_path, fifo)
    finally:
        fifo.close()
    assert texts(tmp_path) == [f"record {i:05d}" for i in range(29)] + ["record 00100"]
    assert stats["journal_torn_bytes"] == head["end"] - keep
    assert stats["skipped_bytes"] > 0


def test_logkit_display_shows_a_journal_and_the_frames_it_holds(tmp_path):
    import json
    import subprocess
    import sys
    fifo = Fifo(tmp_path)
    frames = big_record_frames(7)
    try:
        fifo.send([record(0), frames[0], record(1), b"junk!", record(2)])
        kill_reader_at(tmp_path, fifo, "stored", 3)         # record 2 stored, not yet recorded
    finally:
        fifo.close()
    path = fifo.path + ".journal"

    def display(*extra):
        r = subprocess.run([sys.executable, "-m", "logkit", "display", path, *extra],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = display()
    head = read_journal_header(path)
    assert out.startswith(f"pipe journal {path}\n")
    assert f"     40  applied      {head['applied']}\n" in out
    lines = out.split("frames from resolve to end", 1)[1].splitlines()[1:]
    kinds = [ln.split()[3] for ln in lines]
    assert kinds == ["record", "fragment", "record", "damaged", "record"], out
    assert lines[0].split()[:2] == ["0", str(len(record(0)))]
    assert "stored  pid 4242 tid 7 severity 20  'record 00001'" in lines[2]
    assert "pending pid 4242 tid 7 severity 20  'record 00002'" in lines[4]
    assert f"pid {os.getpid()} tid 9 record 7 fragment 1 of {len(frames)}" in lines[1]
    assert lines[3].split()[1:3] == ["5", "B"]
    d = json.loads(display("--json"))
    assert d["kind"] == "pipe journal" and [f["kind"] for f in d["frames"]][:2] == ["record", "fragment"]
    assert "frames from" not in display("--header-only") and "applied" not in display("--records-only")


CYCLE_POINTS = ["pipejournal.peeked", "pipejournal.written", "pipejournal.journaled", "pipejournal.consumed",
                "pipejournal.confirmed", "pipejournal.apply.appended", "pipejournal.apply.progress",
                "pipejournal.applied", "pipejournal.settled", "pipejournal.settle.based"]
# A reader killed with a batch journaled but not confirmed settles it at start-up.
RECOVERS = {"pipejournal.journaled": ("pipejournal.recover.reconsumed", "pipejournal.recover.confirmed"),
            "pipejournal.consumed": ("pipejournal.recover.confirmed",)}


@pytest.mark.parametrize("point", CYCLE_POINTS)
def test_a_reader_killed_at_each_named_step_of_the_cycle_stores_every_record_once(tmp_path, point):
    """The journal's injection points (docs/pipe-format.md, "Injection
    points"), armed in a child through LOGKIT_INJECT: SIGKILL there, then a
    new reader stores every record exactly once."""
    import subprocess
    import sys

    from logkit import inject
    fifo = Fifo(tmp_path)
    try:
        fifo.send([record(i) for i in range(60)])
        code = (f"from logkit.backends.family import FamilyStorage\n"
                f"from logkit.backends.pipe import drain_pipe\n"
                f"s = FamilyStorage('p', directory={str(tmp_path / 'fam')!r}, family='p', create_directory=True)\n"
                f"drain_pipe({fifo.path!r}, s, spill=False, idle_timeout=0)\n")
        env = dict(os.environ, LOGKIT_INJECT=f"{point}=kill@1")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=procs.TIMEOUT)
        assert r.returncode == -9, f"not killed at {point}: exit {r.returncode} {r.stderr[-500:]}"
        fifo.send([record(i) for i in range(60, 80)])
        for name in RECOVERS.get(point, ()):
            inject.arm(name, "raise", hit=1 << 30)      # counted, never acted on
        try:
            drain_rest(tmp_path, fifo)
            reached = inject.hits()
        finally:
            inject.disarm()
    finally:
        fifo.close()
    assert texts(tmp_path) == [f"record {i:05d}" for i in range(80)]
    for name in RECOVERS.get(point, ()):
        assert reached.get(name) == 1, (name, reached)
