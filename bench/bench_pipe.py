"""The pipe reader: what storing a record that came through a FIFO costs.

The same N frames (64-byte texts) go through a real FIFO into a family,
a pipe's worth (60 KiB) at a time, read by:

* the exactly-once reader (drain_pipe's PipeJournal): tee(2) peek, journal
  write, consume, decode, store, progress recorded after each record;
* the same journal without tee (read, then journal: the non-Linux fallback);
* no journal at all: read, decode, store (what the reader did before the
  journal; a reader killed with records read but not stored loses them);
* the stdlib's peer: the receiving side of logging.handlers.SocketHandler
  (the logging cookbook's socket server): per record a 4-byte length,
  pickle.loads, logging.makeLogRecord and a FileHandler.

Every case includes writing the frames into the FIFO; the first row shows
that cost alone.  Ratios are to the reader without a journal.
"""
from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import pickle
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

from logkit.backends import pipejournal  # noqa: E402
from logkit.backends.family import FamilyStorage  # noqa: E402
from logkit.backends.pipe import FrameDecoder, encode_record  # noqa: E402

N = int(os.environ.get("LOGKIT_BENCH_PIPE_N", "200000"))
CHUNK = 60 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _frames():
    t0 = time.time_ns()
    text = b"x" * 54
    return [encode_record(text + b"%010d" % i, 20, b"", b"", t0 + i, 4242, 7) for i in range(N)]


def _chunks(frames):
    out, cur, size = [], [], 0
    for f in frames:
        if size + len(f) > CHUNK:
            out.append(b"".join(cur))
            cur, size = [], 0
        cur.append(f)
        size += len(f)
    if cur:
        out.append(b"".join(cur))
    return out


def _fifo(d):
    path = os.path.join(d, "p.fifo")
    os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    return path, fd


def _family(d):
    return FamilyStorage("bench", directory=os.path.join(d, "fam"), family="bench",
                         create_directory=True, segment_size="256MiB")


def write_only(chunks, d):
    path, fd = _fifo(d)
    t = time.perf_counter_ns()
    for c in chunks:
        os.write(fd, c)
        while True:
            try:
                if not os.read(fd, 1 << 20):
                    break
            except BlockingIOError:
                break
    t = time.perf_counter_ns() - t
    os.close(fd)
    return t


def journaled(chunks, d, peek=True):
    path, fd = _fifo(d)
    s = _family(d)
    jr = pipejournal.PipeJournal(path + ".journal", fd, s, FrameDecoder())
    jr.peeking = peek and jr.peeking
    jr.recover()
    t = time.perf_counter_ns()
    for c in chunks:
        os.write(fd, c)
        while jr.pump():
            pass
    t = time.perf_counter_ns() - t
    assert jr.session_stored == N, jr.session_stored
    jr.close()
    s.close()
    os.close(fd)
    return t


def no_journal(chunks, d):
    path, fd = _fifo(d)
    s = _family(d)
    dec = FrameDecoder()
    n = 0
    t = time.perf_counter_ns()
    for c in chunks:
        os.write(fd, c)
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            for rec in dec.feed(data):
                s.append(rec)
                n += 1
    t = time.perf_counter_ns() - t
    assert n == N
    s.close()
    os.close(fd)
    return t


def stdlib_socket_receiver(d):
    """The receive loop of the logging cookbook's socket server, over the
    bytes SocketHandler would send (length-prefixed pickles), into a
    FileHandler."""
    h = logging.handlers.SocketHandler("localhost", 9)
    t0 = time.time()
    blobs = []
    for i in range(N):
        r = logging.LogRecord("bench", logging.INFO, __file__, 1, "x" * 54 + "%010d" % i, None, None)
        r.created = t0
        blobs.append(h.makePickle(r))
    h.close()
    stream = b"".join(blobs)
    fh = logging.FileHandler(os.path.join(d, "stdlib.log"))
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    lg = logging.getLogger("bench-receiver")
    lg.propagate = False
    lg.handlers[:] = [fh]
    lg.setLevel(logging.DEBUG)
    mv = memoryview(stream)
    t = time.perf_counter_ns()
    pos, n = 0, 0
    while pos < len(mv):
        (k,) = struct.unpack_from(">L", mv, pos)
        obj = pickle.loads(mv[pos + 4:pos + 4 + k])
        lg.handle(logging.makeLogRecord(obj))
        pos += 4 + k
        n += 1
    t = time.perf_counter_ns() - t
    fh.close()
    assert n == N
    return t


def best(fn, *args, repeat=3):
    out = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="lkbench-pipe-") as d:
            out.append(fn(*args, d))
    return min(out) / N


def main():
    chunks = _chunks(_frames())
    w = best(write_only, chunks)
    base = best(no_journal, chunks)
    ex = best(journaled, chunks)
    fb = best(lambda c, d: journaled(c, d, peek=False), chunks)
    std = best(stdlib_socket_receiver)
    rows = [
        {"case": "writing the frames into the FIFO only", "ns": w},
        {"case": "reader, no journal (loses records in flight)", "ns": base, "ratio": 1.0,
         "ratio_to": "(the floor)"},
        {"case": "reader, journal with tee (exactly once)", "ns": ex, "ratio": ex / base,
         "ratio_to": "of no journal"},
        {"case": "reader, journal without tee (fallback)", "ns": fb, "ratio": fb / base,
         "ratio_to": "of no journal"},
        {"case": "stdlib SocketHandler receiver -> FileHandler", "ns": std, "ratio": std / ex,
         "ratio_to": "of logkit's exactly-once reader"},
    ]
    notes = [f"{N} records of 64-byte text, 60 KiB written to the FIFO at a time; best of 3",
             f"exactly-once reader: {1e9 / ex:,.0f} records/s"]
    if pipejournal._tee is None:
        notes.append("tee(2) is not available here: the journal rows both read first")
    report("pipe_reader", rows, notes)


if __name__ == "__main__":
    main()
