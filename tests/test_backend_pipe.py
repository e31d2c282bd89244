"""The pipe transport (backends/pipe.py): spill while no reader, the pipe
once one is present, fragments above PIPE_BUF, damaged frames, writers
killed mid-way, fork.  Real FIFOs, real processes, waits with timeouts."""
from __future__ import annotations

import os
import random
import struct
import threading

import pytest

import procs
import procs.part as partprocs
from waiting import wait_until
from logkit.backends import pipe
from logkit.backends.family import FamilyStorage
from logkit.backends.pipe import PIPE_BUF, FrameDecoder, PipeTransport, drain_pipe

TIMEOUT = procs.TIMEOUT


class Drainer:
    """drain_pipe() in a thread, stopped on exit."""

    def __init__(self, fifo, storage, **kw):
        self.stop = threading.Event()
        self.stats: dict = {}
        self.result: list = []
        self.error: list = []

        def run():
            try:
                self.result.append(drain_pipe(fifo, storage, stop=self.stop, stats=self.stats, **kw))
            except BaseException as e:          # reported by finish()
                self.error.append(e)

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def finish(self):
        self.stop.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "drain_pipe did not stop"
        assert not self.error, self.error
        return self.result[0]

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(TIMEOUT)
        return False


def reader_present(fifo):
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def family(tmp_path, name="dest"):
    return FamilyStorage("test", directory=str(tmp_path / "family"), family=name,
                         create_directory=True, segment_size="256KiB")


NoStorage = partprocs.NoStorage


def _pairs(storage):
    """(writer, counter) of every record stored; a spill overflow's loss
    report (or anything else) would be None and fail the comparisons."""
    return [procs.parse_text(m.text.split("|", 1)[0]) for m in storage.reader()]


# ---------------------------------------------------------------- issue test 5

def test_reader_absent_then_present_every_record_arrives_exactly_once(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    spill = str(tmp_path / "log.spill")
    fam = family(tmp_path)
    with procs.Group() as g:
        c = g.spawn(partprocs.child_pipe_write_batches, fifo, spill, 5)
        c.expect("ready")
        c.send(("batch", 0, 300, False))
        last, st = c.expect("written")
        assert st["spilled"] == 300 and st["sent"] == 0, st      # no reader: all to the spill
        with Drainer(fifo, fam, spill=spill) as d:
            wait_until(lambda: reader_present(fifo), "drain_pipe to open the FIFO")
            c.send(("batch", last + 1, 300, True))
            last, st = c.expect("written")
            assert st["sent"] == 1 and st["opens"] == 1, st      # the first record once a reader is there
            c.send(("batch", last + 1, 300, False))
            last, st = c.expect("written")
            assert st["sent"] == 301 and st["opens"] == 1, st    # connected: through the pipe
            total = last + 1
            assert st["sent"] + st["spilled"] == total
            wait_until(lambda: fam.reader().count() >= total, f"{total} records in the family")
            c.send(("quit",))
            c.expect("closed")
            n = d.finish()
        assert c.join() == 0
    got = _pairs(fam)
    assert sorted(got) == [(5, i) for i in range(total)], "every record exactly once"
    assert n == total
    for m in fam.reader():
        w, i = procs.parse_text(m.text)
        assert (m.severity, bytes(m.data), m.data_class) == (
            procs.message_severity(w, i), procs.message_data(w, i), procs.message_class(w, i))
        assert m.process_id == c.pid
    # what went through the pipe kept the writer's order
    piped = [i for _, i in got if i >= total - 300]
    assert piped == sorted(piped)
    fam.close()


def test_a_full_pipe_spills_and_nothing_is_lost(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)     # a reader that does not read
    try:
        t = PipeTransport(NoStorage(), "test", fifo=fifo, spill_size="256KiB")
        n = 0
        while t.stats()["pipe_full"] < 20:
            partprocs.write_record(t, 1, n)
            n += 1
        st = t.stats()
        assert st["spilled"] >= 20 and st["sent"] > 0 and st["sent"] + st["spilled"] == n
        fam = family(tmp_path)
        with Drainer(fifo, fam) as d:
            wait_until(lambda: fam.reader().count() >= n, f"{n} records")
            d.finish()
        assert sorted(_pairs(fam)) == [(1, i) for i in range(n)]
        t.close()
        fam.close()
    finally:
        os.close(holder)


def test_a_record_larger_than_pipe_buf_goes_in_fragments_and_arrives_whole(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    fam = family(tmp_path)
    with Drainer(fifo, fam) as d:
        wait_until(lambda: reader_present(fifo), "drain_pipe to open the FIFO")
        t = PipeTransport(NoStorage(), "test", fifo=fifo)
        big = "".join(chr(0x41 + i % 26) for i in range(5 * PIPE_BUF + 123)) + " ✓"
        data = bytes(range(256)) * 40
        t.write("small before")
        t.write(big, 33, data, "blob", 1_700_000_000_000_000_001)
        t.write("small after")
        assert t.stats()["fragmented"] == 1 and t.stats()["spilled"] == 0
        wait_until(lambda: fam.reader().count() >= 3, "3 records")
        d.finish()
    msgs = list(fam.reader())
    assert [m.text for m in msgs] == ["small before", big, "small after"]
    m = msgs[1]
    assert (m.severity, bytes(m.data), m.data_class, m.time) == (33, data, "blob", 1_700_000_000_000_000_001)
    assert m.process_id == os.getpid() and m.thread_id == threading.get_native_id()
    assert d.stats["fragments"] == -(-len(pipe.encode_record(big.encode(), 33, data, b"blob", 0, 0, 0))
                                     // pipe.CHUNK)
    assert d.stats["incomplete"] == 0 and d.stats["damaged"] == 0
    t.close()
    fam.close()


def test_a_damaged_frame_is_counted_and_skipped(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    fam = family(tmp_path)
    frames = [pipe.encode_record(f"r{i}".encode(), 20, b"", b"", 1000 + i, 42, 43) for i in range(4)]
    bad = bytearray(frames[1])
    bad[pipe.BODY_OFFSET] ^= 0x20                  # one bit of its text
    with Drainer(fifo, fam) as d:
        wait_until(lambda: reader_present(fifo), "drain_pipe to open the FIFO")
        fd = os.open(fifo, os.O_WRONLY)
        os.write(fd, frames[0])
        os.write(fd, bytes(bad))
        os.write(fd, frames[2])
        os.write(fd, b"\x00garbage without any magic\xff")
        os.write(fd, frames[3])
        os.close(fd)
        wait_until(lambda: fam.reader().count() >= 3, "3 records")
        d.finish()
    assert [m.text for m in fam.reader()] == ["r0", "r2", "r3"]
    assert d.stats["damaged"] == 1
    assert d.stats["skipped_bytes"] == len(b"\x00garbage without any magic\xff")
    fam.close()


def test_a_damaged_frame_is_counted_the_same_wherever_the_reads_end():
    """Regression (CI, stop 21): a frame whose body is damaged was skipped by its
    length when the next frame's magic was already in the buffer, and rescanned
    byte by byte (its bytes counted in skipped_bytes) when the read had ended
    right after it: the same stream gave other counters from run to run."""
    frames = [pipe.encode_record(f"r{i}".encode() * (i + 1), 20, b"d" * i, b"c" if i % 2 else b"",
                                 1000 + i, 42, 43) for i in range(6)]
    garbage = b"\x00garbage without any magic\xff"
    for bad_at in range(len(frames)):
        for bit in (pipe.BODY_OFFSET, len(frames[bad_at]) - 1, 16):
            parts = [bytearray(f) for f in frames]
            parts[bad_at][bit] ^= 0x20
            parts.insert(3, bytearray(garbage))
            whole, by_frame, by_byte = FrameDecoder(), FrameDecoder(), FrameDecoder()
            got_whole = [r.text for r in whole.feed(b"".join(parts))]
            got_by_frame = [r.text for p in parts for r in by_frame.feed(bytes(p))]
            got_by_byte = [r.text for b in b"".join(parts) for r in by_byte.feed(bytes([b]))]
            want = [f"r{i}" * (i + 1) for i in range(6) if i != bad_at]
            case = f"frame {bad_at} damaged at byte {bit}"
            assert got_whole == got_by_frame == got_by_byte == want, case
            assert whole.counters() == by_frame.counters() == by_byte.counters(), case
            assert whole.damaged == 1 and whole.skipped_bytes == len(garbage), case


def test_the_decoder_never_raises_nor_invents_records_on_damaged_streams():
    rnd = random.Random(1234)
    recs = []
    stream = bytearray()
    for i in range(60):
        text = (f"rec{i}:" + "y" * rnd.choice([0, 10, 300, 5000, 9000])).encode()
        r = pipe.encode_record(text, i % 50, bytes([i]) * (i % 5), b"c" if i % 3 else b"", i, 7, i % 4)
        recs.append(r)
        for f in pipe.encode_frames(r, 7, i % 4, i):
            stream += f
    good = {r for r in recs}
    for trial in range(150):
        s = bytearray(stream)
        for _ in range(rnd.randrange(1, 6)):
            kind = rnd.random()
            at = rnd.randrange(len(s))
            if kind < 0.5:
                s[at] ^= 1 << rnd.randrange(8)
            elif kind < 0.75:
                del s[at:at + rnd.randrange(1, 200)]
            else:
                s[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 50)))
        dec = FrameDecoder()
        out = []
        pos = 0
        while pos < len(s):                        # arbitrary read boundaries
            step = rnd.randrange(1, 9000)
            out += dec.feed(bytes(s[pos:pos + step]))
            pos += step
        dec.expire(force=True)
        for rec in out:
            again = pipe.encode_record(rec.text.encode("utf-8", "surrogateescape"), rec.severity,
                                       bytes(rec.data), rec.data_class.encode(), rec.time,
                                       rec.process_id, rec.thread_id)
            assert again in good, f"trial {trial}: a record that was never sent: {rec!r}"
        assert len(out) <= len(recs)


def test_a_writer_killed_mid_way_loses_no_record_it_finished(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    spill = str(tmp_path / "log.spill")
    fam = family(tmp_path)
    with Drainer(fifo, fam, spill=spill) as d:
        wait_until(lambda: reader_present(fifo), "drain_pipe to open the FIFO")
        with procs.Group() as g:
            c = g.spawn(partprocs.child_pipe_write_until_killed, fifo, spill, 7, 20)
            c.expect("ready")
            last = -1
            while last < 400:
                _, last, st = c.recv()
            c.kill()
        wait_until(lambda: fam.reader().count() >= last + 1, f"the {last + 1} finished records")
        d.finish()
    got = _pairs(fam)
    assert len(got) == len(set(got)), "a record arrived twice"
    assert set((7, i) for i in range(last + 1)) <= set(got), "a finished record was lost"
    for m in fam.reader():
        w, i = procs.parse_text(m.text.split("|", 1)[0])
        assert m.text == partprocs.big_text(w, i), "a record arrived damaged"
    # Fragment sets cut short (by the kill, or by a full pipe: those records
    # went to the spill) were dropped and counted, never stored half.
    assert d.stats["damaged"] == 0 and d.stats["pending_sets"] == 0
    fam.close()


def test_after_fork_the_child_writes_with_its_own_pid_and_fd(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    fam = family(tmp_path)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)      # makes the FIFO writable
    try:
        t = PipeTransport(NoStorage(), "test", fifo=fifo)
        t.write("parent before")
        parent_fd = t._fd
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                     # the child: write, report, leave
            code = 1
            try:
                t.after_fork()
                t.write("from the child")
                os.write(w, struct.pack("<ii", t._fd if t._fd is not None else -1, t.stats()["opens"]))
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        child_fd, opens = struct.unpack("<ii", os.read(r, 8))
        os.close(r)
        assert os.waitpid(pid, 0)[1] == 0
        assert opens == 1 and child_fd >= 0, "the child opened the FIFO itself"
        t.write("parent after")
        assert t._fd == parent_fd
        with Drainer(fifo, fam, spill=False) as d:
            wait_until(lambda: fam.reader().count() >= 3, "3 records")
            d.finish()
        msgs = list(fam.reader())
        assert [m.text for m in msgs] == ["parent before", "from the child", "parent after"]
        assert msgs[1].process_id == pid and msgs[1].thread_id == pid
        assert msgs[0].process_id == os.getpid()
        t.close()
        fam.close()
    finally:
        os.close(holder)


def test_bad_options_and_arguments_are_refused_clearly(tmp_path):
    from logkit.errors import InvalidArgument
    notfifo = tmp_path / "plain"
    notfifo.write_text("x")
    with pytest.raises(InvalidArgument, match="not a named pipe"):
        PipeTransport(NoStorage(), "test", fifo=str(notfifo))
    t = PipeTransport(NoStorage(), "test", fifo=str(tmp_path / "f"))
    for bad in (251, -251, 2.0):
        with pytest.raises(InvalidArgument):
            t.write("x", bad)
    assert oct(os.stat(tmp_path / "f").st_mode & 0o777) == oct(0o640)
    t.close()


# ---------------------------------------------------------------- the keeper

def _killed_reader_then_writer_closes(tmp_path, **opts):
    """A reader holds the FIFO, a writer sends 5 records into it, the reader
    goes away without reading (a server killed after its peek), then the
    writer closes: (fifo, transport) once closed."""
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo, 0o600)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)          # the server, not reading
    t = PipeTransport(NoStorage(), "app", fifo=fifo, **opts)
    for i in range(5):
        t.write(f"acknowledged {i}", 20)
    assert t.stats()["sent"] == 5 and t.stats()["spilled"] == 0
    os.close(rfd)                                              # the server is killed
    t.close()                                                  # the last writer leaves
    return fifo, t


def _read_all(fifo) -> list[str]:
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)          # the server comes back
    try:
        data = b""
        while True:
            try:
                b = os.read(rfd, 65536)
            except BlockingIOError:
                break
            if not b:
                break
            data += b
    finally:
        os.close(rfd)
    return [r.text for r in FrameDecoder().feed(data)]


def test_acknowledged_records_outlive_the_reader_and_the_last_writer(tmp_path):
    """Regression (crash matrix pipe/server/pipejournal.peeked/kill@5/seed=1/late):
    the kernel drops a FIFO's buffer when its last holder closes it, so records
    PipeTransport.write had acknowledged vanished when the server died and
    every writer closed before it came back."""
    fifo, t = _killed_reader_then_writer_closes(tmp_path)
    assert t.keeper is not None, "no keeper held the FIFO"
    assert _read_all(fifo) == [f"acknowledged {i}" for i in range(5)]
    assert t.keeper.wait(TIMEOUT) == 0                         # read: it leaves on its own


def test_without_a_keeper_the_kernel_drops_them(tmp_path):
    """Why the keeper exists: keep_unread = 0 disables it, and the records go."""
    fifo, t = _killed_reader_then_writer_closes(tmp_path, keep_unread=0)
    assert t.keeper is None
    assert _read_all(fifo) == []


def test_no_keeper_while_a_reader_holds_the_fifo_or_it_is_empty(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo, 0o600)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        t = PipeTransport(NoStorage(), "app", fifo=fifo)
        t.write("read by a live reader", 20)
        t.close()
        assert t.keeper is None                                # a reader holds it: nothing to keep
        assert [r.text for r in FrameDecoder().feed(os.read(rfd, 65536))] == ["read by a live reader"]
        t2 = PipeTransport(NoStorage(), "app", fifo=fifo)
        os.close(rfd)
        rfd = None
        t2.close()
        assert t2.keeper is None                               # no reader, but nothing unread
    finally:
        if rfd is not None:
            os.close(rfd)


def test_the_keeper_leaves_when_the_fifo_is_removed_or_its_time_is_up(tmp_path):
    fifo, t = _killed_reader_then_writer_closes(tmp_path)
    os.unlink(fifo)                                            # nobody can open it again
    assert t.keeper.wait(TIMEOUT) == 0
    (tmp_path / "again").mkdir()
    fifo, t = _killed_reader_then_writer_closes(tmp_path / "again", keep_unread="1s")
    assert t.keeper.wait(TIMEOUT) == 0                         # 1 s, then what is unread is lost
    assert _read_all(fifo) == []


def test_many_writers_closing_together_leave_one_keeper(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo, 0o600)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    ts = [PipeTransport(NoStorage(), "app", fifo=fifo) for _ in range(3)]
    for i, t in enumerate(ts):
        t.write(f"from writer {i}", 20)
    os.close(rfd)
    for t in ts:
        t.close()
    keepers = [t.keeper for t in ts]
    assert all(k is not None for k in keepers)
    # every keeper but one finds the FIFO locked and leaves at once
    wait_until(lambda: sum(k.poll() is None for k in keepers) == 1, "all keepers but one to leave")
    assert sorted(_read_all(fifo)) == [f"from writer {i}" for i in range(3)]
    assert all(k.wait(TIMEOUT) == 0 for k in keepers)


def test_without_a_python_interpreter_to_start_the_keeper_is_forked(tmp_path, monkeypatch):
    """Under a program that embeds Python (uWSGI), sys.executable is that
    program: the keeper is then forked, holding nothing but the FIFO."""
    from logkit.backends import pipekeeper
    monkeypatch.setattr(pipekeeper.sys, "executable", "/usr/bin/uwsgi")
    assert pipekeeper.python_interpreter() is None
    fifo, t = _killed_reader_then_writer_closes(tmp_path)
    assert isinstance(t.keeper, pipekeeper.ForkedKeeper)
    # it closes everything but the FIFO (no socket of ours kept open for a day)
    wait_until(lambda: len(os.listdir(f"/proc/{t.keeper.pid}/fd")) == 1, "the forked keeper to hold only the FIFO")
    (fd,) = os.listdir(f"/proc/{t.keeper.pid}/fd")
    assert os.stat(f"/proc/{t.keeper.pid}/fd/{fd}").st_ino == os.stat(fifo).st_ino
    assert _read_all(fifo) == [f"acknowledged {i}" for i in range(5)]
    assert t.keeper.wait(TIMEOUT) == 0
